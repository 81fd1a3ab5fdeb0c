//! Token signing keys and the first administrator: what `wharf serve` sets up on first start.

use std::path::{Path, PathBuf};
use wharf_core::auth::sealed::SealKey;
use wharf_core::auth::{Keys, generate_key_pem};
use wharf_core::{Env, ports::DocumentStore};

/// Loads the configured keys, or the generated default key (created on first start).
pub fn load_keys(configured: &[PathBuf], data_dir: &Path, env: &impl Env) -> Result<Keys, String> {
    let paths = if configured.is_empty() {
        let p = data_dir.join("keys").join("token-signing.pem");
        if !p.exists() {
            generate_key(&p, env)?;
            tracing::info!(path = %p.display(), "generated a token signing key");
        }
        vec![p]
    } else {
        configured.to_vec()
    };
    let pems = paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("reading token key {}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    Keys::from_pems(&pems).map_err(|e| format!("token keys: {e}"))
}

/// The key remote registries' passwords are sealed with when `WHARF_SECRET_KEY` is unset:
/// `<data-dir>/keys/secret.key`, made on first start (random, readable by the owner only).
/// It sits beside the store, not in it: a copy of the database alone opens nothing.
pub fn load_secret_key(data_dir: &Path, env: &impl Env) -> Result<SealKey, String> {
    let p = data_dir.join("keys").join("secret.key");
    if !p.exists() {
        let mut raw = [0u8; 32];
        env.fill_random(&mut raw);
        write_private(&p, &wharf_core::model::to_hex(&raw))?;
        tracing::info!(path = %p.display(), "generated the key that seals remote registries' passwords");
    }
    let text = std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    SealKey::from_secret(text.trim()).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes a new P-256 private key (PKCS#8 PEM), readable by the owner only.
fn generate_key(path: &Path, env: &impl Env) -> Result<(), String> {
    let pem = generate_key_pem(env).map_err(|e| e.to_string())?;
    write_private(path, &pem)
}

/// Creates `path` (it must not exist) with `text`, readable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Creates the system administrator `admin` if it does not exist: its password `password`
/// (`WHARF_ADMIN_PASSWORD`), or generated and printed once on standard output (never logged).
pub async fn ensure_admin<D: DocumentStore>(
    docs: &D,
    env: &impl Env,
    password: Option<&str>,
) -> Result<(), String> {
    let generated = wharf_core::auth::ensure_admin(docs, env, password)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(password) = generated {
        println!(
            "wharf: created user 'admin' with password {password} (shown once; change it with `wharf user passwd admin`)"
        );
    }
    Ok(())
}

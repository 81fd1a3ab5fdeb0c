//! Token signing keys and the first administrator: what `wharf serve` sets up on first start.

use std::path::{Path, PathBuf};
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

/// Writes a new P-256 private key (PKCS#8 PEM), readable by the owner only.
fn generate_key(path: &Path, env: &impl Env) -> Result<(), String> {
    let pem = generate_key_pem(env).map_err(|e| e.to_string())?;
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
    std::io::Write::write_all(&mut f, pem.as_bytes())
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

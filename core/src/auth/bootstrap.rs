//! Bootstrap: the first system administrator.

use crate::auth::directory::Directory;
use crate::auth::model::{User, new_incarnation};
use crate::auth::password::{hash_password, random_secret};
use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::ports::{DocumentStore, Env};

/// Creates the system administrator `admin` if there is none, with `password` or a
/// generated one; returns the password if it was generated (for the caller to show once).
pub async fn ensure_admin<D: DocumentStore>(
    docs: &D,
    env: &impl Env,
    password: Option<&str>,
) -> Result<Option<String>, RegistryError> {
    let dir = Directory(docs);
    if dir.user("admin").await?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) if !p.is_empty() => (p.to_owned(), false),
        _ => (random_secret(env), true),
    };
    let user = User {
        username: "admin".into(),
        password_hash: hash_password(env, &password)?,
        email: None,
        admin: true,
        created_ms: env.now_ms(),
        incarnation: new_incarnation(env),
        generation: 0,
    };
    let raw = serde_json::to_vec(&user)
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
    match docs.put_doc("user", "admin", &raw, true).await {
        Ok(()) => {}
        // Created meanwhile by another instance: theirs stands.
        Err(StoreError::Precondition(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    tracing::info!("created the system administrator 'admin'");
    Ok(generated.then_some(password))
}

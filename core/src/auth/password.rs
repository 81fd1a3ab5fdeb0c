//! Passwords and secrets: Argon2id hashes, checked off the request threads.

use crate::error::{ErrorCode, RegistryError};
use crate::ports::Env;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;

/// Hashes a password with Argon2id (default parameters) and a salt from `env`.
pub fn hash_password(env: &impl Env, password: &str) -> Result<String, RegistryError> {
    let mut salt = [0u8; 16];
    env.fill_random(&mut salt);
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("hashing password: {e}")))
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// [`hash_password`] on [`Env::run_heavy`], so a burst of logins does not stall requests.
pub async fn hash_password_off_thread(
    env: &impl Env,
    password: &str,
) -> Result<String, RegistryError> {
    let mut salt = [0u8; 16];
    env.fill_random(&mut salt);
    let password = password.to_owned();
    env.run_heavy(move || {
        argon2::Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("hashing password: {e}")))
    })
    .await
}

/// [`verify_password`] on [`Env::run_heavy`].
pub async fn verify_password_off_thread(env: &impl Env, password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    env.run_heavy(move || verify_password(&password, &hash))
        .await
}

/// A fresh random secret (robot secrets, generated passwords).
pub fn random_secret(env: &impl Env) -> String {
    let mut b = [0u8; 24];
    env.fill_random(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

//! Secrets at rest: a remote registry's password is stored sealed with a key that lives
//! outside the store holding it (`WHARF_SECRET_KEY`, a secret of the runtime, or a file of
//! `wharf serve`'s own), so a copy of the table or the data directory reveals nothing.
//!
//! The cipher is XChaCha20-Poly1305 with a random 24-byte nonce per value (random nonces
//! of that size never collide in practice). The associated data binds a value to the
//! record it belongs to, so a sealed password copied into another remote's record does not
//! open there. Sealed values read `v1:<key id>:<base64 nonce‖ciphertext>`; the key id (the
//! first bytes of a hash of the key) tells an operator which key a value needs.

use crate::error::{ErrorCode, RegistryError, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest secret a key is derived from.
pub const MIN_SECRET_LEN: usize = 32;

/// The key that seals and opens stored secrets. Its `Debug` shows only its id.
#[derive(Clone)]
pub struct SealKey {
    key: [u8; 32],
    id: String,
}

impl PartialEq for SealKey {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id && self.key == o.key
    }
}

impl Eq for SealKey {}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(label.as_bytes());
    m.finalize().into_bytes().into()
}

fn sealing_error(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, msg)
}

impl SealKey {
    /// The key derived from `secret` (at least [`MIN_SECRET_LEN`] bytes: a passphrase or
    /// random text from a secret manager).
    pub fn from_secret(secret: &str) -> std::result::Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret key must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        let key = derive(secret.as_bytes(), "wharf-seal-v1");
        let id = crate::model::to_hex(&derive(secret.as_bytes(), "wharf-seal-id")[..4]);
        Ok(Self { key, id })
    }

    /// Which key this is (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` for the record `context` names; `nonce` must be fresh random bytes.
    pub fn seal(&self, plain: &str, context: &str, nonce: [u8; 24]) -> Result<String> {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| sealing_error("sealing a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1:{}:{}", self.id, STANDARD_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `context`; fails without revealing why beyond "wrong key"
    /// or "damaged".
    pub fn open(&self, sealed: &str, context: &str) -> Result<String> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(sealing_error("a stored secret is not in a known format"));
        };
        if id != self.id {
            return Err(sealing_error(format!(
                "a stored secret was sealed with key {id}; this registry has key {} (set WHARF_SECRET_KEY to the one it was sealed with)",
                self.id
            )));
        }
        let raw = STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| sealing_error("a stored secret is damaged"))?;
        if raw.len() < 24 {
            return Err(sealing_error("a stored secret is damaged"));
        }
        let (nonce, ct) = raw.split_at(24);
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| sealing_error("a stored secret is damaged"))?;
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| sealing_error("a stored secret does not open for this record"))?;
        String::from_utf8(plain).map_err(|_| sealing_error("a stored secret is damaged"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_with_their_key_and_record() {
        let k = SealKey::from_secret("0123456789abcdef0123456789abcdef").expect("test value");
        let s = k
            .seal("hunter2-password", "remote:hub", [7; 24])
            .expect("test value");
        assert!(!s.contains("hunter2"));
        assert!(s.starts_with(&format!("v1:{}:", k.id())));
        assert_eq!(
            k.open(&s, "remote:hub").expect("test value"),
            "hunter2-password"
        );
        // Moved to another record: refused.
        assert!(k.open(&s, "remote:other").is_err());
        // Another key: refused, naming the key it needs.
        let k2 = SealKey::from_secret("another secret that is long enough!!").expect("test value");
        let e = k2.open(&s, "remote:hub").expect_err("refused");
        assert!(e.message.contains(k.id()), "{}", e.message);
        // Damaged: refused.
        let mut bad = s.clone();
        bad.pop();
        bad.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(&bad, "remote:hub").is_err());
        assert!(k.open("plain", "remote:hub").is_err());
        assert!(SealKey::from_secret("short").is_err());
        assert!(!format!("{k:?}").contains("0123"));
    }
}

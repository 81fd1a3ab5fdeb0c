//! Token keys: P-256 signing keys, their JWKS, generation, and the stored key of a
//! stateless deployment.

use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::model::to_hex;
use crate::ports::{DocumentStore, Env};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// A key that signs (and verifies) tokens.
pub(super) struct KeyPair {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    jwk: Jwk,
}

/// Token signing and verification keys. The first key signs; all verify (rotation: add the
/// new key first, keep the old one until its tokens have expired).
pub struct Keys {
    pub(super) keys: Vec<KeyPair>,
}

impl Keys {
    /// Loads PKCS#8 PEM P-256 private keys; the first signs.
    pub fn from_pems(pems: &[Vec<u8>]) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for pem in pems {
            let encoding = EncodingKey::from_ec_pem(pem)
                .map_err(|e| format!("not an EC P-256 private key: {e}"))?;
            let mut jwk =
                Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| e.to_string())?;
            let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
                return Err("not an EC key".into());
            };
            let kid = to_hex(
                crate::model::Digest::sha256_of(format!("{}.{}", ec.x, ec.y).as_bytes())
                    .hex()
                    .as_bytes(),
            )[..16]
                .to_owned();
            let decoding =
                DecodingKey::from_ec_components(&ec.x, &ec.y).map_err(|e| e.to_string())?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            keys.push(KeyPair {
                kid,
                encoding,
                decoding,
                jwk,
            });
        }
        if keys.is_empty() {
            return Err("at least one signing key is needed".into());
        }
        Ok(Keys { keys })
    }
    /// The JWKS document of all verification keys (public parts only).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
    /// The signing key's id.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }
}

/// A new P-256 private key as PKCS#8 PEM, from `env`'s randomness.
pub fn generate_key_pem(env: &impl Env) -> Result<String, RegistryError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let key = loop {
        let mut b = [0u8; 32];
        env.fill_random(&mut b);
        // All but a 2^-128 fraction of 32-byte strings are valid scalars.
        if let Ok(k) = p256::SecretKey::from_slice(&b) {
            break k;
        }
    };
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("encoding key: {e}")))
}

/// Splits a text holding one or more PEM blocks (e.g. an environment variable or a secret
/// with the signing key first, then keys still accepted for rotation).
pub fn split_pems(text: &str) -> Vec<Vec<u8>> {
    text.split_inclusive("-----END PRIVATE KEY-----")
        .map(str::trim)
        .filter(|b| b.starts_with("-----BEGIN"))
        .map(|b| format!("{b}\n").into_bytes())
        .collect()
}

/// Document kind and id under which a stateless deployment keeps its generated key.
const KEY_DOC: (&str, &str) = ("config", "token-signing-key");

/// The token keys of a deployment that has no configured key: one generated on first use
/// and kept in the document store (a create-only write, so instances starting at once agree
/// on a single key). For stateless runtimes (Lambda, Workers) whose instances must verify
/// each other's tokens; the key is then as private as the table (encrypted at rest, IAM).
pub async fn stored_keys<D: DocumentStore>(
    docs: &D,
    env: &impl Env,
) -> Result<Keys, RegistryError> {
    let invalid =
        |e: String| RegistryError::new(ErrorCode::Unknown, format!("stored token key: {e}"));
    for _ in 0..3 {
        if let Some(pem) = docs.get_doc(KEY_DOC.0, KEY_DOC.1).await? {
            return Keys::from_pems(&[pem]).map_err(invalid);
        }
        let pem = generate_key_pem(env)?;
        match docs
            .put_doc(KEY_DOC.0, KEY_DOC.1, pem.as_bytes(), true)
            .await
        {
            Ok(()) => {
                tracing::info!("generated the token signing key");
                return Keys::from_pems(&[pem.into_bytes()]).map_err(invalid);
            }
            // Another instance won the race: use its key.
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(invalid("could not be read or created".into()))
}

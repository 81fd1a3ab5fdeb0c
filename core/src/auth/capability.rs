//! Upload capabilities: a signed, expiring permission to send the bytes of one upload,
//! carried in the upload URL (`?cap=`).
//!
//! Why: AWS Lambda takes at most 6 MB per request, and `docker push` sends a whole layer in
//! one PATCH. With an upload front configured ([`crate::Config::upload_front`]), the API
//! answers an upload `POST` with a `Location` on the front (a `wharf serve`, or later the
//! Worker, on the same storage) whose query carries a capability. The client follows the
//! `Location` as the spec requires, so the layer goes to the front while the API keeps
//! serving everything else. The front needs no user token: the capability names the
//! repository, the upload id and an expiry, signed with HMAC-SHA256 under a secret that
//! the API and the front share ([`crate::Config::upload_secret`]). It is a bearer credential
//! for that one upload only: it cannot start another upload, read or delete anything.
//!
//! Format: `<expiry, seconds since the epoch>.<base64url HMAC of "wharf-upload-v1\n<repo>\n<id>\n<expiry>">`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The query parameter that carries a capability.
pub const PARAM: &str = "cap";

/// Shortest upload secret a runtime accepts (`crate::settings` refuses shorter ones, for
/// every runtime that mints or verifies).
pub const MIN_SECRET_LEN: usize = 32;

/// Why a capability was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    /// Not of the form `<expiry>.<mac>`.
    Malformed,
    /// The signature does not match (forged, for another upload, or another secret).
    BadSignature,
    /// Past its expiry.
    Expired,
}

impl std::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "upload capability is malformed",
            Self::BadSignature => "upload capability is not valid for this upload",
            Self::Expired => "upload capability has expired; start the upload again",
        })
    }
}

fn mac(secret: &[u8], repo: &str, id: &str, expiry: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; an empty key is refused earlier.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(format!("wharf-upload-v1\n{repo}\n{id}\n{expiry}").as_bytes());
    m
}

/// Signs a capability for upload `id` of `repo`, valid until `expiry_secs`.
pub fn mint(secret: &[u8], repo: &str, id: &str, expiry_secs: u64) -> String {
    let tag = mac(secret, repo, id, expiry_secs).finalize().into_bytes();
    format!("{expiry_secs}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a capability for upload `id` of `repo` at `now_secs` (signature in constant time).
pub fn verify(
    secret: &[u8],
    repo: &str,
    id: &str,
    cap: &str,
    now_secs: u64,
) -> Result<(), CapabilityError> {
    let (exp, tag) = cap.split_once('.').ok_or(CapabilityError::Malformed)?;
    let expiry: u64 = exp.parse().map_err(|_| CapabilityError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| CapabilityError::Malformed)?;
    mac(secret, repo, id, expiry)
        .verify_slice(&tag)
        .map_err(|_| CapabilityError::BadSignature)?;
    if now_secs >= expiry {
        return Err(CapabilityError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_refusals() {
        let cap = mint(S, "lib/app", "u1", 1_000);
        assert_eq!(verify(S, "lib/app", "u1", &cap, 999), Ok(()));
        assert_eq!(
            verify(S, "lib/app", "u1", &cap, 1_000),
            Err(CapabilityError::Expired)
        );
        assert_eq!(
            verify(S, "lib/app", "u2", &cap, 1),
            Err(CapabilityError::BadSignature)
        );
        assert_eq!(
            verify(S, "lib/other", "u1", &cap, 1),
            Err(CapabilityError::BadSignature)
        );
        assert_eq!(
            verify(b"another secret", "lib/app", "u1", &cap, 1),
            Err(CapabilityError::BadSignature)
        );
        // Moving the expiry forward breaks the signature.
        let (_, tag) = cap.split_once('.').unwrap_or_default();
        assert_eq!(
            verify(S, "lib/app", "u1", &format!("9999.{tag}"), 1),
            Err(CapabilityError::BadSignature)
        );
        for bad in ["", "1000", "x.abc", "1000.!!!"] {
            assert_eq!(
                verify(S, "lib/app", "u1", bad, 1),
                Err(CapabilityError::Malformed),
                "{bad:?}"
            );
        }
    }
}

//! Presigned GET URLs for S3-compatible stores (AWS S3, Cloudflare R2), computed locally.
//!
//! Shared by wharf-s3 and wharf-r2. The time is the caller's (the core's `Env`): aws-sigv4
//! never reads the clock itself, so this builds and runs on wasm32, where `SystemTime::now()`
//! panics. No network call, no async: the core's `presign_get` is synchronous.
#![deny(missing_docs)]

use aws_credential_types::Credentials;
use std::time::{Duration, SystemTime};

/// Longest validity SigV4 query signatures allow (7 days).
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Percent-encodes an object key for a URL path (`/` kept): the form S3 and R2 sign.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SigV4 query-signed GET of `url` (an object URL, key already encoded), valid `ttl`
/// (clamped to 1 s – 7 days) from `now`, for service `s3` in `region` (`auto` on R2).
pub fn presign_get(
    url: &str,
    creds: &Credentials,
    region: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<String, String> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(ttl.clamp(Duration::from_secs(1), MAX_TTL));
    // The key is encoded once, by us; S3 and R2 do not normalise paths.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut req = http::Request::get(url)
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req.uri().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// AWS's documented example of a presigned GET (S3 API reference, "Authenticating
    /// Requests: Using Query Parameters"): same credentials, time, bucket and key must give
    /// the published signature.
    #[test]
    fn aws_documented_example() {
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        // 20130524T000000Z
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let url = presign_get(
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &creds,
            "us-east-1",
            now,
            Duration::from_secs(86400),
        )
        .expect("signs");
        assert!(
            url.contains(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=86400"), "{url}");
    }

    #[test]
    fn keys_are_encoded_once_with_slashes_kept() {
        assert_eq!(encode_key("blobs/sha256/ab cd"), "blobs/sha256/ab%20cd");
        assert_eq!(encode_key("a+b"), "a%2Bb");
    }
}

//! AWS without an SDK: SigV4 for S3-compatible stores (AWS S3, Cloudflare R2) and AWS's JSON
//! APIs, computed locally: presigned GET URLs ([`presign_get`]) and signed request headers
//! ([`sign_headers`]); and [`AwsClient`], which signs and sends requests over a runtime's own
//! HTTP ([`Transport`]: a Worker calling S3 or DynamoDB over `fetch`), with AWS error codes
//! mapped onto the core's errors ([`classify`], which the SDK-based adapters use too).
//!
//! Shared by wharf-s3 and wharf-r2. The time is the caller's (the core's `Env`): aws-sigv4
//! never reads the clock itself, so this builds and runs on wasm32, where `SystemTime::now()`
//! panics. No network call, no async: the core's `presign_get` is synchronous.
#![deny(missing_docs)]

mod client;

pub use client::{AwsClient, Transport, classify, error_code, xml_escape, xml_value, xml_values};

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

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningInstructions, SigningSettings, UriPathNormalizationMode, sign,
};

/// One request to sign, and how.
struct Signing<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: SignableBody<'a>,
    settings: SigningSettings,
    service: &'a str,
    region: &'a str,
}

impl Signing<'_> {
    /// Signs with `creds` at `now`: what to add to the request.
    fn sign(self, creds: &Credentials, now: SystemTime) -> Result<SigningInstructions, String> {
        let mut settings = self.settings;
        if self.service == "s3" {
            // Keys are encoded once, by the caller; S3 and R2 do not normalise paths.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let identity = creds.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            self.method,
            self.url,
            self.headers.iter().copied(),
            self.body,
        )
        .map_err(|e| e.to_string())?;
        Ok(sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts()
            .0)
    }
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
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(ttl.clamp(Duration::from_secs(1), MAX_TTL));
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let instructions = Signing {
        method: "GET",
        url,
        headers: &[],
        body: SignableBody::UnsignedPayload,
        settings,
        service: "s3",
        region,
    }
    .sign(creds, now)?;
    let mut req = http::Request::get(url)
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req.uri().to_string())
}

/// The headers that sign a request in the `Authorization` header (`authorization`,
/// `x-amz-date`, `x-amz-security-token` with temporary credentials, and with
/// `content_sha256_header` S3's `x-amz-content-sha256`), to add to the request as sent.
/// `headers` are the request's own headers to sign (`host` is taken from `url`);
/// `payload_sha256` is the hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` (S3 only).
#[allow(clippy::too_many_arguments)]
pub fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload_sha256: &str,
    content_sha256_header: bool,
    service: &str,
    region: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::Headers;
    settings.payload_checksum_kind = if content_sha256_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    let body = match payload_sha256 {
        "UNSIGNED-PAYLOAD" => SignableBody::UnsignedPayload,
        hash => SignableBody::Precomputed(hash.to_owned()),
    };
    let instructions = Signing {
        method,
        url,
        headers,
        body,
        settings,
        service,
        region,
    }
    .sign(creds, now)?;
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// The credentials and time (20130524T000000Z) of AWS's documented SigV4 examples.
    fn aws_example() -> (Credentials, SystemTime) {
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        (creds, UNIX_EPOCH + Duration::from_secs(1_369_353_600))
    }

    /// AWS's documented example of a presigned GET (S3 API reference, "Authenticating
    /// Requests: Using Query Parameters"): same credentials, time, bucket and key must give
    /// the published signature.
    #[test]
    fn aws_documented_example() {
        let (creds, now) = aws_example();
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

    /// AWS's documented example of a header-signed GET (S3 API reference, "Signature
    /// Calculations for the Authorization Header", GET Object with a Range header).
    #[test]
    fn aws_documented_header_example() {
        let (creds, now) = aws_example();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let out = sign_headers(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
            ],
            empty,
            true,
            "s3",
            "us-east-1",
            &creds,
            now,
        )
        .expect("signs");
        let get = |name: &str| {
            out.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        assert_eq!(
            get("authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(get("x-amz-date"), "20130524T000000Z");
        assert_eq!(get("x-amz-content-sha256"), empty);
        // Temporary credentials add their token, signed.
        let session = Credentials::new("AKID", "secret", Some("tok".into()), None, "test");
        let out = sign_headers(
            "POST",
            "https://dynamodb.us-east-1.amazonaws.com/",
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.GetItem"),
            ],
            empty,
            false,
            "dynamodb",
            "us-east-1",
            &session,
            now,
        )
        .expect("signs");
        let auth = out
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(auth.contains("/us-east-1/dynamodb/aws4_request"), "{auth}");
        assert!(
            auth.contains("x-amz-security-token") && auth.contains("x-amz-target"),
            "{auth}"
        );
        assert!(
            out.iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "tok")
        );
        assert!(!out.iter().any(|(k, _)| k == "x-amz-content-sha256"));
    }

    #[test]
    fn keys_are_encoded_once_with_slashes_kept() {
        assert_eq!(encode_key("blobs/sha256/ab cd"), "blobs/sha256/ab%20cd");
        assert_eq!(encode_key("a+b"), "a%2Bb");
    }
}

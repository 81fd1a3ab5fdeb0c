//! Calling AWS APIs without an SDK: a runtime supplies the round trip ([`Transport`]: `fetch`
//! in a Worker, reqwest in tests); [`AwsClient`] signs each request for one service and maps
//! failures onto [`StoreError`] the way the SDK-based adapters do ([`classify`]).

use crate::sign_headers;
use aws_credential_types::Credentials;
use bytes::Bytes;
use std::time::SystemTime;
use wharf_core::{Digest, StoreError};

/// One HTTP round trip, whole bodies both ways, plus the runtime's clock (signatures carry
/// the time, and `SystemTime::now()` panics on wasm32).
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `req` and returns the response, whatever its status; `Err` only when no
    /// response came (connection refused, timeout).
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, String>;
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// Signs requests for one AWS service (`s3`, `dynamodb`) in one region and sends them.
#[derive(Clone)]
pub struct AwsClient<T> {
    transport: T,
    creds: Credentials,
    service: &'static str,
    region: String,
}

impl<T: Transport> AwsClient<T> {
    /// A client of `service` in `region` with `creds`.
    pub fn new(transport: T, creds: Credentials, service: &'static str, region: &str) -> Self {
        Self {
            transport,
            creds,
            service,
            region: region.to_owned(),
        }
    }

    /// The credentials requests are signed with.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Signs `req` (every header it has, plus `host`) and sends it. S3 requests go with
    /// `UNSIGNED-PAYLOAD` (the core verifies every blob's digest itself, and hashing each
    /// part twice would double the Worker's CPU per byte); other services sign the body's
    /// SHA-256. A response with status ≥ 300 becomes the error its code means.
    pub async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, StoreError> {
        let (mut parts, body) = req.into_parts();
        let s3 = self.service == "s3";
        let body_hash = (!s3).then(|| Digest::sha256_of(&body));
        let hash = body_hash.as_ref().map_or("UNSIGNED-PAYLOAD", Digest::hex);
        let url = parts.uri.to_string();
        let own: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let signed = sign_headers(
            parts.method.as_str(),
            &url,
            &own,
            hash,
            s3,
            self.service,
            &self.region,
            &self.creds,
            self.transport.now(),
        )
        .map_err(|e| StoreError::Other(format!("signing a {} request: {e}", self.service)))?;
        for (k, v) in signed {
            let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(&v),
            ) else {
                return Err(StoreError::Other("signing produced a bad header".into()));
            };
            parts.headers.insert(k, v);
        }
        let resp = self
            .transport
            .send(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", self.service)))?;
        let status = resp.status().as_u16();
        if status < 300 {
            return Ok(resp);
        }
        let (code, message) = error_code(resp.body());
        Err(classify(status, &code, &message))
    }
}

/// The error code and message of an AWS error body: S3's XML (`<Code>`, `<Message>`) or the
/// JSON APIs' `__type` (`com.amazonaws…#ConditionalCheckFailedException`) and `message`.
pub fn error_code(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    if let Some(code) = xml_value(&text, "Code") {
        return (code, xml_value(&text, "Message").unwrap_or_default());
    }
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_owned()
    };
    let t = field(&["__type"]);
    let code = t.rsplit('#').next().unwrap_or_default().to_owned();
    (code, field(&["message", "Message"]))
}

/// The text of the first `<name>` element of a flat XML document (S3's responses), with
/// XML's five entities decoded.
pub fn xml_value(xml: &str, name: &str) -> Option<String> {
    xml_values(xml, name).into_iter().next()
}

/// The texts of every `<name>` element, in order (S3's responses are flat enough that
/// element names identify what is wanted: `Key`, `UploadId`, `ETag`…).
pub fn xml_values(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

/// Classifies an AWS service error by HTTP status and error code (S3 and DynamoDB codes;
/// the SDK-based adapters use the same table through wharf-aws).
pub fn classify(status: u16, code: &str, message: &str) -> StoreError {
    let what = || {
        if message.is_empty() {
            format!("{code} (HTTP {status})")
        } else {
            format!("{code} (HTTP {status}): {message}")
        }
    };
    match code {
        "NoSuchKey" | "NoSuchUpload" | "NotFound" => return StoreError::NotFound,
        // A missing bucket or table is a deployment fault, not a missing record.
        "NoSuchBucket" | "ResourceNotFoundException" => return StoreError::Other(what()),
        "NotImplemented" => return StoreError::NotSupported(what()),
        "PreconditionFailed" | "ConditionalCheckFailedException" => {
            return StoreError::Precondition(what());
        }
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalError"
        | "ServiceUnavailable"
        | "RequestTimeout"
        | "TransactionConflictException"
        | "TransactionInProgressException" => return StoreError::Unavailable(what()),
        _ => {}
    }
    match status {
        404 => StoreError::NotFound,
        412 => StoreError::Precondition(what()),
        501 => StoreError::NotSupported(what()),
        429 | 500..=599 => StoreError::Unavailable(what()),
        _ => StoreError::Other(what()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_both_kinds() {
        let s3 = b"<?xml version=\"1.0\"?><Error><Code>NoSuchUpload</Code><Message>gone &amp; done</Message></Error>";
        assert_eq!(
            error_code(s3),
            ("NoSuchUpload".into(), "gone & done".into())
        );
        let ddb = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;
        let (code, msg) = error_code(ddb);
        assert_eq!(code, "ConditionalCheckFailedException");
        assert!(matches!(
            classify(400, &code, &msg),
            StoreError::Precondition(_)
        ));
        assert!(matches!(
            classify(404, "NoSuchKey", ""),
            StoreError::NotFound
        ));
        assert!(matches!(
            classify(503, "SlowDown", ""),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(classify(400, "Weird", ""), StoreError::Other(_)));
    }

    #[test]
    fn xml_lists() {
        let x = "<R><Contents><Key>a/1</Key></Contents><Contents><Key>a/&lt;2&gt;</Key></Contents><IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_values(x, "Key"), vec!["a/1", "a/<2>"]);
        assert_eq!(xml_value(x, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(xml_value(x, "Nope"), None);
        assert_eq!(xml_escape("\"a&b\""), "&quot;a&amp;b&quot;");
    }
}

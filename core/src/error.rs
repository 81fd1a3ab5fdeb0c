//! Errors as the OCI Distribution spec names them.
//!
//! Every failure the core reports is a [`RegistryError`]: one spec error code, the HTTP
//! status the spec gives it, a message for people, and optional structured detail.
//! Adapters report [`StoreError`]s, which never carry a backend's own error type.

use http::StatusCode;
use serde::Serialize;

/// The error codes of the OCI Distribution spec (plus `UNAVAILABLE` and `UNKNOWN`,
/// which CNCF Distribution uses for server-side faults the spec leaves unnamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Tag invalid (not in the spec's list, but used by Distribution for bad tags).
    TagInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// The management API's "already exists" (Harbor's code; no `/v2/` route uses it).
    Conflict,
    /// A backend is unavailable; retrying later may succeed.
    Unavailable,
    /// Unknown server-side fault.
    Unknown,
}

impl ErrorCode {
    /// The HTTP status the spec pairs with this code.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            BlobUnknown | BlobUploadUnknown | ManifestUnknown | NameUnknown => {
                StatusCode::NOT_FOUND
            }
            BlobUploadInvalid | DigestInvalid | ManifestBlobUnknown | ManifestInvalid
            | NameInvalid | SizeInvalid | TagInvalid => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Denied => StatusCode::FORBIDDEN,
            Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Conflict => StatusCode::CONFLICT,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failure to report to the client, rendered as the spec's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// The spec error code.
    pub code: ErrorCode,
    /// HTTP status; usually `code.status()`, but e.g. 416 or 413 where the spec says so.
    pub status: StatusCode,
    /// Human-readable explanation.
    pub message: String,
    /// Optional structured detail (e.g. the missing digest).
    pub detail: Option<serde_json::Value>,
    /// Extra response headers (e.g. `Range` on a 416, `Retry-After` on a 429).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl RegistryError {
    /// An error with the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status: code.status(),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }
    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    /// Attaches structured detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
    /// Adds a response header.
    pub fn with_header(mut self, name: http::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    /// The JSON body: `{"errors":[{"code":…,"message":…,"detail":…}]}`.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Item<'a> {
            code: ErrorCode,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Item<'a>; 1],
        }
        serde_json::to_vec(&Body {
            errors: [Item {
                code: self.code,
                message: &self.message,
                detail: self.detail.as_ref(),
            }],
        })
        .unwrap_or_default()
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for RegistryError {}

/// What a storage adapter can report, named by meaning (as `object_store` does), so the
/// core never matches on a backend's error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object or record does not exist.
    #[error("not found")]
    NotFound,
    /// A conditional write lost: the record changed since it was read.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// The backend cannot do this.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The backend could not be reached or timed out; a retry may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else, with a description safe to log.
    #[error("backend error: {0}")]
    Other(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => RegistryError::new(
                ErrorCode::Unavailable,
                format!("storage backend unavailable, retry later: {m}"),
            ),
            other => RegistryError::new(ErrorCode::Unknown, format!("storage error: {other}")),
        }
    }
}

/// Shorthand for results in the core.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

//! Header names of the distribution spec, and what the core reads of request headers.

use crate::error::{ErrorCode, RegistryError, Result};
use crate::ports::ByteRange;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The standard header names the core uses: every module names headers through here.
pub use http::header::{
    ACCEPT, ACCEPT_RANGES, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, HOST, LINK, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};

/// `Docker-Content-Digest`.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `Docker-Distribution-API-Version`.
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// `OCI-Chunk-Min-Length`.
pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
/// `OCI-Subject`.
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// `OCI-Tag`: one per tag a manifest `PUT` set.
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// `OCI-Filters-Applied`.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// `X-Content-Type-Options`.
pub const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");
/// `Wharf-Forwarded-To`: set by a region that forwards a request to its project's home,
/// naming the region it sends it to (one hop at most).
pub const WHARF_FORWARDED_TO: HeaderName = HeaderName::from_static("wharf-forwarded-to");
/// `Wharf-Replicated-From`: set by a region's replication on the writes it sends to
/// another region of the same registry, naming itself; such a write is taken where it
/// arrives, from a system administrator only.
pub const WHARF_REPLICATED_FROM: HeaderName = HeaderName::from_static("wharf-replicated-from");
/// `X-Forwarded-For`: the addresses a request came through, each appended by a proxy.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme a client used, as a TLS-terminating proxy states it.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

pub(crate) fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| RegistryError::new(ErrorCode::SizeInvalid, "invalid Content-Length")),
    }
}

/// `Content-Range: <start>-<end>` on a PATCH (also accepting a `bytes ` or `bytes=` prefix,
/// which some clients send). Anything else, an empty range included, is a 416.
pub(crate) fn parse_content_range(h: &HeaderMap) -> Result<Option<ByteRange>> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must be <start>-<end>",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map_or(s, |r| r.trim_start_matches([' ', '=']));
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    // `end < u64::MAX`: the upload's offset after this chunk, `end + 1`, must fit a u64
    // (`0-18446744073709551615` would otherwise cover "0 bytes" after wrapping).
    if end == u64::MAX {
        return Err(bad());
    }
    ByteRange::new(start, end).map(Some).ok_or_else(bad)
}

/// A single `Range: bytes=…` against a blob of `size`; multi-range requests get the whole
/// blob. As RFC 9110 says, a last position past the end means the end, however many digits
/// it has (so a number beyond `u64` counts as `u64::MAX`, it does not fail the request).
pub(crate) fn parse_range(v: &HeaderValue, size: u64) -> Result<Option<ByteRange>> {
    let unsatisfiable = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("requested range is not satisfiable (blob has {size} bytes)"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let Some(spec) = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Err(unsatisfiable());
    };
    let number = |s: &str| -> Result<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(unsatisfiable());
        }
        // Digits only: the one way to fail is overflow.
        Ok(s.parse().unwrap_or(u64::MAX))
    };
    // An empty blob has no satisfiable range.
    let last = size.checked_sub(1).ok_or_else(unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // `bytes=-n`: the last n bytes.
        let n = number(b)?;
        if n == 0 {
            return Err(unsatisfiable());
        }
        ByteRange::new(size.saturating_sub(n), last)
    } else {
        let start = number(a)?;
        let end = if b.is_empty() { last } else { number(b)? };
        if start > last || end < start {
            return Err(unsatisfiable());
        }
        ByteRange::new(start, end.min(last))
    };
    range.map(Some).ok_or_else(unsatisfiable)
}

/// Whether the `Accept` headers take `media_type` (no `Accept` takes everything).
pub(crate) fn accepts(h: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for v in h.get_all(header::ACCEPT) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any = true;
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
        }
    }
    !any
}

/// Whether the request's `Content-Type` is `application/json` (parameters aside).
pub(crate) fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

//! Manifest parsing: just enough structure to validate a manifest, find what it references
//! (blobs, child manifests, a `subject`) and describe it in the referrers API.
//!
//! We parse into our own small structs rather than `oci-spec`'s types: we must accept
//! Docker schema 2 and OCI documents alike, keep unknown fields, and only need the
//! descriptor graph; the stored bytes are always the client's own bytes.

use crate::error::{ErrorCode, RegistryError};
use crate::model::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI empty descriptor media type (config of artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Largest manifest accepted (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The media types a manifest PUT may carry.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Artifact type (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External URLs (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry keeps to know about a manifest besides its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestInfo {
    /// The manifest's media type.
    pub media_type: String,
    /// Digest of the exact bytes.
    pub digest: Digest,
    /// Size of the bytes.
    pub size: u64,
    /// `artifactType`, or for image manifests the config media type (referrers API rule).
    pub artifact_type: Option<String>,
    /// The subject this manifest refers to.
    pub subject: Option<Digest>,
    /// Top-level annotations (shown in the referrers list).
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs referenced (config and layers), excluding foreign layers with URLs.
    pub blobs: Vec<Digest>,
    /// Child manifests referenced (indexes).
    pub children: Vec<Digest>,
}

impl ManifestInfo {
    /// The descriptor of this manifest as listed by the referrers API.
    pub fn referrer_descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
            urls: None,
            platform: None,
        }
    }
}

/// Parses and validates a manifest. `content_type` is the request's `Content-Type`.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    digest: Digest,
) -> Result<ManifestInfo, RegistryError> {
    let invalid = |m: String| RegistryError::new(ErrorCode::ManifestInvalid, m);
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
            bytes.len()
        ))
        .with_status(http::StatusCode::PAYLOAD_TOO_LARGE));
    }
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON of a manifest: {e}")))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    if let (Some(ct), Some(mt)) = (content_type, raw.media_type.as_deref())
        && ct != mt
    {
        return Err(invalid(format!(
            "Content-Type {ct:?} does not match the manifest's mediaType {mt:?}"
        )));
    }
    let media_type = match raw.media_type.as_deref().or(content_type) {
        Some(mt) => mt.to_owned(),
        // No declared type: infer from shape, as the OCI image spec allows.
        None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        None => {
            return Err(invalid(
                "manifest has no mediaType and no Content-Type".into(),
            ));
        }
    };
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type:?}"
        )));
    }
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let artifact_type;
    if is_index {
        let manifests = raw
            .manifests
            .ok_or_else(|| invalid("an index must have \"manifests\"".into()))?;
        if raw.config.is_some() || raw.layers.is_some() {
            return Err(invalid("an index has no config or layers".into()));
        }
        children.extend(manifests.into_iter().map(|d| d.digest));
        artifact_type = raw.artifact_type;
    } else {
        let config = raw
            .config
            .ok_or_else(|| invalid("an image manifest must have a \"config\"".into()))?;
        let layers = raw
            .layers
            .ok_or_else(|| invalid("an image manifest must have \"layers\"".into()))?;
        if raw.manifests.is_some() {
            return Err(invalid("an image manifest has no \"manifests\"".into()));
        }
        artifact_type = raw
            .artifact_type
            .or_else(|| Some(config.media_type.clone()));
        blobs.push(config.digest);
        for layer in layers {
            // Foreign (non-distributable) layers are fetched from their URLs, not from us.
            if layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            blobs.push(layer.digest);
        }
    }
    Ok(ManifestInfo {
        media_type,
        size: bytes.len() as u64,
        digest,
        artifact_type,
        subject: raw.subject.map(|s| s.digest),
        annotations: raw.annotations,
        blobs,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest_references() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"x","digest":"{}","size":3}},{{"mediaType":"x","digest":"{}","size":3,"urls":["http://x"]}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}}}}"#,
            d(1),
            d(2),
            d(3),
            d(4)
        );
        let info = parse(
            m.as_bytes(),
            Some(OCI_MANIFEST),
            Digest::sha256_of(m.as_bytes()),
        )
        .expect("valid");
        assert_eq!(info.blobs.len(), 2);
        assert_eq!(info.subject.expect("subject").to_string(), d(4));
        assert_eq!(
            info.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn rejects() {
        let dg = Digest::sha256_of(b"");
        for (body, ct) in [
            ("{", None),
            ("[]", None),
            (
                r#"{"schemaVersion":1,"config":{"mediaType":"a","digest":"sha256:00","size":1},"layers":[]}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                Some(OCI_MANIFEST),
            ),
            (r#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
                None,
            ),
        ] {
            let e = parse(body.as_bytes(), ct, dg.clone()).expect_err(body);
            assert_eq!(e.code, ErrorCode::ManifestInvalid, "{body}");
        }
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let e = parse(&big, None, dg).expect_err("too big");
        assert_eq!(e.status, http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}

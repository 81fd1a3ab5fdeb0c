//! The upload record: an upload in progress, as kept between requests.

use crate::model::{Algorithm, Digest};
use serde::{Deserialize, Serialize};

/// An upload in progress, as kept in the metadata store between requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    /// Random id, the last segment of the upload URL.
    pub id: String,
    /// Repository the upload belongs to.
    pub repo: String,
    /// Bytes received and made durable so far.
    pub offset: u64,
    /// Saved hash state ([`crate::model::Hasher::save`]) covering `offset` bytes.
    pub hash_state: Vec<u8>,
    /// Opaque state of the blob store's upload (e.g. multipart id and parts).
    pub store_state: String,
    /// The digest the client declared up front (`POST ?digest=`), if any: lets a store
    /// write straight to the blob's final location (no copy at commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last update, ms since the epoch.
    pub updated_ms: u64,
}

/// The hash algorithm to use for a new upload when the client did not name one.
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::Sha256;

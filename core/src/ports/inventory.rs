//! Blob inventory, an optional ability of a blob store: list committed blobs with their size
//! and age, page by page (garbage collection's view of what storage holds).

use crate::error::StoreError;
use crate::model::Digest;

/// A committed blob as storage knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When storage last wrote it (ms since the epoch; a store's own clock).
    pub modified_ms: u64,
}

/// Lists committed blobs (never staged upload data).
#[allow(async_fn_in_trait)]
pub trait BlobInventory {
    /// Committed blobs after `after` (which need not exist), at most `limit`, ordered by
    /// algorithm then hex (the order of their keys in every store, so a page is one listing
    /// call). Fewer than `limit` only at the end: a short page means nothing follows.
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError>;
}

//! The outbox, an optional ability of a metadata store: each change to repository content
//! is recorded as an entry in the same atomic write as the change, and jobs (replication,
//! webhooks) read the entries in order. On Lambda nothing may run after the response, so a
//! change whose entry were "sent afterwards" could be lost; here it cannot.

use crate::error::StoreError;
use crate::model::Digest;
use serde::{Deserialize, Serialize};

/// A change to repository content. The serialized form (`{"kind": "manifest_put", …}`)
/// is stable: entries outlive the version that wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A manifest was stored and `tags` set to it.
    ManifestPut {
        /// Repository.
        repository: String,
        /// The manifest.
        digest: Digest,
        /// Tags set in the same write.
        tags: Vec<String>,
    },
    /// A manifest and the tags that pointed at it were deleted.
    ManifestDeleted {
        /// Repository.
        repository: String,
        /// The manifest.
        digest: Digest,
    },
    /// A tag was deleted.
    TagDeleted {
        /// Repository.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// A blob was linked into a repository (upload or mount).
    BlobLinked {
        /// Repository.
        repository: String,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob's link was removed.
    BlobUnlinked {
        /// Repository.
        repository: String,
        /// The blob.
        digest: Digest,
    },
}

/// One outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Position: entries sort by it (`<at_ms:016>-<store-unique suffix>`).
    pub seq: String,
    /// When the change was made.
    pub at_ms: u64,
    /// What changed.
    pub change: Change,
}

/// How far back a reader re-reads: entries of concurrent writers may become visible up to
/// this much out of `seq` order (a slow write with an earlier time), so a reader resumes
/// from its last `seq` minus this window and handles entries idempotently.
pub const OUTBOX_SKEW_MS: u64 = 10_000;

/// Reads and trims the outbox. Stores that have one write an entry in every
/// `link_blob`, `unlink_blob`, `put_manifest`, `delete_manifest` and `delete_tag` that
/// changed something, in the same atomic write.
#[allow(async_fn_in_trait)]
pub trait Outbox {
    /// Entries with `seq` after `after`, at most `limit`, in `seq` order.
    async fn outbox_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Removes entries with `seq` up to and including `upto` (every consumer is past
    /// them); the number removed.
    async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError>;
}

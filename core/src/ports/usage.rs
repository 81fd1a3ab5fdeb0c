//! Usage counters, an optional ability of a metadata store: bytes stored per project, kept
//! in the same atomic write as the links that change them, for quotas.

use crate::error::StoreError;
use crate::model::Digest;

/// What a project stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of distinct blobs linked into the project's repositories: a blob linked into
    /// several repositories of one project counts once (as Harbor counts).
    pub bytes: u64,
    /// How many distinct blobs that is.
    pub blobs: u64,
}

/// Reads usage. Stores that keep it update it in `link_blob` (the project's first link of a
/// digest adds its size) and `unlink_blob` (its last removes it), in the same atomic write.
#[allow(async_fn_in_trait)]
pub trait UsageCounters {
    /// The usage of `project`.
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError>;
    /// Whether `digest` already counts in `project` (some repository of it links the blob),
    /// so that linking it into another adds nothing: what a quota check asks before a link.
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError>;
}

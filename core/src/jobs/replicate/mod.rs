//! Replication: copying images from this registry to another, written once for every
//! runtime and every kind of destination.
//!
//! The engine ([`copy`]) reads from a [`Source`] and writes to a [`Target`]. An image is
//! copied in the order that keeps the destination consistent at every moment: blobs before
//! the manifest that needs them, children before the index that lists them, referrers
//! after their subject, and tags last (the pass, [`pass`]), so a destination never lists a
//! tag whose manifest it cannot serve whole. Each write is idempotent (what the target has
//! is skipped), and the target verifies every digest itself, so a copy stopped anywhere is
//! finished by running it again.
//!
//! The source is this registry's own stores ([`local::LocalSource`]); the target speaks
//! the distribution API ([`v2::V2Target`]) over a [`v2::Transport`]: another region's
//! registry in-process (the `Registry` itself is a transport, so the destination's own
//! handlers check and record every write) or any registry over HTTP.

pub mod copy;
pub mod identity;
pub mod local;
pub mod pass;
pub mod remote;
pub mod rules;
mod state;
pub mod triggers;
pub mod v2;
pub mod walk;

use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::model::Digest;
use crate::ports::StoredManifest;
use bytes::Bytes;
use futures_core::Stream;

/// Where images are copied from.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// A blob's bytes.
    type Blob: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin;
    /// The manifest `digest` of `repo`, if the source has it.
    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<StoredManifest>>;
    /// The digest `tag` of `repo` points at, if any.
    async fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>>;
    /// A blob of `repo` and its size.
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<(u64, Self::Blob)>;
    /// The manifests whose subject is `digest`.
    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>>;
}

/// What a registry lists: a rule's source is walked through it, and a destination's tags
/// are read through it for delete sync. Listings are in lexical order, as the
/// distribution API's `_catalog` and `tags/list` are.
#[allow(async_fn_in_trait)]
pub trait Catalog {
    /// Repositories after `after`, at most `limit`.
    async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
    /// Tags of `repo` after `after`, at most `limit`; none for an unknown repository.
    async fn tags(&self, repo: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
}

/// Where images are copied to. Every write is idempotent; a write the target refuses
/// fails with the target's own error code.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// Whether `repo` has the blob.
    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Uploads a blob of `size` bytes; the target verifies `digest`.
    async fn put_blob<S>(&self, repo: &str, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin;
    /// The digest `reference` (a tag or a digest) names in `repo`, if any.
    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<Digest>>;
    /// Stores a manifest under `reference` (its digest, or a tag).
    async fn put_manifest(&self, repo: &str, reference: &str, m: &StoredManifest) -> Result<()>;
    /// Deletes a manifest (and the tags at it); absent is done.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()>;
    /// Deletes a tag; absent is done.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()>;
}

/// Whether a failure may pass if tried again later (the target or the network was down),
/// rather than being a refusal the same request would meet again (denied, invalid).
pub fn retryable(e: &RegistryError) -> bool {
    e.status.is_server_error()
        || e.code == ErrorCode::Unavailable
        || e.code == ErrorCode::TooManyRequests
}

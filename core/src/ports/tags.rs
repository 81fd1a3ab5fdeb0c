//! Conditional tag writes, an optional ability of a metadata store: set or delete a tag
//! only if it is as the caller last saw it, so a rule that depends on a tag's current
//! value (immutability, a retention decision) cannot be raced by a concurrent push.

use crate::error::StoreError;
use crate::model::Digest;
use crate::ports::StoredManifest;

/// What a tag must be for a conditional write to go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExpect {
    /// Whatever it is.
    Any,
    /// The tag must not exist.
    Absent,
    /// The tag must point at this manifest.
    At(Digest),
}

/// Writes tags on condition.
#[allow(async_fn_in_trait)]
pub trait ConditionalTags {
    /// [`crate::ports::MetadataStore::put_manifest`], with each tag written only if it is
    /// as expected; otherwise `Precondition` and nothing is written.
    async fn put_manifest_expecting(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Deletes `tag` only if it still points at `digest`: `Ok(false)` if the tag is not
    /// there, `Precondition` if it points elsewhere.
    async fn delete_tag_expecting(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
}

//! Link collection, an optional ability of a metadata store: the repository links no
//! manifest of their repository references, kept as a work list by the writes that make
//! them so, and their removal on condition — the first step of garbage collection (a
//! manifest `DELETE` keeps its blobs' links, so without it nothing would ever be freed).
//!
//! # The protocol
//!
//! A link is collectable when no manifest of its repository references it and it was not
//! linked or `HEAD`-checked ([`LinkCollection::touch_link`]) since a time. Collection
//! removes it with [`LinkCollection::collect_link`], which checks both in the same atomic
//! write as the unlink. A manifest `PUT` checks, in its own atomic write, that every blob
//! and child manifest it references is in the repository (`Precondition` otherwise, which
//! the core answers `MANIFEST_BLOB_UNKNOWN`): so whichever of the two writes first, the
//! other sees it, and a pushed manifest never references a collected link.

use crate::error::StoreError;
use crate::model::Digest;

/// How stale a link's time may get before a `HEAD` writes it again: a `HEAD` of a blob
/// checked in the last minute writes nothing (docker checks every layer of every push),
/// and a grace period is minutes to hours, so the link stays protected all the same.
pub const LINK_TOUCH_PRECISION_MS: u64 = 60_000;

/// A link the work list holds: no manifest of `repo` references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreferencedLink {
    /// The repository.
    pub repo: String,
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last linked or checked; `None` for links made before link times were kept.
    pub linked_ms: Option<u64>,
}

/// Where a listing of [`LinkCollection::unreferenced_links`] resumes: after this link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCursor {
    /// The repository of the last link listed.
    pub repo: String,
    /// Its digest.
    pub digest: Digest,
}

/// The links garbage collection may remove, and their removal on condition.
///
/// Stores that have it also keep, in `link_blob`, the blob-record rule: a link needs the
/// blob's record ([`crate::ports::BlobRecords::touch_blob`] makes it, and the core calls it
/// before committing or mounting a blob) and fails with `Precondition` without one or while
/// it is `Deleting`, so a blob whose bytes collection deleted is never linked again
/// without being uploaded again.
#[allow(async_fn_in_trait)]
pub trait LinkCollection {
    /// Records that the link of `digest` in `repo` was relied on at `at_ms` (a `HEAD` of the
    /// blob: docker skips the upload of a blob it finds), unless its time is already within
    /// [`LINK_TOUCH_PRECISION_MS`] of it. False if there is no such link.
    async fn touch_link(&self, repo: &str, digest: &Digest, at_ms: u64)
    -> Result<bool, StoreError>;
    /// Links that no manifest of their repository references, after `after`, at most
    /// `limit`, by repository then digest in the store's own key order (which paging
    /// follows; a name and its extensions, `a` and `a/b`, may come either way round).
    /// Reading it costs what the garbage (and the pushes in flight) is, not what the
    /// registry holds.
    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError>;
    /// Removes the link of `digest` from `repo` (as `unlink_blob` does, with its records)
    /// only if no manifest of `repo` references it and it was not linked or touched after
    /// `untouched_since_ms` (a link without a time counts as older). False if not removed.
    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
}

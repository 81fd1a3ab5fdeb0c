//! Blob records, an optional ability of a metadata store: one record per blob digest, kept
//! in the same atomic write as every link, unlink and manifest change, with the conditional
//! writes that let garbage collection delete a blob that no push can still rely on.
//!
//! # The protocol
//!
//! A record is [`BlobState::Live`] while anything may use it. Collection moves it
//! `Live → Marked → Deleting → gone`, each step a conditional write on the record:
//! [`BlobRecords::mark_blob`] only if no repository links it and nothing touched it since a
//! time; [`BlobRecords::begin_blob_delete`] only if the same mark is still there; then the
//! bytes are deleted, then [`BlobRecords::forget_blob`]. Uses race on the same record: a
//! link (upload, mount) of a `Marked` blob makes it `Live` again; a link of a `Deleting`
//! blob fails with `Precondition` (the push gets a retryable error); a `HEAD` clears a mark
//! ([`BlobRecords::clear_blob_mark`]) and answers 404 if the blob is already `Deleting`. So
//! whichever of GC and a push writes first, the other sees it.

use crate::error::StoreError;
use crate::model::Digest;

/// Where a blob is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// In use or usable.
    Live,
    /// A deletion candidate since `at_ms`; any use makes it live again.
    Marked {
        /// When it was marked.
        at_ms: u64,
    },
    /// Being deleted since `since_ms`: no use may start; its bytes may already be gone.
    Deleting {
        /// When deletion began.
        since_ms: u64,
    },
}

/// What the store knows of one blob digest, across repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// How many repositories link it.
    pub links: u64,
    /// How many manifests reference it, over all repositories.
    pub refs: u64,
    /// When it was last uploaded, mounted, linked or had a mark cleared.
    pub touched_ms: u64,
    /// Where it is in its life.
    pub state: BlobState,
}

/// What clearing a mark found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The record was live (nothing written) or marked (now live).
    Live,
    /// The blob is being deleted or gone: answer as if it were not there.
    Gone,
}

/// Per-digest blob records.
///
/// `links` is exact for content written since the store kept records and, once the
/// backfill ([`crate::ports::Backfill`]) has run, for older content too. `refs` is exact
/// for content written since; a manifest written before the upgrade and pushed again before
/// the backfill reached its blobs counts only into the records that existed then, so `refs`
/// may stay short for it (a count to show, never one to delete by). Collection never
/// deletes on a counter alone: it confirms with
/// [`crate::ports::ManifestIndex::repositories_with`] before marking, and the mark's
/// condition on `touched_ms` catches any use after that check.
///
/// Every store that has them updates them in the same atomic
/// write as [`crate::ports::MetadataStore::link_blob`] (links + 1 for a new link, touched,
/// a mark cleared; `Precondition` if the blob is `Deleting`), `unlink_blob` (links − 1),
/// `put_manifest` (refs + 1 per distinct blob of a new manifest) and `delete_manifest`
/// (refs − 1).
#[allow(async_fn_in_trait)]
pub trait BlobRecords {
    /// The record of `digest`.
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError>;
    /// Records that no repository links, after `after` (by digest string), at most `limit`:
    /// garbage collection's work list, kept by the writes that drop `links` to 0, so
    /// reading it costs what the garbage is, not what the registry holds.
    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError>;
    /// Makes a record for a blob whose bytes were just committed (before it is linked), or
    /// touches the one there; `Precondition` if it is `Deleting`.
    async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError>;
    /// Marks `digest` as a deletion candidate at `at_ms` if it is `Live`, no repository
    /// links it and it was not touched after `untouched_since_ms`. False if not marked.
    async fn mark_blob(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Makes a marked record live again (touched at `at_ms`); writes nothing for a live one.
    async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError>;
    /// Moves a record from the mark made at `marked_at_ms` to `Deleting` (since `at_ms`).
    /// False if anything changed it since (a use cleared the mark, another run re-marked).
    async fn begin_blob_delete(
        &self,
        digest: &Digest,
        marked_at_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
    /// [`Self::mark_blob`] and [`Self::begin_blob_delete`] in one conditional write: moves a
    /// `Live` record no repository links, untouched after `untouched_since_ms`, straight to
    /// `Deleting` (since `at_ms`). A collection that deletes right after marking gains
    /// nothing from two writes: both conditions hold at one instant either way. Stores that
    /// can condition one write on it say so; the default makes the two calls.
    async fn begin_unused_blob_delete(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.mark_blob(digest, untouched_since_ms, at_ms).await?
            && self.begin_blob_delete(digest, at_ms, at_ms).await?)
    }
    /// Removes a `Deleting` record once its bytes are gone. False if it was not `Deleting`.
    async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError>;
}

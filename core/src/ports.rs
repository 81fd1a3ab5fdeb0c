//! The ports: the only ways the core touches the world. Each runtime supplies adapters.
//!
//! Futures returned here carry no `Send` bound, so a single-threaded wasm Worker can
//! implement them; the core is generic over the adapters (no `dyn`), so with `Send`
//! adapters (tokio, AWS) the handler futures are `Send` too, by auto-trait inference.

use crate::digest::{Algorithm, Digest};
use crate::error::StoreError;
use crate::manifest::{Descriptor, ManifestInfo};
use bytes::Bytes;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

/// Time, randomness and a place for CPU-heavy work, which the core may not take from the
/// OS itself (`SystemTime::now()` panics on `wasm32-unknown-unknown`).
#[allow(async_fn_in_trait)]
pub trait Env {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);
    /// Runs CPU-heavy work (an Argon2 hash takes tens of milliseconds) where it does not
    /// stall the threads that serve other requests. The default runs it inline, which is
    /// right for a runtime with one request per isolate (Workers) and for tests; a
    /// multi-threaded server hands it to a bounded blocking pool.
    async fn run_heavy<T, F>(&self, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        work()
    }
    /// Waits about `ms` milliseconds (a login waiting for a concurrent one to finish). The
    /// default returns at once: callers bound their retries by count as well as by time.
    async fn sleep_ms(&self, ms: u64) {
        let _ = ms;
    }
}

/// An inclusive byte range of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// The range `start..=end`, or `None` if it is empty (`end < start`) or covers 2^64
    /// bytes (`0-18446744073709551615`), whose length no `u64` holds: the core builds every
    /// range from client input through here, so [`Self::len`] is exact.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        end.checked_sub(start)?.checked_add(1)?;
        Some(Self { start, end })
    }
    /// Number of bytes covered (saturating, for a range not built by [`Self::new`]).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }
    /// Never true: a range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An upload in progress, as kept in the metadata store between requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    /// Random id, the last segment of the upload URL.
    pub id: String,
    /// Repository the upload belongs to.
    pub repo: String,
    /// Bytes received and made durable so far.
    pub offset: u64,
    /// Saved hash state ([`crate::digest::Hasher::save`]) covering `offset` bytes.
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

/// Blob storage: content-addressed objects plus upload staging.
///
/// Uploads are written through a [`BlobWriter`]; a writer's bytes count only once
/// [`BlobWriter::finish`] returned and the metadata store recorded the new offset, so
/// whatever a failed or interrupted request wrote past that offset is ignored and
/// overwritten by the next writer.
#[allow(async_fn_in_trait)]
pub trait BlobStore {
    /// A stream of blob bytes.
    type Reader: Stream<Item = Result<Bytes, StoreError>> + Unpin + 'static;
    /// Writes one request's worth of upload data.
    type Writer: BlobWriter;

    /// Size of a committed blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;
    /// Reads a committed blob, whole or a range of it.
    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Self::Reader, StoreError>;
    /// A URL the client can fetch the blob from directly, computed without I/O,
    /// or `None` when this store serves blobs itself.
    fn presign_get(&self, _digest: &Digest, _now_ms: u64, _ttl_secs: u64) -> Option<String> {
        None
    }
    /// Removes a committed blob (garbage collection only).
    async fn delete(&self, digest: &Digest) -> Result<(), StoreError>;
    /// The smallest chunk (except the last) this store accepts, if it has a minimum.
    fn min_chunk(&self) -> Option<u64> {
        None
    }
    /// Opens the upload to append at `upload.offset`.
    async fn writer(&self, upload: &UploadRecord) -> Result<Self::Writer, StoreError>;
    /// Makes the upload's first `upload.offset` bytes the blob `digest` (verified by the
    /// caller) and releases the staging space. Idempotent if the blob already exists.
    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError>;
    /// Discards an upload's staging data.
    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError>;
    /// Optional ability: hands the upload's first `upload.offset` staged bytes to `sink`,
    /// in order (several calls, any sizes). The core uses it only when the closing `PUT`
    /// names a digest of another algorithm than the upload was hashed with (a client that
    /// pushes sha512 without `POST ?digest=`), to hash the bytes again; so sha256 uploads
    /// never pay for it. Stores without it answer `NotSupported` (the PUT then fails with
    /// `DIGEST_INVALID`, as before). `sink` is `Send` so that the handler's future stays
    /// `Send` on tokio while a store awaits between chunks.
    async fn read_staged(
        &self,
        _upload: &UploadRecord,
        _sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        Err(StoreError::NotSupported(
            "this blob store cannot read an upload's staged bytes".into(),
        ))
    }
}

/// Appends one request's bytes to an upload.
#[allow(async_fn_in_trait)]
pub trait BlobWriter {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    /// Makes everything written durable and returns the new opaque store state.
    async fn finish(self) -> Result<String, StoreError>;
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(String),
    /// By digest.
    Digest(Digest),
}

/// A manifest as stored: what we know of it and its exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Parsed facts.
    pub info: ManifestInfo,
    /// The client's bytes.
    pub bytes: Bytes,
}

impl StoredManifest {
    /// The manifest as one byte string, for stores that keep it in one value (the embedded
    /// database, S3 for manifests too large for a DynamoDB item): the info JSON's length as a
    /// 4-byte big-endian number, the JSON, then the client's bytes.
    pub fn to_record(&self) -> Result<Vec<u8>, StoreError> {
        let info = serde_json::to_vec(&self.info)
            .map_err(|e| StoreError::Other(format!("manifest info: {e}")))?;
        let len = u32::try_from(info.len())
            .map_err(|_| StoreError::Other("manifest info too large".into()))?;
        let mut out = Vec::with_capacity(4 + info.len() + self.bytes.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&info);
        out.extend_from_slice(&self.bytes);
        Ok(out)
    }

    /// Reads a record made by [`Self::to_record`].
    pub fn from_record(raw: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Other("corrupt manifest record".into());
        let len: [u8; 4] = raw
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let end = 4usize
            .checked_add(u32::from_be_bytes(len) as usize)
            .ok_or_else(bad)?;
        let info: ManifestInfo =
            serde_json::from_slice(raw.get(4..end).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok(Self {
            info,
            bytes: Bytes::copy_from_slice(&raw[end..]),
        })
    }
}

/// A page of names (tags or repositories) and whether more follow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Names, in lexical order.
    pub items: Vec<String>,
    /// True if names after the last one exist.
    pub more: bool,
}

/// Registry metadata: repositories, blob links, manifests, tags, referrers, uploads.
/// Every method is one atomic operation.
#[allow(async_fn_in_trait)]
pub trait MetadataStore {
    /// Whether the repository has ever had a blob or manifest.
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError>;
    /// Size of the blob if it is linked into `repo`.
    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError>;
    /// Links a committed blob into `repo`.
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), StoreError>;
    /// Removes the link; false if there was none.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError>;
    /// Of `digests`, those not linked into `repo`.
    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError>;
    /// Of `digests`, those that are not manifests of `repo`.
    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError>;
    /// Looks a manifest up by tag or digest.
    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError>;
    /// Stores a manifest (and its referrer entry) and points every tag of `tags` at it, in
    /// one atomic write: a failure leaves no tag moved. The core passes valid, distinct
    /// tags, at most [`MAX_TAGS_PER_PUT`] (a store may still get a repeated one and must
    /// then behave as if it came once).
    async fn put_manifest(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[&str],
    ) -> Result<(), StoreError>;
    /// Deletes a manifest, the tags that point at it and its referrer entry.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError>;
    /// Deletes a tag only.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, StoreError>;
    /// Tags of `repo` after `last`, at most `n`; `None` if the repository is unknown.
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError>;
    /// Repositories after `last`, at most `n`.
    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError>;
    /// Manifests in `repo` whose subject is `subject`.
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError>;
    /// Records a new upload.
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError>;
    /// Reads an upload.
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError>;
    /// Replaces an upload record if its stored offset is still `expected_offset`
    /// (else `Precondition`), so two racing PATCHes cannot both advance it.
    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError>;
    /// Forgets an upload.
    async fn delete_upload(&self, id: &str) -> Result<(), StoreError>;
    /// Forgets an upload only if it still exists at `expected_offset` (`NotFound` if it
    /// does not, `Precondition` if its offset moved): the closing `PUT` claims the upload
    /// with it, so of racing `PUT`s exactly one links the blob and the others get 404.
    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError>;
    /// Uploads last updated before `before_ms` (for the cleanup job).
    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError>;
}

/// Most tags one manifest `PUT` may set (`?tag=` query parameters, the spec asks for at
/// least 10): DynamoDB's TransactWriteItems takes 100 items, and the manifest and its
/// referrer entry take two.
pub const MAX_TAGS_PER_PUT: usize = 64;

/// The hash algorithm to use for a new upload when the client did not name one.
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::Sha256;

/// Small JSON documents by kind and id: users, robots, projects, members, audit events,
/// login throttles. Separate from [`MetadataStore`] because it is a different capability
/// (the registry API works without it when auth is off).
#[allow(async_fn_in_trait)]
pub trait DocumentStore {
    /// Reads a document.
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a document; with `if_absent`, fails with `Precondition` if it exists.
    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError>;
    /// Deletes a document; false if there was none.
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;
    /// Documents of `kind` whose id starts with `prefix`, after `after`, in id order.
    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Appends an audit event. Stores may make these durable lazily (they are written on
    /// every pull, so an fsync each would cost more than the pull).
    async fn append_event(&self, id: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_doc("audit", id, value, false).await
    }
    /// Makes every event appended so far visible to `list_docs` (stores that batch events
    /// wait for the batch here; the audit API calls it before reading).
    async fn flush_events(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_records_round_trip_and_refuse_garbage() {
        let m = crate::testing::test_manifest(&[Digest::sha256_of(b"a")], None, None);
        let raw = m.to_record().expect("encode");
        let back = StoredManifest::from_record(&raw).expect("decode");
        assert_eq!((back.info, back.bytes), (m.info, m.bytes));
        for bad in [
            &b""[..],
            &[0, 0],
            &[0, 0, 0, 9, b'{'],
            &[255, 255, 255, 255],
        ] {
            assert!(StoredManifest::from_record(bad).is_err(), "{bad:?}");
        }
        let mut cut = raw.clone();
        cut[3] = cut[3].wrapping_add(1);
        assert!(
            StoredManifest::from_record(&cut).is_err(),
            "info length off by one"
        );
    }
}

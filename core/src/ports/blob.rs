//! The blob store port: committed blobs and the staging of uploads.

use crate::error::StoreError;
use crate::model::Digest;
use crate::ports::UploadRecord;
use bytes::Bytes;
use futures_core::Stream;

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

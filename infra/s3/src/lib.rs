//! Blobs in Amazon S3 (or anything that speaks its API), for stateless runtimes.
//!
//! The store ([`S3Blobs`]) is written once against [`S3Api`], the dozen S3 calls it makes,
//! which has two implementations: aws-sdk-s3 ([`SdkApi`], feature `sdk`, default: the Lambda
//! and `wharf serve`) and plain signed HTTP over a runtime's transport ([`RestApi`]: the
//! Worker as upload front, where no SDK fits). Both write the same keys and upload states.
//!
//! # Layout
//!
//! All keys live under an optional prefix (`S3Options::prefix`):
//!
//! | key | what |
//! |---|---|
//! | `blobs/<alg>/<hex>` | a committed blob, content-addressed; written only at commit, after the core verified the digest |
//! | `uploads/<id>/<start>-<nonce>` | the bytes one request of upload `<id>` wrote, from upload offset `<start>`; the random nonce makes it that request's own |
//!
//! # Uploads across stateless invocations
//!
//! Each request of an upload writes one object of its own: one PutObject if its bytes fit
//! in one part ([`S3Options::part_size`], 8 MiB), else a multipart upload of its own (parts
//! of 8 MiB, growing by 8 MiB every 1,000 parts so S3's 10,000-part limit is not reached
//! below ~400 GB) that [`BlobWriter::finish`](wharf_core::ports::BlobWriter::finish)
//! completes. The writer ([`S3Writer`]) is wharf-chunked's, the one R2 uses too; it holds
//! at most about one part in memory. The opaque `store_state` that the core records after
//! `finish` is JSON listing these objects in order (key, ETag, size); their sizes add up to
//! the recorded offset. Every object but the last is at least 5 MiB (S3's smallest part): when the last
//! recorded object is smaller (a request that ended with less than 5 MiB in all), the next
//! request's writer reads it back into its buffer and writes an object that starts where
//! it started and replaces it in the state.
//!
//! Since no request ever writes into another request's object, the bytes of a request that
//! failed, disconnected, lost the compare-and-set on the offset to a racing request, or is
//! still streaming when the upload is committed are in no object the record lists, and
//! never reach a blob. Recorded objects are read and copied only with their recorded ETag
//! (`If-Match`). Commit and abort delete everything under `uploads/<id>/`; a bucket
//! lifecycle rule on `uploads/` (AbortIncompleteMultipartUpload and expiry after a few
//! days) is the net for what a request still running at that moment, or one that died in
//! the middle of its multipart upload, leaves behind.
//!
//! # Commit
//!
//! An upload whose digest was declared up front (`POST ?digest=`, a monolithic upload: the
//! core commits right after its single request, whose upload id no client knows yet) writes
//! its multipart upload directly at the blob's key, and commit is one
//! CompleteMultipartUpload: nothing is copied. (Its last, or only, part may be small.)
//! Otherwise commit copies server-side: one CopyObject of a single object (up to 5 GiB), or
//! a multipart upload at the blob's key assembled with UploadPartCopy from the recorded
//! objects; nothing at all when the blob already exists. Either way a blob's key only ever
//! holds verified bytes, which appear all at once, and commit is idempotent.
//!
//! # Presigned GETs
//!
//! [`BlobStore::presign_get`] signs a GET with SigV4 query parameters locally (no network
//! call), with the caller's clock, from credentials cached when the store was built (and
//! refreshed in the background before they expire). If the cached credentials would expire
//! before the URL does, it returns `None` and the core streams the blob itself.
#![deny(missing_docs)]

mod inventory;
mod rest;
#[cfg(feature = "sdk")]
mod sdk;

pub use inventory::{Listed, MAX_LIST};
pub use rest::RestApi;
#[cfg(feature = "sdk")]
pub use sdk::{S3BlobStore, S3Options, S3Reader, SdkApi};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wharf_chunked::{Layout, MAX_PARTS, Obj, Part, PartSink, UploadWriter};
use wharf_core::ports::{BlobStore, ByteRange, UploadRecord};
use wharf_core::{Digest, StoreError};

/// S3's smallest part (except the last).
pub const MIN_PART: u64 = wharf_chunked::MIN_PART;
/// Default part size.
pub const DEFAULT_PART: usize = 8 * 1024 * 1024;
/// Largest object CopyObject can copy in one call.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Default bytes per UploadPartCopy part.
pub const DEFAULT_COPY_PART: u64 = 512 * 1024 * 1024;
/// The part size grows by one `part_size` every this many parts.
const PARTS_PER_STEP: usize = 1000;
/// Request objects one upload may have: its record must fit a DynamoDB item (400 KB), and
/// commit assembles them as parts (at most 10,000).
const MAX_OBJECTS: usize = 4000;

/// The S3 calls the store makes. Keys are unencoded; ranges are inclusive `(first, last)`;
/// ETags are as S3 returns them (quoted). Errors are mapped onto [`StoreError`] by meaning
/// (`NotFound` for a missing key or upload, `Precondition` for a failed `If-Match`).
#[allow(async_fn_in_trait)]
pub trait S3Api {
    /// An object's bytes.
    type Body: Stream<Item = Result<Bytes, StoreError>> + Unpin + 'static;
    /// HeadObject: size and ETag, `None` if there is no such key.
    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError>;
    /// GetObject, optionally a range and only if the ETag matches.
    async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<Self::Body, StoreError>;
    /// PutObject; returns the ETag.
    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError>;
    /// CreateMultipartUpload; returns the upload id.
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError>;
    /// UploadPart; returns the part's ETag.
    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError>;
    /// UploadPartCopy of `source` (only if its ETag is `if_match`), whole or a range.
    async fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: u16,
        source: &str,
        if_match: &str,
        range: Option<(u64, u64)>,
    ) -> Result<String, StoreError>;
    /// CopyObject of `source` to `to`, only if its ETag is `if_match`.
    async fn copy_object(&self, to: &str, source: &str, if_match: &str) -> Result<(), StoreError>;
    /// CompleteMultipartUpload; returns the object's ETag.
    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError>;
    /// AbortMultipartUpload.
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError>;
    /// DeleteObject.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every object under `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
    /// ListObjectsV2 under `prefix`, keys after `start_after`, at most `max` (up to
    /// [`MAX_LIST`]): the objects in key order, and whether more follow.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Listed>, bool), StoreError>;
    /// ListMultipartUploads under `prefix`: `(key, upload id)`.
    async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// A presigned GET of `key`, computed locally, or `None`.
    fn presign_get(&self, key: &str, now: SystemTime, ttl: Duration) -> Option<String>;
}

/// The S3 blob store over an [`S3Api`]. Cheap to clone. With the SDK it is
/// `Send + Sync`, and so are its futures.
pub struct S3Blobs<A>(Arc<Inner<A>>);

impl<A> Clone for S3Blobs<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

struct Inner<A> {
    api: A,
    layout: Layout,
    part_size: usize,
    max_single_copy: u64,
    copy_part_size: u64,
}

pub(crate) fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// An inclusive byte range as S3's `Range` and `x-amz-copy-source-range` take it.
pub(crate) fn range_value((first, last): (u64, u64)) -> String {
    format!("bytes={first}-{last}")
}

/// The URL of a bucket: AWS's regional endpoint by default, else `endpoint` path-style
/// (`endpoint/bucket`) or virtual-hosted (`bucket.endpoint`).
pub fn bucket_url(
    endpoint: Option<&str>,
    bucket: &str,
    region: &str,
    path_style: bool,
) -> Result<String, StoreError> {
    let Some(endpoint) = endpoint else {
        return Ok(format!("https://{bucket}.s3.{region}.amazonaws.com"));
    };
    let endpoint = endpoint.trim_end_matches('/');
    if path_style {
        return Ok(format!("{endpoint}/{bucket}"));
    }
    let uri: http::Uri = endpoint.parse().map_err(other)?;
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return Err(other(format!(
            "endpoint {endpoint:?} is not an absolute URL"
        )));
    };
    Ok(format!(
        "{scheme}://{bucket}.{auth}{}",
        uri.path().trim_end_matches('/')
    ))
}

impl<A: S3Api> S3Blobs<A> {
    /// The store on `api`, every key under `prefix` (e.g. `"wharf/"`, or empty), with the
    /// default part sizes.
    pub fn from_api(api: A, prefix: String) -> Self {
        Self::build(
            api,
            prefix,
            DEFAULT_PART,
            MAX_SINGLE_COPY,
            DEFAULT_COPY_PART,
        )
    }

    /// The store with these part sizes (the caller checked they are at least 5 MiB);
    /// copies are capped at S3's 5 GiB.
    fn build(
        api: A,
        prefix: String,
        part_size: usize,
        max_single_copy: u64,
        copy_part_size: u64,
    ) -> Self {
        Self(Arc::new(Inner {
            api,
            layout: Layout::new(prefix),
            part_size,
            max_single_copy: max_single_copy.min(MAX_SINGLE_COPY),
            copy_part_size: copy_part_size.min(MAX_SINGLE_COPY),
        }))
    }

    /// The S3 calls underneath.
    pub fn api(&self) -> &A {
        &self.0.api
    }

    /// Key of a committed blob.
    pub fn blob_key(&self, d: &Digest) -> String {
        self.0.layout.blob_key(d)
    }

    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError> {
        self.0.api.head(key).await
    }

    /// Makes `to` the concatenation of `sources` (each read only with its recorded ETag),
    /// server-side: one CopyObject for a single object of at most `max_single_copy` bytes,
    /// else a multipart upload at `to` assembled with UploadPartCopy.
    async fn assemble(&self, sources: &[Obj], to: &str, size: u64) -> Result<(), StoreError> {
        let api = &self.0.api;
        if let [only] = sources
            && only.size <= self.0.max_single_copy
        {
            return api.copy_object(to, &only.key, &only.etag).await;
        }
        if sources.iter().map(|o| o.size).sum::<u64>() != size {
            return Err(other("upload objects do not add up to its size"));
        }
        let id = api.create_multipart(to).await?;
        let result = async {
            let mut parts = Vec::new();
            for (i, o) in sources.iter().enumerate() {
                let last_source = i + 1 == sources.len();
                for (start, end) in copy_ranges(o.size, self.0.copy_part_size, last_source) {
                    let n = u16::try_from(parts.len() + 1)
                        .ok()
                        .filter(|&n| n <= MAX_PARTS)
                        .ok_or_else(|| other("blob needs too many parts"))?;
                    let whole = start == 0 && end + 1 == o.size;
                    let etag = api
                        .upload_part_copy(
                            to,
                            &id,
                            n,
                            &o.key,
                            &o.etag,
                            (!whole).then_some((start, end)),
                        )
                        .await?;
                    parts.push(Part {
                        n,
                        etag,
                        size: end + 1 - start,
                    });
                }
            }
            api.complete(to, &id, &parts).await.map(drop)
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(to, &id).await;
        }
        result
    }

    async fn put_empty(&self, key: &str) -> Result<(), StoreError> {
        self.0.api.put(key, Bytes::new()).await.map(drop)
    }

    /// Aborts a multipart upload; one already gone is fine.
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        match self.0.api.abort_multipart(key, id).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Byte ranges (inclusive) to copy an object of `size` bytes in parts of at most `part`
/// bytes; a short last range is merged into the one before unless it may be the upload's
/// last part.
fn copy_ranges(size: u64, part: u64, last_source: bool) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + part).min(size);
        out.push((start, end - 1));
        start = end;
    }
    if !last_source
        && out.len() > 1
        && let Some(&(s, e)) = out.last()
        && e + 1 - s < MIN_PART
    {
        out.pop();
        if let Some(prev) = out.last_mut() {
            prev.1 = e;
        }
    }
    out
}

impl<A: S3Api> BlobStore for S3Blobs<A> {
    type Reader = A::Body;
    type Writer = S3Writer<A>;

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|(n, _)| n))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<A::Body, StoreError> {
        self.0
            .api
            .get(
                &self.blob_key(digest),
                range.map(|r| (r.start, r.end)),
                None,
            )
            .await
    }

    fn presign_get(&self, digest: &Digest, now_ms: u64, ttl_secs: u64) -> Option<String> {
        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
        let ttl = Duration::from_secs(ttl_secs.clamp(1, 7 * 24 * 3600));
        self.0.api.presign_get(&self.blob_key(digest), now, ttl)
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match self.0.api.delete(&self.blob_key(digest)).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn min_chunk(&self) -> Option<u64> {
        Some(MIN_PART)
    }

    async fn writer(&self, upload: &UploadRecord) -> Result<S3Writer<A>, StoreError> {
        let begin = self.0.layout.begin(upload, MAX_OBJECTS)?;
        Ok(UploadWriter::new(self.clone(), begin))
    }

    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let layout = &self.0.layout;
        let prefix = layout.upload_prefix(&upload.id)?;
        let state = layout.state(upload)?;
        let cas = self.blob_key(digest);
        let size = upload.offset;
        if let Some(d) = layout.direct(&state, upload, digest)? {
            return match &d.mpu {
                Some(mpu) => match self.0.api.complete(&d.key, mpu, &d.parts).await {
                    Ok(_) => Ok(()),
                    // An earlier attempt of this commit may have completed it already (S3
                    // then says NoSuchUpload; some stand-ins say AccessDenied).
                    Err(e) => match self.head(&cas).await? {
                        Some((n, _)) if n == size => Ok(()),
                        _ => Err(e),
                    },
                },
                None if size == 0 => self.put_empty(&cas).await,
                None => Err(other("upload state has no data")),
            };
        }
        if self.head(&cas).await?.is_some_and(|(n, _)| n == size) {
            // Already stored (the same content was pushed before): nothing to copy.
            return self.0.api.delete_prefix(&prefix).await;
        }
        if state.objects.is_empty() {
            if size != 0 {
                return Err(other("upload state has no data"));
            }
            self.put_empty(&cas).await?;
        } else {
            self.assemble(&state.objects, &cas, size).await?;
        }
        self.0.api.delete_prefix(&prefix).await
    }

    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let prefix = self.0.layout.upload_prefix(&upload.id)?;
        if let Ok(state) = self.0.layout.state(upload)
            && let Some(d) = &state.direct
            && let Some(mpu) = &d.mpu
            && let Err(e) = self.abort_multipart(&d.key, mpu).await
        {
            // A commit completed it already (S3 then says NoSuchUpload, taken for done
            // above; some stand-ins say AccessDenied): nothing of it is staged any more.
            match self.head(&d.key).await? {
                Some((n, _)) if n == upload.offset => {}
                _ => return Err(e),
            }
        }
        // Multipart uploads of requests that died before completing theirs.
        let strays = match self.0.api.multipart_uploads(&prefix).await {
            Ok(s) => s,
            Err(StoreError::NotSupported(e)) => {
                // Some stand-ins lack it; the bucket's lifecycle rule catches these.
                tracing::debug!(error = %e, "cannot list stray multipart uploads");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for (k, id) in &strays {
            self.abort_multipart(k, id).await?;
        }
        self.0.api.delete_prefix(&prefix).await
    }

    /// Streams the recorded request objects in order, each read only with its recorded ETag.
    /// A direct upload (digest declared at `POST`) has nothing to read back: its bytes went
    /// into the multipart upload at the blob's key, and its digest is already known.
    async fn read_staged(
        &self,
        upload: &UploadRecord,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        let state = self.0.layout.state(upload)?;
        if state.direct.is_some() {
            return Err(StoreError::NotSupported(
                "a direct upload's bytes are not staged as objects".into(),
            ));
        }
        for o in &state.objects {
            let mut body = self.0.api.get(&o.key, None, Some(&o.etag)).await?;
            while let Some(chunk) = body.next().await {
                sink(&chunk?);
            }
        }
        Ok(())
    }
}

/// Appends one request's bytes to an upload: wharf-chunked's writer over this store.
pub type S3Writer<A> = UploadWriter<S3Blobs<A>>;

/// The calls the upload writer makes, straight onto the [`S3Api`]. Parts are 8 MiB,
/// growing by 8 MiB every 1,000 parts (S3 takes parts of any size from 5 MiB).
impl<A: S3Api> PartSink for S3Blobs<A> {
    type Read = Vec<Bytes>;

    fn part_size(&self, parts_done: usize) -> usize {
        self.0.part_size * (1 + parts_done / PARTS_PER_STEP)
    }

    async fn read(&self, obj: &Obj) -> Result<Vec<Bytes>, StoreError> {
        let mut body = self.0.api.get(&obj.key, None, Some(&obj.etag)).await?;
        let mut chunks = Vec::new();
        while let Some(c) = body.next().await {
            chunks.push(c?);
        }
        Ok(chunks)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        self.0.api.put(key, body).await
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.0.api.create_multipart(key).await
    }

    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError> {
        self.0.api.upload_part(key, id, n, body).await
    }

    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError> {
        self.0.api.complete(key, id, parts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        assert_eq!(
            bucket_url(None, "b", "eu-west-1", false).expect("url"),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            bucket_url(Some("http://127.0.0.1:9000/"), "b", "r", true).expect("url"),
            "http://127.0.0.1:9000/b"
        );
        assert_eq!(
            bucket_url(Some("https://s3.example.com"), "b", "r", false).expect("url"),
            "https://b.s3.example.com"
        );
        use wharf_sigv4::encode_key;
        assert_eq!(encode_key("blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(encode_key("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn copy_ranges_keep_parts_big_enough() {
        const M: u64 = MIN_PART;
        assert_eq!(copy_ranges(10, 100, true), vec![(0, 9)]);
        assert_eq!(
            copy_ranges(3 * M, M, true),
            vec![(0, M - 1), (M, 2 * M - 1), (2 * M, 3 * M - 1)]
        );
        // A short last range may stay short only at the very end of the blob.
        assert_eq!(copy_ranges(2 * M + 1, M, true).len(), 3);
        assert_eq!(
            copy_ranges(2 * M + 1, M, false),
            vec![(0, M - 1), (M, 2 * M)]
        );
    }

    /// The server needs concrete, shareable adapters whose futures are `Send`.
    #[allow(dead_code)]
    #[cfg(feature = "sdk")]
    fn adapters_are_send(
        s: &S3BlobStore,
        u: &UploadRecord,
        d: &Digest,
        w: &mut S3Writer<SdkApi>,
        done: S3Writer<SdkApi>,
    ) {
        use wharf_core::ports::BlobWriter;
        fn send<T: Send>(_: T) {}
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<S3BlobStore>();
        send(s.stat(d));
        send(s.get(d, None));
        send(s.writer(u));
        send(s.commit(u, d));
        send(s.abort(u));
        send(s.delete(d));
        send(w.write(Bytes::new()));
        send(done.finish());
    }
}

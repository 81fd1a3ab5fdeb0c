//! Blobs in Amazon S3 (or anything that speaks its API), for stateless runtimes.
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
//! below ~400 GB) that [`BlobWriter::finish`] completes. A writer holds at most about one
//! part in memory. The opaque `store_state` that the core records after `finish` is JSON
//! listing these objects in order (key, ETag, size); their sizes add up to the recorded
//! offset. Every object but the last is at least 5 MiB (S3's smallest part): when the last
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

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_types::SdkConfig;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wharf_aws::store_error;
use wharf_chunked::{Full, Layout, MAX_PARTS, Multi, Obj, Part, PartBuffer, State};
use wharf_core::ports::{BlobStore, BlobWriter, ByteRange, UploadRecord};
use wharf_core::{Digest, StoreError};
use wharf_sigv4::encode_key;

/// S3's smallest part (except the last).
pub const MIN_PART: u64 = wharf_chunked::MIN_PART;
/// Default part size.
pub const DEFAULT_PART: usize = 8 * 1024 * 1024;
/// Largest object CopyObject can copy in one call.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// The part size grows by one `part_size` every this many parts.
const PARTS_PER_STEP: usize = 1000;
/// Request objects one upload may have: its record must fit a DynamoDB item (400 KB), and
/// commit assembles them as parts (at most 10,000).
const MAX_OBJECTS: usize = 4000;

/// How to reach the bucket and shape the uploads.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix for everything this store writes (e.g. `"wharf/"`), or empty.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`): needed by most local stand-ins.
    pub force_path_style: bool,
    /// Base URL for presigned links if clients must reach S3 by another name than the
    /// SDK's endpoint (e.g. a public endpoint); default: the SDK's endpoint, or AWS's.
    pub presign_endpoint: Option<String>,
    /// Bytes per part (at least 5 MiB).
    pub part_size: usize,
    /// Largest object copied with one CopyObject; larger ones use UploadPartCopy.
    pub max_single_copy: u64,
    /// Bytes per UploadPartCopy part.
    pub copy_part_size: u64,
    /// Counts SDK calls per operation, if set.
    pub call_counter: Option<wharf_aws::CallCounter>,
}

impl S3Options {
    /// Defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            force_path_style: false,
            presign_endpoint: None,
            part_size: DEFAULT_PART,
            max_single_copy: MAX_SINGLE_COPY,
            copy_part_size: 512 * 1024 * 1024,
            call_counter: None,
        }
    }
}

/// The S3 blob store. Cheap to clone; `Send + Sync`, and so are its futures.
#[derive(Clone)]
pub struct S3BlobStore(Arc<Inner>);

struct Inner {
    client: Client,
    bucket: String,
    layout: Layout,
    part_size: usize,
    max_single_copy: u64,
    copy_part_size: u64,
    signer: Signer,
}

/// What presigning needs, resolved once.
struct Signer {
    /// URL of the bucket, without a trailing slash.
    bucket_url: String,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    creds: RwLock<Option<Credentials>>,
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn bucket_url(
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

impl S3BlobStore {
    /// Builds the store from an SDK config (region and credentials) and options, and
    /// resolves the credentials used for presigning.
    pub async fn new(sdk: &SdkConfig, options: S3Options) -> Result<Self, StoreError> {
        let mut conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(options.force_path_style)
            // The core verifies every blob's digest; CRC32 per request would add CPU and,
            // on multipart uploads, per-part checksum bookkeeping for no extra safety.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(c) = &options.call_counter {
            conf = conf.interceptor(c.clone());
        }
        let region = sdk
            .region()
            .ok_or_else(|| other("no AWS region configured"))?
            .to_string();
        let endpoint = options.presign_endpoint.as_deref().or(sdk.endpoint_url());
        let signer = Signer {
            bucket_url: bucket_url(endpoint, &options.bucket, &region, options.force_path_style)?,
            region,
            provider: sdk.credentials_provider(),
            creds: RwLock::new(None),
        };
        if options.part_size < MIN_PART as usize || options.copy_part_size < MIN_PART {
            return Err(other("part sizes must be at least 5 MiB"));
        }
        let store = Self(Arc::new(Inner {
            client: Client::from_conf(conf.build()),
            bucket: options.bucket,
            layout: Layout::new(options.prefix),
            part_size: options.part_size,
            max_single_copy: options.max_single_copy.min(MAX_SINGLE_COPY),
            copy_part_size: options.copy_part_size.min(MAX_SINGLE_COPY),
            signer,
        }));
        let expiry = store.refresh_credentials().await?;
        if expiry.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(refresh_loop(Arc::downgrade(&store.0)));
        }
        Ok(store)
    }

    /// Re-reads the credentials used for presigning; returns their expiry, if any.
    /// (The store does this itself in the background when they can expire.)
    pub async fn refresh_credentials(&self) -> Result<Option<SystemTime>, StoreError> {
        let Some(p) = &self.0.signer.provider else {
            return Ok(None);
        };
        let creds = p
            .provide_credentials()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no AWS credentials: {e}")))?;
        let expiry = creds.expiry();
        *self
            .0
            .signer
            .creds
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(creds);
        Ok(expiry)
    }

    /// The SDK client (for setup such as creating the bucket).
    pub fn client(&self) -> &Client {
        &self.0.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.0.bucket
    }

    /// Key of a committed blob.
    pub fn blob_key(&self, d: &Digest) -> String {
        self.0.layout.blob_key(d)
    }

    fn part_size(&self, parts_done: usize) -> usize {
        self.0.part_size * (1 + parts_done / PARTS_PER_STEP)
    }

    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError> {
        match self
            .0
            .client
            .head_object()
            .bucket(&self.0.bucket)
            .key(key)
            .send()
            .await
            .map_err(store_error)
        {
            Ok(o) => Ok(Some((
                o.content_length().unwrap_or(0).max(0) as u64,
                o.e_tag().map(str::to_owned),
            ))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn copy_source(&self, key: &str) -> String {
        encode_key(&format!("{}/{key}", self.0.bucket))
    }

    /// Makes `to` the concatenation of `sources` (each read only with its recorded ETag),
    /// server-side: one CopyObject for a single object of at most `max_single_copy` bytes,
    /// else a multipart upload at `to` assembled with UploadPartCopy.
    async fn assemble(&self, sources: &[Obj], to: &str, size: u64) -> Result<(), StoreError> {
        let c = &self.0.client;
        if let [only] = sources
            && only.size <= self.0.max_single_copy
        {
            c.copy_object()
                .bucket(&self.0.bucket)
                .key(to)
                .copy_source(self.copy_source(&only.key))
                .copy_source_if_match(&only.etag)
                .content_type("application/octet-stream")
                .send()
                .await
                .map_err(store_error)?;
            return Ok(());
        }
        if sources.iter().map(|o| o.size).sum::<u64>() != size {
            return Err(other("upload objects do not add up to its size"));
        }
        let mp = c
            .create_multipart_upload()
            .bucket(&self.0.bucket)
            .key(to)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(store_error)?;
        let id = mp
            .upload_id()
            .ok_or_else(|| other("no multipart upload id"))?;
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
                    let out = c
                        .upload_part_copy()
                        .bucket(&self.0.bucket)
                        .key(to)
                        .upload_id(id)
                        .part_number(i32::from(n))
                        .copy_source(self.copy_source(&o.key))
                        .copy_source_if_match(&o.etag)
                        .set_copy_source_range((!whole).then(|| format!("bytes={start}-{end}")))
                        .send()
                        .await
                        .map_err(store_error)?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .ok_or_else(|| other("UploadPartCopy returned no ETag"))?;
                    parts.push(Part {
                        n,
                        etag: etag.to_owned(),
                        size: end + 1 - start,
                    });
                }
            }
            self.complete(to, id, &parts).await.map(drop)
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(to, id).await;
        }
        result
    }

    /// Completes a multipart upload; returns the object's ETag.
    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::from(p.n))
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let out = self
            .0
            .client
            .complete_multipart_upload()
            .bucket(&self.0.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Deletes every object under an upload's prefix (request objects, strays).
    async fn delete_upload_objects(&self, prefix: &str) -> Result<(), StoreError> {
        let c = &self.0.client;
        let mut token = None;
        loop {
            let page = c
                .list_objects_v2()
                .bucket(&self.0.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(store_error)?;
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !keys.is_empty() {
                let out = c
                    .delete_objects()
                    .bucket(&self.0.bucket)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(keys))
                            .quiet(true)
                            .build()
                            .map_err(other)?,
                    )
                    .send()
                    .await
                    .map_err(store_error)?;
                if let Some(e) = out.errors().first() {
                    return Err(other(format!(
                        "could not delete {}: {}",
                        e.key().unwrap_or("?"),
                        e.message().unwrap_or("?")
                    )));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    async fn put_empty(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .client
            .put_object()
            .bucket(&self.0.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from_static(b""))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        match self
            .0
            .client
            .abort_multipart_upload()
            .bucket(&self.0.bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await
            .map_err(store_error)
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
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

/// Refreshes the presigning credentials ahead of their expiry until the store is dropped.
async fn refresh_loop(store: Weak<Inner>) {
    loop {
        let wait = {
            let Some(inner) = store.upgrade() else { return };
            let expiry = inner
                .signer
                .creds
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(Credentials::expiry);
            match expiry {
                None => return,
                Some(e) => e
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(Duration::from_secs(600))
                    .max(Duration::from_secs(30)),
            }
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = store.upgrade() else { return };
        if let Err(e) = S3BlobStore(inner).refresh_credentials().await {
            tracing::warn!(error = %e, "could not refresh S3 presigning credentials");
        }
    }
}

/// A blob's bytes, streamed from GetObject.
pub type S3Reader = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

impl BlobStore for S3BlobStore {
    type Reader = S3Reader;
    type Writer = S3Writer;

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|(n, _)| n))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<S3Reader, StoreError> {
        let out = self
            .0
            .client
            .get_object()
            .bucket(&self.0.bucket)
            .key(self.blob_key(digest))
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end)))
            .send()
            .await
            .map_err(store_error)?;
        let stream = futures_util::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|r| {
                (
                    r.map_err(|e| StoreError::Unavailable(format!("reading from S3: {e}"))),
                    body,
                )
            })
        });
        Ok(Box::pin(stream))
    }

    fn presign_get(&self, digest: &Digest, now_ms: u64, ttl_secs: u64) -> Option<String> {
        let s = &self.0.signer;
        let creds = s.creds.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
        let ttl = Duration::from_secs(ttl_secs.clamp(1, 7 * 24 * 3600));
        if creds.expiry().is_some_and(|e| e < now + ttl) {
            return None;
        }
        let url = format!("{}/{}", s.bucket_url, encode_key(&self.blob_key(digest)));
        wharf_sigv4::presign_get(&url, &creds, &s.region, now, ttl)
            .inspect_err(|e| tracing::warn!(error = %e, "could not presign a blob URL"))
            .ok()
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match self
            .0
            .client
            .delete_object()
            .bucket(&self.0.bucket)
            .key(self.blob_key(digest))
            .send()
            .await
            .map_err(store_error)
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn min_chunk(&self) -> Option<u64> {
        Some(MIN_PART)
    }

    async fn writer(&self, upload: &UploadRecord) -> Result<S3Writer, StoreError> {
        let b = self.0.layout.begin(upload, MAX_OBJECTS)?;
        Ok(S3Writer {
            store: self.clone(),
            key: b.key,
            prefix: b.prefix,
            state: b.state,
            tail: b.tail,
            multi: b.multi,
            buf: PartBuffer::new(),
            size: 0,
        })
    }

    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let layout = &self.0.layout;
        let prefix = layout.upload_prefix(&upload.id)?;
        let state = layout.state(upload)?;
        let cas = self.blob_key(digest);
        let size = upload.offset;
        if let Some(d) = layout.direct(&state, upload, digest)? {
            return match &d.mpu {
                Some(mpu) => match self.complete(&d.key, mpu, &d.parts).await {
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
            return self.delete_upload_objects(&prefix).await;
        }
        if state.objects.is_empty() {
            if size != 0 {
                return Err(other("upload state has no data"));
            }
            self.put_empty(&cas).await?;
        } else {
            self.assemble(&state.objects, &cas, size).await?;
        }
        self.delete_upload_objects(&prefix).await
    }

    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let prefix = self.0.layout.upload_prefix(&upload.id)?;
        if let Ok(state) = self.0.layout.state(upload)
            && let Some(d) = &state.direct
            && let Some(mpu) = &d.mpu
        {
            self.abort_multipart(&d.key, mpu).await?;
        }
        // Multipart uploads of requests that died before completing theirs.
        let strays = match self
            .0
            .client
            .list_multipart_uploads()
            .bucket(&self.0.bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(store_error)
        {
            Ok(out) => out.uploads.unwrap_or_default(),
            Err(StoreError::NotSupported(e)) => {
                // Some stand-ins lack it; the bucket's lifecycle rule catches these.
                tracing::debug!(error = %e, "cannot list stray multipart uploads");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for u in &strays {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                self.abort_multipart(k, id).await?;
            }
        }
        self.delete_upload_objects(&prefix).await
    }
}

/// Appends one request's bytes to an upload, into an object of the request's own (or, for
/// a declared digest, into the multipart upload at the blob's key).
pub struct S3Writer {
    store: S3BlobStore,
    /// This request's object.
    key: String,
    /// `uploads/<id>/`.
    prefix: String,
    /// The recorded state.
    state: State,
    /// The recorded small last object, read into `buf` before the first new byte.
    tail: Option<Obj>,
    /// The multipart upload being written: the direct one, or this request's own.
    multi: Option<Multi>,
    buf: PartBuffer,
    /// Bytes of this request's object so far (a read-back tail included).
    size: u64,
}

impl S3Writer {
    /// Reads the recorded small last object into the buffer, once.
    async fn load_tail(&mut self) -> Result<(), StoreError> {
        let Some(t) = &self.tail else { return Ok(()) };
        if self.size > 0 {
            return Ok(());
        }
        let s = &self.store.0;
        let out = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&t.key)
            .if_match(&t.etag)
            .send()
            .await
            .map_err(|e| match store_error(e) {
                StoreError::NotFound | StoreError::Precondition(_) => {
                    other("the upload's recorded last object is missing or changed")
                }
                e => e,
            })?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading from S3: {e}")))?
            .into_bytes();
        if bytes.len() as u64 != t.size {
            return Err(other(
                "the upload's recorded last object has the wrong size",
            ));
        }
        self.buf
            .preload_with(bytes.len(), self.store.part_size(0), |dst| {
                dst.copy_from_slice(&bytes)
            });
        Ok(())
    }

    fn parts_done(&self) -> usize {
        self.multi.as_ref().map_or(0, |m| m.parts.len())
    }

    async fn upload_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        let s = &self.store.0;
        let m = self.multi.get_or_insert_with(|| Multi {
            key: self.key.clone(),
            ..Multi::default()
        });
        let mpu = match &m.mpu {
            Some(id) => id.clone(),
            None => {
                let out = s
                    .client
                    .create_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&m.key)
                    .content_type("application/octet-stream")
                    .send()
                    .await
                    .map_err(store_error)?;
                let id = out
                    .upload_id()
                    .ok_or_else(|| other("no multipart upload id"))?
                    .to_owned();
                m.mpu = Some(id.clone());
                id
            }
        };
        let n = m.next_part()?;
        let size = data.len() as u64;
        let out = s
            .client
            .upload_part()
            .bucket(&s.bucket)
            .key(&m.key)
            .upload_id(mpu)
            .part_number(i32::from(n))
            .content_length(size as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(store_error)?;
        let etag = out
            .e_tag()
            .ok_or_else(|| other("UploadPart returned no ETag"))?;
        m.parts.push(Part {
            n,
            etag: etag.to_owned(),
            size,
        });
        Ok(())
    }
}

impl BlobWriter for S3Writer {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.load_tail().await?;
        self.size += chunk.len() as u64;
        while !chunk.is_empty() {
            let ps = self.store.part_size(self.parts_done());
            match self.buf.feed(&mut chunk, ps) {
                Some(Full::Slice(part)) => self.upload_part(part).await?,
                Some(Full::Buffered) => {
                    let part = self.buf.take_head();
                    self.upload_part(part).await?;
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<String, StoreError> {
        if self.size == 0 {
            // Nothing new: the recorded state stands.
            return self.state.record(&self.prefix);
        }
        self.size += self.tail.as_ref().map_or(0, |t| t.size);
        let rest = self.buf.take_rest();
        let rest_len = rest.len() as u64;
        if self.state.direct.is_some() {
            // The declared digest's only request: its last part may be small.
            if !rest.is_empty() {
                self.upload_part(rest).await?;
            }
            self.state.sealed = rest_len < MIN_PART;
            self.state.direct = self.multi.take();
            return self.state.record(&self.prefix);
        }
        let s = self.store.0.clone();
        let obj = match self.multi.is_some() {
            true => {
                if !rest.is_empty() {
                    self.upload_part(rest).await?;
                }
                let m = self.multi.take().unwrap_or_default();
                let mpu = m
                    .mpu
                    .as_deref()
                    .ok_or_else(|| other("no multipart upload id"))?;
                let etag = self.store.complete(&m.key, mpu, &m.parts).await?;
                Obj {
                    key: m.key,
                    etag,
                    size: self.size,
                }
            }
            false => {
                let out = s
                    .client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(&self.key)
                    .content_type("application/octet-stream")
                    .content_length(rest_len as i64)
                    .body(ByteStream::from(rest))
                    .send()
                    .await
                    .map_err(store_error)?;
                Obj {
                    key: self.key.clone(),
                    etag: out
                        .e_tag()
                        .ok_or_else(|| other("PutObject returned no ETag"))?
                        .to_owned(),
                    size: rest_len,
                }
            }
        };
        self.state.push_object(obj, self.tail.is_some());
        self.state.record(&self.prefix)
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
    fn adapters_are_send(s: &S3BlobStore, u: &UploadRecord, d: &Digest, w: &mut S3Writer) {
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
    }
}

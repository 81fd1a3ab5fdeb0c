//! Blobs in Cloudflare R2 through a Worker's bucket binding: the core's [`BlobStore`] and
//! [`BlobWriter`](wharf_core::ports::BlobWriter) for the Workers runtime.
//!
//! # Layout
//!
//! wharf-s3's, from wharf-chunked: `blobs/<alg>/<hex>` committed blobs, written only at
//! commit; `uploads/<id>/<start>-<nonce>` the object one request of upload `<id>` wrote.
//!
//! # Uploads
//!
//! Each request writes one object of its own: a single put if its bytes fit in one part
//! ([`PART`], 8 MiB), else a multipart upload of its own with parts of exactly 8 MiB (R2
//! wants all parts but the last the same size) that the writer's `finish` completes. The
//! writer ([`R2Writer`]) is wharf-chunked's, the one S3 uses too, over this store's
//! [`PartSink`]; it holds at most one part in memory. The upload's `store_state` lists the
//! recorded objects (key, ETag, size); every object but the last is at least 5 MiB: a
//! smaller last one is read back by the next request and replaced by that request's object.
//! No request writes into another's object, so bytes of a failed, racing or still-streaming
//! request are in nothing the record lists; recorded objects are only read with their
//! recorded ETag. An upload whose digest was declared (`POST ?digest=`) writes its multipart
//! upload at the blob's own key instead, and commit just completes it.
//!
//! # Commit
//!
//! The binding has no copy, and put and upload_part only take streams of known length, so
//! commit streams R2 get bodies into a put without passing the bytes through wasm: one
//! recorded object is put from its own get body; several are piped one after the other
//! into a `FixedLengthStream` of the total length whose readable side the put consumes;
//! above what one put takes ([`MAX_PUT`]) the blob is a multipart upload whose equal parts
//! are `FixedLengthStream`s fed the same way from ranged gets. Nothing is written if the
//! blob exists already, and a failed write to the blob's key (two pushers of one layer: R2
//! allows about one write per second per key) counts as done if the blob is then there at
//! the right size. Commit and abort delete everything under `uploads/<id>/`; multipart
//! uploads of requests that died are not listable, and R2 aborts them after 7 days.
#![deny(missing_docs)]

mod inventory;
mod plan;

use bytes::Bytes;
use futures_core::Stream;
use js_sys::futures::JsFuture;
use js_sys::{Object as JsObject, Promise, Reflect, Uint8Array};
use plan::{MAX_OBJECTS, Segment, assembly_part_size, classify, other, plan_parts};
use std::pin::Pin;
use std::task::{Context, Poll};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ReadableStream, StreamPipeOptions, WritableStream};
use wharf_chunked::{Layout, MAX_PARTS, Obj, Part, PartSink, ReadBack, UploadWriter};
use wharf_core::ports::{BlobStore, ByteRange, UploadRecord};
use wharf_core::{Digest, StoreError};
use worker::worker_sys::{
    FixedLengthStream, R2Bucket, R2MultipartUpload, R2Object, R2ObjectBody, R2Objects,
    R2UploadedPart,
};

pub use plan::{MAX_PUT, PART};
pub use wharf_chunked::MIN_PART;

/// The R2 blob store. Cheap to clone (a handle on the binding and the prefix); not `Send`,
/// like everything in a Worker.
#[derive(Clone)]
pub struct R2Blobs {
    bucket: R2Bucket,
    layout: Layout,
    max_put: u64,
    presign: Option<std::rc::Rc<Presign>>,
}

/// Where and as whom blob GETs are presigned: R2's S3 API.
struct Presign {
    /// `https://<account>.r2.cloudflarestorage.com/<bucket>` (path style).
    bucket_url: String,
    creds: aws_credential_types::Credentials,
}

/// Turns a rejected binding call into a [`StoreError`] by meaning.
fn js_error(op: &str, e: JsValue) -> StoreError {
    let msg = match e.dyn_ref::<js_sys::Error>() {
        Some(err) => String::from(err.message()),
        None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    };
    classify(op, &msg)
}

thread_local! {
    /// Binding calls made by this isolate (single-threaded): each is a subrequest.
    static SUBREQUESTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// R2 binding calls this isolate has made (each counts as one of an invocation's
/// subrequests); the Worker reads it around a cron run to log what the run cost.
pub fn subrequests() -> u64 {
    SUBREQUESTS.with(|c| c.get())
}

fn count_subrequest() {
    SUBREQUESTS.with(|c| c.set(c.get() + 1));
}

/// Awaits a binding call that returns a promise (or throws synchronously); a stream's
/// own steps (`pipe`, `close`) are not binding calls.
async fn call(op: &str, p: Result<Promise, JsValue>) -> Result<JsValue, StoreError> {
    if !matches!(op, "pipe" | "close") {
        count_subrequest();
    }
    let p = p.map_err(|e| js_error(op, e))?;
    JsFuture::from(p).await.map_err(|e| js_error(op, e))
}

/// A plain JS object of `(name, value)` pairs (binding options).
fn js_obj(pairs: &[(&str, JsValue)]) -> Result<JsValue, StoreError> {
    let o = JsObject::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).map_err(|e| js_error("options", e))?;
    }
    Ok(o.into())
}

fn num(n: u64) -> JsValue {
    // Exact: offsets and lengths stay far below 2^53.
    JsValue::from_f64(n as f64)
}

/// A `FixedLengthStream` (workerd's identity transform that announces its length, which
/// put and upload_part need) of `len` bytes.
fn fixed_length_stream(len: u64) -> Result<FixedLengthStream, StoreError> {
    match u32::try_from(len) {
        Ok(n) => FixedLengthStream::new(n),
        Err(_) => FixedLengthStream::new_big_int(js_sys::BigInt::from(len)),
    }
    .map_err(|e| js_error("FixedLengthStream", e))
}

impl R2Blobs {
    /// The store on `bucket`, every key under `prefix` (e.g. `"wharf/"`, or empty).
    pub fn new(bucket: worker::Bucket, prefix: String) -> Self {
        Self {
            bucket: JsValue::from(bucket).unchecked_into(),
            layout: Layout::new(prefix),
            max_put: MAX_PUT,
            presign: None,
        }
    }

    /// Answers blob GETs with URLs presigned for R2's S3 API at `bucket_url`
    /// (`https://<account>.r2.cloudflarestorage.com/<bucket>`), signed with an R2 API token's
    /// S3 credentials. Without it blobs are streamed from the binding, which costs the Worker
    /// almost no CPU (R2's stream is handed on as it is) and the client no redirect.
    pub fn with_presign(
        mut self,
        bucket_url: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        self.presign = Some(std::rc::Rc::new(Presign {
            bucket_url: bucket_url.trim_end_matches('/').to_owned(),
            creds: aws_credential_types::Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "wharf-r2",
            ),
        }));
        self
    }

    /// Assembles blobs above `bytes` as multipart uploads instead of one put (default and
    /// maximum [`MAX_PUT`], R2's limit). Lowering it lets tests exercise that path with
    /// small blobs; its parts are at least 64 MiB.
    pub fn with_max_single_put(mut self, bytes: u64) -> Self {
        self.max_put = bytes.clamp(MIN_PART, MAX_PUT);
        self
    }

    /// Key of a committed blob.
    pub fn blob_key(&self, d: &Digest) -> String {
        self.layout.blob_key(d)
    }

    async fn head_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let v = call("head", self.bucket.head(key.to_owned())).await?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        let o: R2Object = v.unchecked_into();
        Ok(Some(o.size().map_err(|e| js_error("head", e))? as u64))
    }

    /// GET of `key`, optionally a `(offset, length)` range and only if its ETag is `etag`.
    /// `None` if there is no such object; `Precondition` if its ETag differs.
    async fn get_object(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        etag: Option<&str>,
    ) -> Result<Option<R2ObjectBody>, StoreError> {
        let mut opts = Vec::new();
        if let Some((offset, length)) = range {
            opts.push((
                "range",
                js_obj(&[("offset", num(offset)), ("length", num(length))])?,
            ));
        }
        if let Some(e) = etag {
            opts.push(("onlyIf", js_obj(&[("etagMatches", JsValue::from_str(e))])?));
        }
        let v = call("get", self.bucket.get(key.to_owned(), js_obj(&opts)?)).await?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        // A failed condition returns the object's metadata without a body.
        if !Reflect::has(&v, &JsValue::from_str("body")).unwrap_or(false) {
            return Err(StoreError::Precondition(format!(
                "{key} changed since it was recorded"
            )));
        }
        Ok(Some(v.unchecked_into()))
    }

    /// A recorded upload object (or a range of it), read only with its ETag.
    async fn read_recorded(
        &self,
        o: &Obj,
        range: Option<(u64, u64)>,
    ) -> Result<R2ObjectBody, StoreError> {
        match self.get_object(&o.key, range, Some(&o.etag)).await {
            Ok(Some(body)) => Ok(body),
            Ok(None) | Err(StoreError::NotFound) | Err(StoreError::Precondition(_)) => {
                Err(other(format!(
                    "the upload's recorded object {} is missing or changed",
                    o.key
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Puts `value` (bytes, or a stream of known length) at `key`; returns its ETag.
    async fn put_value(&self, key: &str, value: JsValue) -> Result<String, StoreError> {
        let v = call("put", self.bucket.put(key.to_owned(), value, js_obj(&[])?)).await?;
        put_etag(v)
    }

    async fn start_multipart(&self, key: &str) -> Result<R2MultipartUpload, StoreError> {
        let v = call(
            "createMultipartUpload",
            self.bucket
                .create_multipart_upload(key.to_owned(), js_obj(&[])?),
        )
        .await?;
        Ok(v.unchecked_into())
    }

    fn resume_multipart(&self, key: &str, id: &str) -> Result<R2MultipartUpload, StoreError> {
        self.bucket
            .resume_multipart_upload(key.to_owned(), id.to_owned())
            .map(JsCast::unchecked_into)
            .map_err(|e| js_error("resumeMultipartUpload", e))
    }

    /// Completes a multipart upload from recorded parts; returns the object's ETag.
    async fn complete_upload(
        &self,
        mpu: &R2MultipartUpload,
        parts: &[Part],
    ) -> Result<String, StoreError> {
        let parts = parts
            .iter()
            .map(|p| {
                js_obj(&[
                    ("partNumber", JsValue::from(p.n)),
                    ("etag", JsValue::from_str(&p.etag)),
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
        put_etag(call("complete", mpu.complete(parts)).await?)
    }

    /// Aborts a multipart upload; one already gone is fine.
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        let mpu = self.resume_multipart(key, id)?;
        match call("abort", mpu.abort()).await {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes every object under an upload's prefix (request objects, replaced tails).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let mut cursor: Option<String> = None;
        loop {
            let mut opts = vec![("prefix", JsValue::from_str(prefix))];
            if let Some(c) = &cursor {
                opts.push(("cursor", JsValue::from_str(c)));
            }
            let page: R2Objects = call("list", self.bucket.list(js_obj(&opts)?))
                .await?
                .unchecked_into();
            let keys = page
                .objects()
                .map_err(|e| js_error("list", e))?
                .iter()
                .map(|o| o.key().map(JsValue::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| js_error("list", e))?;
            if !keys.is_empty() {
                call("delete", self.bucket.delete_multiple(keys)).await?;
            }
            let truncated = page.truncated().map_err(|e| js_error("list", e))?;
            match page.cursor().map_err(|e| js_error("list", e))? {
                Some(c) if truncated => cursor = Some(c),
                _ => return Ok(()),
            }
        }
    }

    /// Pipes `segments` of the recorded `objects`, in order, into `sink`, then closes it.
    /// On failure the sink is aborted, so whatever consumes its readable side fails too
    /// instead of waiting for bytes that never come.
    async fn feed(
        &self,
        sink: &WritableStream,
        objects: &[Obj],
        segments: &[Segment],
    ) -> Result<(), StoreError> {
        let result = async {
            let opts = StreamPipeOptions::new();
            opts.set_prevent_close(true);
            for s in segments {
                let o = objects
                    .get(s.obj)
                    .ok_or_else(|| other("assembly plan out of range"))?;
                let whole = s.offset == 0 && s.len == o.size;
                let body = self
                    .read_recorded(o, (!whole).then_some((s.offset, s.len)))
                    .await?
                    .body()
                    .map_err(|e| js_error("get", e))?;
                call("pipe", Ok(body.pipe_to_with_options(sink, &opts))).await?;
            }
            call("close", Ok(sink.close())).await.map(drop)
        }
        .await;
        if result.is_err() {
            let _ = JsFuture::from(sink.abort()).await;
        }
        result
    }

    /// Writes the concatenation of the recorded `objects` (`size` bytes in all) at `to`,
    /// from R2 get bodies, without the bytes passing through wasm.
    async fn assemble(&self, objects: &[Obj], to: &str, size: u64) -> Result<(), StoreError> {
        if objects.iter().map(|o| o.size).sum::<u64>() != size {
            return Err(other("upload objects do not add up to its size"));
        }
        if size <= self.max_put {
            if let [only] = objects {
                // Docker's one-PATCH push: an R2 body has a known length, put takes it as is.
                let body = self
                    .read_recorded(only, None)
                    .await?
                    .body()
                    .map_err(|e| js_error("get", e))?;
                return self.put_value(to, body.into()).await.map(drop);
            }
            let fls = fixed_length_stream(size)?;
            let put = self
                .bucket
                .put(to.to_owned(), fls.readable().into(), js_obj(&[])?)
                .map_err(|e| js_error("put", e))?;
            // Listen now, so a put that fails early is not an unhandled rejection.
            count_subrequest();
            let put = JsFuture::from(put);
            let segments = plan_parts(&objects.iter().map(|o| o.size).collect::<Vec<_>>(), size);
            let fed = self
                .feed(&fls.writable(), objects, segments.concat().as_slice())
                .await;
            let put = put.await.map_err(|e| js_error("put", e));
            fed?;
            return put_etag(put?).map(drop);
        }
        let part = assembly_part_size(size);
        let plan = plan_parts(&objects.iter().map(|o| o.size).collect::<Vec<_>>(), part);
        if plan.len() > usize::from(MAX_PARTS) {
            return Err(other("blob too large to assemble"));
        }
        let mpu = self.start_multipart(to).await?;
        let result = async {
            let mut parts = Vec::with_capacity(plan.len());
            for (i, segments) in plan.iter().enumerate() {
                let n = u16::try_from(i + 1).map_err(other)?;
                let len = segments.iter().map(|s| s.len).sum();
                let fls = fixed_length_stream(len)?;
                let up = mpu
                    .upload_part(n, fls.readable().into())
                    .map_err(|e| js_error("uploadPart", e))?;
                count_subrequest();
                let up = JsFuture::from(up);
                let fed = self.feed(&fls.writable(), objects, segments).await;
                let up = up.await.map_err(|e| js_error("uploadPart", e));
                fed?;
                let p: R2UploadedPart = up?.unchecked_into();
                let etag = p.etag().map_err(|e| js_error("uploadPart", e))?;
                parts.push(Part { n, etag, size: len });
            }
            self.complete_upload(&mpu, &parts).await
        }
        .await;
        if let Err(e) = &result {
            if let Err(a) = call("abort", mpu.abort()).await {
                tracing::warn!(error = %a, "could not abort a failed blob assembly");
            }
            tracing::debug!(error = %e, key = to, "blob assembly failed");
        }
        result.map(drop)
    }

    async fn put_empty(&self, key: &str) -> Result<(), StoreError> {
        self.put_value(key, Uint8Array::new_with_length(0).into())
            .await
            .map(drop)
    }

    /// After a failed write to a blob's key: done anyway if the blob is there at `size`
    /// (another commit of the same content won, or completed it earlier).
    async fn settled(&self, key: &str, size: u64, e: StoreError) -> Result<(), StoreError> {
        match self.head_size(key).await {
            Ok(Some(n)) if n == size => Ok(()),
            _ => Err(e),
        }
    }
}

/// The ETag of the object a put or complete returned (`null` = a failed condition).
fn put_etag(v: JsValue) -> Result<String, StoreError> {
    if v.is_null() || v.is_undefined() {
        return Err(StoreError::Precondition("R2 put: condition failed".into()));
    }
    v.unchecked_into::<R2Object>()
        .etag()
        .map_err(|e| js_error("put", e))
}

/// A blob's bytes as R2 returned them. The Worker hands the stream itself to the response
/// ([`R2Reader::into_raw`]: no copy through wasm, no CPU); polling it as a `Stream` reads
/// it through wasm instead (other callers, tests).
pub struct R2Reader {
    raw: Option<ReadableStream>,
    inner: Option<Pin<Box<worker::ByteStream>>>,
}

impl R2Reader {
    /// R2's own body stream, to hand to the Response untouched (no copy through wasm);
    /// `None` if already polled.
    pub fn into_raw(self) -> Option<web_sys::ReadableStream> {
        match self.inner {
            Some(_) => None,
            None => self.raw,
        }
    }
}

impl Stream for R2Reader {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.inner.is_none() {
            match this.raw.take() {
                Some(raw) => this.inner = Some(Box::pin(worker::ByteStream::from(raw))),
                None => return Poll::Ready(None),
            }
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        inner.as_mut().poll_next(cx).map(|item| {
            item.map(|r| {
                r.map(Bytes::from)
                    .map_err(|e| StoreError::Unavailable(format!("reading from R2: {e}")))
            })
        })
    }
}

impl BlobStore for R2Blobs {
    type Reader = R2Reader;
    type Writer = R2Writer;

    fn presign_get(&self, digest: &Digest, now_ms: u64, ttl_secs: u64) -> Option<String> {
        let p = self.presign.as_ref()?;
        let url = format!(
            "{}/{}",
            p.bucket_url,
            wharf_sigv4::encode_key(&self.blob_key(digest))
        );
        // The core's clock: `SystemTime::now()` panics on wasm32, a computed time does not.
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
        // R2's S3 API takes region `auto`.
        wharf_sigv4::presign_get(
            &url,
            &p.creds,
            "auto",
            now,
            std::time::Duration::from_secs(ttl_secs),
        )
        .inspect_err(|e| tracing::warn!(error = %e, "could not presign a blob URL"))
        .ok()
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.head_size(&self.blob_key(digest)).await
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<R2Reader, StoreError> {
        let range = range.map(|r| (r.start, r.len()));
        match self.get_object(&self.blob_key(digest), range, None).await? {
            Some(o) => Ok(R2Reader {
                raw: Some(o.body().map_err(|e| js_error("get", e))?),
                inner: None,
            }),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        // R2 deletes of missing keys succeed.
        call("delete", self.bucket.delete(self.blob_key(digest)))
            .await
            .map(drop)
    }

    fn min_chunk(&self) -> Option<u64> {
        Some(MIN_PART)
    }

    async fn writer(&self, upload: &UploadRecord) -> Result<R2Writer, StoreError> {
        let begin = self.layout.begin(upload, MAX_OBJECTS)?;
        Ok(UploadWriter::new(self.clone(), begin))
    }

    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let prefix = self.layout.upload_prefix(&upload.id)?;
        let state = self.layout.state(upload)?;
        let cas = self.blob_key(digest);
        let size = upload.offset;
        if let Some(d) = self.layout.direct(&state, upload, digest)? {
            let done = match &d.mpu {
                Some(id) => match self.resume_multipart(&d.key, id) {
                    Ok(mpu) => self.complete_upload(&mpu, &d.parts).await.map(drop),
                    Err(e) => Err(e),
                },
                None if size == 0 => self.put_empty(&cas).await,
                None => Err(other("upload state has no data")),
            };
            // An earlier attempt of this commit may have completed it already.
            return match done {
                Ok(()) => Ok(()),
                Err(e) => self.settled(&cas, size, e).await,
            };
        }
        if self.head_size(&cas).await? == Some(size) {
            // Already stored (the same content was pushed before): nothing to write.
            return self.delete_prefix(&prefix).await;
        }
        let written = if state.objects.is_empty() {
            if size != 0 {
                return Err(other("upload state has no data"));
            }
            self.put_empty(&cas).await
        } else {
            self.assemble(&state.objects, &cas, size).await
        };
        if let Err(e) = written {
            self.settled(&cas, size, e).await?;
        }
        self.delete_prefix(&prefix).await
    }

    /// Streams the recorded request objects in order, each read only with its recorded ETag
    /// (through wasm: this is the rare path of a sha512 digest named only at the `PUT`).
    async fn read_staged(
        &self,
        upload: &UploadRecord,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        let state = self.layout.state(upload)?;
        if state.direct.is_some() {
            return Err(StoreError::NotSupported(
                "a direct upload's bytes are not staged as objects".into(),
            ));
        }
        for o in &state.objects {
            let body = self.read_recorded(o, None).await?;
            let mut reader = R2Reader {
                raw: Some(body.body().map_err(|e| js_error("get", e))?),
                inner: None,
            };
            while let Some(chunk) =
                std::future::poll_fn(|cx| Pin::new(&mut reader).poll_next(cx)).await
            {
                sink(&chunk?);
            }
        }
        Ok(())
    }

    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let prefix = self.layout.upload_prefix(&upload.id)?;
        if let Ok(state) = self.layout.state(upload)
            && let Some(d) = &state.direct
            && let Some(id) = &d.mpu
        {
            self.abort_multipart(&d.key, id).await?;
        }
        self.delete_prefix(&prefix).await
    }
}

/// Appends one request's bytes to an upload: wharf-chunked's writer over this store.
pub type R2Writer = UploadWriter<R2Blobs>;

/// A recorded object read back, as R2 returned it: copied once, straight into the writer's
/// buffer.
pub struct ReadBackArray(Uint8Array);

impl ReadBack for ReadBackArray {
    fn len(&self) -> usize {
        self.0.length() as usize
    }

    fn copy_to(&self, dst: &mut [u8]) {
        self.0.copy_to(dst)
    }
}

/// The calls the upload writer makes, onto the binding. Parts are always [`PART`]: R2 wants
/// all parts but the last the same size. Each part is one copy into JS memory.
impl PartSink for R2Blobs {
    type Read = ReadBackArray;

    fn part_size(&self, _parts_done: usize) -> usize {
        PART
    }

    async fn read(&self, obj: &Obj) -> Result<ReadBackArray, StoreError> {
        let o = self.read_recorded(obj, None).await?;
        Ok(ReadBackArray(Uint8Array::new(
            &call("get", o.array_buffer()).await?,
        )))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        self.put_value(key, Uint8Array::from(&body[..]).into())
            .await
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.start_multipart(key)
            .await?
            .upload_id()
            .map_err(|e| js_error("uploadId", e))
    }

    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError> {
        // A handle on the upload, no call: resuming is how a later request writes on too.
        let mpu = self.resume_multipart(key, id)?;
        let data = Uint8Array::from(&body[..]);
        drop(body);
        let part: R2UploadedPart = call("uploadPart", mpu.upload_part(n, data.into()))
            .await?
            .unchecked_into();
        part.etag().map_err(|e| js_error("uploadPart", e))
    }

    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError> {
        let mpu = self.resume_multipart(key, id)?;
        self.complete_upload(&mpu, parts).await
    }
}

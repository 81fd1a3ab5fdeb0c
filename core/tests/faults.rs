//! Fault injection: a blob store that fails on demand proves a failed upload never leaves
//! a visible blob and that a retry afterwards succeeds (in the spirit of redb's
//! `CrashBackend`).

use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wharf_core::ports::{BlobStore, BlobWriter, ByteRange, UploadRecord};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, MemoryWriter, TestEnv};
use wharf_core::{Config, Digest, Registry, StoreError};

/// Wraps the memory store; fails the write or commit whose number matches.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryBlobs,
    writes: Arc<AtomicUsize>,
    fail_write: Arc<AtomicUsize>,
    fail_commit: Arc<AtomicUsize>,
}

struct FlakyWriter {
    inner: MemoryWriter,
    store: Flaky,
}

impl BlobWriter for FlakyWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let n = self.store.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.store.fail_write.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected write failure".into()));
        }
        self.inner.write(chunk).await
    }
    async fn finish(self) -> Result<String, StoreError> {
        self.inner.finish().await
    }
}

impl BlobStore for Flaky {
    type Reader = <MemoryBlobs as BlobStore>::Reader;
    type Writer = FlakyWriter;
    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.inner.stat(d).await
    }
    async fn get(&self, d: &Digest, r: Option<ByteRange>) -> Result<Self::Reader, StoreError> {
        self.inner.get(d, r).await
    }
    async fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        self.inner.delete(d).await
    }
    async fn writer(&self, u: &UploadRecord) -> Result<FlakyWriter, StoreError> {
        Ok(FlakyWriter {
            inner: self.inner.writer(u).await?,
            store: self.clone(),
        })
    }
    async fn commit(&self, u: &UploadRecord, d: &Digest) -> Result<(), StoreError> {
        if self.fail_commit.swap(0, Ordering::SeqCst) == 1 {
            return Err(StoreError::Unavailable("injected commit failure".into()));
        }
        self.inner.commit(u, d).await
    }
    async fn abort(&self, u: &UploadRecord) -> Result<(), StoreError> {
        self.inner.abort(u).await
    }
}

type Reg = Registry<Flaky, MemoryMetadata, TestEnv>;

type Frames = futures_util::stream::Iter<
    std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
>;

/// A request body delivered in several frames.
fn chunks(parts: Vec<Vec<u8>>) -> http_body_util::StreamBody<Frames> {
    let frames: Vec<_> = parts
        .into_iter()
        .map(|p| Ok(http_body::Frame::data(Bytes::from(p))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
}

fn send(
    reg: &Reg,
    method: Method,
    uri: &str,
    parts: Vec<Vec<u8>>,
) -> http::Response<wharf_core::Body<<Flaky as BlobStore>::Reader>> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(chunks(parts))
        .expect("request");
    block_on(reg.handle(req))
}

#[test]
fn failed_write_leaves_no_blob_and_retry_succeeds() {
    let store = Flaky::default();
    let reg = Registry::new(
        store.clone(),
        MemoryMetadata::default(),
        TestEnv::default(),
        Config::default(),
    );
    let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000]).collect();
    let all: Vec<u8> = data.concat();
    let digest = Digest::sha256_of(&all);
    let uri = format!("/v2/r/blobs/uploads/?digest={digest}");

    store.fail_write.store(3, Ordering::SeqCst);
    let resp = send(&reg, Method::POST, &uri, data.clone());
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let head = send(&reg, Method::HEAD, &format!("/v2/r/blobs/{digest}"), vec![]);
    assert_eq!(
        head.status(),
        StatusCode::NOT_FOUND,
        "a failed upload must not be visible"
    );
    assert!(block_on(store.inner.stat(&digest)).expect("stat").is_none());

    let resp = send(&reg, Method::POST, &uri, data.clone());
    assert_eq!(resp.status(), StatusCode::CREATED);
    let head = send(&reg, Method::HEAD, &format!("/v2/r/blobs/{digest}"), vec![]);
    assert_eq!(head.status(), StatusCode::OK);
}

#[test]
fn failed_commit_leaves_no_link_and_chunk_failure_keeps_offset() {
    let store = Flaky::default();
    let reg = Registry::new(
        store.clone(),
        MemoryMetadata::default(),
        TestEnv::default(),
        Config::default(),
    );
    let resp = send(&reg, Method::POST, "/v2/r/blobs/uploads/", vec![]);
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();

    send(&reg, Method::PATCH, &loc, vec![vec![1; 10]]);
    // The second PATCH fails mid-way: the upload must still be at 10 bytes.
    store
        .fail_write
        .store(store.writes.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
    let resp = send(&reg, Method::PATCH, &loc, vec![vec![2; 10], vec![3; 10]]);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let status = send(&reg, Method::GET, &loc, vec![]);
    assert_eq!(status.headers()["range"], "0-9");

    send(&reg, Method::PATCH, &loc, vec![vec![2; 10]]);
    let digest = Digest::sha256_of(&[vec![1u8; 10], vec![2u8; 10]].concat());
    store.fail_commit.store(1, Ordering::SeqCst);
    let resp = send(&reg, Method::PUT, &format!("{loc}?digest={digest}"), vec![]);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let head = send(&reg, Method::HEAD, &format!("/v2/r/blobs/{digest}"), vec![]);
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    // The upload survives a failed commit; the client's retry of the PUT succeeds.
    let resp = send(&reg, Method::PUT, &format!("{loc}?digest={digest}"), vec![]);
    assert_eq!(resp.status(), StatusCode::CREATED);
    let head = send(&reg, Method::HEAD, &format!("/v2/r/blobs/{digest}"), vec![]);
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "20");
}

#[test]
fn bounded_cleanup_takes_the_rest_next_time() {
    // The Worker's cron may only make so many calls per run: the sweep stops at its bound
    // and the next run removes what is left.
    let reg = Registry::new(
        Flaky::default(),
        MemoryMetadata::default(),
        TestEnv::default(),
        Config::default(),
    );
    for _ in 0..3 {
        let resp = send(&reg, Method::POST, "/v2/r/blobs/uploads/", vec![]);
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    reg.env.now.store(10_000, Ordering::SeqCst);
    assert_eq!(
        block_on(reg.cleanup_uploads_at_most(5_000, 2)).expect("sweep"),
        2
    );
    assert_eq!(
        block_on(reg.cleanup_uploads_at_most(5_000, 2)).expect("sweep"),
        1
    );
    assert_eq!(
        block_on(reg.cleanup_uploads_at_most(5_000, 2)).expect("sweep"),
        0
    );
}

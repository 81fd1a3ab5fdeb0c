//! The S3 blob store against s3s-fs, a strict local S3 that checks SigV4 (including
//! presigned URLs and their expiry), started on a free port for each test and killed by
//! its PID afterwards.
//!
//! Every upload is written the way the core drives it across stateless invocations: a
//! writer per request, a fresh store client per "invocation", and the record (offset and
//! store state) advanced only after `finish`.

use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wharf_aws::CallCounter;
use wharf_aws::testing::{self, LocalServer};
use wharf_core::ports::{BlobStore, BlobWriter, ByteRange, UploadRecord};
use wharf_core::{Digest, StoreError};
use wharf_s3::{S3Api, S3BlobStore, S3Options};

mod common;
use common::{data, record};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "wharf";

/// Starts s3s-fs and creates the bucket, or says why the test is skipped.
async fn server() -> Option<LocalServer> {
    let Some(s) = testing::s3s_fs() else {
        eprintln!("SKIP: s3s-fs is not available; the S3 adapter test did not run");
        return None;
    };
    let store = store(&s, None, None).await;
    store
        .client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    Some(s)
}

/// A new store client, as a new stateless invocation would build it.
async fn store(
    s: &LocalServer,
    counter: Option<&CallCounter>,
    tweak: Option<fn(&mut S3Options)>,
) -> S3BlobStore {
    let mut o = S3Options::new(BUCKET);
    o.force_path_style = true;
    o.call_counter = counter.cloned();
    if let Some(f) = tweak {
        f(&mut o);
    }
    S3BlobStore::new(&s.sdk_config(), o).await.expect("store")
}

/// One request: a writer over `chunks`; the record advances only if `record_it`.
async fn session(s: &S3BlobStore, up: &mut UploadRecord, chunks: &[&[u8]], record_it: bool) {
    let mut w = s.writer(up).await.expect("writer");
    let mut n = 0;
    for c in chunks {
        w.write(Bytes::copy_from_slice(c)).await.expect("write");
        n += c.len() as u64;
    }
    let state = w.finish().await.expect("finish");
    if record_it {
        up.offset += n;
        up.store_state = state;
    }
}

/// Splits `bytes` into chunks of the given sizes (the last takes the rest).
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes {
        let end = (at + n).min(bytes.len());
        out.push(&bytes[at..end]);
        at = end;
    }
    if at < bytes.len() {
        out.push(&bytes[at..]);
    }
    out
}

/// Sizes of the request objects a recorded state lists.
fn objects(up: &UploadRecord) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(&up.store_state).expect("state is JSON");
    v["objects"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["s"].as_u64()).collect())
        .unwrap_or_default()
}

async fn read(s: &S3BlobStore, d: &Digest, r: Option<ByteRange>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut st = s.get(d, r).await.expect("get");
    while let Some(c) = st.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

async fn keys(s: &S3BlobStore, prefix: &str) -> Vec<String> {
    let out = s
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Multipart uploads still open, with their parts (s3s-fs lacks ListMultipartUploads, so
/// this reads its directory: `.upload-<uuid>.json` and `.upload_id-<uuid>.part-<n>`).
fn open_multiparts(srv: &LocalServer) -> (usize, usize) {
    let dir = srv.dir().expect("s3s-fs has a directory");
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let open = names.iter().filter(|n| n.starts_with(".upload-")).count();
    let parts = names
        .iter()
        .filter(|n| n.starts_with(".upload_id-"))
        .count();
    (open, parts)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn print_calls(what: &str, c: &CallCounter) {
    let calls: BTreeMap<String, u64> = c.snapshot();
    eprintln!("S3 calls for {what}: {calls:?}");
}

/// The blob store conformance suite over the SDK; it leaves no object and no open
/// multipart upload behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms() {
    let Some(srv) = server().await else { return };
    let s = store(&srv, None, None).await;
    wharf_core::testing::blob_conformance(&s).await;
    let left = keys(&s, "").await;
    assert!(left.is_empty(), "objects left: {left:?}");
    assert_eq!(open_multiparts(&srv), (0, 0), "multipart uploads left open");
}

/// The blob inventory suite over the SDK, among objects under `blobs/` that are not blobs
/// (skipped); LastModified is s3s-fs's clock, this machine's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_conforms() {
    use wharf_core::ports::BlobInventory;
    let Some(srv) = server().await else { return };
    let s = store(&srv, None, None).await;
    let stray = [
        "blobs/README".to_owned(),
        format!("blobs/sha256/{}", "A".repeat(64)),
        format!("blobs/sha384/{}", "a".repeat(96)),
    ];
    for k in &stray {
        s.api().put(k, Bytes::from_static(b"x")).await.expect("put");
    }
    wharf_core::testing::inventory_conformance(&s, &now_ms, 2000).await;
    assert!(s.list_blobs(None, 10).await.expect("list").is_empty());
    let left = keys(&s, "").await;
    assert_eq!(left, stray, "only the stray objects are left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_across_invocations_with_a_failed_request() {
    let Some(srv) = server().await else { return };
    let blob = data(23 * MIB + 12_345, 1);
    let digest = Digest::sha256_of(&blob);
    let mut up = record("u-chunked", None);
    let counter = CallCounter::default();

    // Invocation 1: 4.7 MiB in three chunks, under a part: stored as a tail.
    let s = store(&srv, Some(&counter), None).await;
    let a = &blob[..4 * MIB + 700 * 1024];
    session(&s, &mut up, &chunks(a, &[3 * MIB, MIB]), true).await;
    assert_eq!(up.offset, a.len() as u64);
    assert_eq!(objects(&up), vec![a.len() as u64]);
    assert!(
        !up.store_state.contains("uploads/"),
        "keys are recorded relative: {}",
        up.store_state
    );
    drop(s);

    // Invocation 2: the tail is read back; 6 MiB + 123 then 2 MiB fill one part and leave
    // a tail again.
    let s = store(&srv, Some(&counter), None).await;
    let b = &blob[a.len()..a.len() + 8 * MIB + 123];
    session(&s, &mut up, &chunks(b, &[6 * MIB + 123]), true).await;
    assert_eq!(
        objects(&up),
        vec![(a.len() + b.len()) as u64],
        "the small one was replaced"
    );
    let recorded = up.clone();
    drop(s);

    // Invocation 3 fails: it writes 9 MiB of garbage (one part goes up) and dies.
    let s = store(&srv, Some(&counter), None).await;
    let mut w = s.writer(&up).await.expect("writer");
    w.write(Bytes::from(data(9 * MIB, 99)))
        .await
        .expect("write");
    drop(w);
    // Invocation 4 finishes but its record update is lost (e.g. a racing PATCH won).
    session(&s, &mut up, &[&data(6 * MIB, 98)], false).await;
    assert_eq!(up, recorded, "failed requests do not advance the record");
    drop(s);

    // Invocation 5: the rest, in uneven chunks, from the recorded state.
    let s = store(&srv, Some(&counter), None).await;
    let c = &blob[up.offset as usize..];
    session(
        &s,
        &mut up,
        &chunks(c, &[1, 5 * MIB - 1, 77, 3 * MIB, 999_999]),
        true,
    )
    .await;
    assert_eq!(up.offset, blob.len() as u64);

    // Commit without a declared digest: complete at the staging key, copy, clean up.
    let s = store(&srv, Some(&counter), None).await;
    assert_eq!(s.stat(&digest).await.expect("stat"), None);
    s.commit(&up, &digest).await.expect("commit");
    print_calls(
        "a 23 MiB chunked upload (5 invocations, 2 failed) and its commit",
        &counter,
    );
    assert_eq!(
        s.stat(&digest).await.expect("stat"),
        Some(blob.len() as u64)
    );
    assert!(
        read(&s, &digest, None).await == blob,
        "whole blob reads back"
    );
    let r = ByteRange {
        start: 8 * MIB as u64 - 10,
        end: 16 * MIB as u64 + 10,
    };
    assert!(
        read(&s, &digest, Some(r)).await == blob[r.start as usize..=r.end as usize],
        "ranged read"
    );
    assert!(
        keys(&s, "uploads/").await.is_empty(),
        "staging objects are gone"
    );
    // Only the failed request's own multipart upload is still open: the bucket's lifecycle
    // rule (AbortIncompleteMultipartUpload) removes such leftovers of dead requests.
    assert_eq!(open_multiparts(&srv).0, 1);
    let calls = counter.snapshot();
    assert_eq!(calls.get("S3.CopyObject"), None, "{calls:?}");
    assert_eq!(
        calls.get("S3.UploadPartCopy"),
        Some(&2),
        "two request objects assembled server-side: {calls:?}"
    );

    // Idempotent: committing again changes nothing.
    s.commit(&up, &digest).await.expect("commit again");
    assert_eq!(
        s.stat(&digest).await.expect("stat"),
        Some(blob.len() as u64)
    );

    // Presigned GET, fetched by a plain HTTP client.
    let url = s.presign_get(&digest, now_ms(), 60).expect("presigned");
    let resp = wharf_aws::testing::http_client()
        .get(&url)
        .send()
        .await
        .expect("GET presigned");
    assert_eq!(resp.status(), 200, "{url}");
    assert!(
        resp.bytes().await.expect("body") == blob,
        "presigned GET returns the blob"
    );

    // A tampered URL is refused.
    let i = url.find("X-Amz-Signature=").expect("signed") + "X-Amz-Signature=".len();
    let flipped = if &url[i..i + 1] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..i], &url[i + 1..]);
    assert_ne!(tampered, url);
    let status = wharf_aws::testing::http_client()
        .get(&tampered)
        .send()
        .await
        .expect("GET")
        .status();
    assert_eq!(status, 403, "tampered signature");
    let other_key = url.replace(digest.hex(), Digest::sha256_of(b"x").hex());
    assert_eq!(
        wharf_aws::testing::http_client()
            .get(&other_key)
            .send()
            .await
            .expect("GET")
            .status(),
        403,
        "signature is per key"
    );

    // An expired one too (ttl 1 s, used 2 s later).
    let short = s.presign_get(&digest, now_ms(), 1).expect("presigned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        wharf_aws::testing::http_client().get(&short).send(),
    )
    .await
    .expect("bounded")
    .expect("GET")
    .status();
    assert_eq!(status, 403, "expired presigned URL");

    s.delete(&digest).await.expect("delete");
    assert_eq!(s.stat(&digest).await.expect("stat"), None);
    assert!(matches!(
        s.get(&digest, None).await.err(),
        Some(StoreError::NotFound)
    ));
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_digest_completes_in_place_without_a_copy() {
    let Some(srv) = server().await else { return };
    let counter = CallCounter::default();
    let s = store(&srv, Some(&counter), None).await;
    // 2 parts of 8 MiB and a 3 MiB last part (smaller than S3's minimum: allowed last).
    let blob = data(19 * MIB, 2);
    let digest = Digest::sha256_of(&blob);
    let mut up = record("u-mono", Some(digest.clone()));
    session(&s, &mut up, &chunks(&blob, &[MIB; 19]), true).await;
    let mut calls = counter.snapshot();
    assert!(
        keys(&s, "uploads/").await.is_empty(),
        "no staging object: {up:?}"
    );
    assert_eq!(
        s.stat(&digest).await.expect("stat"),
        None,
        "invisible until commit"
    );
    counter.reset();
    s.commit(&up, &digest).await.expect("commit");
    calls.extend(counter.snapshot());
    eprintln!("S3 calls for a 19 MiB monolithic upload with its digest declared: {calls:?}");
    assert_eq!(calls.get("S3.CopyObject"), None, "{calls:?}");
    assert_eq!(calls.get("S3.UploadPartCopy"), None, "{calls:?}");
    assert_eq!(calls.get("S3.UploadPart"), Some(&3), "{calls:?}");
    assert_eq!(
        calls.get("S3.ListObjectsV2"),
        None,
        "nothing to clean up: {calls:?}"
    );
    assert!(read(&s, &digest, None).await == blob);
    // A retried commit (the first one's metadata write failed) is fine.
    s.commit(&up, &digest).await.expect("commit again");
    // Another request may not continue a closed upload.
    assert!(matches!(
        s.writer(&up).await.err(),
        Some(StoreError::Other(_))
    ));
    // A small monolithic upload: one part, completed in place.
    counter.reset();
    let small = Bytes::from_static(b"{\"config\":true}");
    let small_digest = Digest::sha256_of(&small);
    let mut up2 = record("u-mono-small", Some(small_digest.clone()));
    session(&s, &mut up2, &[&small], true).await;
    s.commit(&up2, &small_digest).await.expect("commit");
    let calls = counter.snapshot();
    print_calls(
        "a 16-byte monolithic upload with its digest declared",
        &counter,
    );
    assert_eq!(counter.total(), 3, "create, part, complete: {calls:?}");
    assert!(read(&s, &small_digest, None).await == small);
    // A store refuses to commit an upload started for another digest under this one.
    let wrong = Digest::sha256_of(b"other");
    assert!(matches!(
        s.commit(&up, &wrong).await,
        Err(StoreError::Other(_))
    ));
    assert_eq!(s.stat(&wrong).await.expect("stat"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_empty_uploads_and_duplicates() {
    let Some(srv) = server().await else { return };
    let counter = CallCounter::default();
    let s = store(&srv, Some(&counter), None).await;

    // Under one part, over two requests: tails only, then one copy at commit.
    let blob = data(3 * MIB + 5, 3);
    let digest = Digest::sha256_of(&blob);
    let mut up = record("u-small", None);
    session(&s, &mut up, &[&blob[..1000]], true).await;
    session(&s, &mut up, &[&blob[1000..]], true).await;
    s.commit(&up, &digest).await.expect("commit");
    print_calls("a 3 MiB upload in 2 requests and its commit", &counter);
    assert_eq!(counter.snapshot().get("S3.CreateMultipartUpload"), None);
    assert!(read(&s, &digest, None).await == blob);
    assert!(keys(&s, "uploads/").await.is_empty());

    // The same content again (another repository pushing the same layer): no copy.
    counter.reset();
    let mut again = record("u-dup", None);
    session(&s, &mut again, &[&blob], true).await;
    s.commit(&again, &digest).await.expect("commit duplicate");
    assert_eq!(
        counter.snapshot().get("S3.CopyObject"),
        None,
        "{:?}",
        counter.snapshot()
    );
    assert!(keys(&s, "uploads/").await.is_empty());

    // The empty blob: no request wrote anything.
    let empty = Digest::sha256_of(b"");
    s.commit(&record("u-empty", None), &empty)
        .await
        .expect("commit empty");
    assert_eq!(s.stat(&empty).await.expect("stat"), Some(0));
    assert!(read(&s, &empty, None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_parts_tails_and_stray_multiparts() {
    let Some(srv) = server().await else { return };
    let s = store(&srv, None, None).await;
    let blob = data(13 * MIB, 4);
    let mut up = record("u-abort", None);
    session(&s, &mut up, &[&blob[..10 * MIB]], true).await;
    // A failed request that started a second multipart upload is never recorded…
    let mut stray = record("u-abort", None);
    let mut w = s.writer(&stray).await.expect("writer");
    w.write(Bytes::from(data(9 * MIB, 5))).await.expect("write");
    drop(w);
    stray.offset = 0;
    // The recorded request completed its own multipart upload; the failed one's is open.
    assert_eq!(open_multiparts(&srv), (1, 1));
    assert!(!keys(&s, "uploads/u-abort/").await.is_empty());
    // Abort deletes the recorded objects. (It aborts strays found with ListMultipartUploads,
    // which s3s-fs lacks; on S3 it removes them too, and the lifecycle rule is the net.)
    s.abort(&up).await.expect("abort");
    assert!(keys(&s, "uploads/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_use_upload_part_copy() {
    let Some(srv) = server().await else { return };
    let counter = CallCounter::default();
    // Pretend CopyObject stops at 6 MiB, so a 13 MiB blob is copied in 5 MiB parts.
    let s = store(
        &srv,
        Some(&counter),
        Some(|o| {
            o.max_single_copy = 6 * MIB as u64;
            o.copy_part_size = 5 * MIB as u64;
        }),
    )
    .await;
    let blob = data(13 * MIB + 1, 6);
    let digest = Digest::sha256_of(&blob);
    let mut up = record("u-big", None);
    session(&s, &mut up, &[&blob], true).await;
    s.commit(&up, &digest).await.expect("commit");
    let calls = counter.snapshot();
    assert_eq!(calls.get("S3.CopyObject"), None, "{calls:?}");
    // One request object of 13 MiB, copied in 5 MiB parts.
    assert_eq!(calls.get("S3.UploadPartCopy"), Some(&3), "{calls:?}");
    assert!(read(&s, &digest, None).await == blob);
    assert!(keys(&s, "uploads/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_named_by_meaning() {
    let Some(srv) = server().await else { return };
    let s = store(&srv, None, None).await;
    let d = Digest::sha256_of(b"nothing");
    assert_eq!(s.stat(&d).await.expect("stat"), None);
    assert!(matches!(
        s.get(&d, None).await.err(),
        Some(StoreError::NotFound)
    ));
    s.delete(&d).await.expect("deleting a missing blob is fine");
    // A state that disagrees with the record's offset is refused.
    let mut up = record("u-bad", None);
    session(&s, &mut up, &[b"abc"], true).await;
    up.offset = 2;
    assert!(matches!(
        s.writer(&up).await.err(),
        Some(StoreError::Other(_))
    ));
    // Bad credentials: refused, and not mistaken for a missing blob.
    let cfg = wharf_aws::static_config(
        Some(&srv.endpoint),
        testing::REGION,
        testing::ACCESS_KEY,
        "wrong-secret",
    );
    let mut o = S3Options::new(BUCKET);
    o.force_path_style = true;
    let bad = S3BlobStore::new(&cfg, o).await.expect("store");
    let e = bad.get(&d, None).await.err();
    assert!(matches!(e, Some(StoreError::Other(_))), "{e:?}");
    // Unreachable endpoint: Unavailable.
    let port = testing::free_port();
    let cfg = wharf_aws::static_config(
        Some(&format!("http://127.0.0.1:{port}")),
        testing::REGION,
        testing::ACCESS_KEY,
        testing::SECRET_KEY,
    );
    let mut o = S3Options::new(BUCKET);
    o.force_path_style = true;
    let down = S3BlobStore::new(&cfg, o).await.expect("store");
    let e = tokio::time::timeout(Duration::from_secs(60), down.stat(&d))
        .await
        .expect("bounded");
    assert!(matches!(e, Err(StoreError::Unavailable(_))), "{e:?}");
}

/// Two requests start from the same recorded state (a client retrying a PATCH whose first
/// attempt is still in flight). The one recorded first wins; the other finishes later and
/// loses the compare-and-set. The committed blob must hold exactly the winner's bytes.
async fn race(srv: &LocalServer, id: &str, len: usize) {
    let s = store(srv, None, None).await;
    let first = data(1000, 10);
    let mut up = record(id, None);
    session(&s, &mut up, &[&first], true).await;
    let (a, b) = (data(len, 11), data(len, 12));
    let mut late = s.writer(&up).await.expect("writer a");
    late.write(Bytes::copy_from_slice(&a[..len / 2]))
        .await
        .expect("write a");
    let mut won = up.clone();
    session(&s, &mut won, &[&b], true).await;
    late.write(Bytes::copy_from_slice(&a[len / 2..]))
        .await
        .expect("write a");
    let _lost_state = late.finish().await.expect("finish a");
    let mut expected = first.clone();
    expected.extend_from_slice(&b);
    let d = Digest::sha256_of(&expected);
    s.commit(&won, &d).await.expect("commit");
    assert!(
        read(&s, &d, None).await == expected,
        "the blob holds the winner's bytes only ({len} bytes raced)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_cannot_mix_bytes() {
    let Some(srv) = server().await else { return };
    race(&srv, "race-small", 3 * MIB).await;
    race(&srv, "race-large", 12 * MIB + 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_cannot_write_into_a_committed_blob() {
    let Some(srv) = server().await else { return };
    let s = store(&srv, None, None).await;
    // Another repository's blob, pushed before.
    let x = data(200_000, 13);
    let d = Digest::sha256_of(&x);
    let mut victim = record("victim", None);
    session(&s, &mut victim, &[&x], true).await;
    s.commit(&victim, &d).await.expect("commit victim");
    // An upload of the same content: one request still streaming garbage while another
    // sends the real bytes and the upload is committed (the blob exists: nothing copied).
    for len in [x.len(), 9 * MIB] {
        let mut up = record(&format!("inflight-{len}"), None);
        let mut held = s.writer(&up).await.expect("writer");
        held.write(Bytes::from(vec![b'Y'; len / 2]))
            .await
            .expect("write");
        session(&s, &mut up, &[&x], true).await;
        s.commit(&up, &d).await.expect("commit");
        held.write(Bytes::from(vec![b'Y'; len - len / 2]))
            .await
            .expect("late write");
        let _ = held.finish().await;
        assert!(
            read(&s, &d, None).await == x,
            "the committed blob is untouched"
        );
    }
}

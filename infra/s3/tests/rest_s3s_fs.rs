//! The S3 store over plain signed HTTP ([`RestApi`], the Worker's path, with reqwest
//! standing in for `fetch`) against s3s-fs, which checks every SigV4 signature. What it
//! writes is read back through the SDK store, as the Lambda serves what the Worker front
//! wrote.

use bytes::Bytes;
use futures_util::StreamExt;
use wharf_aws::testing::{self, HttpTransport, LocalServer};
use wharf_core::ports::{BlobStore, BlobWriter, UploadRecord};
use wharf_core::{Digest, StoreError};
use wharf_s3::{RestApi, S3BlobStore, S3Blobs, S3Options};

mod common;
use common::{data, record};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "wharf";

type Rest = S3Blobs<RestApi<HttpTransport>>;

async fn setup() -> Option<(LocalServer, S3BlobStore)> {
    let Some(s) = testing::s3s_fs() else {
        eprintln!("SKIP: s3s-fs is not available; the S3 REST test did not run");
        return None;
    };
    let mut o = S3Options::new(BUCKET);
    o.force_path_style = true;
    o.prefix = "p/".into();
    let sdk = S3BlobStore::new(&s.sdk_config(), o).await.expect("store");
    sdk.client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    Some((s, sdk))
}

/// A new REST store, as a new Worker request would build it.
fn rest(s: &LocalServer) -> Rest {
    let api = RestApi::new(s.rest_client("s3"), Some(&s.endpoint), BUCKET, true).expect("api");
    S3Blobs::from_api(api, "p/".into())
}

async fn request(s: &Rest, up: &mut UploadRecord, bytes: &[u8], chunk: usize, keep: bool) {
    let mut w = s.writer(up).await.expect("writer");
    for c in bytes.chunks(chunk) {
        w.write(Bytes::copy_from_slice(c)).await.expect("write");
    }
    let state = w.finish().await.expect("finish");
    if keep {
        up.offset += bytes.len() as u64;
        up.store_state = state;
    }
}

async fn read_sdk(s: &S3BlobStore, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    let mut st = s.get(d, None).await.expect("get");
    while let Some(c) = st.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

async fn staged(s: &S3BlobStore) -> usize {
    let out = s
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("p/uploads/")
        .send()
        .await
        .expect("list");
    out.contents().len()
}

/// The blob store conformance suite over signed HTTP (the Worker front's path), under a
/// key prefix; it leaves nothing staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_over_rest() {
    let Some((srv, sdk)) = setup().await else {
        return;
    };
    wharf_core::testing::blob_conformance(&rest(&srv)).await;
    assert_eq!(staged(&sdk).await, 0, "staging objects left");
}

/// The blob inventory suite over signed HTTP, under a key prefix: a blob outside the
/// prefix and a stray key inside it are not listed. The SDK store (same prefix) lists the
/// same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_conforms_over_rest() {
    use wharf_core::ports::BlobInventory;
    let Some((srv, sdk)) = setup().await else {
        return;
    };
    let outside = format!("blobs/sha256/{}", Digest::sha256_of(b"outside").hex());
    let client = sdk.client();
    for k in [outside.as_str(), "p/blobs/stray"] {
        client
            .put_object()
            .bucket(BUCKET)
            .key(k)
            .body(Bytes::from_static(b"x").into())
            .send()
            .await
            .expect("put");
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let s = rest(&srv);
    wharf_core::testing::inventory_conformance(&s, &now, 2000).await;
    assert!(s.list_blobs(None, 10).await.expect("list").is_empty());
    // One blob, listed alike over both paths.
    let mut up = record("inv-1", None);
    request(&s, &mut up, b"listed", 6, true).await;
    let d = Digest::sha256_of(b"listed");
    s.commit(&up, &d).await.expect("commit");
    let over_rest = s.list_blobs(None, 10).await.expect("list");
    assert_eq!(over_rest.len(), 1);
    assert_eq!((&over_rest[0].digest, over_rest[0].size), (&d, 6));
    assert_eq!(sdk.list_blobs(None, 10).await.expect("list"), over_rest);
    s.delete(&d).await.expect("delete");
    assert_eq!(staged(&sdk).await, 0, "staging objects left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_over_rest_is_served_by_the_sdk_store() {
    let Some((srv, sdk)) = setup().await else {
        return;
    };
    let blob = data(21 * MIB + 4321, 7);
    let digest = Digest::sha256_of(&blob);
    let mut up = record("rest-chunked", None);
    // Request 1: under a part, a small tail object (PutObject).
    let a = 3 * MIB;
    request(&rest(&srv), &mut up, &blob[..a], MIB, true).await;
    // Request 2: the tail is read back (GET with If-Match), then a multipart upload of its
    // own (CreateMultipartUpload, UploadPart, CompleteMultipartUpload).
    let b = a + 10 * MIB;
    request(&rest(&srv), &mut up, &blob[a..b], 3 * MIB + 17, true).await;
    // A request that fails to record changes nothing.
    let before = up.clone();
    request(&rest(&srv), &mut up, &data(6 * MIB, 3), MIB, false).await;
    assert_eq!(up, before);
    // Request 3: the rest, another object.
    request(&rest(&srv), &mut up, &blob[b..], 2 * MIB, true).await;
    assert_eq!(up.offset, blob.len() as u64);
    let s = rest(&srv);
    assert_eq!(s.stat(&digest).await.expect("stat"), None);
    // Commit: two objects, assembled with UploadPartCopy; staging is deleted.
    s.commit(&up, &digest).await.expect("commit");
    assert_eq!(
        s.stat(&digest).await.expect("stat"),
        Some(blob.len() as u64)
    );
    assert!(
        read_sdk(&sdk, &digest).await == blob,
        "the SDK store reads it"
    );
    assert_eq!(staged(&sdk).await, 0, "staging objects are gone");
    // Idempotent.
    s.commit(&up, &digest).await.expect("commit again");
    // A presigned GET from the REST store works too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let url = s.presign_get(&digest, now, 60).expect("presigned");
    let got = wharf_aws::testing::http_client()
        .get(&url)
        .send()
        .await
        .expect("GET");
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.expect("body") == blob);
    // Delete, then a GET says NotFound.
    s.delete(&digest).await.expect("delete");
    assert!(matches!(
        s.get(&digest, None).await.err(),
        Some(StoreError::NotFound)
    ));
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_declared_digest_and_abort_over_rest() {
    let Some((srv, sdk)) = setup().await else {
        return;
    };
    let s = rest(&srv);
    // One request, one object: CopyObject at commit.
    let small = data(2 * MIB + 5, 1);
    let d1 = Digest::sha256_of(&small);
    let mut up = record("rest-one", None);
    request(&s, &mut up, &small, 64 * 1024, true).await;
    s.commit(&up, &d1).await.expect("commit");
    assert!(read_sdk(&sdk, &d1).await == small);
    // Declared digest: written in place, commit completes it.
    let big = data(9 * MIB + 1, 2);
    let d2 = Digest::sha256_of(&big);
    let mut up = record("rest-direct", Some(d2.clone()));
    request(&s, &mut up, &big, MIB, true).await;
    s.commit(&up, &d2).await.expect("commit");
    assert!(read_sdk(&sdk, &d2).await == big);
    // Empty blob.
    let d0 = Digest::sha256_of(b"");
    s.commit(&record("rest-empty", None), &d0)
        .await
        .expect("commit empty");
    assert_eq!(sdk.stat(&d0).await.expect("stat"), Some(0));
    // Abort removes what an upload staged, and the blob never appears.
    let mut up = record("rest-abort", None);
    request(&s, &mut up, &data(7 * MIB, 4), MIB, true).await;
    assert!(staged(&sdk).await > 0);
    s.abort(&up).await.expect("abort");
    assert_eq!(staged(&sdk).await, 0);
    // A recorded object changed behind the record's back is not copied into a blob
    // (x-amz-copy-source-if-match; s3s-fs ignores If-Match on GET, so the read-back path
    // is not checked here).
    let tampered = data(MIB, 5);
    let mut up = record("rest-tamper", None);
    request(&s, &mut up, &tampered, MIB, true).await;
    let listed = sdk
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("p/uploads/rest-tamper/")
        .send()
        .await
        .expect("list");
    let obj = listed.contents()[0].key().expect("key").to_owned();
    sdk.client()
        .put_object()
        .bucket(BUCKET)
        .key(&obj)
        .body(Bytes::from(data(MIB, 6)).into())
        .send()
        .await
        .expect("overwrite");
    let d3 = Digest::sha256_of(&tampered);
    let e = s.commit(&up, &d3).await;
    assert!(e.is_err(), "commit of a changed object: {e:?}");
    assert_eq!(sdk.stat(&d3).await.expect("stat"), None, "no blob appeared");
    // Wrong credentials: refused by the server, not mistaken for a missing object.
    let creds = aws_credential_types::Credentials::new("wharftestkey", "wrong", None, None, "t");
    let client = wharf_sigv4::AwsClient::new(HttpTransport::default(), creds, "s3", "us-east-1");
    let bad = S3Blobs::from_api(
        RestApi::new(client, Some(&srv.endpoint), BUCKET, true).expect("api"),
        "p/".into(),
    );
    let e = bad.stat(&d0).await;
    assert!(matches!(e, Err(StoreError::Other(_))), "{e:?}");
    drop(srv);
}

//! The core's registry over both AWS adapters, blobs in s3s-fs and metadata in moto: a
//! chunked push, a monolithic push, a manifest by tag, and a blob GET answered with a
//! presigned redirect that a plain HTTP client follows. Every request gets a fresh
//! registry with fresh clients, as each Lambda invocation would; the handler future is
//! checked to be `Send` (what tokio and lambda_http need). Every call is counted by
//! operation: nothing issues a `Scan` (push, pull, listings, delete, every ability's
//! listing, the backfill), and a manifest GET by tag is one read and at most one write.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use wharf_aws::CallCounter;
use wharf_aws::testing::{self, LocalServer};
use wharf_core::ports::{
    Backfill, BlobRecords, Env, ManifestIndex, MetadataStore, Outbox, PullTimes, UsageCounters,
};
use wharf_core::{Config, Digest, Registry};
use wharf_dynamodb::{DynamoMetadata, DynamoOptions};
use wharf_s3::{S3BlobStore, S3Options};

const MIB: usize = 1024 * 1024;

struct RealEnv(AtomicU64);

impl Env for RealEnv {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        let n = self.0.fetch_add(1, Ordering::Relaxed) ^ self.now_ms().rotate_left(20);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (n >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(37);
        }
    }
}

struct Aws {
    s3: LocalServer,
    ddb: LocalServer,
    counter: CallCounter,
}

type Reg = Registry<S3BlobStore, DynamoMetadata, RealEnv>;

impl Aws {
    /// A registry as a fresh invocation builds it.
    async fn registry(&self) -> Reg {
        let mut o = S3Options::new("blobs");
        o.force_path_style = true;
        o.call_counter = Some(self.counter.clone());
        let blobs = S3BlobStore::new(&self.s3.sdk_config(), o)
            .await
            .expect("s3 store");
        let mut o = DynamoOptions::new("wharf");
        o.call_counter = Some(self.counter.clone());
        let meta = DynamoMetadata::new(&self.ddb.sdk_config(), o);
        Registry::new(blobs, meta, RealEnv(AtomicU64::new(1)), Config::default())
    }

    /// One request on a fresh registry; returns status, headers, body and AWS calls made.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> (StatusCode, http::HeaderMap, Bytes, BTreeMap<String, u64>) {
        let reg = self.registry().await;
        self.call_on(&reg, method, uri, headers, body).await
    }

    /// One request on `reg` (a warm instance's registry).
    async fn call_on(
        &self,
        reg: &Reg,
        method: Method,
        uri: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> (StatusCode, http::HeaderMap, Bytes, BTreeMap<String, u64>) {
        self.counter.reset();
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let resp = send(reg.handle(req)).await;
        let calls = self.counter.snapshot();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body, calls)
    }
}

/// Compiles only if the handler future is `Send`.
fn send<F: Future + Send>(f: F) -> F {
    f
}

const READS: [&str; 4] = [
    "DynamoDB.GetItem",
    "DynamoDB.BatchGetItem",
    "DynamoDB.Query",
    "DynamoDB.Scan",
];
const WRITES: [&str; 5] = [
    "DynamoDB.PutItem",
    "DynamoDB.UpdateItem",
    "DynamoDB.DeleteItem",
    "DynamoDB.TransactWriteItems",
    "DynamoDB.BatchWriteItem",
];

fn count(calls: &BTreeMap<String, u64>, ops: &[&str]) -> u64 {
    ops.iter().filter_map(|o| calls.get(*o)).sum()
}

fn add(total: &mut BTreeMap<String, u64>, calls: &BTreeMap<String, u64>) {
    for (k, v) in calls {
        *total.entry(k.clone()).or_default() += v;
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_through_the_core_on_s3_and_dynamodb() {
    let Some(s3) = testing::s3s_fs() else {
        eprintln!("SKIP: s3s-fs is not available; the registry-on-AWS test did not run");
        return;
    };
    let Some(ddb) = testing::moto() else {
        eprintln!("SKIP: moto_server is not available; the registry-on-AWS test did not run");
        return;
    };
    let aws = Aws {
        s3,
        ddb,
        counter: CallCounter::default(),
    };
    {
        let reg = aws.registry().await;
        reg.meta.create_table().await.expect("table");
        reg.blobs
            .client()
            .create_bucket()
            .bucket("blobs")
            .send()
            .await
            .expect("bucket");
    }
    let mut report: Vec<(&str, BTreeMap<String, u64>)> = Vec::new();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();

    // A chunked push: POST, two PATCHes (6 MiB, 5.5 MiB), PUT with the last 1 MiB.
    let layer = data(12 * MIB + 512 * 1024, 7);
    let digest = Digest::sha256_of(&layer);
    let (st, h, _, calls) = aws
        .call(
            Method::POST,
            "/v2/e2e/app/blobs/uploads/",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(h["oci-chunk-min-length"], "5242880");
    report.push(("POST upload", calls));
    let mut location = h[header::LOCATION].to_str().expect("location").to_owned();
    let mut at = 0;
    for (i, n) in [6 * MIB, 5 * MIB + 512 * 1024].into_iter().enumerate() {
        let (st, h, body, calls) = aws
            .call(
                Method::PATCH,
                &location,
                &[
                    ("content-range", format!("{at}-{}", at + n - 1)),
                    ("content-length", n.to_string()),
                ],
                Bytes::copy_from_slice(&layer[at..at + n]),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        at += n;
        assert_eq!(h[header::RANGE], format!("0-{}", at - 1));
        location = h[header::LOCATION].to_str().expect("location").to_owned();
        report.push((
            if i == 0 {
                "PATCH 6 MiB"
            } else {
                "PATCH 5.5 MiB"
            },
            calls,
        ));
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let (st, _, body, calls) = aws
        .call(
            Method::PUT,
            &format!("{location}{sep}digest={digest}"),
            &[("content-length", (layer.len() - at).to_string())],
            Bytes::copy_from_slice(&layer[at..]),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    report.push(("PUT last 1 MiB + commit (copy)", calls));

    // A monolithic push with the digest up front: completes in place.
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let config_digest = Digest::sha256_of(&config);
    let (st, _, _, calls) = aws
        .call(
            Method::POST,
            &format!("/v2/e2e/app/blobs/uploads/?digest={config_digest}"),
            &[("content-length", config.len().to_string())],
            config.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    report.push(("POST ?digest= (small monolithic)", calls));

    // The manifest, by tag.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}],
    })
    .to_string();
    let (st, _, body, calls) = aws
        .call(
            Method::PUT,
            "/v2/e2e/app/manifests/v1",
            &[(
                "content-type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            Bytes::from(manifest.clone()),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    report.push(("PUT manifest by tag", calls));
    let (st, _, body, calls) = aws
        .call(Method::GET, "/v2/e2e/app/manifests/v1", &[], Bytes::new())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, manifest.as_bytes());
    // The read, and one write: the pull time with the pull's audit record.
    assert_eq!(
        count(&calls, &READS),
        1,
        "GET by tag is one read: {calls:?}"
    );
    assert!(
        count(&calls, &WRITES) <= 1,
        "GET by tag is at most one write: {calls:?}"
    );
    assert_eq!(
        calls.get("DynamoDB.TransactWriteItems"),
        Some(&1),
        "the pull time and the audit record are written together: {calls:?}"
    );
    assert_eq!(
        calls.values().sum::<u64>(),
        count(&calls, &READS) + count(&calls, &WRITES)
    );
    report.push(("GET manifest by tag", calls));
    // A warm instance notes a manifest's pull time once an hour: its later pulls write only
    // their audit record, and a HEAD nothing.
    // (Twice at most: the three requests must fall within one clock hour.)
    let hour = || RealEnv(AtomicU64::new(0)).now_ms() / 3_600_000;
    let mut tries = 0;
    let (again, head) = loop {
        tries += 1;
        assert!(tries <= 3, "three runs each crossed an hour");
        let started = hour();
        let warm = aws.registry().await;
        let uri = "/v2/e2e/app/manifests/v1";
        let (st, _, _, first) = aws
            .call_on(&warm, Method::GET, uri, &[], Bytes::new())
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            first.get("DynamoDB.TransactWriteItems"),
            Some(&1),
            "{first:?}"
        );
        let (st, _, _, again) = aws
            .call_on(&warm, Method::GET, uri, &[], Bytes::new())
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _, _, head) = aws
            .call_on(&warm, Method::HEAD, uri, &[], Bytes::new())
            .await;
        assert_eq!(st, StatusCode::OK);
        if hour() == started {
            break (again, head);
        }
    };
    assert_eq!(
        (
            count(&again, &READS),
            count(&again, &WRITES),
            again.get("DynamoDB.PutItem")
        ),
        (1, 1, Some(&1)),
        "a pull within the hour noted: the read and the audit record: {again:?}"
    );
    assert_eq!(
        count(&head, &WRITES),
        0,
        "a HEAD within the hour noted: {head:?}"
    );
    report.push(("GET manifest by tag again, warm instance", again));
    report.push(("HEAD manifest by tag, warm instance", head));

    // The blob: a 307 to a presigned URL, computed without calling S3.
    let (st, h, _, calls) = aws
        .call(
            Method::GET,
            &format!("/v2/e2e/app/blobs/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(st, StatusCode::TEMPORARY_REDIRECT);
    assert!(!calls.keys().any(|k| k.starts_with("S3.")), "{calls:?}");
    report.push(("GET blob (307)", calls));
    let url = h[header::LOCATION].to_str().expect("location");
    let got = wharf_aws::testing::http_client()
        .get(url)
        .send()
        .await
        .expect("follow redirect");
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().await.expect("bytes") == layer,
        "the redirect serves the blob"
    );

    let (st, _, body, calls) = aws
        .call(Method::GET, "/v2/_catalog", &[], Bytes::new())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("e2e/app"));
    report.push(("GET _catalog", calls));
    let (st, _, body, calls) = aws
        .call(Method::GET, "/v2/e2e/app/tags/list", &[], Bytes::new())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("v1"));
    report.push(("GET tags/list", calls));

    // Every ability's reads, a pull noted with its audit record, then the delete and the
    // backfill: counted on one store.
    let reg = aws.registry().await;
    let m = &reg.meta;
    aws.counter.reset();
    let manifest_digest = Digest::sha256_of(manifest.as_bytes());
    let ms = m
        .list_manifests("e2e/app", None, 10)
        .await
        .expect("manifests");
    assert_eq!(ms.len(), 1);
    assert!(ms[0].pushed_ms.is_some());
    assert!(ms[0].pulled_ms.is_some(), "the GET by tag noted its pull");
    let tags = m.list_tag_entries("e2e/app", None, 10).await.expect("tags");
    assert_eq!(tags.len(), 1);
    let links = m.list_links("e2e/app", None, 10).await.expect("links");
    assert!(
        links.iter().all(|l| l.refs == 1 && l.linked_ms.is_some()),
        "{links:?}"
    );
    let with = m.repositories_with(&digest, None, 10).await.expect("with");
    assert_eq!(with, ["e2e/app"]);
    let rec = m
        .blob_record(&digest)
        .await
        .expect("record")
        .expect("there");
    assert_eq!((rec.links, rec.refs), (1, 1));
    m.unlinked_blobs(None, 100).await.expect("unlinked");
    let usage = m.project_usage("e2e").await.expect("usage");
    assert_eq!(usage.bytes, (layer.len() + config.len()) as u64);
    assert!(!m.outbox_after(None, 100).await.expect("outbox").is_empty());
    let reads = aws.counter.snapshot();
    report.push(("ability reads", reads));
    aws.counter.reset();
    m.note_pull(
        "e2e/app",
        &manifest_digest,
        // An hour after the GET's (a pull older than the one recorded is a second write).
        36_000_000_000_000,
        Some(("pull-1", b"{}")),
    )
    .await
    .expect("pull");
    let pull = aws.counter.snapshot();
    assert_eq!(
        (count(&pull, &READS), count(&pull, &WRITES)),
        (0, 1),
        "a pull noted with its audit record is one write: {pull:?}"
    );
    report.push(("note_pull with its audit record", pull));
    let (st, _, _, calls) = aws
        .call(
            Method::DELETE,
            &format!("/v2/e2e/app/manifests/{manifest_digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    report.push(("DELETE manifest", calls));
    aws.counter.reset();
    let rec = m
        .blob_record(&digest)
        .await
        .expect("record")
        .expect("there");
    assert_eq!(
        (rec.links, rec.refs),
        (1, 0),
        "the delete took its reference back"
    );
    assert!(
        m.list_tags("e2e/app", None, 10)
            .await
            .expect("tags")
            .is_some()
    );
    assert_eq!(
        m.schema_version().await.expect("version"),
        wharf_core::ports::SCHEMA_VERSION
    );
    m.backfill_step(100).await.expect("backfill");
    report.push(("record, tags, schema, backfill", aws.counter.snapshot()));
    for (_, calls) in &report {
        add(&mut total, calls);
    }

    for (what, calls) in &report {
        eprintln!(
            "AWS calls, {what}: {calls:?} (DynamoDB reads {}, writes {})",
            count(calls, &READS),
            count(calls, &WRITES)
        );
    }
    eprintln!("AWS calls, the whole run: {total:?}");
    assert!(
        !total.keys().any(|k| k.ends_with(".Scan")),
        "nothing scans: {total:?}"
    );
}

//! The DynamoDB metadata store against moto (DynamoDB, and S3 for large manifests), started
//! on a free port for each test and killed by its PID afterwards. It must pass the same
//! conformance suites as the embedded store.

use std::collections::BTreeSet;
use wharf_aws::CallCounter;
use wharf_aws::testing::{self, LocalServer};
use wharf_core::Reference;
use wharf_core::ports::{MetadataStore, UploadRecord};
use wharf_core::testing::{
    all_capabilities_conformance, document_conformance, metadata_conformance, test_manifest,
};
use wharf_core::{Digest, StoreError};
use wharf_dynamodb::{DynamoMetadata, DynamoOptions};

const BUCKET: &str = "wharf-manifests";

/// Starts moto, creates the table and the manifest bucket; or says why the test is skipped.
async fn setup(counter: Option<&CallCounter>) -> Option<(LocalServer, DynamoMetadata)> {
    let Some(srv) = testing::moto() else {
        eprintln!("SKIP: moto_server is not available; the DynamoDB adapter test did not run");
        return None;
    };
    let cfg = srv.sdk_config();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let mut o = DynamoOptions::new("wharf");
    o.manifest_bucket = Some(BUCKET.into());
    o.s3_force_path_style = true;
    o.call_counter = counter.cloned();
    let m = DynamoMetadata::new(&cfg, o);
    m.create_table().await.expect("create table");
    m.create_table().await.expect("create table is idempotent");
    Some((srv, m))
}

fn upload(id: &str, updated_ms: u64) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        repo: "r".into(),
        offset: 0,
        hash_state: vec![1, 2, 3],
        store_state: String::new(),
        digest: None,
        created_ms: updated_ms,
        updated_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    metadata_conformance(&m).await;
    document_conformance(&m).await;
}

/// Every optional ability's suite (index, blob records, conditional tags, usage, outbox),
/// on a fresh table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_conformance() {
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    all_capabilities_conformance(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_over_400_kb_go_to_s3_and_tag_reads_are_one_call() {
    let counter = CallCounter::default();
    let Some((srv, m)) = setup(Some(&counter)).await else {
        return;
    };
    let blobs: Vec<Digest> = (0..4000u32)
        .map(|i| Digest::sha256_of(&i.to_be_bytes()))
        .collect();
    let big = test_manifest(&blobs, None, None);
    assert!(big.bytes.len() > 400 * 1024, "{} bytes", big.bytes.len());
    m.put_manifest("big/repo", &big, &["v1"], 0)
        .await
        .expect("put large manifest");

    counter.reset();
    let by_tag = m
        .manifest("big/repo", &Reference::Tag("v1".into()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_tag.bytes, big.bytes);
    assert_eq!(by_tag.info, big.info);
    let calls = counter.snapshot();
    eprintln!("calls for a GET by tag of a large manifest: {calls:?}");
    assert_eq!(calls.get("DynamoDB.GetItem"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("S3.GetObject"), Some(&1), "{calls:?}");

    let by_digest = m
        .manifest("big/repo", &Reference::Digest(big.info.digest.clone()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_digest.bytes, big.bytes);

    // A small manifest by tag: exactly one DynamoDB read and nothing else.
    let small = test_manifest(&blobs[..2], None, None);
    m.put_manifest("big/repo", &small, &["small"], 0)
        .await
        .expect("put");
    counter.reset();
    let got = m
        .manifest("big/repo", &Reference::Tag("small".into()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.bytes, small.bytes);
    assert_eq!(counter.total(), 1, "{:?}", counter.snapshot());

    // Deleting the manifest removes its object too.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&srv.sdk_config())
            .force_path_style(true)
            .build(),
    );
    let objects = |s3: aws_sdk_s3::Client| async move {
        s3.list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list")
            .contents()
            .len()
    };
    assert_eq!(objects(s3.clone()).await, 1);
    assert!(
        m.delete_manifest("big/repo", &big.info.digest, 0)
            .await
            .expect("delete")
    );
    assert!(
        m.manifest("big/repo", &Reference::Tag("v1".into()))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(objects(s3).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_only_one_advances_the_upload() {
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    let up = upload("race", 1000);
    m.create_upload(&up).await.expect("create");
    assert!(matches!(
        m.create_upload(&up).await,
        Err(StoreError::Precondition(_))
    ));
    // Eight PATCHes read offset 0 and race to record their own next offset.
    let tasks: Vec<_> = (1..=8u64)
        .map(|i| {
            let m = m.clone();
            let next = UploadRecord {
                offset: i * 100,
                store_state: format!("writer-{i}"),
                updated_ms: 2000 + i,
                ..up.clone()
            };
            tokio::spawn(async move { (i, m.update_upload(&next, 0).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            (i, Ok(())) => winners.push(i),
            (_, Err(StoreError::Precondition(_))) => {}
            (i, Err(e)) => panic!("writer {i}: unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one PATCH advances: {winners:?}");
    let w = winners[0];
    let rec = m.upload("race").await.expect("get").expect("exists");
    assert_eq!(rec.offset, w * 100);
    assert_eq!(rec.store_state, format!("writer-{w}"));
    // An update of a forgotten upload is NotFound, not a lost race.
    m.delete_upload("race").await.expect("delete");
    assert!(matches!(
        m.update_upload(&rec, rec.offset).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_many_tags_repositories_and_stale_uploads() {
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    let d = |i: u32| Digest::sha256_of(&i.to_be_bytes());
    let base = test_manifest(&[d(1), d(2)], None, None);
    let sig = test_manifest(&[d(3)], Some(&base.info.digest), Some("application/x.sig"));
    m.put_manifest("p/app", &base, &[], 0).await.expect("put");
    m.put_manifest("p/app", &sig, &[], 0).await.expect("put");
    // 120 tags on one manifest: more than one transaction can delete at once.
    let mut tags = BTreeSet::new();
    for i in 0..120 {
        let t = format!("t{i:03}");
        m.put_manifest("p/app", &base, &[t.as_str()], 0)
            .await
            .expect("tag");
        tags.insert(t);
    }
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = m
            .list_tags("p/app", last.as_deref(), 7)
            .await
            .expect("tags")
            .expect("repo");
        seen.extend(page.items.iter().cloned());
        last = page.items.last().cloned();
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, tags.iter().cloned().collect::<Vec<_>>());
    assert!(
        m.delete_manifest("p/app", &base.info.digest, 0)
            .await
            .expect("delete")
    );
    let left = m
        .list_tags("p/app", None, 1000)
        .await
        .expect("tags")
        .expect("repo");
    assert!(left.items.is_empty(), "{left:?}");
    assert_eq!(
        m.missing_manifests(
            "p/app",
            &[base.info.digest.clone(), sig.info.digest.clone()]
        )
        .await
        .expect("missing"),
        vec![base.info.digest.clone()]
    );

    // 30 repositories, paged 4 at a time, in order, without a scan.
    let mut names = BTreeSet::from(["p/app".to_owned()]);
    for i in 0..30 {
        let r = format!("team{}/img{i}", i % 3);
        m.link_blob(&r, &d(1), 1, 0).await.expect("link");
        names.insert(r);
    }
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = m
            .list_repositories(last.as_deref(), 4)
            .await
            .expect("catalog");
        seen.extend(page.items.iter().cloned());
        last = page.items.last().cloned();
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, names.iter().cloned().collect::<Vec<_>>());

    // Missing blobs over more than one BatchGetItem (100 keys), with duplicates.
    let mut ask: Vec<Digest> = (0..150).map(d).collect();
    ask.push(d(1));
    let missing = m.missing_blobs("team0/img0", &ask).await.expect("missing");
    assert_eq!(missing.len(), 149, "all but d(1), twice");

    // Stale uploads across the index's partitions, with a limit.
    for i in 0..40u64 {
        m.create_upload(&upload(&format!("{i:032x}"), 1000 + i * 10))
            .await
            .expect("create");
    }
    let stale = m.stale_uploads(1200, 100).await.expect("stale");
    let ids: BTreeSet<String> = stale.iter().map(|u| u.id.clone()).collect();
    let want: BTreeSet<String> = (0..20u64).map(|i| format!("{i:032x}")).collect();
    assert_eq!(ids, want, "updated before 1200 ms");
    assert_eq!(m.stale_uploads(5000, 7).await.expect("stale").len(), 7);
    assert!(m.stale_uploads(1000, 100).await.expect("stale").is_empty());
}

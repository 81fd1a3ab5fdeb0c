//! The DynamoDB metadata store against moto (DynamoDB, and S3 for large manifests), started
//! on a free port for each test and killed by its PID afterwards. It must pass the same
//! conformance suites as the embedded store.

use std::collections::BTreeSet;
use wharf_aws::CallCounter;
use wharf_aws::testing::{self, LocalServer};
use wharf_core::Reference;
use wharf_core::ports::{MetadataStore, UploadRecord};
use wharf_core::testing::{
    all_capabilities_conformance, document_conformance, link, metadata_conformance, test_manifest,
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

/// Every optional ability's suite (link collection, index, blob records, conditional tags,
/// usage, outbox), on a fresh table.
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
    // Large by its annotations: over 400 KB, over a few blobs.
    let blobs: Vec<Digest> = (0..3u32)
        .map(|i| Digest::sha256_of(&i.to_be_bytes()))
        .collect();
    for b in &blobs {
        link(&m, "big/repo", b, 1, 0).await.expect("link");
    }
    let big = padded_manifest(&blobs, 450 * 1024);
    assert!(big.bytes.len() > 400 * 1024, "{} bytes", big.bytes.len());
    m.put_manifest("big/repo", &big, &["v1"], 0)
        .await
        .expect("put large manifest");

    counter.reset();
    let by_tag = m
        .manifest("big/repo", &Reference::parse("v1").expect("a tag"))
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
        .manifest("big/repo", &Reference::parse("small").expect("a tag"))
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
        m.manifest("big/repo", &Reference::parse("v1").expect("a tag"))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(objects(s3).await, 0);
}

/// Links `blobs` into `repo`, 4 at a time.
async fn link_all(m: &DynamoMetadata, repo: &str, blobs: &[Digest]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in blobs.chunks(blobs.len().div_ceil(4).max(1)) {
        let (m, repo, chunk) = (m.clone(), repo.to_owned(), chunk.to_vec());
        tasks.spawn(async move {
            for b in &chunk {
                link(&m, &repo, b, 1, 0).await.expect("link");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.expect("join");
    }
}

/// The `refs` of each of `repo`'s links, by digest.
async fn refs_of(m: &DynamoMetadata, repo: &str) -> std::collections::BTreeMap<Digest, u64> {
    use wharf_core::ports::ManifestIndex;
    let mut out = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        let page = m
            .list_links(repo, after.as_ref(), 500)
            .await
            .expect("links");
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        out.extend(page.into_iter().map(|l| (l.digest, l.refs)));
    }
    out
}

/// A manifest whose references do not fit in one transaction (Docker allows 127 layers) is
/// stored: its links' references are added first, in transactions of their own. Children
/// must be checked in the manifest's own transaction, so an index with too many for the room
/// its tags leave is refused, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_with_many_layers_and_tags_count_their_links() {
    use wharf_core::ports::{BlobRecords, LinkCollection};
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    let layers: Vec<Digest> = (0..130u32)
        .map(|i| Digest::sha256_of(format!("layer-{i}").as_bytes()))
        .collect();
    link_all(&m, "big/layers", &layers).await;
    let img = test_manifest(&layers, None, None);
    let tags: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    m.put_manifest("big/layers", &img, &tag_refs, 10)
        .await
        .expect("put 130 layers with 64 tags");
    for r in [
        Reference::parse("t0").expect("a tag"),
        Reference::parse("t63").expect("a tag"),
        Reference::Digest(img.info.digest.clone()),
    ] {
        let got = m
            .manifest("big/layers", &r)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.bytes, img.bytes);
    }
    let counted = refs_of(&m, "big/layers").await;
    assert_eq!(counted.len(), 130);
    assert!(counted.values().all(|r| *r == 1), "{counted:?}");
    assert!(
        m.unreferenced_links(None, 1000)
            .await
            .expect("list")
            .is_empty()
    );
    let r = m
        .blob_record(&layers[129])
        .await
        .expect("record")
        .expect("there");
    assert_eq!(r.refs, 1, "the records' counts too");
    // Pushed again (counted: its links are checked, not counted again).
    m.put_manifest("big/layers", &img, &["again"], 11)
        .await
        .expect("re-put");
    assert!(refs_of(&m, "big/layers").await.values().all(|r| *r == 1));
    // The blob DELETE API may not take a referenced layer.
    assert!(matches!(
        m.unlink_blob("big/layers", &layers[100], 12).await,
        Err(StoreError::Precondition(_))
    ));

    // An index: 64 tags leave room for 33 children.
    let children: Vec<Digest> = layers[..34]
        .iter()
        .map(|l| {
            let c = test_manifest(std::slice::from_ref(l), None, None);
            c.info.digest
        })
        .collect();
    let too_many = wharf_core::testing::test_index(&children);
    let e = m.put_manifest("big/layers", &too_many, &tag_refs, 13).await;
    assert!(matches!(&e, Err(StoreError::NotSupported(_))), "{e:?}");
    let t0 = m
        .manifest("big/layers", &Reference::parse("t0").expect("a tag"))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(t0.info.digest, img.info.digest, "nothing moved");

    // Deleted: every link unreferenced again.
    assert!(
        m.delete_manifest("big/layers", &img.info.digest, 20)
            .await
            .expect("delete")
    );
    assert!(refs_of(&m, "big/layers").await.values().all(|r| *r == 0));
    assert_eq!(
        m.unreferenced_links(None, 1000).await.expect("list").len(),
        130
    );
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
    for i in 1..=3 {
        link(&m, "p/app", &d(i), 1, 0).await.expect("link");
    }
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
        link(&m, &r, &d(1), 1, 0).await.expect("link");
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

/// Puts an item as the store of 727e058 and before wrote it (no records of any kind).
async fn put_raw(m: &DynamoMetadata, table: &str, item: wharf_dynamodb_items::Item) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let item = item
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                wharf_dynamodb_items::Attr::S(x) => AttributeValue::S(x),
                wharf_dynamodb_items::Attr::N(x) => AttributeValue::N(x.to_string()),
                wharf_dynamodb_items::Attr::B(x) => {
                    AttributeValue::B(aws_smithy_types::Blob::new(x))
                }
            };
            (k, v)
        })
        .collect();
    m.client()
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("raw put");
}

/// Old content: the catalog entry, link, manifest and tag items of the old format.
async fn write_old(
    m: &DynamoMetadata,
    table: &str,
    links: &[(&str, &Digest, u64)],
    manifests: &[(&str, &wharf_core::StoredManifest, &[&str])],
) {
    use wharf_dynamodb_items::{self as items, Attr};
    for (repo, d, size) in links {
        put_raw(m, table, items::catalog_item(repo)).await;
        put_raw(m, table, items::link_item(repo, d, *size)).await;
    }
    for (repo, sm, tags) in manifests {
        put_raw(m, table, items::catalog_item(repo)).await;
        let info = serde_json::to_string(&sm.info).expect("info");
        let mut payload = items::Item::new();
        payload.insert("info".into(), Attr::S(info));
        payload.insert("body".into(), Attr::B(sm.bytes.to_vec()));
        let mut item = items::key(items::repo_pk(repo), format!("MANIFEST#{}", sm.info.digest));
        item.extend(payload.clone());
        item.insert("rev".into(), Attr::N(1));
        put_raw(m, table, item).await;
        for t in *tags {
            let mut item = items::key(items::repo_pk(repo), format!("TAG#{t}"));
            item.insert("digest".into(), Attr::S(sm.info.digest.to_string()));
            item.extend(payload.clone());
            put_raw(m, table, item).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_rebuilds_what_live_writes_keep() {
    use wharf_core::ports::{
        Backfill, BackfillProgress, BlobRecords, LinkEntry, ManifestIndex, SCHEMA_VERSION,
        UsageCounters,
    };
    let Some((srv, live)) = setup(None).await else {
        return;
    };
    // The same content twice: by live writes in one table, in the old format in another.
    let old = DynamoMetadata::new(&srv.sdk_config(), DynamoOptions::new("old"));
    old.create_table().await.expect("create table");
    for k in ["SCHEMA", "BACKFILL"] {
        old.client()
            .delete_item()
            .table_name("old")
            .set_key(Some(
                [("pk", "META"), ("sk", k)]
                    .into_iter()
                    .map(|(a, v)| {
                        (
                            a.to_owned(),
                            aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned()),
                        )
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("forget the markers");
    }
    let (a, b, c) = (
        Digest::sha256_of(b"a"),
        Digest::sha256_of(b"b"),
        Digest::sha256_of(b"c"),
    );
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    let other = test_manifest(&[c.clone(), a.clone()], None, Some("application/x-other"));
    // Every blob of a manifest linked into its repository (a put refuses otherwise).
    let links: [(&str, &Digest, u64); 7] = [
        ("p/one", &a, 3),
        ("p/two", &a, 3),
        ("p/one", &b, 4),
        ("q/x", &c, 5),
        ("q/x", &a, 3),
        ("q/y", &c, 5),
        ("q/y", &a, 3),
    ];
    let manifests: [(&str, &wharf_core::StoredManifest, &[&str]); 3] = [
        ("p/one", &img, &["v1", "latest"]),
        ("q/x", &other, &["t"]),
        ("q/y", &other, &[]),
    ];
    for (i, (r, d, s)) in links.iter().enumerate() {
        link(&live, r, d, *s, 1000 + i as u64).await.expect("link");
    }
    for (r, sm, tags) in manifests {
        live.put_manifest(r, sm, tags, 2000).await.expect("put");
    }
    write_old(&old, "old", &links, &manifests).await;
    // The reference: the memory store through the same history.
    let mem = wharf_core::testing::MemoryMetadata::default();
    for (i, (r, d, s)) in links.iter().enumerate() {
        link(&mem, r, d, *s, 1000 + i as u64).await.expect("link");
    }
    for (r, sm, tags) in manifests {
        mem.put_manifest(r, sm, tags, 2000).await.expect("put");
    }
    mem.forget_ledger();
    link(&mem, "p/two", &a, 3, 5000).await.expect("relink");
    mem.put_manifest("q/y", &other, &[], 5001)
        .await
        .expect("re-put");
    while mem.backfill_step(2).await.expect("backfill") != BackfillProgress::Done {}
    assert_eq!(
        old.schema_version().await.expect("version"),
        1,
        "an old table"
    );
    assert_eq!(old.blob_record(&a).await.expect("record"), None);
    // Live traffic before the backfill reaches it: counted once, not twice.
    link(&old, "p/two", &a, 3, 5000).await.expect("relink");
    old.put_manifest("q/y", &other, &[], 5001)
        .await
        .expect("re-put");

    // Small steps: the walk resumes from its checkpoint many times.
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100, "the backfill does not finish");
        match old.backfill_step(2).await.expect("backfill") {
            BackfillProgress::Done => break,
            BackfillProgress::Running { checkpoint } => assert!(!checkpoint.is_empty()),
        }
    }
    assert!(steps > 4, "resumed from its checkpoint: {steps} steps");
    assert_eq!(old.schema_version().await.expect("version"), SCHEMA_VERSION);
    assert_eq!(
        old.backfill_step(2).await.expect("again"),
        BackfillProgress::Done
    );
    // Run again from the start (a lost checkpoint): idempotent.
    old.client()
        .put_item()
        .table_name("old")
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("META".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("BACKFILL".into()),
        )
        .send()
        .await
        .expect("reset checkpoint");
    while old.backfill_step(3).await.expect("again") != BackfillProgress::Done {}

    let refs = |v: Vec<LinkEntry>| {
        v.into_iter()
            .map(|l| (l.digest, l.size, l.refs))
            .collect::<Vec<_>>()
    };
    for d in [&a, &b, &c] {
        let (l, o, r) = (
            live.blob_record(d).await.expect("record").expect("live"),
            old.blob_record(d)
                .await
                .expect("record")
                .expect("backfilled"),
            mem.blob_record(d)
                .await
                .expect("record")
                .expect("reference"),
        );
        assert_eq!((o.size, o.links, o.refs), (r.size, r.links, r.refs), "{d}");
        // As in the reference, a manifest re-put before the backfill counted its
        // references only into records that existed then (c had none yet): `refs` may be
        // short by such re-puts; links never are.
        assert_eq!((o.size, o.links), (l.size, l.links), "{d}");
        assert!(o.refs <= l.refs, "{d}");
        assert_eq!(
            old.repositories_with(d, None, 10).await.expect("with"),
            live.repositories_with(d, None, 10).await.expect("with"),
        );
    }
    for sm in [&img, &other] {
        assert_eq!(
            old.repositories_with(&sm.info.digest, None, 10)
                .await
                .expect("with"),
            live.repositories_with(&sm.info.digest, None, 10)
                .await
                .expect("with"),
            "manifests in the reverse index"
        );
    }
    for p in ["p", "q"] {
        assert_eq!(
            old.project_usage(p).await.expect("usage"),
            live.project_usage(p).await.expect("usage"),
            "usage of {p}"
        );
        assert_eq!(
            old.project_usage(p).await.expect("usage"),
            mem.project_usage(p).await.expect("usage"),
        );
    }
    for r in ["p/one", "p/two", "q/x", "q/y"] {
        assert_eq!(
            refs(old.list_links(r, None, 10).await.expect("links")),
            refs(live.list_links(r, None, 10).await.expect("links")),
            "links of {r}"
        );
        // (Not compared with the reference here: its link entries live in its ledger,
        // so a re-put before the backfill finds none to count into; the table's link
        // items are the content itself, so it counts as a live write does.)
        let (o, l) = (
            old.list_manifests(r, None, 10).await.expect("manifests"),
            live.list_manifests(r, None, 10).await.expect("manifests"),
        );
        let facts = |v: &[wharf_core::ports::ManifestEntry]| {
            v.iter()
                .map(|e| {
                    (
                        e.digest.clone(),
                        e.media_type.clone(),
                        e.size,
                        e.subject.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(facts(&o), facts(&l), "manifests of {r}");
        let tags = old.list_tag_entries(r, None, 10).await.expect("tags");
        assert!(
            tags.iter().all(|t| t.pushed_ms.is_none()),
            "no push time is invented"
        );
    }
    let ms = old
        .list_manifests("p/one", None, 10)
        .await
        .expect("manifests");
    assert_eq!(
        (ms.len(), ms[0].pushed_ms),
        (1, None),
        "no push time is invented"
    );
    let qy = old
        .list_manifests("q/y", None, 10)
        .await
        .expect("manifests");
    assert_eq!(qy[0].pushed_ms, Some(5001), "the live re-put's time");
    // The unlinked work list is empty for both.
    let unlinked =
        |v: Vec<wharf_core::ports::BlobRecord>| v.into_iter().map(|r| r.digest).collect::<Vec<_>>();
    assert!(unlinked(old.unlinked_blobs(None, 100).await.expect("list")).is_empty());
    // The same unreferenced links as the live table and the reference.
    assert_eq!(unreferenced(&old).await, unreferenced(&live).await);
    assert_eq!(unreferenced(&old).await, unreferenced(&mem).await);
    assert!(!unreferenced(&old).await.is_empty());
}

/// The unreferenced links of `m`, without their times (old links have none).
async fn unreferenced<M: wharf_core::ports::LinkCollection>(m: &M) -> Vec<(String, Digest, u64)> {
    m.unreferenced_links(None, 1000)
        .await
        .expect("unreferenced links")
        .into_iter()
        .map(|l| (l.repo, l.digest, l.size))
        .collect()
}

/// An image manifest over `blobs` with an annotation of `pad` bytes.
fn padded_manifest(blobs: &[Digest], pad: usize) -> wharf_core::StoredManifest {
    use wharf_core::model::manifest;
    let desc = |d: &Digest| serde_json::json!({"mediaType": "application/octet-stream", "digest": d, "size": 1});
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": desc(&blobs[0]),
        "layers": blobs[1..].iter().map(desc).collect::<Vec<_>>(),
        "annotations": {"pad": "x".repeat(pad)},
    });
    let bytes = bytes::Bytes::from(doc.to_string());
    let digest = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, digest).expect("a valid manifest");
    wharf_core::StoredManifest { info, bytes }
}

/// A table backfilled under schema 2 (its links counted, none on the unreferenced-link
/// list) runs its backfill again, which lists exactly the links no manifest references.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_2_table_backfills_again_and_lists_its_unreferenced_links() {
    use wharf_core::ports::{Backfill, BackfillProgress, LinkEntry, ManifestIndex, SCHEMA_VERSION};
    let Some((_srv, m)) = setup(None).await else {
        return;
    };
    let (a, b, c) = (
        Digest::sha256_of(b"s2-a"),
        Digest::sha256_of(b"s2-b"),
        Digest::sha256_of(b"s2-c"),
    );
    for (r, d) in [("p/one", &a), ("p/one", &b), ("p/two", &a), ("p/two", &c)] {
        link(&m, r, d, 2, 1000).await.expect("link");
    }
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    m.put_manifest("p/one", &img, &["v1"], 2000)
        .await
        .expect("put");
    let want = unreferenced(&m).await;
    let mut expect = vec![
        ("p/two".to_owned(), a.clone(), 2),
        ("p/two".to_owned(), c.clone(), 2),
    ];
    expect.sort_by_key(|(r, d, _)| (r.clone(), d.to_string()));
    assert_eq!(want, expect, "what no manifest references");
    let before: Vec<Vec<LinkEntry>> = {
        let mut v = Vec::new();
        for r in ["p/one", "p/two"] {
            v.push(m.list_links(r, None, 10).await.expect("links"));
        }
        v
    };
    // As schema 2 left it: the link items without index keys, the version at 2.
    for r in ["p/one", "p/two"] {
        for l in m.list_links(r, None, 10).await.expect("links") {
            m.client()
                .update_item()
                .table_name("wharf")
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("REPO#{r}")),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("BLOB#{}", l.digest)),
                )
                .update_expression("REMOVE gsi1pk, gsi1sk")
                .send()
                .await
                .expect("unlist");
        }
    }
    m.client()
        .put_item()
        .table_name("wharf")
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("META".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("SCHEMA".into()),
        )
        .item(
            "version",
            aws_sdk_dynamodb::types::AttributeValue::N("2".into()),
        )
        .send()
        .await
        .expect("schema 2");
    assert!(unreferenced(&m).await.is_empty());
    assert_eq!(m.schema_version().await.expect("version"), 2);
    let mut steps = 0;
    while m.backfill_step(1).await.expect("backfill") != BackfillProgress::Done {
        steps += 1;
        assert!(steps < 50, "the backfill does not finish");
    }
    assert!(steps > 1, "ran again ({steps} steps)");
    assert_eq!(m.schema_version().await.expect("version"), SCHEMA_VERSION);
    assert_eq!(unreferenced(&m).await, want);
    for (r, was) in ["p/one", "p/two"].into_iter().zip(before) {
        assert_eq!(
            m.list_links(r, None, 10).await.expect("links"),
            was,
            "nothing counted twice in {r}"
        );
    }
}

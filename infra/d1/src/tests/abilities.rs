//! Host tests of the optional abilities (schemas 0002 and 0003): the core's suites, the
//! backfill of a database written by schema 0001, the upgrade of one at 0002, refused
//! writes, and the query plans.

use super::*;
use wharf_core::ports::*;
use wharf_core::testing::{MemoryMetadata, link, test_index};

const T0: u64 = 1_750_000_000_000;

fn d(n: &str) -> Digest {
    Digest::sha256_of(n.as_bytes())
}

#[test]
fn capabilities_conformance() {
    let (m, _) = store();
    block_on(wharf_core::testing::metadata_conformance(&m));
    block_on(wharf_core::testing::all_capabilities_conformance(&m));
    assert_eq!(
        block_on(m.schema_version()).expect("version"),
        SCHEMA_VERSION,
        "a database made empty has nothing to backfill"
    );
    assert_eq!(
        block_on(m.backfill_step(1)).expect("backfill"),
        BackfillProgress::Done
    );
}

/// Every row of every table, as text: what a refused write must leave as it was.
fn dump(db: &Lite) -> Vec<String> {
    let tables: Vec<String> = {
        let mut st =
            db.0.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .expect("tables");
        st.query_map([], |r| r.get(0))
            .expect("tables")
            .collect::<Result<_, _>>()
            .expect("tables")
    };
    let mut out = Vec::new();
    for t in tables {
        let mut st = db.0.prepare(&format!("SELECT * FROM {t}")).expect("rows");
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                let vals: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get::<_, Value>(i)))
                    .collect();
                Ok(format!("{t}: {}", vals.join(", ")))
            })
            .expect("rows");
        for row in rows {
            out.push(row.expect("row"));
        }
    }
    out.sort();
    out
}

#[test]
fn a_refused_write_leaves_nothing() {
    let (m, db) = store();
    let (gone, kept, loose) = (d("gone"), d("kept"), d("loose"));
    block_on(async {
        link(&m, "p/one", &kept, 1, T0).await.expect("link");
        link(&m, "p/other", &loose, 2, T0).await.expect("link");
        m.touch_blob(&gone, 5, T0).await.expect("touch");
        assert!(m.mark_blob(&gone, T0, T0 + 1).await.expect("mark"));
        assert!(
            m.begin_blob_delete(&gone, T0 + 1, T0 + 2)
                .await
                .expect("begin")
        );
        let img = test_manifest(std::slice::from_ref(&kept), None, None);
        m.put_manifest("p/one", &img, &["v1"], T0 + 3)
            .await
            .expect("put");
        let before = dump(&db);
        let calls = db.calls().len();
        let precondition = |r: Result<(), StoreError>| {
            assert!(matches!(r, Err(StoreError::Precondition(_))), "{r:?}");
        };
        precondition(m.link_blob("p/one", &gone, 5, T0 + 4).await);
        precondition(m.link_blob("p/new", &gone, 5, T0 + 4).await);
        precondition(m.touch_blob(&gone, 5, T0 + 4).await);
        // No record: the bytes may be gone.
        precondition(m.link_blob("p/one", &d("never"), 5, T0 + 4).await);
        // A blob of another repository, a child that is not there.
        let elsewhere = test_manifest(&[kept.clone(), loose.clone()], None, None);
        precondition(m.put_manifest("p/one", &elsewhere, &["v2"], T0 + 4).await);
        let index = test_index(&[img.info.digest.clone(), elsewhere.info.digest.clone()]);
        precondition(m.put_manifest("p/one", &index, &["multi"], T0 + 4).await);
        precondition(
            m.put_manifest_expecting("p/one", &index, &[("multi", TagExpect::Absent)], T0 + 4)
                .await,
        );
        let over = test_manifest(&[kept.clone(), gone.clone()], None, None);
        precondition(m.put_manifest("p/one", &over, &["v2"], T0 + 4).await);
        precondition(m.put_manifest("p/new", &over, &[], T0 + 4).await);
        let other = test_manifest(
            std::slice::from_ref(&kept),
            None,
            Some("application/x-other"),
        );
        precondition(
            m.put_manifest_expecting("p/one", &other, &[("v1", TagExpect::Absent)], T0 + 4)
                .await,
        );
        precondition(
            m.put_manifest_expecting(
                "p/one",
                &other,
                &[
                    ("v3", TagExpect::Any),
                    ("v1", TagExpect::At(other.info.digest.clone())),
                ],
                T0 + 4,
            )
            .await,
        );
        let wrong = m
            .delete_tag_expecting("p/one", "v1", &other.info.digest, T0 + 4)
            .await;
        assert!(
            matches!(wrong, Err(StoreError::Precondition(_))),
            "{wrong:?}"
        );
        assert_eq!(
            db.calls().len(),
            calls + 12,
            "each refused write was one batch"
        );
        assert_eq!(dump(&db), before, "no row written, moved or removed");
    });
}

/// `unlink_blob` of a link a manifest of its repository references (the blob DELETE API)
/// is refused in its one batch, changing no row, and names the blob and the repository; the
/// same blob's unreferenced link in another repository, or the link once the manifest is
/// deleted, goes as before.
#[test]
fn unlinking_a_referenced_blob_leaves_nothing() {
    let (m, db) = store();
    let (a, b) = (d("a"), d("b"));
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    block_on(async {
        link(&m, "p/one", &a, 3, T0).await.expect("link");
        link(&m, "p/one", &b, 4, T0).await.expect("link");
        link(&m, "p/two", &a, 3, T0).await.expect("link");
        m.put_manifest("p/one", &img, &["v1"], T0 + 1)
            .await
            .expect("put");
        let before = dump(&db);
        let calls = db.calls().len();
        for x in [&a, &b] {
            match m.unlink_blob("p/one", x, T0 + 2).await {
                Err(StoreError::Precondition(msg)) => {
                    assert!(msg.contains(&x.to_string()), "{msg}");
                    assert!(msg.contains("p/one"), "{msg}");
                }
                other => panic!("unlinking a referenced blob: {other:?}"),
            }
        }
        assert_eq!(
            db.calls().len(),
            calls + 2,
            "each refused unlink was one batch"
        );
        assert_eq!(dump(&db), before, "no row written, moved or removed");

        assert!(m.unlink_blob("p/two", &a, T0 + 2).await.expect("unlink"));
        assert!(
            m.delete_manifest("p/one", &img.info.digest, T0 + 3)
                .await
                .expect("delete")
        );
        assert!(m.unlink_blob("p/one", &a, T0 + 4).await.expect("unlink"));
        assert!(!m.unlink_blob("p/one", &a, T0 + 4).await.expect("gone"));
        let r = m.blob_record(&a).await.expect("record").expect("kept");
        assert_eq!((r.links, r.refs), (0, 0));
    });
}

/// The same content on three stores: `live` and `mem` (the reference) from their first
/// write, `old` written by schema 0001 (its rows copied as 0001 had them) and upgraded.
struct Three {
    live: D1Meta<Lite>,
    live_db: Lite,
    mem: MemoryMetadata,
    old: D1Meta<Lite>,
    old_db: Lite,
}

impl Three {
    fn new() -> Self {
        let (live, live_db) = store();
        let old_db = Lite::migrated(1);
        Self {
            live,
            live_db,
            mem: MemoryMetadata::default(),
            old: D1Meta::on(old_db.clone()),
            old_db,
        }
    }

    /// Copies `live`'s content into `old` as schema 0001 kept it (none of the newer
    /// columns and tables), then applies the later migrations: an upgraded database.
    fn upgrade_old(&self) {
        let tables = [
            ("repos", "name"),
            ("links", "repo, digest, size"),
            ("manifests", "repo, digest, subject, record, parts"),
            ("manifest_parts", "repo, digest, n, chunk"),
            ("tags", "repo, tag, digest"),
            ("referrers", "repo, subject, digest, descriptor"),
        ];
        for (t, cols) in tables {
            let mut st = self
                .live_db
                .0
                .prepare(&format!("SELECT {cols} FROM {t}"))
                .expect("select");
            let n = st.column_count();
            let rows: Vec<Vec<Value>> = st
                .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("rows");
            let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
            for row in rows {
                self.old_db
                    .0
                    .execute(
                        &format!("INSERT INTO {t} ({cols}) VALUES ({})", marks.join(", ")),
                        rusqlite::params_from_iter(row),
                    )
                    .expect("insert");
            }
        }
        self.old_db.migrate(1);
    }

    /// Links as the core does (the record touched first); on `old` only `old_too`.
    async fn link(&self, repo: &str, digest: &Digest, size: u64, at: u64, old_too: bool) {
        link(&self.live, repo, digest, size, at)
            .await
            .expect("link");
        link(&self.mem, repo, digest, size, at).await.expect("link");
        if old_too {
            link(&self.old, repo, digest, size, at).await.expect("link");
        }
    }

    async fn put(&self, repo: &str, m: &StoredManifest, tags: &[&str], at: u64, old_too: bool) {
        self.live
            .put_manifest(repo, m, tags, at)
            .await
            .expect("put");
        self.mem.put_manifest(repo, m, tags, at).await.expect("put");
        if old_too {
            self.old.put_manifest(repo, m, tags, at).await.expect("put");
        }
    }

    async fn unlink(&self, repo: &str, digest: &Digest, at: u64) {
        for r in [
            self.live.unlink_blob(repo, digest, at).await,
            self.mem.unlink_blob(repo, digest, at).await,
            self.old.unlink_blob(repo, digest, at).await,
        ] {
            assert!(r.expect("unlink"));
        }
    }
}

/// A manifest whose record goes to `manifest_parts` (over 1.9 MB).
fn big_manifest(blob: &Digest) -> StoredManifest {
    let base = test_manifest(std::slice::from_ref(blob), None, None);
    let mut v: serde_json::Value = serde_json::from_slice(&base.bytes).expect("json");
    v["annotations"] = serde_json::json!({ "pad": "p".repeat(2_500_000) });
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let digest = Digest::sha256_of(&bytes);
    let info = wharf_core::model::manifest::parse(&bytes, None, digest).expect("valid");
    StoredManifest { info, bytes }
}

async fn repo_blob_refs<M: ManifestIndex>(m: &M, repo: &str) -> Vec<(Digest, u64, u64)> {
    m.list_links(repo, None, 100)
        .await
        .expect("links")
        .into_iter()
        .map(|l| (l.digest, l.size, l.refs))
        .collect()
}

/// Content from before the upgrade gets, from a backfill resumed step by step (and once
/// restarted from scratch), beside live traffic, the records, usage, reverse index and
/// references that live writes made for the same content; nothing counts twice. The live
/// D1 store matches the memory reference on every field.
#[test]
fn the_backfill_rebuilds_what_live_writes_keep() {
    let s = Three::new();
    let [a, b, c, dd, e] = ["a", "b", "c", "d", "e"].map(d);
    let img = test_manifest(&[a.clone(), b.clone(), a.clone()], None, None);
    let sig = test_manifest(
        std::slice::from_ref(&a),
        Some(&img.info.digest),
        Some("application/x-sig"),
    );
    let big = big_manifest(&dd);
    let three = test_manifest(std::slice::from_ref(&e), None, None);
    block_on(async {
        // Before the upgrade: only `old`'s copy of the rows, none of its records.
        s.link("p/one", &a, 10, T0 + 1, false).await;
        s.link("p/two", &a, 10, T0 + 2, false).await;
        s.link("p/one", &b, 20, T0 + 3, false).await;
        s.link("q/one", &b, 20, T0 + 4, false).await;
        s.link("p/one", &c, 5, T0 + 5, false).await;
        s.link("p/two", &dd, 7, T0 + 6, false).await;
        s.put("p/one", &img, &["v1", "latest"], T0 + 7, false).await;
        s.put("p/one", &sig, &[], T0 + 8, false).await;
        s.put("p/two", &big, &["big"], T0 + 9, false).await;
        s.upgrade_old();
        assert_eq!(s.old.schema_version().await.expect("version"), 1);
        assert_eq!(s.old.blob_record(&a).await.expect("record"), None);
        assert!(
            s.old
                .list_manifests("p/one", None, 10)
                .await
                .expect("list")
                .is_empty()
        );

        // Live traffic before the backfill reaches it: old content re-linked, re-pushed,
        // unlinked; new content.
        s.link("p/two", &a, 10, T0 + 20, true).await;
        s.unlink("q/one", &b, T0 + 21).await;
        s.link("p/three", &e, 3, T0 + 22, true).await;
        s.put("p/three", &three, &["t"], T0 + 23, true).await;
        s.put("p/one", &sig, &["signed"], T0 + 24, true).await;

        let mut steps = 0;
        let mut seen = Vec::new();
        loop {
            match s.old.backfill_step(2).await.expect("step") {
                BackfillProgress::Done => break,
                BackfillProgress::Running { checkpoint } => seen.push(checkpoint),
            }
            steps += 1;
            if steps == 2 {
                // Traffic between steps, and a run that starts over (its checkpoint lost):
                // nothing is counted twice.
                s.link("p/one", &c, 5, T0 + 30, true).await;
                s.old_db
                    .0
                    .execute("DELETE FROM meta WHERE k = 'backfill'", [])
                    .expect("reset");
            }
            assert!(steps < 50, "the backfill ends");
        }
        assert!(steps >= 6, "resumed several times: {seen:?}");
        assert_eq!(
            s.old.schema_version().await.expect("version"),
            SCHEMA_VERSION
        );
        assert_eq!(
            s.old.backfill_step(2).await.expect("again"),
            BackfillProgress::Done
        );

        let digests = [&a, &b, &c, &dd, &e, &img.info.digest, &sig.info.digest];
        for x in digests {
            let counters = |r: Option<BlobRecord>| r.map(|r| (r.size, r.links, r.refs, r.state));
            let live = s.live.blob_record(x).await.expect("record");
            assert_eq!(live, s.mem.blob_record(x).await.expect("record"), "{x}");
            assert_eq!(
                counters(s.old.blob_record(x).await.expect("record")),
                counters(live),
                "{x}"
            );
            let with = s.live.repositories_with(x, None, 10).await.expect("with");
            assert_eq!(
                with,
                s.mem.repositories_with(x, None, 10).await.expect("with")
            );
            assert_eq!(
                with,
                s.old.repositories_with(x, None, 10).await.expect("with"),
                "{x}"
            );
        }
        for p in ["p", "q"] {
            let u = s.live.project_usage(p).await.expect("usage");
            assert_eq!(u, s.mem.project_usage(p).await.expect("usage"));
            assert_eq!(u, s.old.project_usage(p).await.expect("usage"), "{p}");
        }
        assert_eq!(
            s.live.project_usage("p").await.expect("usage"),
            Usage {
                bytes: 10 + 20 + 5 + 7 + 3,
                blobs: 5
            }
        );
        for repo in ["p/one", "p/two", "p/three", "q/one"] {
            let live = s.live.list_links(repo, None, 100).await.expect("links");
            assert_eq!(
                live,
                s.mem.list_links(repo, None, 100).await.expect("links")
            );
            assert_eq!(
                repo_blob_refs(&s.live, repo).await,
                repo_blob_refs(&s.old, repo).await,
                "{repo}"
            );
            let live = s.live.list_manifests(repo, None, 100).await.expect("list");
            assert_eq!(
                live,
                s.mem.list_manifests(repo, None, 100).await.expect("list")
            );
            let facts = |v: Vec<ManifestEntry>| {
                v.into_iter()
                    .map(|e| (e.digest, e.media_type, e.size, e.subject))
                    .collect::<Vec<_>>()
            };
            let old = s.old.list_manifests(repo, None, 100).await.expect("list");
            assert_eq!(facts(old.clone()), facts(live), "{repo}");
            for e in old {
                let repushed = [&three.info.digest, &sig.info.digest].contains(&&e.digest);
                assert_eq!(e.pushed_ms.is_some(), repushed, "no push time is invented");
            }
            let live = s
                .live
                .list_tag_entries(repo, None, 100)
                .await
                .expect("tags");
            assert_eq!(
                live,
                s.mem.list_tag_entries(repo, None, 100).await.expect("tags")
            );
            let names =
                |v: Vec<TagEntry>| v.into_iter().map(|t| (t.tag, t.digest)).collect::<Vec<_>>();
            let old = s.old.list_tag_entries(repo, None, 100).await.expect("tags");
            assert_eq!(names(old), names(live));
        }
        let unlinked = |v: Vec<BlobRecord>| v.into_iter().map(|r| r.digest).collect::<Vec<_>>();
        assert_eq!(
            unlinked(s.live.unlinked_blobs(None, 100).await.expect("list")),
            unlinked(s.old.unlinked_blobs(None, 100).await.expect("list"))
        );
        let outbox = s.live.outbox_after(None, 1000).await.expect("outbox");
        assert_eq!(
            outbox,
            s.mem.outbox_after(None, 1000).await.expect("outbox")
        );
    });
}

/// `EXPLAIN QUERY PLAN` of each statement: every table is read through a key or an index
/// range (SEARCH), never scanned, and nothing is sorted apart.
fn assert_no_scan(db: &Lite, stmts: &[Stmt]) {
    for s in stmts {
        let mut st =
            db.0.prepare(&format!("EXPLAIN QUERY PLAN {}", s.sql))
                .expect(&s.sql);
        for (i, p) in s.params.iter().enumerate() {
            let v = match p {
                Param::Text(t) => Value::Text(t.clone()),
                Param::Int(n) => Value::Integer(*n),
                Param::Null => Value::Null,
            };
            st.raw_bind_parameter(i + 1, v).expect("bind");
        }
        let mut rows = st.raw_query();
        while let Some(r) = rows.next().expect("plan") {
            let detail: String = r.get(3).expect("detail");
            let scans_table = detail.starts_with("SCAN ")
                && !detail.contains("VIRTUAL TABLE") // json_each over a bound array
                && !detail.contains("CONSTANT ROW");
            assert!(
                !scans_table && !detail.contains("TEMP B-TREE"),
                "{detail}: {}",
                s.sql
            );
        }
    }
}

#[test]
fn listings_and_writes_read_by_key_ranges() {
    let (_, db) = store();
    let x = d("x");
    let img = test_manifest(&[x.clone(), d("y")], Some(&d("s")), None);
    let key = Some(("p/one".to_owned(), x.to_string()));
    let mut stmts = vec![
        ledger::unlinked_blobs(Some(&x), 10).expect("stmt"),
        ledger::unlinked_blobs(None, 10).expect("stmt"),
        ledger::blob_record(&x).expect("stmt"),
        ledger::list_manifests("p/one", Some(&x), 10).expect("stmt"),
        ledger::list_tag_entries("p/one", None, 10).expect("stmt"),
        ledger::list_links("p/one", Some(&x), 10).expect("stmt"),
        ledger::repositories_with(&x, Some("p/one"), 10).expect("stmt"),
        ledger::outbox_after(Some("0001"), 10).expect("stmt"),
        ledger::outbox_trim("0001", 10).expect("stmt"),
        ledger::project_usage("p").expect("stmt"),
        ledger::old_links(&key, 10).expect("stmt"),
        ledger::old_links(&None, 10).expect("stmt"),
        ledger::old_manifests(&key, 10).expect("stmt"),
        ledger::mark_blob(&x, 1, 2).expect("stmt"),
        ledger::begin_blob_delete(&x, 1, 2).expect("stmt"),
        ledger::forget_blob(&x).expect("stmt"),
        ledger::note_pull("p/one", &x, 1).expect("stmt"),
    ];
    stmts.extend(ledger::link_blob("p/one", &x, 1, 2).expect("batch"));
    stmts.extend(ledger::remove_link("p/one", &x, ledger::Removal::Unlink, 2).expect("batch"));
    let collect = ledger::Removal::Collect { since: 1 };
    stmts.extend(ledger::remove_link("p/one", &x, collect, 2).expect("batch"));
    stmts.extend(ledger::touch_link("p/one", &x, 2).expect("batch"));
    let cursor = LinkCursor {
        repo: "p/one".into(),
        digest: x.clone(),
    };
    stmts.push(ledger::unreferenced_links(Some(&cursor), 10).expect("stmt"));
    stmts.push(ledger::unreferenced_links(None, 10).expect("stmt"));
    let tags = [("v1", TagExpect::Absent), ("v2", TagExpect::At(x.clone()))];
    stmts.extend(ledger::put_manifest("p/one", &img, &tags, 2).expect("batch"));
    let index = test_index(std::slice::from_ref(&img.info.digest));
    stmts.extend(ledger::put_manifest("p/one", &index, &[], 2).expect("batch"));
    stmts.extend(ledger::delete_manifest("p/one", &img.info.digest, 2).expect("batch"));
    stmts.extend(ledger::delete_tag("p/one", "v1", Some(&x), 2).expect("batch"));
    stmts.extend(ledger::clear_blob_mark(&x, 2).expect("batch"));
    stmts.extend(ledger::finish_backfill().expect("batch"));
    assert_no_scan(&db, &stmts);
}

/// The work list is read from the partial index alone: its size is the garbage's.
#[test]
fn unreferenced_links_read_the_partial_index() {
    let (_, db) = store();
    let cursor = LinkCursor {
        repo: "p/one".into(),
        digest: d("x"),
    };
    for after in [None, Some(&cursor)] {
        let s = ledger::unreferenced_links(after, 10).expect("stmt");
        let plan: Vec<String> = {
            let mut st =
                db.0.prepare(&format!("EXPLAIN QUERY PLAN {}", s.sql))
                    .expect("plan");
            let ps = s.params.iter().map(|p| match p {
                Param::Text(t) => Value::Text(t.clone()),
                Param::Int(n) => Value::Integer(*n),
                Param::Null => Value::Null,
            });
            st.query_map(rusqlite::params_from_iter(ps), |r| r.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan")
        };
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH links USING INDEX links_unreferenced"),
            "{plan:?}"
        );
    }
}

/// Replaces every row of `to` with those of `from`, in the columns `to`'s tables have (an
/// older schema's: what that schema's code would have written for the same content).
fn copy_rows(from: &Lite, to: &Lite) {
    let tables: Vec<String> = {
        let mut st =
            to.0.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .expect("tables");
        st.query_map([], |r| r.get(0))
            .expect("tables")
            .collect::<Result<_, _>>()
            .expect("tables")
    };
    for t in tables {
        let cols: Vec<String> = {
            let mut st =
                to.0.prepare(&format!("PRAGMA table_info({t})"))
                    .expect("cols");
            st.query_map([], |r| r.get(1))
                .expect("cols")
                .collect::<Result<_, _>>()
                .expect("cols")
        };
        let cols = cols.join(", ");
        to.0.execute(&format!("DELETE FROM {t}"), [])
            .expect("delete");
        let mut st = from
            .0
            .prepare(&format!("SELECT {cols} FROM {t}"))
            .expect("select");
        let n = st.column_count();
        let rows: Vec<Vec<Value>> = st
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        for row in rows {
            to.0.execute(
                &format!("INSERT INTO {t} ({cols}) VALUES ({})", marks.join(", ")),
                rusqlite::params_from_iter(row),
            )
            .expect("insert");
        }
    }
}

async fn unreferenced<M: LinkCollection>(m: &M) -> Vec<(String, Digest, u64, Option<u64>)> {
    m.unreferenced_links(None, 1000)
        .await
        .expect("unreferenced")
        .into_iter()
        .map(|l| (l.repo, l.digest, l.size, l.linked_ms))
        .collect()
}

/// A database whose backfill was done at schema 2 is at 3 once `0003` is applied, with
/// nothing to backfill: the partial index covers the links already there. One that the
/// previous code marked 2 after the migration (its backfill finished in between) is
/// marked 3 by one backfill step, which reads nothing else.
#[test]
fn a_database_done_at_schema_2_is_done_at_3() {
    let (live, live_db) = store();
    let [a, b, c] = ["a", "b", "c"].map(d);
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    block_on(async {
        for x in [&a, &b, &c] {
            link(&live, "p/one", x, 3, T0).await.expect("link");
        }
        link(&live, "p/two", &a, 3, T0 + 1).await.expect("link");
        live.put_manifest("p/one", &img, &["v1"], T0 + 2)
            .await
            .expect("put");
    });
    let old_db = Lite::migrated(2);
    copy_rows(&live_db, &old_db);
    old_db
        .0
        .execute("UPDATE meta SET n = 2 WHERE k = 'schema'", [])
        .expect("at 2");
    let old = D1Meta::on(old_db.clone());
    block_on(async {
        assert_eq!(old.schema_version().await.expect("version"), 2);
        old_db.migrate(2);
        assert_eq!(old.schema_version().await.expect("version"), SCHEMA_VERSION);
        let calls = old_db.calls().len();
        assert_eq!(
            old.backfill_step(1).await.expect("step"),
            BackfillProgress::Done
        );
        assert_eq!(
            old_db.calls()[calls..],
            [1],
            "nothing to backfill: one read"
        );
        assert_eq!(dump(&old_db), dump(&live_db), "the same rows as made at 3");
        assert_eq!(
            unreferenced(&old).await,
            vec![
                ("p/one".to_owned(), c.clone(), 3, Some(T0)),
                ("p/two".to_owned(), a.clone(), 3, Some(T0 + 1)),
            ]
        );

        old_db
            .0
            .execute("UPDATE meta SET n = 2 WHERE k = 'schema'", [])
            .expect("marked 2 again");
        assert_eq!(old.schema_version().await.expect("version"), 2);
        let calls = old_db.calls().len();
        assert_eq!(
            old.backfill_step(1).await.expect("step"),
            BackfillProgress::Done
        );
        assert_eq!(old_db.calls()[calls..], [1, 2], "a read, and the mark");
        assert_eq!(old.schema_version().await.expect("version"), SCHEMA_VERSION);
        assert!(
            old.collect_link("p/one", &c, T0, T0 + 3)
                .await
                .expect("collect")
        );
    });
}

/// `collect_link` is `unlink_blob` on condition: refused, it changes no row; done, it
/// leaves every row as `unlink_blob` leaves them (records, reverse index, usage, outbox),
/// for a link from before link times too (no time: older than any cutoff).
#[test]
fn collect_link_is_unlink_blob_on_condition() {
    let (one, one_db) = store();
    let (two, two_db) = store();
    let [a, b, c] = ["a", "b", "c"].map(d);
    let img = test_manifest(std::slice::from_ref(&a), None, None);
    block_on(async {
        for m in [&one, &two] {
            link(m, "p/one", &a, 3, T0).await.expect("link");
            link(m, "p/one", &b, 4, T0).await.expect("link");
            link(m, "p/two", &b, 4, T0).await.expect("link");
            link(m, "p/one", &c, 5, T0 + 10 * 60_000)
                .await
                .expect("link");
            m.put_manifest("p/one", &img, &["v1"], T0 + 1)
                .await
                .expect("put");
        }
        for db in [&one_db, &two_db] {
            db.0.execute("UPDATE links SET linked_ms = NULL WHERE repo = 'p/two'", [])
                .expect("a link from before link times");
        }
        let before = dump(&one_db);
        let calls = one_db.calls().len();
        let late = T0 + 20 * 60_000;
        assert!(
            !one.collect_link("p/one", &a, late, late)
                .await
                .expect("referenced")
        );
        assert!(
            !one.collect_link("p/one", &c, T0, late)
                .await
                .expect("touched since")
        );
        assert!(
            !one.collect_link("p/none", &c, late, late)
                .await
                .expect("no link")
        );
        assert_eq!(one_db.calls().len(), calls + 3, "one batch each");
        assert_eq!(dump(&one_db), before, "a refused collection writes nothing");

        for (repo, x, since) in [("p/one", &b, T0), ("p/two", &b, 0), ("p/one", &c, late)] {
            assert!(
                one.collect_link(repo, x, since, late)
                    .await
                    .expect("collect")
            );
            assert!(two.unlink_blob(repo, x, late).await.expect("unlink"));
            assert_eq!(dump(&one_db), dump(&two_db), "{repo} {x}");
        }
        let r = one.blob_record(&b).await.expect("record").expect("kept");
        assert_eq!(r.links, 0);
        let unlinked = one.unlinked_blobs(None, 10).await.expect("unlinked");
        assert!(unlinked.iter().any(|r| r.digest == b), "{unlinked:?}");
        assert_eq!(one.project_usage("p").await.expect("usage").bytes, 3);
    });
}

#[test]
fn named_parameters_are_numbered_in_order_of_use() {
    let one = Param::Text("1".into());
    let two = Param::Int(2);
    let s = ledger::named(
        "SELECT :b, ':a', :a, :b, :a_1 FROM t WHERE x = ':no'",
        &[("a", &one), ("b", &two), ("a_1", &Param::Null)],
    )
    .expect("named");
    assert_eq!(s.sql, "SELECT ?1, ':a', ?2, ?1, ?3 FROM t WHERE x = ':no'");
    assert_eq!(s.params, [two, one, Param::Null]);
    assert!(ledger::named("SELECT :missing", &[]).is_err());
}

#[test]
fn backfill_checkpoints_round_trip() {
    use ledger::Phase;
    let key = Some(("a/b".to_owned(), d("x").to_string()));
    for p in [
        Phase::Links(None),
        Phase::Links(key.clone()),
        Phase::Manifests(None),
        Phase::Manifests(key),
    ] {
        assert_eq!(Phase::parse(Some(&p.checkpoint())).expect("parse"), p);
    }
    assert_eq!(Phase::parse(None).expect("start"), Phase::Links(None));
    for bad in ["", "links", "other|", "links|a"] {
        assert!(Phase::parse(Some(bad)).is_err(), "{bad}");
    }
}

//! Host tests: the store's statements on real SQLite (what D1 runs), with D1's limits
//! checked on every statement, and the core's conformance suites on top.

use super::*;
use bytes::Bytes;
use futures_executor::block_on;
use rusqlite::types::{Value, ValueRef};
use wharf_core::testing::{MemoryDocs, test_manifest};

mod abilities;
mod upgrade;

/// [`Db`] on an in-memory SQLite database with [`MIGRATIONS`] applied. Each `run` is one
/// transaction, like a D1 batch; every statement must bind exactly its parameters, at most
/// 100, in at most 100 KB of SQL (D1's limits).
#[derive(Clone)]
struct Lite(Rc<rusqlite::Connection>, Rc<RefCell<Vec<usize>>>);

impl Lite {
    fn new() -> Self {
        Self::migrated(MIGRATIONS.len())
    }

    /// A database with the first `n` migrations applied (`migrate` applies the rest).
    fn migrated(n: usize) -> Self {
        let c = rusqlite::Connection::open_in_memory().expect("sqlite");
        for (name, sql) in &MIGRATIONS[..n] {
            c.execute_batch(sql).expect(name);
        }
        // D1's largest string or row.
        c.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 2_000_000)
            .expect("limit");
        Self(Rc::new(c), Rc::default())
    }

    /// A copy, in memory, of the database in file `path` (no migration applied).
    fn copy_of(path: &std::path::Path) -> Self {
        let file =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the database");
        let mut c = rusqlite::Connection::open_in_memory().expect("sqlite");
        rusqlite::backup::Backup::new(&file, &mut c)
            .and_then(|b| b.run_to_completion(64, std::time::Duration::ZERO, None))
            .expect("copy the database");
        c.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 2_000_000)
            .expect("limit");
        Self(Rc::new(c), Rc::default())
    }

    /// Applies migrations `from..` (an upgrade).
    fn migrate(&self, from: usize) {
        for (name, sql) in &MIGRATIONS[from..] {
            self.0.execute_batch(sql).expect(name);
        }
    }

    /// Statements per `run` so far.
    fn calls(&self) -> Vec<usize> {
        self.1.borrow().clone()
    }
}

fn lite_err(e: rusqlite::Error) -> StoreError {
    StoreError::Other(e.to_string())
}

impl Db for Lite {
    async fn run(&self, stmts: Vec<Stmt>) -> Result<Vec<Outcome>, StoreError> {
        self.1.borrow_mut().push(stmts.len());
        let tx = self.0.unchecked_transaction().map_err(lite_err)?;
        let mut out = Vec::new();
        for s in &stmts {
            assert!(
                s.sql.len() <= 100_000,
                "statement over 100 KB: {}",
                s.sql.len()
            );
            assert!(
                s.params.len() <= sql::MAX_PARAMS,
                "{} parameters",
                s.params.len()
            );
            let mut st = tx.prepare(&s.sql).map_err(lite_err)?;
            assert_eq!(st.parameter_count(), s.params.len(), "{}", s.sql);
            for (i, p) in s.params.iter().enumerate() {
                let v = match p {
                    Param::Text(t) => Value::Text(t.clone()),
                    Param::Int(n) => Value::Integer(*n),
                    Param::Null => Value::Null,
                };
                st.raw_bind_parameter(i + 1, v).map_err(lite_err)?;
            }
            if st.column_count() == 0 {
                let changes = st.raw_execute().map_err(lite_err)?;
                out.push(Outcome {
                    rows: Vec::new(),
                    changes: changes as u64,
                });
                continue;
            }
            let names: Vec<String> = st.column_names().iter().map(|n| n.to_string()).collect();
            let mut rows = st.raw_query();
            let mut o = Outcome::default();
            while let Some(r) = rows.next().map_err(lite_err)? {
                let mut row = Row::new();
                for (i, name) in names.iter().enumerate() {
                    let v = match r.get_ref(i).map_err(lite_err)? {
                        ValueRef::Null => serde_json::Value::Null,
                        ValueRef::Integer(n) => n.into(),
                        ValueRef::Real(f) => f.into(),
                        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                        ValueRef::Blob(_) => panic!("the schema stores no blobs"),
                    };
                    row.insert(name.clone(), v);
                }
                o.rows.push(row);
            }
            out.push(o);
        }
        tx.commit().map_err(lite_err)?;
        Ok(out)
    }
}

fn store() -> (D1Meta<Lite>, Lite) {
    let db = Lite::new();
    (D1Meta::on(db.clone()), db)
}

#[test]
fn conformance() {
    let (m, _) = store();
    block_on(wharf_core::testing::metadata_conformance(&m));
    block_on(wharf_core::testing::document_conformance(&m));
}

/// The tests' Miniflare runner splits each migration at `;` after dropping comment lines
/// (tests/e2e/worker_serve.mjs): every piece must be one whole statement, and applied in
/// order they make the schema. Every file of the migrations directory is in [`MIGRATIONS`].
#[test]
fn migrations_split_into_statements() {
    let c = rusqlite::Connection::open_in_memory().expect("sqlite");
    let mut counts = Vec::new();
    for (name, sql) in MIGRATIONS {
        let statements: Vec<String> = sql
            .lines()
            .filter(|l| !l.trim().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for s in &statements {
            let known = [
                "CREATE TABLE ",
                "CREATE INDEX ",
                "ALTER TABLE ",
                "INSERT INTO ",
                "UPDATE ",
            ];
            assert!(known.iter().any(|k| s.starts_with(k)), "{name}: {s}");
            c.execute(s, []).expect(s);
        }
        counts.push(statements.len());
    }
    assert_eq!(counts, [10, 17, 4]);
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../functions/worker/migrations"
    );
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("migrations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let names: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
    assert_eq!(files, names);
}

#[test]
fn missing_digests_in_chunks_of_99() {
    let (m, db) = store();
    let d = |i: u32| Digest::sha256_of(&i.to_be_bytes());
    for i in (0..250).step_by(3) {
        block_on(wharf_core::testing::link(&m, "r", &d(i), 1, 0)).expect("link");
    }
    let mut asked: Vec<Digest> = (0..250).map(d).collect();
    asked.push(d(1)); // duplicates count once in the query, and stay in the answer
    asked.push(d(3));
    let before = db.calls().len();
    let missing = block_on(m.missing_blobs("r", &asked)).expect("missing");
    assert_eq!(db.calls()[before..], [3], "one batch of three IN queries");
    let want: Vec<Digest> = asked
        .iter()
        .filter(|x| (0..250).step_by(3).all(|i| d(i) != **x))
        .cloned()
        .collect();
    assert_eq!(missing, want);
    assert_eq!(
        block_on(m.missing_blobs("r", &[])).expect("missing"),
        vec![]
    );
    assert_eq!(db.calls().len(), before + 1, "nothing asked, no call");
    assert_eq!(
        block_on(m.missing_manifests("r", &asked[..3])).expect("missing"),
        asked[..3].to_vec()
    );
}

/// Manifests up to the core's 4 MiB, whose annotations are in their info as well (the
/// protocol suite's case: an 8 MiB record), go to `manifest_parts`; characters of several
/// bytes may fall on the cuts. The test database refuses rows over 2 MB, as D1 does.
#[test]
fn large_manifests_in_parts() {
    let (m, db) = store();
    block_on(wharf_core::testing::link(
        &m,
        "r",
        &Digest::sha256_of(b"a"),
        1,
        0,
    ))
    .expect("link");
    let base = test_manifest(&[Digest::sha256_of(b"a")], None, None);
    let padded = |fill: &str, total: usize| {
        let mut v: serde_json::Value = serde_json::from_slice(&base.bytes).expect("json");
        v["annotations"] = serde_json::json!({"pad": ""});
        let len = serde_json::to_vec(&v).expect("json").len();
        v["annotations"]["pad"] = fill.repeat((total - len) / fill.len()).into();
        let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
        let digest = Digest::sha256_of(&bytes);
        let info = wharf_core::model::manifest::parse(&bytes, None, digest).expect("valid");
        StoredManifest { info, bytes }
    };
    let parts = |d: &Digest| -> i64 {
        db.0.query_row(
            "SELECT count(*) FROM manifest_parts WHERE digest = ?1",
            [d.to_string()],
            |r| r.get(0),
        )
        .expect("count")
    };
    let cases = [
        (padded("p", 4 << 20), 5),
        (padded("é", 3 << 20), 4),
        (padded("€😀", 1_000_000), 2),
        (padded("p", 900_000), 0),
        (base.clone(), 0),
    ];
    for (big, want_parts) in &cases {
        block_on(m.put_manifest("r", big, &["big"], 0)).expect("put");
        block_on(m.put_manifest("r", big, &[], 0)).expect("put again");
        assert_eq!(
            parts(&big.info.digest),
            *want_parts,
            "{} bytes",
            big.bytes.len()
        );
        for r in [
            Reference::parse("big").expect("a tag"),
            Reference::Digest(big.info.digest.clone()),
        ] {
            let back = block_on(m.manifest("r", &r)).expect("get").expect("found");
            assert_eq!(back.bytes, big.bytes);
            assert_eq!(back.info, big.info);
        }
    }
    // The row limit is real here: a value over 2 MB is refused, as D1 refuses it.
    let over = block_on(m.put_doc("k", "big", "x".repeat(2_000_001).as_bytes(), false));
    assert!(over.is_err(), "{over:?}");
    for (big, _) in &cases {
        assert!(block_on(m.delete_manifest("r", &big.info.digest, 0)).expect("delete"));
        assert_eq!(parts(&big.info.digest), 0);
        let gone = block_on(m.manifest("r", &Reference::Digest(big.info.digest.clone())));
        assert!(gone.expect("get").is_none());
    }
}

#[test]
fn manifests_and_documents_must_be_text() {
    let (m, _) = store();
    let base = test_manifest(&[Digest::sha256_of(b"a")], None, None);
    let binary = StoredManifest {
        info: base.info.clone(),
        bytes: Bytes::from_static(b"\xff\xfe{}"),
    };
    let refused = block_on(m.put_manifest("r", &binary, &[], 0));
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
    let refused = block_on(m.put_doc("user", "x", b"\xff", false));
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
}

#[test]
fn text_splits_at_character_boundaries() {
    let s = "aé€😀".repeat(1000);
    for max in [4, 5, 7, 100, 1 << 20] {
        let pieces = sql::split_text(&s, max);
        assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= max));
        assert_eq!(pieces.concat(), s);
    }
    assert!(sql::split_text("", 10).is_empty());
}

#[test]
fn parts_read_after_a_delete_are_none_and_gaps_an_error() {
    let row = |chunk: &str| {
        let mut r = Row::new();
        r.insert("chunk".into(), chunk.into());
        r
    };
    let none = Outcome::default();
    assert!(sql::decode_parts(&none, 2).expect("gone").is_none());
    let one = Outcome {
        rows: vec![row("{}")],
        changes: 0,
    };
    assert!(sql::decode_parts(&one, 2).is_err());
}

#[test]
fn upload_compare_and_set() {
    let (m, db) = store();
    let up = UploadRecord {
        id: "u".into(),
        repo: "r".into(),
        offset: 0,
        hash_state: vec![7; 40],
        store_state: "{}".into(),
        digest: Some(Digest::sha256_of(b"x")),
        created_ms: 1,
        updated_ms: 1,
    };
    let missing = block_on(m.update_upload(&up, 0));
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    block_on(m.create_upload(&up)).expect("create");
    let again = block_on(m.create_upload(&up));
    assert!(
        matches!(again, Err(StoreError::Precondition(_))),
        "{again:?}"
    );
    let next = UploadRecord {
        offset: 10,
        updated_ms: 5,
        ..up.clone()
    };
    let before = db.calls().len();
    block_on(m.update_upload(&next, 0)).expect("update");
    assert_eq!(db.calls()[before..], [2], "one batch");
    let lost = block_on(m.update_upload(&next, 0));
    assert!(
        matches!(&lost, Err(StoreError::Precondition(msg)) if msg.contains("at 10")),
        "{lost:?}"
    );
    assert_eq!(block_on(m.upload("u")).expect("get"), Some(next));
    assert!(block_on(m.stale_uploads(10, 0)).expect("stale").is_empty());
    let huge = UploadRecord {
        offset: 1 << 53,
        ..up
    };
    assert!(matches!(
        block_on(m.update_upload(&huge, 10)),
        Err(StoreError::Other(_))
    ));
}

/// `list_docs` agrees with the memory reference on awkward ids and prefixes: LIKE
/// metacharacters, a prefix that is a whole id, non-ASCII, `after` on either side.
#[test]
fn list_docs_matches_the_reference() {
    let (m, _) = store();
    let reference = MemoryDocs::default();
    let ids = [
        "a",
        "a%",
        "a%b",
        "a_b",
        "ab",
        "a/b",
        "a/c",
        "a/c/d",
        "b",
        "é",
        "éa",
        "éé",
        "\u{D7FF}x",
        "\u{E000}",
        "\u{10FFFF}",
        "\u{10FFFF}a",
        "zz",
    ];
    for id in ids {
        block_on(m.put_doc("k", id, id.as_bytes(), false)).expect("put");
        block_on(reference.put_doc("k", id, id.as_bytes(), false)).expect("put");
    }
    block_on(m.put_doc("other", "a", b"x", false)).expect("put");
    let prefixes = [
        "",
        "a",
        "a%",
        "a_",
        "a/",
        "a/c",
        "é",
        "\u{D7FF}",
        "\u{10FFFF}",
        "zzz",
    ];
    let afters = [
        None,
        Some(""),
        Some("a"),
        Some("a/b"),
        Some("a/z"),
        Some("é"),
        Some("0"),
        Some("zzzz"),
    ];
    for prefix in prefixes {
        for after in afters {
            for limit in [1, 2, 100] {
                let got = block_on(m.list_docs("k", prefix, after, limit)).expect("list");
                let want = block_on(reference.list_docs("k", prefix, after, limit)).expect("list");
                assert_eq!(got, want, "prefix {prefix:?} after {after:?} limit {limit}");
            }
        }
    }
    assert!(
        block_on(m.list_docs("k", "", None, 0))
            .expect("list")
            .is_empty()
    );
}

#[test]
fn prefix_ends() {
    assert_eq!(sql::prefix_end(""), None);
    assert_eq!(sql::prefix_end("a/").as_deref(), Some("a0"));
    assert_eq!(sql::prefix_end("é").as_deref(), Some("ê"));
    assert_eq!(sql::prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
    assert_eq!(sql::prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(sql::prefix_end("\u{10FFFF}"), None);
}

#[test]
fn events_wait_for_the_entry_point() {
    let (m, db) = store();
    let calls = db.calls().len();
    for i in 0..120 {
        block_on(m.append_event(&format!("{i:016}-e"), b"{}")).expect("event");
    }
    assert_eq!(db.calls().len(), calls, "appending costs no D1 call");
    let pending = m.take_events();
    assert_eq!(pending.len(), 120);
    assert!(m.take_events().is_empty(), "taken once");
    block_on(pending.write()).expect("write");
    assert_eq!(db.calls()[calls..], [3], "one batch of 50 + 50 + 20 rows");
    let listed = block_on(m.list_docs("audit", "", None, 1000)).expect("list");
    assert_eq!(listed.len(), 120);
    block_on(m.take_events().write()).expect("nothing to write");
    assert_eq!(db.calls().len(), calls + 2, "an empty write makes no call");
    // A queue nobody takes is written when it fills.
    for i in 0..MAX_QUEUED_EVENTS {
        block_on(m.append_event(&format!("{:016}-f", i), b"{}")).expect("event");
    }
    assert!(m.take_events().is_empty());
    let listed = block_on(m.list_docs("audit", "", None, 5000)).expect("list");
    assert_eq!(listed.len(), 120 + MAX_QUEUED_EVENTS);
    let refused = block_on(m.append_event("x", b"\xff"));
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
}

#[test]
fn statements_bind_within_d1_limits() {
    let d = |i: u32| Digest::sha256_of(&i.to_be_bytes());
    let many: Vec<Digest> = (0..1000).map(d).collect();
    let stmts = sql::existing(sql::Linked::Blobs, "r", &many);
    assert_eq!(stmts.len(), 11);
    assert!(stmts.iter().all(|s| s.params.len() <= sql::MAX_PARAMS));
    let events: Vec<(String, String)> = (0..101).map(|i| (i.to_string(), "{}".into())).collect();
    let stmts = sql::insert_events(&events);
    assert_eq!(
        stmts.iter().map(|s| s.params.len()).collect::<Vec<_>>(),
        [100, 100, 2]
    );
    assert!(sql::int(sql::MAX_SAFE_INTEGER).is_ok());
    assert!(sql::int(sql::MAX_SAFE_INTEGER + 1).is_err());
}

#[test]
fn rows_decode_numbers_from_js() {
    let mut row = Row::new();
    row.insert("a".into(), 5.into());
    row.insert("b".into(), 5.0.into());
    row.insert("c".into(), 5.5.into());
    row.insert("d".into(), (-1).into());
    row.insert("e".into(), serde_json::Value::Null);
    assert_eq!(sql::get_int(&row, "a").expect("int"), 5);
    assert_eq!(sql::get_int(&row, "b").expect("float"), 5);
    assert!(sql::get_int(&row, "c").is_err());
    assert!(sql::get_int(&row, "d").is_err());
    assert!(sql::get_int(&row, "missing").is_err());
    assert!(sql::get_text(&row, "e").is_err());
    assert_eq!(sql::opt_text(&row, "e").expect("null"), None);
}

#[test]
fn d1_errors_by_meaning() {
    let unavailable = [
        "D1_ERROR: Network connection lost.",
        "D1 DB storage caused object to be reset.",
        "D1 DB is overloaded. Too many requests queued.",
        "D1_ERROR: Cannot resolve D1 DB due to transient issue on remote node.",
        "D1_ERROR: SQLITE_BUSY",
    ];
    for m in unavailable {
        assert!(
            matches!(d1::classify(m.into()), StoreError::Unavailable(_)),
            "{m}"
        );
    }
    for m in [
        "D1_ERROR: near \"SELEC\": syntax error",
        "D1_ERROR: string or blob too big",
    ] {
        assert!(
            matches!(d1::classify(m.into()), StoreError::Other(_)),
            "{m}"
        );
    }
}

//! Garbage collection over the memory adapters, driven through the registry's API: what it
//! collects and keeps, the grace period, the dry run, the refusal before the backfill, and
//! a run killed after each of its checkpoints that ends as an uninterrupted one.

use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wharf_core::Digest;
use wharf_core::ledger::Flaw;
use wharf_core::ports::{
    BlobRecords, BlobStore, BlobWriter, LinkCollection, MetadataStore, UploadRecord,
};
use wharf_core::runs::{FindingKind, GcOptions, GcRun, RunStatus};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use wharf_core::{Config, Registry};

type Reg = Registry<MemoryBlobs, MemoryMetadata, Arc<TestEnv>>;

const T0: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

fn call(reg: &Reg, method: Method, uri: &str, body: &[u8]) -> StatusCode {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "reg.test")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    block_on(reg.handle(req)).status()
}

fn registry(blobs: &MemoryBlobs, meta: &MemoryMetadata, env: &Arc<TestEnv>) -> Reg {
    Registry::new(blobs.clone(), meta.clone(), env.clone(), Config::default())
}

fn push_blob(reg: &Reg, repo: &str, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let uri = format!("/v2/{repo}/blobs/uploads/?digest={d}");
    assert_eq!(call(reg, Method::POST, &uri, bytes), StatusCode::CREATED);
    d
}

fn image(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let desc = |b: &[u8]| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::sha256_of(b).to_string(), "size": b.len()
        })
    };
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| desc(l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// Pushes an image of `config` and `layers` to `repo:tag`; its manifest's digest.
fn push_image(reg: &Reg, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> Digest {
    push_blob(reg, repo, config);
    for l in layers {
        push_blob(reg, repo, l);
    }
    let m = image(config, layers);
    let uri = format!("/v2/{repo}/manifests/{tag}");
    assert_eq!(call(reg, Method::PUT, &uri, &m), StatusCode::CREATED);
    Digest::sha256_of(&m)
}

fn options(grace_ms: u64, dry_run: bool) -> GcOptions {
    GcOptions {
        grace_ms,
        upload_max_age_ms: 24 * HOUR,
        dry_run,
        verify: false,
    }
}

fn stored(blobs: &MemoryBlobs, d: &Digest) -> bool {
    block_on(blobs.stat(d)).expect("stat").is_some()
}

/// Two images share a layer; one is deleted. Returns (registry parts, shared, only-a, only-b).
struct World {
    blobs: MemoryBlobs,
    meta: MemoryMetadata,
    env: Arc<TestEnv>,
    shared: Digest,
    gone: Vec<Digest>,
    kept: Vec<Digest>,
}

fn world() -> World {
    let (blobs, meta, env) = (
        MemoryBlobs::default(),
        MemoryMetadata::default(),
        Arc::new(TestEnv::default()),
    );
    env.now.store(T0, Ordering::SeqCst);
    let reg = registry(&blobs, &meta, &env);
    let base: &[u8] = b"a base layer both images share";
    let a = push_image(&reg, "team/a", "v1", b"config a", &[base, b"layer only a"]);
    push_image(&reg, "team/b", "v1", b"config b", &[base, b"layer only b"]);
    // An abandoned upload.
    assert_eq!(
        call(&reg, Method::POST, "/v2/team/a/blobs/uploads/", b""),
        StatusCode::ACCEPTED
    );
    let uri = format!("/v2/team/a/manifests/{a}");
    assert_eq!(call(&reg, Method::DELETE, &uri, b""), StatusCode::ACCEPTED);
    World {
        shared: Digest::sha256_of(base),
        gone: vec![
            Digest::sha256_of(b"config a"),
            Digest::sha256_of(b"layer only a"),
        ],
        kept: vec![
            Digest::sha256_of(b"config b"),
            Digest::sha256_of(b"layer only b"),
        ],
        blobs,
        meta,
        env,
    }
}

fn finished(run: &GcRun) {
    assert_eq!(run.status, RunStatus::Finished, "{run:?}");
    assert!(run.finished_ms.is_some() && run.error.is_none(), "{run:?}");
}

#[test]
fn a_deleted_image_is_collected_and_what_others_use_is_kept() {
    let w = world();
    w.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let reg = registry(&w.blobs, &w.meta, &w.env);

    // The dry run decides the same and changes nothing.
    let dry = block_on(reg.collect_garbage(options(HOUR, true), "test", 1000)).expect("dry run");
    finished(&dry);
    let t = &dry.progress.totals;
    assert_eq!((t.links, t.blobs, t.uploads), (3, 2, 1), "{t:?}");
    for d in w.gone.iter().chain(w.kept.iter()).chain([&w.shared]) {
        assert!(stored(&w.blobs, d), "a dry run deletes nothing");
    }

    let run = block_on(reg.collect_garbage(options(HOUR, false), "test", 1000)).expect("run");
    finished(&run);
    let t = &run.progress.totals;
    // team/a's three links (its config, its own layer, the shared base), its two own blobs,
    // the abandoned upload; the base stays (team/b links it).
    assert_eq!((t.links, t.blobs, t.uploads), (3, 2, 1), "{t:?}");
    let size = |d: &Digest| block_on(w.meta.blob_record(d)).expect("record");
    assert_eq!(
        t.bytes,
        (b"config a".len() + b"layer only a".len()) as u64,
        "bytes of the blobs deleted"
    );
    for d in &w.gone {
        assert!(!stored(&w.blobs, d), "{d} deleted");
        assert_eq!(size(d), None, "{d}'s record forgotten");
    }
    for d in w.kept.iter().chain([&w.shared]) {
        assert!(stored(&w.blobs, d), "{d} kept");
    }
    assert_eq!(
        block_on(w.meta.blob_link("team/a", &w.shared)).expect("link"),
        None
    );
    assert!(
        block_on(w.meta.blob_link("team/b", &w.shared))
            .expect("link")
            .is_some()
    );
    // What is left pulls.
    assert_eq!(
        call(&reg, Method::GET, "/v2/team/b/manifests/v1", b""),
        StatusCode::OK
    );
    for d in w.kept.iter().chain([&w.shared]) {
        let uri = format!("/v2/team/b/blobs/{d}");
        assert_eq!(call(&reg, Method::GET, &uri, b""), StatusCode::OK);
    }
    // The reasons name the rule.
    assert!(
        run.progress
            .items
            .iter()
            .any(|i| i.kind == "blob" && i.reason.starts_with("no repository links it")),
        "{:?}",
        run.progress.items
    );
    // A second run finds nothing.
    let again = block_on(reg.collect_garbage(options(HOUR, false), "test", 1000)).expect("run");
    let t = &again.progress.totals;
    assert_eq!((t.links, t.blobs, t.uploads), (0, 0, 0), "{t:?}");
}

#[test]
fn nothing_used_within_the_grace_period_is_collected() {
    let w = world();
    w.env.now.store(T0 + 10 * 60_000, Ordering::SeqCst);
    let reg = registry(&w.blobs, &w.meta, &w.env);
    let run = block_on(reg.collect_garbage(options(HOUR, false), "test", 1000)).expect("run");
    finished(&run);
    let t = &run.progress.totals;
    assert_eq!((t.links, t.blobs), (0, 0), "{t:?}");
    assert!(t.kept >= 3, "the three links are kept for the grace: {t:?}");
    for d in &w.gone {
        assert!(stored(&w.blobs, d));
    }
    // A HEAD of a link renews it: with the clock past the grace of the push, only the
    // link checked within the grace stays.
    w.env.now.store(T0 + 2 * HOUR, Ordering::SeqCst);
    let uri = format!("/v2/team/a/blobs/{}", w.gone[0]);
    assert_eq!(call(&reg, Method::HEAD, &uri, b""), StatusCode::OK);
    w.env
        .now
        .store(T0 + 2 * HOUR + 30 * 60_000, Ordering::SeqCst);
    let run = block_on(reg.collect_garbage(options(HOUR, false), "test", 1000)).expect("run");
    let t = &run.progress.totals;
    assert_eq!((t.links, t.blobs), (2, 1), "{t:?}");
    assert!(
        block_on(w.meta.blob_link("team/a", &w.gone[0]))
            .expect("link")
            .is_some()
    );
    assert!(stored(&w.blobs, &w.gone[0]));
    assert!(!stored(&w.blobs, &w.gone[1]));
}

#[test]
fn collection_waits_for_the_backfill() {
    let w = world();
    w.meta.forget_ledger();
    w.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let reg = registry(&w.blobs, &w.meta, &w.env);
    let run = block_on(reg.queue_gc(options(HOUR, false), "test")).expect("queue");
    let advanced = block_on(reg.advance_gc(1000)).expect("advance");
    let r = advanced.iter().find(|r| r.id == run.id).expect("advanced");
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("backfill")),
        "{r:?}"
    );
    for d in w.gone.iter().chain(w.kept.iter()) {
        assert!(stored(&w.blobs, d), "nothing collected");
    }
}

/// The state a run leaves, to compare runs by.
fn state(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for d in w.gone.iter().chain(w.kept.iter()).chain([&w.shared]) {
        out.push(format!(
            "{d} stored {} record {:?}",
            stored(&w.blobs, d),
            block_on(w.meta.blob_record(d)).expect("record")
        ));
        for repo in ["team/a", "team/b"] {
            out.push(format!(
                "{repo} {d} {:?}",
                block_on(w.meta.blob_link(repo, d)).expect("link")
            ));
        }
    }
    out.push(format!(
        "{:?}",
        block_on(w.meta.unreferenced_links(None, 100)).expect("list")
    ));
    out.push(format!(
        "{:?}",
        block_on(w.meta.stale_uploads(u64::MAX, 100)).expect("uploads")
    ));
    out
}

#[test]
fn a_run_killed_after_each_checkpoint_ends_as_an_uninterrupted_one() {
    let whole = world();
    whole.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let run = block_on(
        registry(&whole.blobs, &whole.meta, &whole.env).collect_garbage(
            options(HOUR, false),
            "test",
            u64::MAX,
        ),
    )
    .expect("run");
    finished(&run);

    let w = world();
    w.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let id = block_on(registry(&w.blobs, &w.meta, &w.env).queue_gc(options(HOUR, false), "test"))
        .expect("queue")
        .id;
    let mut steps = 0;
    let last = loop {
        steps += 1;
        assert!(steps < 200, "the run ends");
        // A new process each time: all it has is what the last one saved.
        let reg = registry(&w.blobs, &w.meta, &w.env);
        let advanced = block_on(reg.advance_gc(2)).expect("advance");
        let r = advanced.into_iter().find(|r| r.id == id).expect("advanced");
        if r.finished_ms.is_some() {
            break r;
        }
    };
    finished(&last);
    assert!(steps > 3, "small steps: {steps}");
    assert_eq!(state(&w), state(&whole), "the same end");
    let (a, b) = (&last.progress.totals, &run.progress.totals);
    assert_eq!(
        (a.links, a.blobs, a.uploads, a.bytes),
        (b.links, b.blobs, b.uploads, b.bytes)
    );
    assert_eq!(last.progress.items, run.progress.items);
}

#[test]
fn a_scheduled_job_runs_from_its_input_and_stops_at_its_deadline() {
    use wharf_core::jobs::Job;
    use wharf_core::settings::GcSchedule;
    let parse = |s: &str| serde_json::from_str::<Job>(s);
    assert_eq!(parse(r#"{"job":"gc"}"#).expect("gc"), Job::Gc);
    assert_eq!(
        parse(r#"{"job":"advance"}"#).expect("advance"),
        Job::Advance
    );
    assert_eq!(
        parse(r#"{"job":"cleanup_uploads"}"#).expect("cleanup"),
        Job::CleanupUploads
    );
    assert!(parse(r#"{"job":"nope"}"#).is_err());
    assert!(parse(r#"{}"#).is_err());

    let w = world();
    w.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let reg = registry(&w.blobs, &w.meta, &w.env);
    let schedule = GcSchedule {
        every_ms: 24 * HOUR,
        grace_ms: HOUR,
        upload_max_age_ms: 24 * HOUR,
    };
    // Past its deadline: the run is queued, not advanced; the next invocation finishes it.
    let now = T0 + 25 * HOUR;
    let out = block_on(reg.run_job(Job::Gc, &schedule, now)).expect("job");
    assert!(out["queued"].is_string(), "{out}");
    assert_eq!(out["runs"], serde_json::json!([]), "{out}");
    for d in &w.gone {
        assert!(stored(&w.blobs, d), "nothing collected yet");
    }
    let out = block_on(reg.run_job(Job::Advance, &schedule, now + HOUR)).expect("job");
    assert_eq!(out["runs"][0]["status"], "finished", "{out}");
    assert_eq!(out["runs"][0]["totals"]["blobs"], 2, "{out}");
    for d in &w.gone {
        assert!(!stored(&w.blobs, d), "collected by the next invocation");
    }
}

fn verify(reg: &Reg) -> GcRun {
    let options = GcOptions {
        verify: true,
        ..options(HOUR, false)
    };
    let run = block_on(reg.collect_garbage(options, "test", 7)).expect("verification");
    finished(&run);
    run
}

fn kinds(run: &GcRun) -> Vec<(FindingKind, Option<String>, Digest)> {
    let mut v: Vec<_> = run
        .progress
        .findings
        .iter()
        .map(|f| (f.kind, f.repository.clone(), f.digest.clone()))
        .collect();
    v.sort_by_key(|k| format!("{k:?}"));
    v
}

#[test]
fn verification_finds_every_planted_difference_and_changes_nothing() {
    let w = world();
    w.env.now.store(T0 + 25 * HOUR, Ordering::SeqCst);
    let reg = registry(&w.blobs, &w.meta, &w.env);
    // An index over team/b's image, so children are counted too.
    let b = Digest::sha256_of(&image(
        b"config b",
        &[b"a base layer both images share", b"layer only b"],
    ));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": b.to_string(), "size": image(b"config b", &[b"a base layer both images share", b"layer only b"]).len()}],
    })
    .to_string();
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/v2/team/b/manifests/multi")
        .header("host", "reg.test")
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(Full::new(Bytes::from(index)))
        .expect("request");
    assert_eq!(block_on(reg.handle(req)).status(), StatusCode::CREATED);

    // The bookkeeping of a registry used only through its API has nothing to report, and
    // a verification collects nothing, even what a collection would.
    let before = state(&w);
    let clean = verify(&reg);
    assert_eq!(
        clean.progress.totals.differences, 0,
        "{:?}",
        clean.progress.findings
    );
    // 2 repositories, 6 links (3 each), 5 stored blobs (the base is shared).
    assert_eq!(
        clean.progress.totals.checked, 13,
        "{:?}",
        clean.progress.totals
    );
    assert!(clean.progress.items.is_empty());
    assert_eq!(state(&w), before, "a verification writes nothing");

    // Plant one flaw of each kind.
    let config_b = Digest::sha256_of(b"config b");
    let only_b = Digest::sha256_of(b"layer only b");
    w.meta
        .plant(&Flaw::LinkRefs {
            repo: "team/b".into(),
            digest: w.shared.clone(),
            refs: 5,
        })
        .expect("plant");
    w.meta
        .plant(&Flaw::RecordLinks {
            digest: only_b.clone(),
            links: 3,
        })
        .expect("plant");
    w.meta
        .plant(&Flaw::LinkGone {
            repo: "team/b".into(),
            digest: config_b.clone(),
        })
        .expect("plant");
    // Bytes lost from storage under a link (team/a's own layer: its link is unreferenced
    // but still a link).
    let lost = Digest::sha256_of(b"layer only a");
    block_on(w.blobs.delete(&lost)).expect("delete bytes");
    // Bytes that reached storage with no record (what a crash of old code could leave).
    let stray: &[u8] = b"bytes nobody recorded";
    let stray_d = Digest::sha256_of(stray);
    let upload = UploadRecord {
        id: "stray".into(),
        repo: "team/a".into(),
        offset: 0,
        hash_state: Vec::new(),
        store_state: String::new(),
        digest: None,
        created_ms: T0,
        updated_ms: T0,
    };
    let mut writer = block_on(w.blobs.writer(&upload)).expect("writer");
    block_on(writer.write(Bytes::from_static(stray))).expect("write");
    let upload = UploadRecord {
        offset: stray.len() as u64,
        store_state: block_on(writer.finish()).expect("finish"),
        ..upload
    };
    block_on(w.blobs.commit(&upload, &stray_d)).expect("commit");

    let before = state(&w);
    let run = verify(&reg);
    assert_eq!(state(&w), before, "a verification writes nothing");
    let b = |s: &str| Some(s.to_owned());
    assert_eq!(
        kinds(&run),
        {
            let mut v = vec![
                (FindingKind::LinkRefs, b("team/b"), w.shared.clone()),
                (FindingKind::RecordLinks, None, only_b.clone()),
                (FindingKind::MissingLink, b("team/b"), config_b.clone()),
                (FindingKind::MissingBytes, b("team/a"), lost.clone()),
                (FindingKind::UntrackedBytes, None, stray_d.clone()),
            ];
            v.sort_by_key(|k| format!("{k:?}"));
            v
        },
        "{:#?}",
        run.progress.findings
    );
    assert_eq!(run.progress.totals.differences, 5);
    assert!(
        run.progress
            .findings
            .iter()
            .any(|f| f.detail.contains("counts 5") && f.detail.contains("say 1")),
        "{:#?}",
        run.progress.findings
    );
}

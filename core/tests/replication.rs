//! Replication between two registries in-process (the destination's own handlers take
//! every write): what is copied, in what order, what a stop anywhere leaves, and that
//! replayed or late changes never move a tag back.

mod support;

use futures_executor::block_on;
use http::{Method, StatusCode};
use std::cell::Cell;
use support::*;
use wharf_core::jobs::replicate::pass::{self, PassOptions};
use wharf_core::jobs::replicate::v2::V2Target;
use wharf_core::jobs::replicate::{Target, retryable};
use wharf_core::model::manifest::OCI_INDEX;
use wharf_core::ports::{DocumentStore, Outbox, StoredManifest};
use wharf_core::{Digest, ErrorCode, MetadataStore, Reference, RegistryError, StoreError};

fn pair() -> (Reg, Reg) {
    let (a, b) = (registry(), registry());
    bootstrap_admin(&a);
    bootstrap_admin(&b);
    (a, b)
}

fn admin_token(reg: &Reg, repo: &str) -> String {
    token(
        reg,
        Some(("admin", "admin-pass-1")),
        &format!("repository:{repo}:pull,push,delete"),
    )
}

fn upload(reg: &Reg, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let t = admin_token(reg, repo);
    let r = call(
        reg,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        Some(&bearer(&t)),
        data,
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    d
}

fn put(reg: &Reg, repo: &str, reference: &str, m: &serde_json::Value) -> Digest {
    let body = m.to_string();
    let t = admin_token(reg, repo);
    let r = call(
        reg,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
        Some(&bearer(&t)),
        body.as_bytes(),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{reference}: {}", r.body);
    Digest::sha256_of(body.as_bytes())
}

fn image(reg: &Reg, repo: &str, reference: &str, layer: &[u8]) -> (Digest, serde_json::Value) {
    let c = upload(reg, repo, b"{}");
    let l = upload(reg, repo, layer);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}]});
    let d = put(reg, repo, reference, &m);
    (d, m)
}

/// A multi-arch index of two images, tagged `tag`, with a signature-like referrer of it.
/// Returns (index, children, referrer).
fn multi_arch(reg: &Reg, repo: &str, tag: &str) -> (Digest, Vec<Digest>, Digest) {
    let mut kids = Vec::new();
    let mut descs = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = format!("layer of {tag} for {arch}");
        let c = upload(reg, repo, b"{}");
        let l = upload(reg, repo, layer.as_bytes());
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}]});
        let body = m.to_string();
        let d = put(
            reg,
            repo,
            &Digest::sha256_of(body.as_bytes()).to_string(),
            &m,
        );
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": body.len(), "platform": {"os": "linux", "architecture": arch}}));
        kids.push(d);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs});
    let ix = put(reg, repo, tag, &index);
    let ix_size = index.to_string().len();
    let e = upload(reg, repo, b"{}");
    let sig = upload(reg, repo, format!("signature of {tag}").as_bytes());
    let referrer = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": e, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig", "digest": sig, "size": format!("signature of {tag}").len()}],
        "subject": {"mediaType": OCI_INDEX, "digest": ix, "size": ix_size}});
    let body = referrer.to_string();
    let r = put(
        reg,
        repo,
        &Digest::sha256_of(body.as_bytes()).to_string(),
        &referrer,
    );
    (ix, kids, r)
}

fn target(b: &Reg) -> V2Target<&Reg> {
    V2Target {
        transport: b,
        base: String::new(),
    }
}

fn manifest(reg: &Reg, repo: &str, reference: &str) -> Option<StoredManifest> {
    block_on(
        reg.meta
            .manifest(repo, &Reference::parse(reference).expect("reference")),
    )
    .expect("manifest")
}

/// Every manifest `b` can reach from its tags, and their referrers, has every blob and child
/// it names: what a client lists there pulls completely.
fn assert_consistent(b: &Reg, repo: &str) {
    let Some(page) = block_on(b.meta.list_tags(repo, None, 1000)).expect("tags") else {
        return;
    };
    let mut todo: Vec<Digest> = page
        .items
        .iter()
        .map(|t| manifest(b, repo, t).expect("tagged manifest").info.digest)
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = manifest(b, repo, &d.to_string())
            .unwrap_or_else(|| panic!("{d} is referenced but absent"));
        for blob in &m.info.blobs {
            assert!(
                block_on(b.meta.blob_link(repo, blob))
                    .expect("link")
                    .is_some(),
                "{blob} of {d} is not linked"
            );
            assert!(
                block_on(wharf_core::BlobStore::stat(&b.blobs, blob))
                    .expect("stat")
                    .is_some(),
                "{blob} of {d} has no bytes"
            );
        }
        todo.extend(m.info.children.iter().cloned());
        for r in block_on(b.meta.referrers(repo, &d)).expect("referrers") {
            todo.push(r.digest);
        }
    }
}

fn run(a: &Reg, t: &impl Target) -> pass::StepReport {
    let mut last = None;
    for _ in 0..50 {
        let r = block_on(a.replicate_step(
            t,
            "b",
            PassOptions {
                limit: 7,
                delete_sync: true,
            },
        ))
        .expect("step");
        let done = r.finished;
        last = Some(r);
        if done {
            break;
        }
    }
    let r = last.expect("a step");
    assert!(
        r.finished,
        "replication did not finish: {:?}",
        r.state.last_error
    );
    r
}

#[test]
fn an_image_and_a_multi_arch_index_with_its_referrer_replicate_and_pull_from_the_target() {
    let (a, b) = pair();
    let (img, _) = image(&a, "p/app", "v1", b"layer one");
    let (ix, kids, sig) = multi_arch(&a, "p/multi", "latest");
    let r = run(&a, &target(&b));
    assert_eq!(r.state.tags_set, 2, "{:?}", r.state);
    assert!(r.state.refusals.is_empty(), "{:?}", r.state.refusals);
    // Pull from B as a client would, digests checked by the handler.
    assert_eq!(manifest(&b, "p/app", "v1").expect("v1").info.digest, img);
    assert_eq!(
        manifest(&b, "p/multi", "latest")
            .expect("latest")
            .info
            .digest,
        ix
    );
    for k in &kids {
        assert!(
            manifest(&b, "p/multi", &k.to_string()).is_some(),
            "child {k}"
        );
    }
    assert!(
        manifest(&b, "p/multi", &sig.to_string()).is_some(),
        "referrer"
    );
    let t = admin_token(&b, "p/multi");
    let refs = call(
        &b,
        Method::GET,
        &format!("/v2/p/multi/referrers/{ix}"),
        Some(&bearer(&t)),
        b"",
    );
    assert_eq!(refs.body["manifests"][0]["digest"], sig.to_string());
    for repo in ["p/app", "p/multi"] {
        assert_consistent(&b, repo);
    }
    // The bytes are the source's: the same manifest bytes, blob by blob.
    let ma = manifest(&a, "p/multi", "latest").expect("a");
    let mb = manifest(&b, "p/multi", "latest").expect("b");
    assert_eq!(ma.bytes, mb.bytes);
    // Run again: nothing to copy.
    let again = run(&a, &target(&b));
    assert_eq!(
        again.state.copied, r.state.copied,
        "a second pass copied more"
    );
}

/// A target that fails (as if down) on its `fail_at`-th write and serves the rest.
struct Stops<'a> {
    inner: V2Target<&'a Reg>,
    writes: Cell<usize>,
    fail_at: usize,
}

impl Stops<'_> {
    fn write(&self) -> wharf_core::error::Result<()> {
        let n = self.writes.get() + 1;
        self.writes.set(n);
        if n == self.fail_at {
            return Err(RegistryError::from(StoreError::Unavailable(
                "stopped here".into(),
            )));
        }
        Ok(())
    }
}

impl Target for Stops<'_> {
    async fn has_blob(&self, repo: &str, digest: &Digest) -> wharf_core::error::Result<bool> {
        self.inner.has_blob(repo, digest).await
    }
    async fn put_blob<S>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> wharf_core::error::Result<()>
    where
        S: futures_core::Stream<Item = Result<bytes::Bytes, StoreError>> + Unpin,
    {
        self.write()?;
        self.inner.put_blob(repo, digest, size, body).await
    }
    async fn resolve(
        &self,
        repo: &str,
        reference: &str,
    ) -> wharf_core::error::Result<Option<Digest>> {
        self.inner.resolve(repo, reference).await
    }
    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &StoredManifest,
    ) -> wharf_core::error::Result<()> {
        self.write()?;
        self.inner.put_manifest(repo, reference, m).await
    }
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> wharf_core::error::Result<()> {
        self.write()?;
        self.inner.delete_manifest(repo, digest).await
    }
    async fn delete_tag(&self, repo: &str, tag: &str) -> wharf_core::error::Result<()> {
        self.write()?;
        self.inner.delete_tag(repo, tag).await
    }
}

#[test]
fn stopped_after_any_write_the_target_is_consistent_and_the_next_run_completes() {
    // Count the writes of a whole run first.
    let (a, b) = pair();
    multi_arch(&a, "p/multi", "latest");
    image(&a, "p/app", "v1", b"layer one");
    let counting = Stops {
        inner: target(&b),
        writes: Cell::new(0),
        fail_at: 0,
    };
    run(&a, &counting);
    let total = counting.writes.get();
    assert!(total >= 12, "a run of two images made {total} writes");
    for fail_at in 1..=total {
        let (a, b) = pair();
        multi_arch(&a, "p/multi", "latest");
        image(&a, "p/app", "v1", b"layer one");
        let stops = Stops {
            inner: target(&b),
            writes: Cell::new(0),
            fail_at,
        };
        let r = block_on(a.replicate_step(
            &stops,
            "b",
            PassOptions {
                limit: 100,
                delete_sync: true,
            },
        ))
        .expect("step");
        assert!(!r.finished, "stopped at write {fail_at}, yet finished");
        assert!(
            r.state
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("stopped here")),
            "{:?}",
            r.state
        );
        for repo in ["p/app", "p/multi"] {
            assert_consistent(&b, repo);
        }
        run(&a, &target(&b));
        for repo in ["p/app", "p/multi"] {
            assert_consistent(&b, repo);
        }
        assert!(
            manifest(&b, "p/multi", "latest").is_some(),
            "after a stop at {fail_at}"
        );
        assert!(
            manifest(&b, "p/app", "v1").is_some(),
            "after a stop at {fail_at}"
        );
    }
}

#[test]
fn tag_moves_and_deletes_follow_the_source_and_a_replay_never_moves_a_tag_back() {
    let (a, b) = pair();
    let (d1, _) = image(&a, "p/app", "t", b"first");
    image(&a, "p/app", "gone", b"to be deleted");
    let (d0, _) = image(&a, "p/app", "old", b"deleted by digest");
    run(&a, &target(&b));
    assert_eq!(manifest(&b, "p/app", "t").expect("t").info.digest, d1);
    let (d2, _) = image(&a, "p/app", "t", b"second");
    let t = admin_token(&a, "p/app");
    let del = call(
        &a,
        Method::DELETE,
        "/v2/p/app/manifests/gone",
        Some(&bearer(&t)),
        b"",
    );
    assert_eq!(del.status, StatusCode::ACCEPTED, "{}", del.body);
    let del = call(
        &a,
        Method::DELETE,
        &format!("/v2/p/app/manifests/{d0}"),
        Some(&bearer(&t)),
        b"",
    );
    assert_eq!(del.status, StatusCode::ACCEPTED, "{}", del.body);
    let r = run(&a, &target(&b));
    assert_eq!(manifest(&b, "p/app", "t").expect("t").info.digest, d2);
    assert!(
        manifest(&b, "p/app", "gone").is_none(),
        "a deleted tag stayed"
    );
    assert!(
        manifest(&b, "p/app", &d0.to_string()).is_none(),
        "a deleted manifest stayed"
    );
    assert!(
        manifest(&b, "p/app", &d1.to_string()).is_some(),
        "t's old manifest is still in the source"
    );
    assert!(r.state.deleted >= 2, "{:?}", r.state);
    // Forget the checkpoint and handle the entries only up to the first push of `t` (as a
    // late-visible entry would be): its manifest still exists, so only the source's state
    // keeps `t` at d2 in between.
    let entries =
        block_on(wharf_core::ports::Outbox::outbox_after(&a.meta, None, 1000)).expect("outbox");
    let first_t = entries
        .iter()
        .position(|e| matches!(&e.change, wharf_core::ports::Change::ManifestPut { digest, .. } if *digest == d1))
        .expect("d1's entry");
    assert!(block_on(a.meta.delete_doc(pass::STATE_KIND, "b")).expect("reset"));
    let r = block_on(a.replicate_step(
        &target(&b),
        "b",
        PassOptions {
            limit: first_t + 1,
            delete_sync: true,
        },
    ))
    .expect("step");
    assert_eq!(r.handled, first_t + 1);
    assert_eq!(
        manifest(&b, "p/app", "t").expect("t").info.digest,
        d2,
        "a replayed entry moved t back"
    );
    run(&a, &target(&b));
    assert_eq!(
        manifest(&b, "p/app", "t").expect("t").info.digest,
        d2,
        "a replayed entry moved t back"
    );
    assert!(manifest(&b, "p/app", &d0.to_string()).is_none());
    assert_consistent(&b, "p/app");
}

#[test]
fn a_refusal_is_recorded_and_passed_over_and_a_target_that_is_down_holds_the_checkpoint() {
    let (a, b) = pair();
    // B's project has an immutable tag: moving it through replication is refused there.
    admin(
        &b,
        Method::POST,
        "/api/v1/projects",
        serde_json::json!({"name": "p"}),
    );
    image(&b, "p/app", "fixed", b"b's own");
    admin(
        &b,
        Method::PUT,
        "/api/v1/projects/p/immutability",
        serde_json::json!({"rules": [{"repositories": {"matches": "**"}, "tags": {"matches": "fixed"}}]}),
    );
    // Replication to B began before A had content (so no walk meets the refusal first).
    run(&a, &target(&b));
    image(&a, "p/app", "fixed", b"a's");
    let (other, _) = image(&a, "p/other", "v1", b"other");
    let r = run(&a, &target(&b));
    assert_eq!(r.state.refusals.len(), 1, "{:?}", r.state.refusals);
    assert!(
        r.state.refusals[0].error.contains("DENIED") || r.state.refusals[0].error.contains("403"),
        "{:?}",
        r.state.refusals
    );
    assert_eq!(
        manifest(&b, "p/other", "v1").expect("v1").info.digest,
        other,
        "the refusal held back another image"
    );
    // Down: the step stops before the entry and keeps it for the next.
    let (d, _) = image(&a, "p/app", "later", b"later");
    let down = Stops {
        inner: target(&b),
        writes: Cell::new(0),
        fail_at: 1,
    };
    let r = block_on(a.replicate_step(&down, "b", PassOptions::default())).expect("step");
    assert!(!r.finished);
    assert!(retryable(&RegistryError::from(StoreError::Unavailable(
        String::new()
    ))));
    assert!(!retryable(&RegistryError::new(ErrorCode::Denied, "no")));
    run(&a, &target(&b));
    assert_eq!(
        manifest(&b, "p/app", "later").expect("later").info.digest,
        d
    );
}

#[test]
fn only_the_cores_own_requests_are_authorized_as_the_system() {
    let (a, b) = pair();
    let (d, m) = image(&a, "p/app", "v1", b"layer");
    // From outside, with no token, the same write is refused.
    let r = call(
        &b,
        Method::PUT,
        "/v2/p/app/manifests/v1",
        None,
        m.to_string().as_bytes(),
    );
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // A header cannot pass for the extension.
    let r = call(
        &b,
        Method::PUT,
        "/v2/p/app/manifests/v1",
        Some("SystemCall"),
        m.to_string().as_bytes(),
    );
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // Through the transport, the replication of it is taken and audited as the system.
    run(&a, &target(&b));
    assert_eq!(manifest(&b, "p/app", "v1").expect("v1").info.digest, d);
    let audit = admin(&b, Method::GET, "/api/v1/audit", serde_json::json!({}));
    assert!(
        audit
            .body
            .to_string()
            .contains(wharf_core::auth::SYSTEM_CALLER),
        "the replicated push is not audited as the system: {}",
        audit.body
    );
}

#[test]
fn the_scheduled_job_runs_steps_until_done_out_of_time_or_failing() {
    let (a, b) = pair();
    multi_arch(&a, "team/app", "v1");
    let one = PassOptions {
        limit: 1,
        ..PassOptions::default()
    };
    // A deadline already past: one step, then it says it ran out of time.
    let out = block_on(a.replicate_until(&target(&b), "b", one, 0)).expect("job");
    assert_eq!(out["job"], serde_json::json!({"job": "replicate"}));
    assert_eq!(out["handled"], 1, "{out}");
    assert_eq!(out["out_of_time"], true, "{out}");
    assert_eq!(out["finished"], false, "{out}");
    // A failing target: the job stops at once and reports it, the checkpoint held.
    image(&a, "team/app", "v2", b"more to copy");
    let down = Stops {
        inner: target(&b),
        writes: Cell::new(0),
        fail_at: 1,
    };
    let out = block_on(a.replicate_until(&down, "b", one, u64::MAX)).expect("job");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopped here")),
        "{out}"
    );
    assert_eq!(out["finished"], false, "{out}");
    // Time enough: steps of one entry until the outbox is done, the target consistent.
    let out = block_on(a.replicate_until(&target(&b), "b", one, u64::MAX)).expect("job");
    assert_eq!(out["finished"], true, "{out}");
    assert_eq!(out["error"], serde_json::Value::Null, "{out}");
    assert!(out["handled"].as_u64().is_some_and(|n| n > 1), "{out}");
    assert_consistent(&b, "team/app");
    assert!(manifest(&b, "team/app", "v1").is_some());
    assert!(manifest(&b, "team/app", "v2").is_some());
    // The core's run_job does not know the replica: it says so rather than doing nothing.
    let schedule = wharf_core::settings::GcSchedule {
        every_ms: 0,
        grace_ms: 0,
        upload_max_age_ms: 0,
    };
    let e = block_on(a.run_job(wharf_core::jobs::Job::Replicate, &schedule, u64::MAX))
        .expect_err("no replica");
    assert_eq!(e.code, ErrorCode::Unsupported);
}

#[test]
fn a_target_added_after_the_content_gets_all_of_it_by_a_walk_stopped_anywhere_then_the_outbox() {
    let (a, b) = pair();
    let (ix, kids, sig) = multi_arch(&a, "team/app", "v1");
    let (img, _) = image(&a, "team/app", "v2", b"second");
    let (other, _) = image(&a, "zz/other", "latest", b"other");
    // An hour later B is added; the outbox no longer has those pushes (trimmed, or written
    // before the outbox existed), so only a walk can find them.
    a.env
        .now
        .store(T0 + 3_600_000, std::sync::atomic::Ordering::SeqCst);
    let trimmed = block_on(a.meta.outbox_trim("9", 10_000)).expect("trim");
    assert!(trimmed > 0);
    let mut saw_cursor = false;
    let mut finished = false;
    // Each step handles one tag and its target fails at its 1st, 2nd or 3rd write in turn:
    // the walk resumes from its saved cursor, and B is consistent after every step.
    for i in 0..100 {
        let t = Stops {
            inner: target(&b),
            writes: Cell::new(0),
            fail_at: 1 + i % 3,
        };
        let r = block_on(a.replicate_step(
            &t,
            "late",
            PassOptions {
                limit: 1,
                delete_sync: true,
            },
        ))
        .expect("step");
        assert_consistent(&b, "team/app");
        assert_consistent(&b, "zz/other");
        saw_cursor |= r.state.walk.as_ref().is_some_and(|w| w.tag.is_some());
        if r.finished {
            finished = true;
            assert!(r.state.walk.is_none(), "finished with a walk left");
            break;
        }
    }
    assert!(finished, "the walk did not finish");
    assert!(saw_cursor, "the walk never stopped between tags");
    for (repo, tag, d) in [
        ("team/app", "v1", &ix),
        ("team/app", "v2", &img),
        ("zz/other", "latest", &other),
    ] {
        assert_eq!(
            manifest(&b, repo, tag).map(|m| m.info.digest).as_ref(),
            Some(d),
            "{repo}:{tag}"
        );
    }
    for d in kids.iter().chain([&sig]) {
        assert!(manifest(&b, "team/app", &d.to_string()).is_some(), "{d}");
    }
    // After the walk, the outbox: a tag moved in A now follows.
    let (moved, _) = image(&a, "team/app", "v2", b"third");
    run_named(&a, &target(&b), "late");
    assert_eq!(
        manifest(&b, "team/app", "v2").map(|m| m.info.digest),
        Some(moved)
    );
    // A state saved by the version before walks (no `walk` field) is read as it was: that
    // target is past its walk and goes on from its checkpoint.
    let old = r#"{"after":"0001800000000000-000000000003","recent":[],"updated_ms":1,"copied":{"blobs_copied":1,"blobs_present":0,"bytes_copied":2,"manifests_copied":1,"manifests_present":0},"tags_set":1,"deleted":0,"refusals":[],"last_error":null}"#;
    let s: pass::ReplicaState = serde_json::from_str(old).expect("old state");
    assert_eq!(s.walk, None);
    assert_eq!(s.after.as_deref(), Some("0001800000000000-000000000003"));
}

fn run_named(a: &Reg, t: &impl Target, name: &str) {
    for _ in 0..50 {
        let r = block_on(a.replicate_step(t, name, PassOptions::default())).expect("step");
        if r.finished {
            return;
        }
    }
    panic!("replication to {name} did not finish");
}

#[test]
fn the_outbox_loses_only_what_every_target_is_past_and_a_new_target_still_gets_everything() {
    use std::sync::atomic::Ordering::SeqCst;
    const HOUR: u64 = 3_600_000;
    let (a, b) = pair();
    let (v1, _) = image(&a, "team/app", "v1", b"one");
    run(&a, &target(&b));
    // Hours later, a change B has not had yet: nothing B still needs is trimmed.
    a.env.now.store(T0 + 2 * HOUR, SeqCst);
    let (v2, _) = image(&a, "team/app", "v2", b"two");
    let before = block_on(a.meta.outbox_after(None, 10_000))
        .expect("outbox")
        .len();
    assert_eq!(block_on(a.trim_outbox()).expect("trim"), 0);
    run(&a, &target(&b));
    // B past it all: the `advance` job trims the entries older than B's checkpoint (less
    // the skew window) and than an hour; the newest stay.
    a.env.now.store(T0 + 4 * HOUR, SeqCst);
    let schedule = wharf_core::settings::GcSchedule {
        every_ms: 0,
        grace_ms: 0,
        upload_max_age_ms: HOUR,
    };
    block_on(a.run_job(wharf_core::jobs::Job::Advance, &schedule, u64::MAX)).expect("advance");
    let left = block_on(a.meta.outbox_after(None, 10_000)).expect("outbox");
    assert!(
        !left.is_empty() && left.len() < before,
        "{} of {before} left",
        left.len()
    );
    assert!(
        left.iter().all(|e| e.at_ms >= T0 + 2 * HOUR),
        "an entry B had was kept, or one it needs went: {left:?}"
    );
    // A target added now walks: it gets what the trimmed entries were about.
    let c = registry();
    bootstrap_admin(&c);
    run_named(&a, &target(&c), "c");
    assert_eq!(
        manifest(&c, "team/app", "v1").map(|m| m.info.digest),
        Some(v1)
    );
    assert_eq!(
        manifest(&c, "team/app", "v2").map(|m| m.info.digest),
        Some(v2)
    );
}

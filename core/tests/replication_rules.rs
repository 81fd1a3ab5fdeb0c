//! Replication rules end to end, between two registries in-process on the memory stores:
//! remotes and rules through `/api/v1/replication`, runs advanced by
//! `Registry::replication_tick` with a connector whose transport is the other registry
//! itself (its own handlers take every request, as the system). Nothing of the engine is
//! mocked; only the destination is made to go down, by a transport that stops answering.

mod support;

use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, Response, StatusCode};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use support::*;
use wharf_core::auth::sealed::SealKey;
use wharf_core::http::Body;
use wharf_core::jobs::replicate::triggers::{Connector, TickReport};
use wharf_core::jobs::replicate::v2::{Transport, V2Target};
use wharf_core::jobs::replicate::{Catalog, Source, Target};
use wharf_core::model::manifest::{self, OCI_INDEX, OCI_MANIFEST};
use wharf_core::policy::replication::{self, Credentials, Remote};
use wharf_core::ports::{DocumentStore, StoredManifest};
use wharf_core::runs::replication::{
    self as runs, ExecStatus, Execution, MAX_ATTEMPTS, Outcome, Started,
};
use wharf_core::{Config, Digest, RegistryError, StoreError};

// ---- two registries and their clock -------------------------------------------------------

/// Registries A and B, auth on, the first admin in each, both at `T0`.
fn pair() -> (Reg, Reg) {
    pair_with(Config::default())
}

fn pair_with(config_a: Config) -> (Reg, Reg) {
    let (a, b) = (registry_with(config_a), registry());
    bootstrap_admin(&a);
    bootstrap_admin(&b);
    (a, b)
}

/// The shared clock: both registries at `t`.
fn at(a: &Reg, b: &Reg, t: u64) {
    a.env.now.store(t, SeqCst);
    b.env.now.store(t, SeqCst);
}

fn now(a: &Reg) -> u64 {
    a.env.now.load(SeqCst)
}

// ---- connectors ---------------------------------------------------------------------------

/// Connects every remote to one in-process registry.
struct To<'a>(&'a Reg);

impl<'a> Connector for To<'a> {
    type Transport = &'a Reg;
    fn connect(
        &self,
        _remote: &Remote,
        _credentials: Option<Credentials>,
    ) -> wharf_core::error::Result<&'a Reg> {
        Ok(self.0)
    }
}

/// A destination that forwards to a registry and counts requests; once `fail_after` is
/// set, it answers every request after that many with no response (it is down).
struct Down<'a> {
    inner: &'a Reg,
    sent: Cell<usize>,
    fail_after: Cell<Option<usize>>,
}

impl<'a> Down<'a> {
    fn new(inner: &'a Reg, fail_after: Option<usize>) -> Self {
        Self {
            inner,
            sent: Cell::new(0),
            fail_after: Cell::new(fail_after),
        }
    }
}

impl Transport for Down<'_> {
    type Body = <Reg as Transport>::Body;
    async fn send<S>(
        &self,
        req: Request<Body<S>>,
    ) -> wharf_core::error::Result<Response<Self::Body>>
    where
        S: futures_core::Stream<Item = Result<Bytes, StoreError>> + Unpin,
    {
        let n = self.sent.get() + 1;
        self.sent.set(n);
        if self.fail_after.get().is_some_and(|k| n > k) {
            return Err(RegistryError::from(StoreError::Unavailable(
                "the destination is down".into(),
            )));
        }
        self.inner.send(req).await
    }
}

struct ToDown<'a, 'b>(&'a Down<'b>);

impl<'a, 'b> Connector for ToDown<'a, 'b> {
    type Transport = &'a Down<'b>;
    fn connect(
        &self,
        _remote: &Remote,
        _credentials: Option<Credentials>,
    ) -> wharf_core::error::Result<&'a Down<'b>> {
        Ok(self.0)
    }
}

/// Connects to one registry and records what each remote was connected with.
struct Recording<'a> {
    to: &'a Reg,
    got: RefCell<Vec<(String, Option<Credentials>)>>,
}

impl<'a> Connector for Recording<'a> {
    type Transport = &'a Reg;
    fn connect(
        &self,
        remote: &Remote,
        credentials: Option<Credentials>,
    ) -> wharf_core::error::Result<&'a Reg> {
        self.got
            .borrow_mut()
            .push((remote.name.clone(), credentials));
        Ok(self.to)
    }
}

// ---- content, through a registry's own /v2 handlers ----------------------------------------

/// The distribution API of `reg`, in-process (as the system).
fn v2(reg: &Reg) -> V2Target<&Reg> {
    V2Target {
        transport: reg,
        base: String::new(),
    }
}

fn blob(reg: &Reg, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let body = futures_util::stream::iter([Ok::<_, StoreError>(Bytes::copy_from_slice(data))]);
    block_on(v2(reg).put_blob(repo, &d, data.len() as u64, body)).expect("blob upload");
    d
}

fn put(reg: &Reg, repo: &str, reference: &str, m: &serde_json::Value) -> (Digest, usize) {
    let bytes = Bytes::from(m.to_string());
    let d = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, d.clone()).expect("a valid manifest");
    let len = bytes.len();
    block_on(v2(reg).put_manifest(repo, reference, &StoredManifest { info, bytes }))
        .expect("manifest put");
    (d, len)
}

fn image_manifest(config: &Digest, layer: &Digest, layer_len: usize) -> serde_json::Value {
    serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}]})
}

/// An image of one layer at `repo:tag`.
fn image(reg: &Reg, repo: &str, tag: &str, layer: &[u8]) -> Digest {
    let c = blob(reg, repo, b"{}");
    let l = blob(reg, repo, layer);
    put(reg, repo, tag, &image_manifest(&c, &l, layer.len())).0
}

/// A multi-arch index of two images at `repo:tag`, with a signature-like referrer of it:
/// (index, children, referrer).
fn multi_arch(reg: &Reg, repo: &str, tag: &str) -> (Digest, Vec<Digest>, Digest) {
    let mut kids = Vec::new();
    let mut descs = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = format!("layer of {repo}:{tag} for {arch}");
        let c = blob(reg, repo, b"{}");
        let l = blob(reg, repo, layer.as_bytes());
        let m = image_manifest(&c, &l, layer.len());
        let (d, len) = put(
            reg,
            repo,
            &Digest::sha256_of(m.to_string().as_bytes()).to_string(),
            &m,
        );
        descs.push(
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": len,
            "platform": {"os": "linux", "architecture": arch}}),
        );
        kids.push(d);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs});
    let (ix, ix_len) = put(reg, repo, tag, &index);
    let e = blob(reg, repo, b"{}");
    let text = format!("signature of {repo}:{tag}");
    let sig = blob(reg, repo, text.as_bytes());
    let referrer = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": e, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig", "digest": sig, "size": text.len()}],
        "subject": {"mediaType": OCI_INDEX, "digest": ix, "size": ix_len}});
    let r = put(
        reg,
        repo,
        &Digest::sha256_of(referrer.to_string().as_bytes()).to_string(),
        &referrer,
    )
    .0;
    (ix, kids, r)
}

// ---- what a registry serves, read through its /v2 API ---------------------------------------

fn catalog(reg: &Reg) -> Vec<String> {
    block_on(v2(reg).repositories(None, 1000)).expect("catalog")
}

fn tags(reg: &Reg, repo: &str) -> Vec<String> {
    block_on(v2(reg).tags(repo, None, 1000)).expect("tag list")
}

fn tag_of(reg: &Reg, repo: &str, tag: &str) -> Option<Digest> {
    block_on(v2(reg).tag(repo, tag)).expect("tag lookup")
}

fn has_manifest(reg: &Reg, repo: &str, d: &Digest) -> bool {
    block_on(v2(reg).manifest(repo, d))
        .expect("manifest read")
        .is_some()
}

/// Every tag `reg` lists (in every repository its catalog lists) resolves to a manifest it
/// serves, whose blobs, children and referrers it serves too, recursively: what a client
/// lists there pulls completely.
fn assert_consistent(reg: &Reg, when: &str) {
    let api = v2(reg);
    for repo in catalog(reg) {
        for tag in tags(reg, &repo) {
            let d = tag_of(reg, &repo, &tag)
                .unwrap_or_else(|| panic!("{when}: {repo}:{tag} is listed but does not resolve"));
            let mut todo = vec![d];
            let mut seen = HashSet::new();
            while let Some(d) = todo.pop() {
                if !seen.insert(d.clone()) {
                    continue;
                }
                let m = block_on(api.manifest(&repo, &d))
                    .expect("manifest read")
                    .unwrap_or_else(|| {
                        panic!("{when}: {repo}@{d} (under {tag}) is referenced but absent")
                    });
                for b in &m.info.blobs {
                    assert!(
                        block_on(api.has_blob(&repo, b)).expect("blob check"),
                        "{when}: blob {b} of {repo}@{d} (under {tag}) is missing"
                    );
                }
                todo.extend(m.info.children.iter().cloned());
                todo.extend(block_on(api.referrers(&repo, &d)).expect("referrers"));
            }
        }
    }
}

// ---- the API and the scheduler ------------------------------------------------------------

fn add_remote(a: &Reg, name: &str) {
    admin(
        a,
        Method::POST,
        "/api/v1/replication/registries",
        serde_json::json!({"name": name, "url": format!("http://{name}.test")}),
    );
}

fn add_rule(a: &Reg, rule: serde_json::Value) {
    admin(a, Method::POST, "/api/v1/replication/rules", rule);
}

/// `POST rules/<rule>/executions` as the admin: the response.
fn queue(a: &Reg, rule: &str) -> Resp {
    call(
        a,
        Method::POST,
        &format!("/api/v1/replication/rules/{rule}/executions"),
        Some(&basic("admin", "admin-pass-1")),
        b"{}",
    )
}

fn queue_ok(a: &Reg, rule: &str) -> String {
    let r = queue(a, rule);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    r.body["id"].as_str().expect("the run's id").to_owned()
}

fn tick<C: Connector>(a: &Reg, c: &C) -> TickReport {
    block_on(a.replication_tick(c, u64::MAX)).expect("tick")
}

/// The rule's runs, newest first.
fn history(a: &Reg, rule: &str) -> Vec<Execution> {
    block_on(runs::history(&a.meta, rule, 100)).expect("history")
}

fn last(a: &Reg, rule: &str) -> Execution {
    history(a, rule).into_iter().next().expect("a run")
}

/// The run as the API shows it (`GET executions/<id>`).
fn shown(a: &Reg, rule: &str, id: &str) -> Execution {
    let r = admin(
        a,
        Method::GET,
        &format!("/api/v1/replication/rules/{rule}/executions/{id}"),
        serde_json::json!({}),
    );
    serde_json::from_value(r.body).expect("an execution")
}

fn outcomes(e: &Execution) -> Vec<(String, String, String, Outcome)> {
    e.items
        .iter()
        .map(|i| {
            (
                i.repository.clone(),
                i.tag.clone(),
                i.destination.clone(),
                i.outcome,
            )
        })
        .collect()
}

fn item(repo: &str, tag: &str, dst: &str, o: Outcome) -> (String, String, String, Outcome) {
    (repo.into(), tag.into(), dst.into(), o)
}

fn selective_rule(direction: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "r", "direction": direction, "remote": "b",
        "repositories": [{"matches": "lib/**"}, {"excludes": "lib/secret*"}],
        "tags": [{"excludes": "*-dev"}],
        "destination_namespace": "mirror",
    })
}

/// The content the selective rule is tried on, in `src`: (lib/app:v1, lib/multi:latest's
/// index, children and referrer).
fn selective_content(src: &Reg) -> (Digest, (Digest, Vec<Digest>, Digest)) {
    let app = image(src, "lib/app", "v1", b"app v1");
    image(src, "lib/app", "v2-dev", b"app v2-dev");
    let multi = multi_arch(src, "lib/multi", "latest");
    image(src, "lib/secret", "v1", b"secret");
    image(src, "other/x", "v1", b"other");
    (app, multi)
}

/// What the selective rule leaves at `dst`: exactly the selected artifacts, renamed, whole.
fn assert_selected_copy(dst: &Reg, app: &Digest, multi: &(Digest, Vec<Digest>, Digest)) {
    assert_eq!(catalog(dst), ["mirror/app", "mirror/multi"]);
    assert_eq!(tags(dst, "mirror/app"), ["v1"], "v2-dev is excluded");
    assert_eq!(tags(dst, "mirror/multi"), ["latest"]);
    assert_eq!(tag_of(dst, "mirror/app", "v1").as_ref(), Some(app));
    let (ix, kids, sig) = multi;
    assert_eq!(tag_of(dst, "mirror/multi", "latest").as_ref(), Some(ix));
    for k in kids {
        assert!(has_manifest(dst, "mirror/multi", k), "child {k}");
    }
    assert!(has_manifest(dst, "mirror/multi", sig), "referrer {sig}");
    assert_eq!(
        block_on(v2(dst).referrers("mirror/multi", ix)).expect("referrers"),
        std::slice::from_ref(sig)
    );
    for absent in [
        "lib/app",
        "lib/secret",
        "mirror/secret",
        "other/x",
        "mirror/x",
    ] {
        assert!(tags(dst, absent).is_empty(), "{absent} was copied");
    }
    assert_consistent(dst, "after the run");
}

fn assert_first_run(e: &Execution) {
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert!(e.error.is_none() && e.finished_ms.is_some(), "{e:?}");
    assert_eq!(
        outcomes(e),
        [
            item("lib/app", "v1", "mirror/app", Outcome::Copied),
            item("lib/multi", "latest", "mirror/multi", Outcome::Copied),
        ]
    );
    assert!(e.items.iter().all(|i| i.digest.is_some()));
    let t = e.totals;
    assert_eq!((t.artifacts, t.copied, t.failed), (2, 2, 0), "{t:?}");
    // lib/app: its manifest; lib/multi: two children, the index, the referrer.
    assert_eq!(t.manifests_copied, 5, "{t:?}");
    // lib/app: config and layer; lib/multi: config once, two layers, the signature.
    assert_eq!(t.blobs_copied, 6, "{t:?}");
}

fn assert_second_run(e: &Execution) {
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert_eq!(
        outcomes(e),
        [
            item("lib/app", "v1", "mirror/app", Outcome::Present),
            item("lib/multi", "latest", "mirror/multi", Outcome::Present),
        ]
    );
    let t = e.totals;
    assert_eq!((t.artifacts, t.copied, t.present), (2, 0, 2), "{t:?}");
    assert_eq!((t.manifests_copied, t.blobs_copied), (0, 0), "{t:?}");
}

// ---- 1, 2: push and pull rules -------------------------------------------------------------

#[test]
fn a_push_rule_copies_what_it_selects_renamed_and_whole_and_a_second_run_finds_it_present() {
    let (a, b) = pair();
    let (app, multi) = selective_content(&a);
    add_remote(&a, "b");
    add_rule(&a, selective_rule("push"));
    let id = queue_ok(&a, "r");
    let report = tick(&a, &To(&b));
    assert_eq!((report.advanced, report.finished), (1, 1), "{report:?}");
    let e = shown(&a, "r", &id);
    assert_eq!(e.trigger, Started::Manual);
    assert_eq!(e.requested_by, "admin");
    assert_first_run(&e);
    assert_selected_copy(&b, &app, &multi);
    // The manifests are the source's bytes.
    let (ix, _, _) = &multi;
    let src = block_on(v2(&a).manifest("lib/multi", ix))
        .expect("read")
        .expect("a");
    let dst = block_on(v2(&b).manifest("mirror/multi", ix))
        .expect("read")
        .expect("b");
    assert_eq!(src.bytes, dst.bytes);

    // A second run (a second later: run ids sort by their start).
    at(&a, &b, T0 + 1000);
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    assert_second_run(&last(&a, "r"));
    assert_eq!(history(&a, "r").len(), 2);
    assert_selected_copy(&b, &app, &multi);
}

#[test]
fn a_pull_rule_copies_from_the_remote_into_this_registry_the_same_way() {
    let (a, b) = pair();
    let (app, multi) = selective_content(&b);
    add_remote(&a, "b");
    add_rule(&a, selective_rule("pull"));
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    assert_first_run(&last(&a, "r"));
    assert_selected_copy(&a, &app, &multi);
    // The remote, the source, is as it was.
    assert_eq!(
        catalog(&b),
        ["lib/app", "lib/multi", "lib/secret", "other/x"]
    );

    at(&a, &b, T0 + 1000);
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    assert_second_run(&last(&a, "r"));
    assert_selected_copy(&a, &app, &multi);
}

// ---- 3, 4: a destination that goes down ----------------------------------------------------

/// (repository under `mirror/`, tag, digest) of each tag a run must copy.
type Tagged = Vec<(&'static str, &'static str, Digest)>;

/// Content for the interrupted runs: its tags, and the manifests below them that must
/// arrive too.
fn resumable_content(a: &Reg) -> (Tagged, Vec<Digest>) {
    let (ix, mut below, sig) = multi_arch(a, "lib/multi", "latest");
    below.push(sig);
    let v1 = image(a, "lib/app", "v1", b"app one");
    let v2 = image(a, "lib/app", "v2", b"app two");
    (
        vec![
            ("app", "v1", v1),
            ("app", "v2", v2),
            ("multi", "latest", ix),
        ],
        below,
    )
}

fn resumable_setup() -> (Reg, Reg, Tagged, Vec<Digest>) {
    let (a, b) = pair();
    let (tagged, below) = resumable_content(&a);
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b",
            "repositories": [{"matches": "lib/**"}], "destination_namespace": "mirror"}),
    );
    queue_ok(&a, "r");
    (a, b, tagged, below)
}

#[test]
fn a_run_stopped_at_any_request_leaves_the_destination_consistent_and_resumes_from_its_cursor() {
    // Count the requests of a whole run first.
    let (a, b, _, _) = resumable_setup();
    let counting = Down::new(&b, None);
    tick(&a, &ToDown(&counting));
    assert_eq!(last(&a, "r").status, ExecStatus::Succeeded);
    let total = counting.sent.get();
    assert!(total >= 20, "a run of three tags made {total} requests");

    let mut stopped_with = HashSet::new();
    for n in 0..total {
        let when = format!("down after {n} requests");
        let (a, b, tagged, below) = resumable_setup();
        let down = Down::new(&b, Some(n));
        let report = tick(&a, &ToDown(&down));
        assert_eq!((report.advanced, report.finished), (1, 0), "{when}");
        let e = last(&a, "r");
        assert_eq!(e.status, ExecStatus::Retrying, "{when}: {e:?}");
        assert_eq!((e.attempts, e.retries.len()), (1, 1), "{when}");
        assert!(
            e.retries[0].error.contains("down"),
            "{when}: {:?}",
            e.retries
        );
        assert_eq!(e.retries[0].at_ms, T0);
        assert_eq!(
            e.next_attempt_ms,
            T0 + a.config.replication_retry_base_ms,
            "{when}"
        );
        assert!(!e.cursor.done, "{when}: {:?}", e.cursor);
        assert!(e.finished_ms.is_none());
        let before = e.items.clone();
        stopped_with.insert(before.len());
        // What the finished tags' cursor says is where they are.
        // The cursor is after the last tag done: in its repository, or at the start of the
        // next one.
        if let Some(i) = before.last() {
            if e.cursor.repository.as_deref() == Some(i.repository.as_str()) {
                assert_eq!(e.cursor.after.as_deref(), Some(i.tag.as_str()), "{when}");
            } else {
                assert!(
                    e.cursor.repository.as_deref() > Some(i.repository.as_str())
                        && e.cursor.after.is_none(),
                    "{when}: {:?}",
                    e.cursor
                );
            }
        }
        assert_consistent(&b, &when);

        // Before its time it waits, even with the destination up.
        down.fail_after.set(None);
        at(&a, &b, e.next_attempt_ms - 1);
        assert_eq!(tick(&a, &ToDown(&down)).advanced, 0, "{when}");
        at(&a, &b, e.next_attempt_ms);
        let report = tick(&a, &ToDown(&down));
        assert_eq!((report.advanced, report.finished), (1, 1), "{when}");
        let e = last(&a, "r");
        assert_eq!(e.status, ExecStatus::Succeeded, "{when}: {e:?}");
        assert_eq!((e.attempts, e.retries.len()), (1, 1), "{when}");
        assert!(e.error.is_none(), "{when}: {e:?}");
        // The cursor was kept: the tags done before the stop are not done again, and each
        // tag has one result.
        assert_eq!(&e.items[..before.len()], &before[..], "{when}");
        assert_eq!(
            outcomes(&e),
            [
                item("lib/app", "v1", "mirror/app", Outcome::Copied),
                item("lib/app", "v2", "mirror/app", Outcome::Copied),
                item("lib/multi", "latest", "mirror/multi", Outcome::Copied),
            ],
            "{when}"
        );
        for (repo, tag, d) in &tagged {
            assert_eq!(
                tag_of(&b, &format!("mirror/{repo}"), tag).as_ref(),
                Some(d),
                "{when}: {repo}:{tag}"
            );
        }
        for d in &below {
            assert!(has_manifest(&b, "mirror/multi", d), "{when}: {d}");
        }
        assert_consistent(&b, &when);
    }
    // Stops came before the first tag, between tags and before the last.
    for k in [0, 1, 2] {
        assert!(
            stopped_with.contains(&k),
            "no stop with {k} tags done: {stopped_with:?}"
        );
    }
}

#[test]
fn a_run_against_a_destination_that_stays_down_gives_up_and_releases_its_rule() {
    let (a, b, _, _) = resumable_setup();
    let down = Down::new(&b, Some(0));
    let base = a.config.replication_retry_base_ms;
    for attempt in 1..=MAX_ATTEMPTS {
        let report = tick(&a, &ToDown(&down));
        assert_eq!(report.advanced, 1, "attempt {attempt}");
        let e = last(&a, "r");
        assert_eq!(e.attempts, attempt);
        assert_eq!(e.retries.len(), attempt as usize);
        if attempt < MAX_ATTEMPTS {
            assert_eq!(e.status, ExecStatus::Retrying, "attempt {attempt}");
            assert_eq!(
                e.next_attempt_ms - now(&a),
                base << (attempt - 1),
                "the wait doubles"
            );
            // Still the rule's one run.
            assert_eq!(queue(&a, "r").status, StatusCode::CONFLICT);
            at(&a, &b, e.next_attempt_ms);
        } else {
            assert_eq!(e.status, ExecStatus::Failed, "{e:?}");
            assert!(e.finished_ms.is_some());
            assert!(
                e.error.as_deref().is_some_and(|m| m.contains("down")),
                "{e:?}"
            );
        }
    }
    assert!(tags(&b, "mirror/app").is_empty());
    // The claim is released: a new run is queued.
    let id = queue_ok(&a, "r");
    assert_eq!(last(&a, "r").id, id);
    assert_eq!(history(&a, "r").len(), 2);
}

// ---- 5: one run at a time ------------------------------------------------------------------

#[test]
fn a_rule_has_one_active_run_and_one_lease_holder() {
    let (a, b) = pair();
    image(&a, "lib/app", "v1", b"x");
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b"}),
    );
    let first = queue_ok(&a, "r");
    let second = queue(&a, "r");
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    assert_eq!(code(&second), "CONFLICT");
    assert!(second.body.to_string().contains(&first), "{}", second.body);
    assert_eq!(history(&a, "r").len(), 1);
    // Once it ends, the next one is taken.
    tick(&a, &To(&b));
    assert_eq!(last(&a, "r").status, ExecStatus::Succeeded);
    queue_ok(&a, "r");

    let docs = &a.meta;
    let take = |t: u64, until: u64| block_on(runs::take_lease(docs, "r", t, until)).expect("lease");
    let mut held = take(T0, T0 + 1000).expect("a free lease");
    assert!(take(T0, T0 + 1000).is_none(), "two holders at once");
    assert!(take(T0 + 999, T0 + 2000).is_none(), "taken before expiry");
    // Another rule's lease is its own.
    assert!(
        block_on(runs::take_lease(docs, "other", T0, T0 + 1000))
            .expect("lease")
            .is_some()
    );
    // Renewed, it holds past its first expiry.
    block_on(held.renew(docs, T0 + 500, T0 + 5000)).expect("renew");
    assert!(take(T0 + 2000, T0 + 3000).is_none(), "taken while renewed");
    // Expired: of two contenders, exactly one wins.
    let contenders = [take(T0 + 5000, T0 + 9000), take(T0 + 5000, T0 + 9000)];
    assert_eq!(contenders.iter().filter(|c| c.is_some()).count(), 1);
    // Released: free at once.
    let [x, y] = contenders;
    let winner = x.or(y).expect("a winner");
    block_on(winner.release(docs)).expect("release");
    assert!(
        take(T0 + 5001, T0 + 9000).is_some(),
        "a released lease is free"
    );
}

#[test]
fn a_lease_taken_over_cannot_be_renewed_by_its_old_holder() {
    let (a, _b) = pair();
    let docs = &a.meta;
    let mut old = block_on(runs::take_lease(docs, "r", T0, T0 + 1000))
        .expect("lease")
        .expect("free");
    // The old holder is slow; after expiry another scheduler takes over.
    let new = block_on(runs::take_lease(docs, "r", T0 + 2000, T0 + 3000))
        .expect("lease")
        .expect("expired, so taken over");
    // The old holder's renewal must not pass for a hold.
    let renewed = block_on(old.renew(docs, T0 + 2500, T0 + 60_000));
    assert!(
        renewed.is_err(),
        "the old holder renewed a lease another holds"
    );
    // And once the new holder is done and its lease expired, nothing of the old blocks.
    block_on(new.release(docs)).expect("release");
    assert!(
        block_on(runs::take_lease(docs, "r", T0 + 4000, T0 + 5000))
            .expect("lease")
            .is_some(),
        "a lease taken over still blocks after its new holder released it"
    );
}

// ---- 6: sealed credentials -----------------------------------------------------------------

const SECRET: &str = "a secret key that is long enough for sealing";
const PASSWORD: &str = "pa55-w0rd-of-the-remote-XYZZY";

#[test]
fn a_remotes_password_is_stored_sealed_opens_only_for_its_record_and_key_and_reaches_the_transport()
{
    let key = SealKey::from_secret(SECRET).expect("key");
    let (a, b) = pair_with(Config {
        secret_key: Some(key.clone()),
        ..Config::default()
    });
    image(&a, "lib/app", "v1", b"x");
    let created = admin(
        &a,
        Method::POST,
        "/api/v1/replication/registries",
        serde_json::json!({"name": "b", "url": "http://b.test", "username": "robot", "password": PASSWORD}),
    );
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["has_password"], true);
    let listed = admin(
        &a,
        Method::GET,
        "/api/v1/replication/registries",
        serde_json::json!({}),
    );
    for body in [&created.body, &listed.body] {
        assert!(!body.to_string().contains(PASSWORD), "{body}");
        assert!(
            !body.to_string().contains("v1:"),
            "the sealed value shown: {body}"
        );
    }
    // No stored remote holds the password's bytes.
    let stored = block_on(a.meta.list_docs(replication::REMOTE, "", None, 1000)).expect("docs");
    assert_eq!(stored.len(), 1);
    for (id, raw) in &stored {
        assert!(
            !raw.windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "remote {id} stores the password"
        );
    }
    let remote_b = block_on(replication::remote(&a.meta, "b"))
        .expect("read")
        .expect("b");
    let sealed = remote_b.password_sealed.clone().expect("sealed");
    assert!(sealed.starts_with(&format!("v1:{}:", key.id())), "{sealed}");
    let right = Credentials {
        username: "robot".into(),
        password: PASSWORD.into(),
    };
    assert_eq!(
        remote_b.credentials(Some(&key)).expect("opens"),
        Some(right.clone())
    );

    // The sealed value copied into another remote's record does not open there.
    let c = Remote {
        name: "c".into(),
        ..remote_b.clone()
    };
    block_on(a.meta.put_doc(
        replication::REMOTE,
        "c",
        &serde_json::to_vec(&c).expect("json"),
        true,
    ))
    .expect("write c");
    let remote_c = block_on(replication::remote(&a.meta, "c"))
        .expect("read")
        .expect("c");
    assert_eq!(remote_c.password_sealed.as_deref(), Some(sealed.as_str()));
    assert!(remote_c.credentials(Some(&key)).is_err());
    // Another key, or none, opens nothing; the error names the key it needs.
    let other = SealKey::from_secret("another secret key, also long enough").expect("key");
    let e = remote_b.credentials(Some(&other)).expect_err("wrong key");
    assert!(e.message.contains(key.id()), "{}", e.message);
    assert!(remote_b.credentials(None).is_err());

    // A run connects with the opened credentials.
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b"}),
    );
    add_rule(
        &a,
        serde_json::json!({"name": "rc", "direction": "push", "remote": "c"}),
    );
    queue_ok(&a, "r");
    queue_ok(&a, "rc");
    let rec = Recording {
        to: &b,
        got: RefCell::new(Vec::new()),
    };
    tick(&a, &rec);
    assert_eq!(*rec.got.borrow(), [("b".to_owned(), Some(right))]);
    assert_eq!(last(&a, "r").status, ExecStatus::Succeeded);
    assert_eq!(tags(&b, "lib/app"), ["v1"]);
    // The rule on the copied record fails before it connects, and says why.
    let e = last(&a, "rc");
    assert_eq!(e.status, ExecStatus::Failed, "{e:?}");
    assert!(
        e.error
            .as_deref()
            .is_some_and(|m| m.contains("does not open")),
        "{e:?}"
    );
}

// ---- 7, 8: triggers ------------------------------------------------------------------------

#[test]
fn an_on_push_rule_runs_for_pushes_to_what_it_selects_after_it_was_written() {
    let (a, b) = pair();
    push_image(&a, "lib/old", "v1");
    at(&a, &b, T0 + 1000);
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b",
            "repositories": [{"matches": "lib/**"}], "trigger": {"kind": "on_push"}}),
    );
    // What was there before the rule is a manual run's to copy.
    at(&a, &b, T0 + 1500);
    assert_eq!(tick(&a, &To(&b)).queued, 0);
    assert!(history(&a, "r").is_empty());

    at(&a, &b, T0 + 2000);
    push_image(&a, "lib/app", "v1");
    let report = tick(&a, &To(&b));
    assert_eq!((report.queued, report.finished), (1, 1), "{report:?}");
    let e = last(&a, "r");
    assert_eq!(e.trigger, Started::OnPush);
    assert_eq!(e.requested_by, "scheduler");
    assert_eq!(e.only.as_deref(), Some(&["lib/app".to_owned()][..]));
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert_eq!(
        outcomes(&e),
        [item("lib/app", "v1", "lib/app", Outcome::Copied)]
    );
    assert_eq!(
        tag_of(&b, "lib/app", "v1"),
        tag_of(&a, "lib/app", "v1"),
        "lib/app:v1 at B"
    );
    assert!(tags(&b, "lib/old").is_empty(), "the old push was copied");

    // A push the rule does not select queues nothing; nor does a tick with no pushes.
    at(&a, &b, T0 + 3000);
    push_image(&a, "other/x", "v1");
    assert_eq!(tick(&a, &To(&b)).queued, 0);
    assert_eq!(tick(&a, &To(&b)).queued, 0);
    assert_eq!(history(&a, "r").len(), 1);
    assert!(tags(&b, "other/x").is_empty());

    // The next selected push makes the next run.
    at(&a, &b, T0 + 4000);
    push_image(&a, "lib/app", "v2");
    assert_eq!(tick(&a, &To(&b)).queued, 1);
    let e = last(&a, "r");
    assert_eq!(e.only.as_deref(), Some(&["lib/app".to_owned()][..]));
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert_eq!(tag_of(&b, "lib/app", "v2"), tag_of(&a, "lib/app", "v2"));
    assert_eq!(history(&a, "r").len(), 2);
}

#[test]
fn a_scheduled_rule_runs_once_per_period() {
    let (a, b) = pair();
    image(&a, "lib/app", "v1", b"x");
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b",
            "trigger": {"kind": "scheduled", "every_secs": 60}}),
    );
    let start = T0 + 1000;
    at(&a, &b, start);
    let report = tick(&a, &To(&b));
    assert_eq!((report.queued, report.finished), (1, 1), "{report:?}");
    let e = last(&a, "r");
    assert_eq!(e.trigger, Started::Scheduled);
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert_eq!(e.totals.copied, 1);

    at(&a, &b, start + 10_000);
    assert_eq!(tick(&a, &To(&b)).queued, 0);
    at(&a, &b, start + 59_999);
    assert_eq!(tick(&a, &To(&b)).queued, 0);
    assert_eq!(history(&a, "r").len(), 1);

    at(&a, &b, start + 61_000);
    assert_eq!(tick(&a, &To(&b)).queued, 1);
    let h = history(&a, "r");
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].trigger, Started::Scheduled);
    assert_eq!(h[0].status, ExecStatus::Succeeded, "{:?}", h[0]);
    assert_eq!((h[0].totals.copied, h[0].totals.present), (0, 1));
}

// ---- 9: delete sync and override -----------------------------------------------------------

#[test]
fn delete_sync_deletes_the_destinations_tags_the_source_no_longer_has() {
    let (a, b) = pair();
    let v1 = image(&a, "lib/app", "v1", b"one");
    image(&a, "lib/app", "v2", b"two");
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b",
            "destination_namespace": "mirror", "delete_sync": true}),
    );
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    assert_eq!(last(&a, "r").status, ExecStatus::Succeeded);
    assert_eq!(tags(&b, "mirror/app"), ["v1", "v2"]);
    let at_b = tag_of(&b, "mirror/app", "v2").expect("v2 at B");

    at(&a, &b, T0 + 1000);
    block_on(v2(&a).delete_tag("lib/app", "v2")).expect("delete at A");
    assert_eq!(tags(&a, "lib/app"), ["v1"]);
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    let e = last(&a, "r");
    assert_eq!(e.status, ExecStatus::Succeeded, "{e:?}");
    assert_eq!(
        outcomes(&e),
        [
            item("lib/app", "v1", "mirror/app", Outcome::Present),
            item("lib/app", "v2", "mirror/app", Outcome::Deleted),
        ]
    );
    assert_eq!(
        e.items[1].digest.as_deref(),
        Some(at_b.to_string().as_str())
    );
    assert_eq!(e.totals.deleted, 1);
    assert_eq!(tags(&b, "mirror/app"), ["v1"]);
    assert_eq!(tag_of(&b, "mirror/app", "v2"), None);
    assert_eq!(tag_of(&b, "mirror/app", "v1"), Some(v1));
    assert_consistent(&b, "after delete sync");
}

#[test]
fn with_override_off_a_destination_tag_that_points_elsewhere_is_skipped_and_kept() {
    let (a, b) = pair();
    image(&a, "lib/app", "v1", b"a's v1");
    let v2_a = image(&a, "lib/app", "v2", b"a's v2");
    let theirs = image(&b, "mirror/app", "v1", b"b's own v1");
    add_remote(&a, "b");
    add_rule(
        &a,
        serde_json::json!({"name": "r", "direction": "push", "remote": "b",
            "destination_namespace": "mirror", "override": false, "delete_sync": true}),
    );
    queue_ok(&a, "r");
    tick(&a, &To(&b));
    let e = last(&a, "r");
    assert_eq!(
        e.status,
        ExecStatus::Succeeded,
        "a skip is no failure: {e:?}"
    );
    assert_eq!(
        outcomes(&e),
        [
            item("lib/app", "v1", "mirror/app", Outcome::Skipped),
            item("lib/app", "v2", "mirror/app", Outcome::Copied),
        ]
    );
    assert!(
        e.items[0]
            .error
            .as_deref()
            .is_some_and(|m| m.contains(&theirs.to_string()) && m.contains("override")),
        "{:?}",
        e.items[0]
    );
    assert_eq!(e.totals.skipped, 1);
    assert_eq!(tag_of(&b, "mirror/app", "v1"), Some(theirs));
    assert_eq!(tag_of(&b, "mirror/app", "v2"), Some(v2_a));
    assert_consistent(&b, "after skipping");
}

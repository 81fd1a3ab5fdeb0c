//! A soak of garbage collection against a running registry, over HTTP: for
//! `WHARF_SOAK_SECS` (default 60; the long soak in `bench/` sets more; at least
//! `WHARF_SOAK_MIN_PUSHES` pushes, default 20, or it proved nothing), pushers push images
//! that share base layers — docker's HEAD-then-skip and cross-repository mounts included —
//! while a deleter deletes images and collections run in a loop, alternately with a grace
//! of 0 s and of 2 s. At the end every push that was answered 201 pulls with verified
//! digests, and after a final collection the bytes in storage are exactly the bytes the
//! remaining manifests reference (nothing lost, nothing leaked). It prints the counts,
//! including how many collections happened while pushes were in flight.
//!
//! Local server only for the storage check (it reads the data directory); set
//! `WHARF_SOAK_BLOB_DIR` to the blob directory of another runtime's store to check it there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_tests::*;

const BASES: usize = 3;
const PUSHERS: usize = 4;
const REPOS_PER_PUSHER: usize = 3;

/// A push the registry answered 201: what must pull afterwards.
#[derive(Clone, Debug)]
struct Pushed {
    repo: String,
    manifest: String,
    blobs: Vec<(String, usize)>,
}

#[derive(Default)]
struct Counts {
    pushes: AtomicU64,
    retried: AtomicU64,
    deleted: AtomicU64,
    gc_runs: AtomicU64,
    gc_collected_during_pushes: AtomicU64,
}

fn admin_json(
    t: &Target,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let (u, p) = t
        .creds
        .clone()
        .expect("the soak needs auth on (admin credentials)");
    let agent = agent();
    let url = format!("{}/api/v1/{path}", t.base);
    let mut resp = match body {
        Some(b) => agent
            .post(&url)
            .header("Authorization", &basic(&u, &p))
            .send_json(b),
        None => agent
            .get(&url)
            .header("Authorization", &basic(&u, &p))
            .call(),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert!(
        resp.status().is_success(),
        "{method} {url}: {}",
        resp.status()
    );
    resp.body_mut().read_json().expect("json")
}

/// Runs one collection to its end; its totals.
fn collect(t: &Target, grace_secs: u64) -> serde_json::Value {
    let run = admin_json(
        t,
        "POST",
        "gc",
        Some(serde_json::json!({"grace_secs": grace_secs})),
    );
    let id = run["id"].as_str().expect("a run id").to_owned();
    for _ in 0..6000 {
        let r = admin_json(t, "GET", &format!("gc/{id}"), None);
        if r["finished_ms"].is_u64() {
            assert_eq!(r["status"], "finished", "{r}");
            return r["progress"]["totals"].clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("collection {id} did not finish in 5 minutes");
}

/// A failure a client retries on (what losing a race with a collection answers).
fn retryable(r: &Resp) -> bool {
    (r.status == 404 && r.code() == "BLOB_UPLOAD_UNKNOWN")
        || (r.status == 400 && r.code() == "MANIFEST_BLOB_UNKNOWN")
}

/// One push of an image: the bases (HEAD-then-skip, or mounted from `soak/base`), a layer
/// and a config of its own. `None` if the registry refused in a way clients retry.
fn push_once(t: &Target, repo: &str, bases: &[Vec<u8>], mount: bool, n: u64) -> Option<Pushed> {
    let token = t.token(&format!(
        "repository:{repo}:pull,push,delete&scope=repository:soak/base:pull"
    ));
    let c = t.client(repo).with_token(token);
    let mut blobs = Vec::new();
    for b in bases {
        let d = sha256(b);
        let found = if mount {
            let r = c.req(
                "POST",
                &c.path(&format!("blobs/uploads/?mount={d}&from=soak/base")),
                &[],
                None,
            );
            assert!(
                matches!(r.status, 201 | 202),
                "mount: {} {}",
                r.status,
                r.code()
            );
            r.status == 201
        } else {
            let r = c.req("HEAD", &c.path(&format!("blobs/{d}")), &[], None);
            assert!(matches!(r.status, 200 | 404), "HEAD: {}", r.status);
            r.status == 200
        };
        if !found {
            let r = c.req(
                "POST",
                &c.path(&format!("blobs/uploads/?digest={d}")),
                &[],
                Some(b),
            );
            if retryable(&r) {
                return None;
            }
            r.expect(201, None);
        }
        blobs.push((d, b.len()));
    }
    let own = random_bytes(4096 + (n as usize % 4096));
    let config = format!("{{\"soak\":\"{repo}\",\"n\":{n}}}").into_bytes();
    for b in [&own, &config] {
        let d = sha256(b);
        let r = c.req(
            "POST",
            &c.path(&format!("blobs/uploads/?digest={d}")),
            &[],
            Some(b),
        );
        if retryable(&r) {
            return None;
        }
        r.expect(201, None);
        blobs.push((d, b.len()));
    }
    let layers: Vec<&[u8]> = bases
        .iter()
        .map(Vec::as_slice)
        .chain([own.as_slice()])
        .collect();
    let m = c.image_manifest(&config, &layers);
    let r = c.put_manifest(
        &format!("t{n}"),
        "application/vnd.oci.image.manifest.v1+json",
        &m,
    );
    if retryable(&r) {
        return None;
    }
    r.expect(201, None);
    Some(Pushed {
        repo: repo.to_owned(),
        manifest: sha256(&m),
        blobs,
    })
}

/// Bytes of the files under `dir`.
fn stored_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[test]
fn pushes_deletes_and_collections_at_once_lose_nothing_and_leak_nothing() {
    let secs: u64 = std::env::var("WHARF_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let t = Target::fresh();
    let blob_dir = std::env::var("WHARF_SOAK_BLOB_DIR")
        .map(std::path::PathBuf::from)
        .ok()
        .or_else(|| t.server.as_ref().map(|s| s.data_dir.join("blobs")));
    // The shared bases, kept by an image in soak/base that is never deleted.
    let bases: Vec<Vec<u8>> = (0..BASES).map(|i| random_bytes(8192 * (i + 1))).collect();
    let base = push_once(&t, "soak/base", &bases, false, 0).expect("the base image");

    let pushed: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    std::thread::scope(|s| {
        for p in 0..PUSHERS {
            let (t, bases, pushed, counts, stop, in_flight) = (
                &t,
                &bases,
                pushed.clone(),
                counts.clone(),
                stop.clone(),
                in_flight.clone(),
            );
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let repo = format!("soak/p{p}-{}", n as usize % REPOS_PER_PUSHER);
                    let mount = n.is_multiple_of(2);
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let mut done = push_once(t, &repo, bases, mount, n);
                    // What a client does with a retryable error: push again, until it works.
                    let mut tries = 0;
                    while done.is_none() {
                        tries += 1;
                        assert!(tries < 50, "a push kept failing");
                        counts.retried.fetch_add(1, Ordering::SeqCst);
                        done = push_once(t, &repo, bases, mount, n);
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    counts.pushes.fetch_add(1, Ordering::SeqCst);
                    if let (Some(d), Ok(mut v)) = (done, pushed.lock()) {
                        v.push(d);
                    }
                }
            });
        }
        {
            let (t, pushed, counts, stop) = (&t, pushed.clone(), counts.clone(), stop.clone());
            s.spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(30));
                    i += 1;
                    let victim = pushed.lock().ok().and_then(|mut v| {
                        let n = v.len();
                        (n > 4).then(|| v.swap_remove(i % n))
                    });
                    let Some(v) = victim else { continue };
                    let c = t.client(&v.repo);
                    c.req(
                        "DELETE",
                        &c.path(&format!("manifests/{}", v.manifest)),
                        &[],
                        None,
                    )
                    .expect(202, None);
                    counts.deleted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        {
            let (t, counts, stop, in_flight) =
                (&t, counts.clone(), stop.clone(), in_flight.clone());
            s.spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    k += 1;
                    let busy = in_flight.load(Ordering::SeqCst) > 0;
                    let totals = collect(t, if k.is_multiple_of(2) { 2 } else { 0 });
                    counts.gc_runs.fetch_add(1, Ordering::SeqCst);
                    let n = totals["links"].as_u64().unwrap_or(0)
                        + totals["blobs"].as_u64().unwrap_or(0);
                    if busy && in_flight.load(Ordering::SeqCst) > 0 {
                        counts
                            .gc_collected_during_pushes
                            .fetch_add(n, Ordering::SeqCst);
                    }
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::SeqCst);
    });

    // Every push answered 201 and not deleted pulls whole.
    let mut remaining = pushed.lock().map(|v| v.clone()).unwrap_or_default();
    remaining.push(base);
    for p in &remaining {
        let c = t.client(&p.repo);
        c.req(
            "GET",
            &c.path(&format!("manifests/{}", p.manifest)),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            None,
        )
        .expect(200, None);
        for (d, len) in &p.blobs {
            let r = c.req("GET", &c.path(&format!("blobs/{d}")), &[], None);
            assert_eq!(
                r.status, 200,
                "{}: blob {d} of a pushed image is lost",
                p.repo
            );
            assert_eq!(
                (sha256(&r.body), r.body.len()),
                (d.clone(), *len),
                "{d} whole"
            );
        }
    }
    // A final collection: then storage holds exactly what the remaining images reference.
    collect(&t, 0);
    collect(&t, 0);
    let referenced: BTreeMap<String, usize> = remaining
        .iter()
        .flat_map(|p| p.blobs.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let want: u64 = referenced.values().map(|n| *n as u64).sum();
    let c = |n: &AtomicU64| n.load(Ordering::SeqCst);
    eprintln!(
        "soak {secs} s: {} pushes ({} retried after losing a race), {} deletes, {} collections, \
         {} links and blobs collected while pushes were in flight; {} images remain, {} distinct blobs, {want} bytes",
        c(&counts.pushes),
        c(&counts.retried),
        c(&counts.deleted),
        c(&counts.gc_runs),
        c(&counts.gc_collected_during_pushes),
        remaining.len(),
        referenced.len()
    );
    // Enough work to have meant something: 20 pushes by default; a slower runtime (the
    // Lambdas over moto push a few an second) says its own with WHARF_SOAK_MIN_PUSHES.
    let min_pushes: u64 = std::env::var("WHARF_SOAK_MIN_PUSHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    assert!(c(&counts.pushes) >= min_pushes, "the soak pushed");
    assert!(c(&counts.deleted) >= min_pushes / 4, "the soak deleted");
    assert!(
        c(&counts.gc_collected_during_pushes) > 0,
        "collections collected while pushes were in flight, or the soak proved nothing"
    );
    if let Some(dir) = blob_dir {
        assert_eq!(
            stored_bytes(&dir),
            want,
            "the bytes in storage are those of the remaining images: nothing leaked"
        );
    }
}

//! A model of the race between pushes and garbage collection, under `shuttle`'s randomized
//! scheduler. Every port call of the memory adapters is a scheduling point (the wrappers
//! below yield before each), so the schedules differ in how the store operations of three
//! pushes and one collection interleave:
//! - a push that `HEAD`s a layer its repository links but no manifest references, and
//!   skips its upload when found (docker's pattern);
//! - a push that mounts that layer from another repository;
//! - a push of new blobs, whose links no manifest references until its manifest arrives;
//! - a collection with a grace of 0, so only the conditional writes protect the pushes.
//!
//! After each schedule: every push that succeeded pulls whole, with verified digests; every
//! push that failed got a spec error a client retries on, and pushing again succeeds. The
//! mutant (a link collection that decides by a read and deletes without a condition, as
//! the registries that lost data did) must fail the model.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wharf_core::error::StoreError;
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::*;
use wharf_core::runs::{GcOptions, RunStatus};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use wharf_core::{Config, Digest, Reference, Registry};

/// The store operations of one schedule, by task: what tells schedules apart.
type Trace = Arc<Mutex<Vec<(usize, &'static str)>>>;

/// An adapter whose every call first yields to the scheduler.
#[derive(Clone)]
struct Yielding<T> {
    inner: T,
    trace: Trace,
    /// The mutant: `collect_link` decides by a read and removes without a condition.
    unconditional: Arc<AtomicBool>,
}

impl<T> Yielding<T> {
    async fn point(&self, op: &'static str) {
        let me = usize::from(shuttle::current::me());
        if let Ok(mut t) = self.trace.lock() {
            t.push((me, op));
        }
        shuttle::future::yield_now().await;
    }
}

macro_rules! forward {
    ($( async fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.point(stringify!($name)).await;
                self.inner.$name($($arg),*).await
            }
        )*
    };
}

impl BlobStore for Yielding<MemoryBlobs> {
    type Reader = <MemoryBlobs as BlobStore>::Reader;
    type Writer = <MemoryBlobs as BlobStore>::Writer;
    forward! {
        async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;
        async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Self::Reader, StoreError>;
        async fn delete(&self, digest: &Digest) -> Result<(), StoreError>;
        async fn writer(&self, upload: &UploadRecord) -> Result<Self::Writer, StoreError>;
        async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError>;
        async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError>;
    }
}

impl BlobInventory for Yielding<MemoryBlobs> {
    forward! {
        async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>, StoreError>;
    }
}

impl MetadataStore for Yielding<MemoryMetadata> {
    forward! {
        async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError>;
        async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError>;
        async fn link_blob(&self, repo: &str, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError>;
        async fn unlink_blob(&self, repo: &str, digest: &Digest, at_ms: u64) -> Result<bool, StoreError>;
        async fn missing_blobs(&self, repo: &str, digests: &[Digest]) -> Result<Vec<Digest>, StoreError>;
        async fn missing_manifests(&self, repo: &str, digests: &[Digest]) -> Result<Vec<Digest>, StoreError>;
        async fn manifest(&self, repo: &str, reference: &Reference) -> Result<Option<StoredManifest>, StoreError>;
        async fn put_manifest(&self, repo: &str, manifest: &StoredManifest, tags: &[&str], at_ms: u64) -> Result<(), StoreError>;
        async fn delete_manifest(&self, repo: &str, digest: &Digest, at_ms: u64) -> Result<bool, StoreError>;
        async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError>;
        async fn list_tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Option<Page>, StoreError>;
        async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError>;
        async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError>;
        async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError>;
        async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError>;
        async fn update_upload(&self, upload: &UploadRecord, expected_offset: u64) -> Result<(), StoreError>;
        async fn delete_upload(&self, id: &str) -> Result<(), StoreError>;
        async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError>;
        async fn stale_uploads(&self, before_ms: u64, limit: usize) -> Result<Vec<UploadRecord>, StoreError>;
    }
}

impl DocumentStore for Yielding<MemoryMetadata> {
    forward! {
        async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
        async fn put_doc(&self, kind: &str, id: &str, value: &[u8], if_absent: bool) -> Result<(), StoreError>;
        async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;
        async fn list_docs(&self, kind: &str, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
        async fn append_event(&self, id: &str, value: &[u8]) -> Result<(), StoreError>;
    }
}

impl PullTimes for Yielding<MemoryMetadata> {
    forward! {
        async fn note_pull(&self, repo: &str, digest: &Digest, at_ms: u64, event: Option<(&str, &[u8])>) -> Result<(), StoreError>;
    }
}

impl BlobRecords for Yielding<MemoryMetadata> {
    forward! {
        async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError>;
        async fn unlinked_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobRecord>, StoreError>;
        async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError>;
        async fn mark_blob(&self, digest: &Digest, untouched_since_ms: u64, at_ms: u64) -> Result<bool, StoreError>;
        async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError>;
        async fn begin_blob_delete(&self, digest: &Digest, marked_at_ms: u64, at_ms: u64) -> Result<bool, StoreError>;
        async fn begin_unused_blob_delete(&self, digest: &Digest, untouched_since_ms: u64, at_ms: u64) -> Result<bool, StoreError>;
        async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError>;
    }
}

impl LinkCollection for Yielding<MemoryMetadata> {
    forward! {
        async fn touch_link(&self, repo: &str, digest: &Digest, at_ms: u64) -> Result<bool, StoreError>;
        async fn unreferenced_links(&self, after: Option<&LinkCursor>, limit: usize) -> Result<Vec<UnreferencedLink>, StoreError>;
    }
    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.point("collect_link").await;
        if !self.unconditional.load(Ordering::SeqCst) {
            return self
                .inner
                .collect_link(repo, digest, untouched_since_ms, at_ms)
                .await;
        }
        // The mutant: decided by a read, then removed unconditionally.
        let listed = self
            .inner
            .unreferenced_links(None, 10_000)
            .await?
            .iter()
            .any(|l| l.repo == repo && l.digest == *digest);
        self.point("collect_link: unlink").await;
        if listed {
            self.inner.unlink_blob(repo, digest, at_ms).await
        } else {
            Ok(false)
        }
    }
}

impl ManifestIndex for Yielding<MemoryMetadata> {
    forward! {
        async fn list_manifests(&self, repo: &str, after: Option<&Digest>, limit: usize) -> Result<Vec<ManifestEntry>, StoreError>;
        async fn list_tag_entries(&self, repo: &str, after: Option<&str>, limit: usize) -> Result<Vec<TagEntry>, StoreError>;
        async fn list_links(&self, repo: &str, after: Option<&Digest>, limit: usize) -> Result<Vec<LinkEntry>, StoreError>;
        async fn repositories_with(&self, digest: &Digest, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;
    }
}

impl UsageCounters for Yielding<MemoryMetadata> {
    forward! {
        async fn project_usage(&self, project: &str) -> Result<Usage, StoreError>;
        async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError>;
    }
}

impl ConditionalTags for Yielding<MemoryMetadata> {
    forward! {
        async fn put_manifest_expecting(&self, repo: &str, manifest: &StoredManifest, tags: &[(&str, TagExpect)], at_ms: u64) -> Result<(), StoreError>;
        async fn delete_tag_expecting(&self, repo: &str, tag: &str, digest: &Digest, at_ms: u64) -> Result<bool, StoreError>;
    }
}

impl Outbox for Yielding<MemoryMetadata> {
    forward! {
        async fn outbox_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
        async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError>;
    }
}

impl Backfill for Yielding<MemoryMetadata> {
    forward! {
        async fn schema_version(&self) -> Result<u32, StoreError>;
        async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError>;
    }
}

type Reg = Registry<Yielding<MemoryBlobs>, Yielding<MemoryMetadata>, TestEnv>;

const T0: u64 = 1_800_000_000_000;

async fn call(reg: &Reg, method: Method, uri: &str, body: &[u8]) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "reg.test")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = reg.handle(req).await;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, body)
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

/// How a push gets a blob into its repository.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// `HEAD`, and upload only if not found.
    HeadThenSkip,
    /// Mount from `p/base`, and upload if the mount is refused.
    Mount,
    /// Upload.
    Upload,
}

/// A failure a client retries on: the spec's error for an upload to start again or a
/// manifest whose blobs must be pushed again. Anything else (a 500, a 201 that lies) fails.
fn retryable(status: StatusCode, body: &Bytes) -> bool {
    let text = String::from_utf8_lossy(body);
    (status == StatusCode::NOT_FOUND && text.contains("BLOB_UPLOAD_UNKNOWN"))
        || (status == StatusCode::BAD_REQUEST && text.contains("MANIFEST_BLOB_UNKNOWN"))
}

async fn put_blob(reg: &Reg, repo: &str, way: Way, bytes: &[u8]) -> Result<(), String> {
    let d = Digest::sha256_of(bytes);
    match way {
        Way::HeadThenSkip => {
            let (s, _) = call(reg, Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), b"").await;
            if s == StatusCode::OK {
                return Ok(());
            }
        }
        Way::Mount => {
            let uri = format!("/v2/{repo}/blobs/uploads/?mount={d}&from=p/base");
            let (s, body) = call(reg, Method::POST, &uri, b"").await;
            if s == StatusCode::CREATED {
                return Ok(());
            }
            if s != StatusCode::ACCEPTED {
                return Err(format!("mount: {s} {}", String::from_utf8_lossy(&body)));
            }
        }
        Way::Upload => {}
    }
    let uri = format!("/v2/{repo}/blobs/uploads/?digest={d}");
    let (s, body) = call(reg, Method::POST, &uri, bytes).await;
    match s {
        StatusCode::CREATED => Ok(()),
        _ if retryable(s, &body) => Err("retry".into()),
        _ => Err(format!("upload: {s} {}", String::from_utf8_lossy(&body))),
    }
}

/// One push: its layer the way given, a config of its own, the manifest. `Ok(true)` if it
/// succeeded, `Ok(false)` if it failed in a way a client retries on.
async fn push(
    reg: &Reg,
    repo: &str,
    way: Way,
    layer: &[u8],
    config: &[u8],
) -> Result<bool, String> {
    for (w, b) in [(way, layer), (Way::Upload, config)] {
        match put_blob(reg, repo, w, b).await {
            Ok(()) => {}
            Err(e) if e == "retry" => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    let m = image(config, &[layer]);
    let (s, body) = call(reg, Method::PUT, &format!("/v2/{repo}/manifests/v1"), &m).await;
    match s {
        StatusCode::CREATED => Ok(true),
        _ if retryable(s, &body) => Ok(false),
        _ => Err(format!("manifest: {s} {}", String::from_utf8_lossy(&body))),
    }
}

/// Every byte of `repo:v1` comes back with its digest.
async fn pulls_whole(reg: &Reg, repo: &str) -> Result<(), String> {
    let (s, m) = call(reg, Method::GET, &format!("/v2/{repo}/manifests/v1"), b"").await;
    if s != StatusCode::OK {
        return Err(format!("{repo}:v1 answers {s}"));
    }
    let doc: serde_json::Value = serde_json::from_slice(&m).map_err(|e| e.to_string())?;
    let mut digests = vec![
        doc["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    for l in doc["layers"].as_array().into_iter().flatten() {
        digests.push(l["digest"].as_str().unwrap_or_default().to_owned());
    }
    for d in digests {
        let (s, b) = call(reg, Method::GET, &format!("/v2/{repo}/blobs/{d}"), b"").await;
        if s != StatusCode::OK || Digest::sha256_of(&b).to_string() != d {
            return Err(format!("{repo}:v1 lost blob {d}: {s}"));
        }
    }
    Ok(())
}

const BASE: &[u8] = b"the base layer every image shares";

/// A registry where `BASE` is linked into `p/base` and `p/app` by no manifest any more
/// (both were deleted), with every time at `T0`: a collection with a grace of 0 may take it.
async fn world(trace: &Trace, unconditional: bool) -> Arc<Reg> {
    let flag = Arc::new(AtomicBool::new(unconditional));
    let meta = Yielding {
        inner: MemoryMetadata::default(),
        trace: trace.clone(),
        unconditional: flag.clone(),
    };
    let blobs = Yielding {
        inner: MemoryBlobs::default(),
        trace: trace.clone(),
        unconditional: flag,
    };
    let env = TestEnv::default();
    env.now.store(T0, std::sync::atomic::Ordering::SeqCst);
    let reg = Arc::new(Registry::new(blobs, meta, env, Config::default()));
    for repo in ["p/base", "p/app"] {
        assert_eq!(
            push(&reg, repo, Way::Upload, BASE, repo.as_bytes()).await,
            Ok(true)
        );
        let m = image(repo.as_bytes(), &[BASE]);
        let uri = format!("/v2/{repo}/manifests/{}", Digest::sha256_of(&m));
        assert_eq!(
            call(&reg, Method::DELETE, &uri, b"").await.0,
            StatusCode::ACCEPTED
        );
    }
    reg
}

/// One schedule: three pushes and a collection at once, then the checks.
fn one_schedule(unconditional: bool, seen: &Mutex<HashSet<u64>>, deletions: &Mutex<u64>) {
    let trace: Trace = Arc::default();
    shuttle::future::block_on(async {
        let reg = world(&trace, unconditional).await;
        if let Ok(mut t) = trace.lock() {
            t.clear();
        }
        let pushes = [
            (
                "p/app",
                Way::HeadThenSkip,
                BASE,
                b"config of app".as_slice(),
            ),
            ("p/mnt", Way::Mount, BASE, b"config of mnt".as_slice()),
            (
                "p/new",
                Way::Upload,
                b"a layer of its own".as_slice(),
                b"config of new".as_slice(),
            ),
        ];
        let mut handles = Vec::new();
        for (repo, way, layer, config) in pushes {
            let reg = reg.clone();
            handles.push(shuttle::future::spawn(async move {
                (repo, way, push(&reg, repo, way, layer, config).await)
            }));
        }
        let gc = {
            let reg = reg.clone();
            shuttle::future::spawn(async move {
                let options = GcOptions {
                    grace_ms: 0,
                    upload_max_age_ms: 3_600_000,
                    dry_run: false,
                    verify: false,
                };
                reg.collect_garbage(options, "gc", 1000).await
            })
        };
        let mut outcomes = Vec::new();
        for h in handles {
            outcomes.push(h.await.expect("a push task"));
        }
        let run = gc.await.expect("the gc task").expect("the collection");
        assert_eq!(run.status, RunStatus::Finished);
        if let Ok(mut d) = deletions.lock() {
            *d += run.progress.totals.blobs + run.progress.totals.links;
        }
        for (repo, way, outcome) in outcomes {
            match outcome {
                Ok(true) => {
                    if let Err(e) = pulls_whole(&reg, repo).await {
                        panic!("a push by {way:?} succeeded and then {e}");
                    }
                }
                // Refused in a way clients retry: pushing again (no collection now) works.
                Ok(false) => {
                    let layer = if repo == "p/new" {
                        b"a layer of its own".as_slice()
                    } else {
                        BASE
                    };
                    let again = push(
                        &reg,
                        repo,
                        Way::Upload,
                        layer,
                        format!("config of {}", &repo[2..]).as_bytes(),
                    )
                    .await;
                    assert_eq!(again, Ok(true), "{repo} pushed again");
                    if let Err(e) = pulls_whole(&reg, repo).await {
                        panic!("a push by {way:?}, pushed again, then {e}");
                    }
                }
                Err(e) => {
                    panic!("a push by {way:?} failed with an error clients do not retry: {e}")
                }
            }
        }
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(t) = trace.lock() {
        t.hash(&mut h);
    }
    if let Ok(mut s) = seen.lock() {
        s.insert(h.finish());
    }
}

const SCHEDULES: usize = 3000;

#[test]
fn no_schedule_of_pushes_and_a_collection_loses_a_pushed_blob() {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let deletions = Arc::new(Mutex::new(0u64));
    let (s, d) = (seen.clone(), deletions.clone());
    shuttle::check_random(move || one_schedule(false, &s, &d), SCHEDULES);
    let distinct = seen.lock().map(|s| s.len()).unwrap_or(0);
    let deleted = deletions.lock().map(|d| *d).unwrap_or(0);
    eprintln!(
        "{SCHEDULES} random schedules, {distinct} distinct interleavings of store calls, {deleted} collections (links and blobs) during pushes"
    );
    assert!(distinct > SCHEDULES / 2, "the schedules differ: {distinct}");
    assert!(
        deleted > 0,
        "the collection collected while pushes were in flight"
    );
}

#[test]
fn the_model_catches_a_collection_without_its_conditional_write() {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let deletions = Arc::new(Mutex::new(0u64));
    let (s, d) = (seen.clone(), deletions.clone());
    let caught = std::panic::catch_unwind(move || {
        shuttle::check_random(move || one_schedule(true, &s, &d), SCHEDULES);
    });
    assert!(
        caught.is_err(),
        "the mutant passed the model: it proves nothing"
    );
}

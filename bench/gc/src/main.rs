//! `wharf-gc-bench`: garbage collection on a synthetic registry, for `bench/gc.sh`.
//!
//! The registry is built through the registry's own API, in process (no docker, no
//! network): `repositories` of 100 images each; an image is a config and a layer of its
//! own plus 3 of its repository's 100 shared layers, so 100,000 manifests make 300,000
//! blobs. Then, on the same store, each measured the same way (wall time, the process's
//! peak resident memory reset before each, the store calls the run counted and, on AWS,
//! every call the SDK made, by operation):
//! (a) a collection with nothing to collect, (b) one after deleting `delete` manifests
//! through the API, (c) a verification (`--verify`).
//!
//! `generate` and `measure` work on the embedded store (redb and files, what `wharf serve`
//! runs); `generate` also writes the same content in Distribution's storage layout, for its
//! `garbage-collect`. `aws` does all of it on S3 (s3s-fs) and DynamoDB (moto), which it
//! starts and stops. Every result is one JSON line on stdout.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wharf_core::ports::{BlobInventory, BlobStore, CollectableMeta, DocumentStore, Env};
use wharf_core::runs::{GcOptions, GcRun};
use wharf_core::{Config, Digest, Registry};

/// Images per repository, and shared layers per repository.
const PER_REPO: usize = 100;
/// Shared layers an image uses.
const SHARED: usize = 3;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Builds the registry on the embedded store in `dir` (and Distribution's layout of the
    /// same content in `distribution`, if given).
    Generate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        manifests: usize,
        #[arg(long)]
        distribution: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Measures (a), (b), (c) on the embedded store in `dir`; deletes the same manifests
    /// from `distribution`'s layout, if given, so its second `garbage-collect` has them.
    Measure {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        manifests: usize,
        #[arg(long, default_value_t = 1000)]
        delete: usize,
        #[arg(long)]
        distribution: Option<PathBuf>,
    },
    /// The same on S3 (s3s-fs) and DynamoDB (moto), started here.
    Aws {
        #[arg(long, default_value_t = 10_000)]
        manifests: usize,
        #[arg(long, default_value_t = 1000)]
        delete: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

fn repo_name(r: usize) -> String {
    format!("bench/r{r:05}")
}

fn shared_layer(r: usize, j: usize) -> Vec<u8> {
    format!("shared layer {j} of repository {r}, wharf gc bench").into_bytes()
}

/// One image of the synthetic registry.
struct Image {
    repo: String,
    tag: String,
    config: Vec<u8>,
    own: Vec<u8>,
    manifest: Vec<u8>,
    digest: Digest,
}

fn image(r: usize, i: usize) -> Image {
    let config = format!("{{\"config\":\"image {i} of repository {r}\"}}").into_bytes();
    let own = format!("own layer of image {i} of repository {r}, wharf gc bench").into_bytes();
    let mut layers = vec![(Digest::sha256_of(&own), own.len())];
    for k in 0..SHARED {
        let s = shared_layer(r, (i + k) % PER_REPO);
        layers.push((Digest::sha256_of(&s), s.len()));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Image {
        repo: repo_name(r),
        tag: format!("v{i}"),
        digest: Digest::sha256_of(&manifest),
        config,
        own,
        manifest,
    }
}

/// The images deleted for (b): spread over the repositories, 3 apart within one, so no
/// shared layer loses its last reference (each deleted image frees its config and own layer).
fn deleted(manifests: usize, delete: usize) -> Vec<(usize, usize)> {
    let repos = manifests / PER_REPO;
    (0..delete)
        .map(|k| (k % repos, (3 * (k / repos)) % PER_REPO))
        .collect()
}

async fn call<B: BlobStore, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<StatusCode, String> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "bench.test")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = reg.handle(req).await;
    let status = resp.status();
    if (status.is_server_error() || status.is_client_error())
        && let wharf_core::Body::Full(Some(b)) = resp.into_body()
    {
        eprintln!("[gc-bench] {status}: {}", String::from_utf8_lossy(&b));
    }
    Ok(status)
}

async fn push_blob<B: BlobStore, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    repo: &str,
    bytes: &[u8],
) -> Result<(), String> {
    let d = Digest::sha256_of(bytes);
    let uri = format!("/v2/{repo}/blobs/uploads/?digest={d}");
    match call(
        reg,
        Method::POST,
        &uri,
        "application/octet-stream",
        bytes.to_vec(),
    )
    .await?
    {
        StatusCode::CREATED => Ok(()),
        s => Err(format!("blob push to {repo}: {s}")),
    }
}

/// Pushes repository `r`: its shared layers, then its images.
async fn push_repo<B: BlobStore, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    r: usize,
) -> Result<(), String> {
    let repo = repo_name(r);
    for j in 0..PER_REPO {
        push_blob(reg, &repo, &shared_layer(r, j)).await?;
    }
    for i in 0..PER_REPO {
        let im = image(r, i);
        push_blob(reg, &repo, &im.config).await?;
        push_blob(reg, &repo, &im.own).await?;
        let uri = format!("/v2/{repo}/manifests/{}", im.tag);
        let s = call(
            reg,
            Method::PUT,
            &uri,
            "application/vnd.oci.image.manifest.v1+json",
            im.manifest,
        )
        .await?;
        if s != StatusCode::CREATED {
            return Err(format!("manifest push to {repo}: {s}"));
        }
    }
    Ok(())
}

async fn generate<B: BlobStore, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    manifests: usize,
    concurrency: usize,
) -> Result<f64, String> {
    let start = Instant::now();
    let repos = manifests / PER_REPO;
    let mut done = 0;
    let mut pushes = futures_util::stream::iter(0..repos)
        .map(|r| push_repo(reg, r))
        .buffer_unordered(concurrency);
    while let Some(r) = pushes.next().await {
        r?;
        done += 1;
        if done % 50 == 0 || done == repos {
            eprintln!(
                "[gc-bench] {done}/{repos} repositories ({} manifests) in {:.0} s",
                done * PER_REPO,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn delete<B: BlobStore, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    which: &[(usize, usize)],
) -> Result<(), String> {
    for &(r, i) in which {
        let im = image(r, i);
        let uri = format!("/v2/{}/manifests/{}", im.repo, im.digest);
        let s = call(reg, Method::DELETE, &uri, "", Vec::new()).await?;
        if s != StatusCode::ACCEPTED {
            return Err(format!("delete {uri}: {s}"));
        }
    }
    Ok(())
}

/// The process's peak resident memory in KiB since the last [`reset_peak`].
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak resident memory to the current (Linux: `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One measured run; `calls` reads the SDK's counters (AWS) after it.
async fn measure<B: BlobStore + BlobInventory, M: CollectableMeta, E: Env>(
    reg: &Registry<B, M, E>,
    case: &str,
    verify: bool,
    calls: impl Fn() -> Value,
) -> Result<Value, String> {
    let options = GcOptions {
        grace_ms: 0,
        upload_max_age_ms: 24 * 3_600_000,
        dry_run: false,
        verify,
    };
    reset_peak();
    let base = rss_kib();
    let start = Instant::now();
    let run: GcRun = reg
        .collect_garbage(options, "bench", 2000)
        .await
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let t = &run.progress.totals;
    Ok(json!({
        "case": case,
        "seconds": secs,
        "peak_rss_kib": peak_kib(),
        "rss_before_kib": base,
        "metadata_calls": t.metadata_calls,
        "blob_calls": t.blob_calls,
        "links": t.links,
        "blobs": t.blobs,
        "bytes": t.bytes,
        "checked": t.checked,
        "differences": t.differences,
        "status": run.status,
        "sdk_calls": calls(),
    }))
}

// ---- Distribution's layout ---------------------------------------------------------------

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn dist_blob(root: &Path, bytes: &[u8]) -> Result<(), String> {
    let d = Digest::sha256_of(bytes);
    let hex = d.hex();
    let p = root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    if p.exists() {
        return Ok(());
    }
    write_file(&p, bytes)
}

fn dist_repo(root: &Path, repo: &str) -> PathBuf {
    root.join(format!("docker/registry/v2/repositories/{repo}"))
}

fn dist_link(path: &Path, d: &Digest) -> Result<(), String> {
    write_file(path, d.to_string().as_bytes())
}

/// Writes the registry in Distribution 2.8's file-system layout: blobs (manifests too) under
/// `blobs/`, and per repository the layer links, the manifest revisions and the tags.
fn write_distribution(root: &Path, manifests: usize) -> Result<(), String> {
    let start = Instant::now();
    for r in 0..manifests / PER_REPO {
        let repo = repo_name(r);
        let base = dist_repo(root, &repo);
        for j in 0..PER_REPO {
            let s = shared_layer(r, j);
            dist_blob(root, &s)?;
            dist_link(
                &base.join(format!(
                    "_layers/sha256/{}/link",
                    Digest::sha256_of(&s).hex()
                )),
                &Digest::sha256_of(&s),
            )?;
        }
        for i in 0..PER_REPO {
            let im = image(r, i);
            for b in [&im.config, &im.own] {
                dist_blob(root, b)?;
                let d = Digest::sha256_of(b);
                dist_link(&base.join(format!("_layers/sha256/{}/link", d.hex())), &d)?;
            }
            dist_blob(root, &im.manifest)?;
            let h = im.digest.hex();
            dist_link(
                &base.join(format!("_manifests/revisions/sha256/{h}/link")),
                &im.digest,
            )?;
            dist_link(
                &base.join(format!("_manifests/tags/{}/current/link", im.tag)),
                &im.digest,
            )?;
            dist_link(
                &base.join(format!("_manifests/tags/{}/index/sha256/{h}/link", im.tag)),
                &im.digest,
            )?;
        }
        if (r + 1) % 100 == 0 {
            eprintln!(
                "[gc-bench] Distribution layout: {} repositories in {:.0} s",
                r + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// What Distribution's manifest `DELETE` does: the revision link and the tags on it go.
fn delete_distribution(root: &Path, which: &[(usize, usize)]) -> Result<(), String> {
    for &(r, i) in which {
        let im = image(r, i);
        let base = dist_repo(root, &im.repo);
        for p in [
            base.join(format!("_manifests/revisions/sha256/{}", im.digest.hex())),
            base.join(format!("_manifests/tags/{}", im.tag)),
        ] {
            std::fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    Ok(())
}

// ---- the stores ------------------------------------------------------------------------------

type Embedded =
    Registry<wharf_fs::FsBlobStore, wharf_embedded::EmbeddedMetadata, wharf_os::SystemEnv>;

fn embedded(dir: &Path) -> Result<Embedded, String> {
    let blobs = wharf_fs::FsBlobStore::open(dir.join("blobs")).map_err(|e| e.to_string())?;
    let meta = wharf_embedded::EmbeddedMetadata::open(&dir.join("wharf.redb"))
        .map_err(|e| e.to_string())?;
    Ok(Registry::new(blobs, meta, wharf_os::SystemEnv, config()))
}

fn config() -> Config {
    Config {
        delete_enabled: true,
        ..Config::default()
    }
}

fn du(path: &Path) -> u64 {
    if let Ok(m) = std::fs::metadata(path)
        && m.is_file()
    {
        return m.len();
    }
    let mut n = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => n += m.len(),
                Err(_) => {}
            }
        }
    }
    n
}

async fn run(args: Args) -> Result<(), String> {
    match args.cmd {
        Cmd::Generate {
            dir,
            manifests,
            distribution,
            concurrency,
        } => {
            let reg = embedded(&dir)?;
            let secs = generate(&reg, manifests, concurrency).await?;
            println!(
                "{}",
                json!({"case": "generate", "store": "embedded", "manifests": manifests,
                       "blobs": manifests / PER_REPO * (2 * PER_REPO + PER_REPO), "seconds": secs})
            );
            if let Some(root) = distribution {
                write_distribution(&root, manifests)?;
            }
        }
        Cmd::Measure {
            dir,
            manifests,
            delete: n,
            distribution,
        } => {
            let which = deleted(manifests, n);
            let out = |v: Value| println!("{v}");
            out(
                json!({"case": "sizes", "metadata_bytes": du(&dir.join("wharf.redb")),
                       "blob_bytes": du(&dir.join("blobs"))}),
            );
            // A fresh store for each case: no cache carried over from the one before. A
            // store is closed once its audit writer has written the run's events.
            for case in ["nothing", "delete", "after_delete", "verify"] {
                let reg = embedded(&dir)?;
                if case == "delete" {
                    delete(&reg, &which).await?;
                } else {
                    out(measure(&reg, case, case == "verify", || Value::Null).await?);
                }
                reg.meta.flush_events().await.map_err(|e| e.to_string())?;
            }
            if let Some(root) = distribution {
                delete_distribution(&root, &which)?;
            }
        }
        Cmd::Aws {
            manifests,
            delete: n,
            concurrency,
        } => aws(manifests, n, concurrency).await?,
    }
    Ok(())
}

async fn aws(manifests: usize, n: usize, concurrency: usize) -> Result<(), String> {
    use wharf_aws::CallCounter;
    use wharf_aws::testing;
    let s3 = testing::s3s_fs().ok_or("s3s-fs is not available")?;
    let ddb = testing::moto().ok_or("moto is not available")?;
    let (s3_calls, ddb_calls) = (CallCounter::default(), CallCounter::default());
    let registry = || async {
        let mut o = wharf_s3::S3Options::new("blobs");
        o.force_path_style = true;
        o.call_counter = Some(s3_calls.clone());
        let blobs = wharf_s3::S3BlobStore::new(&s3.sdk_config(), o)
            .await
            .map_err(|e| e.to_string())?;
        let mut o = wharf_dynamodb::DynamoOptions::new("wharf");
        o.call_counter = Some(ddb_calls.clone());
        let meta = wharf_dynamodb::DynamoMetadata::new(&ddb.sdk_config(), o);
        Ok::<_, String>(Registry::new(blobs, meta, wharf_os::SystemEnv, config()))
    };
    {
        let reg = registry().await?;
        reg.meta.create_table().await.map_err(|e| e.to_string())?;
        reg.blobs
            .client()
            .create_bucket()
            .bucket("blobs")
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    let reg = registry().await?;
    let secs = generate(&reg, manifests, concurrency).await?;
    println!(
        "{}",
        json!({"case": "generate", "store": "aws", "manifests": manifests, "seconds": secs})
    );
    let calls = || {
        let v = json!({"dynamodb": ddb_calls.snapshot(), "s3": s3_calls.snapshot()});
        ddb_calls.reset();
        s3_calls.reset();
        v
    };
    calls();
    println!(
        "{}",
        measure(&registry().await?, "nothing", false, calls).await?
    );
    delete(&registry().await?, &deleted(manifests, n)).await?;
    calls();
    println!(
        "{}",
        measure(&registry().await?, "after_delete", false, calls).await?
    );
    println!(
        "{}",
        measure(&registry().await?, "verify", true, calls).await?
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("wharf-gc-bench: {e}");
        std::process::exit(1);
    }
}

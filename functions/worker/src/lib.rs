//! The registry on Cloudflare Workers: every request (the OCI API, `/token`, `/api/v1`) goes
//! to the same `wharf_core::Registry` as `wharf serve` and the Lambda, on R2 (blobs, through
//! the binding `BLOBS`) and D1 (metadata and documents, binding `DB`).
//!
//! Only the conversion between workerd's request/response and `http` lives here. Request
//! bodies are not buffered (worker's `Body` reads the JS stream on demand and the core awaits
//! each write before the next read); blob responses hand R2's own stream to the response
//! untouched, so layer bytes never pass through wasm on a pull.
//!
//! Configuration (`[vars]` and secrets in `wrangler.toml`, read by the core's settings
//! loader, `wharf_core::settings`, which has the defaults):
//!
//! | variable | meaning |
//! |---|---|
//! | `WHARF_AUTH` | `on` (default) or `off` |
//! | `WHARF_SERVICE` | token service name (default `wharf`) |
//! | `WHARF_TOKEN_TTL_SECS` | access token lifetime (default 300) |
//! | `WHARF_REFRESH_TOKEN_TTL_SECS` | refresh token lifetime (default 2592000, 30 days) |
//! | `WHARF_TOKEN_KEYS_PEM` | signing keys (PEM, a secret); default: a key generated once and kept in D1 |
//! | `WHARF_ADMIN_PASSWORD` | creates `admin` with it if missing (a secret) |
//! | `WHARF_MAX_BODY_BYTES` | largest request body (default 104857600, the Free/Pro plans' limit) |
//! | `WHARF_UPLOAD_URL`, `WHARF_UPLOAD_SECRET` | an upload front and the secret shared with it, as on the Lambda (default none) |
//! | `WHARF_UPLOAD_MAX_AGE_HOURS` | the cron job removes uploads idle this long (default 24) |
//! | `WHARF_GC_INTERVAL_HOURS`, `WHARF_GC_GRACE_SECS` | the cron starts a retention pass and queues a garbage collection this often, the collection with this grace (defaults 24, 3600; 0 hours: neither); each tick advances both from their checkpoints |
//! | `WHARF_DISABLE_DELETE` | `true` refuses DELETEs |
//! | `WHARF_BASE_URL` | public URL, when the request URL is not it |
//! | `WHARF_R2_PREFIX` | key prefix inside the bucket (default none) |
//! | `WHARF_R2_PRESIGN_URL` | `https://<account>.r2.cloudflarestorage.com/<bucket>`: blob GETs become a `307` to a presigned URL there (secrets `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY` of an R2 API token); default: blobs are streamed |
//! | `WHARF_PRESIGN_TTL_SECS` | lifetime of presigned blob URLs (default 900) |
//! | `WHARF_LOG` | log level, `error` to `trace` (default `info`) |
//!
//! With `WHARF_FRONT_S3_BUCKET` set the Worker is instead the upload front of an AWS
//! deployment, with no R2 or D1: see [`front`].
#![deny(missing_docs)]

mod body;
mod config;
#[cfg(feature = "conformance")]
mod conformance;
pub mod front;
mod log;

use std::cell::RefCell;
use std::rc::Rc;
use wharf_core::auth::{TokenService, stored_keys};
use wharf_core::http::{ClientAddr, OriginRule, RequestOrigin};
use wharf_core::{Env as CoreEnv, Registry};
use wharf_d1::D1Meta;
use wharf_r2::R2Blobs;
use worker::{Context, Env, Headers, HttpRequest, Response, ResponseBuilder, event};

/// The core's clock and randomness on workerd: `Date.now()` and `crypto.getRandomValues`.
/// (`SystemTime::now()` panics on wasm32.)
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerEnv;

impl CoreEnv for WorkerEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }
    fn fill_random(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom02::getrandom(buf) {
            // No entropy means no safe ids or keys: stop rather than hand out guessable ones.
            panic!("crypto.getRandomValues failed: {e}");
        }
    }
    async fn sleep_ms(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

type App = Registry<R2Blobs, D1Meta, WorkerEnv>;

/// Which registry this Worker runs.
enum Mode {
    /// The registry itself, on R2 and D1.
    Edge(App),
    /// The upload front of an AWS deployment.
    Front(front::FrontApp),
}

/// What one isolate keeps between requests: the registry (its token cache survives) and
/// the settings the entry point itself reads.
struct Isolate {
    mode: Mode,
    origin: OriginRule,
    upload_max_age_ms: u64,
    /// Scheduled garbage collection.
    gc: wharf_core::settings::GcSchedule,
}

thread_local! {
    /// Bindings and variables are fixed for an isolate's life, so the registry is built by
    /// its first request. Never borrowed across an `.await`: requests interleave here.
    static ISOLATE: RefCell<Option<Rc<Isolate>>> = const { RefCell::new(None) };
}

async fn isolate(env: &Env) -> Result<Rc<Isolate>, String> {
    if let Some(i) = ISOLATE.with(|c| c.borrow().clone()) {
        return Ok(i);
    }
    log::init(config::vars(env).text("WHARF_LOG").as_deref());
    let built = Rc::new(build(env).await?);
    // Two first requests may both build; the second keeps its own (both are equivalent).
    ISOLATE.with(|c| *c.borrow_mut() = Some(built.clone()));
    Ok(built)
}

async fn build(env: &Env) -> Result<Isolate, String> {
    let vars = config::vars(env);
    // workerd hands over the URL the client used.
    let origin = vars.origin(RequestOrigin::Url);
    if let Some(app) = front::build(&vars)? {
        return Ok(Isolate {
            mode: Mode::Front(app),
            origin,
            upload_max_age_ms: 0,
            // A front collects nothing: the deployment's own jobs do.
            gc: wharf_core::settings::GcSchedule {
                every_ms: 0,
                grace_ms: 0,
                upload_max_age_ms: 0,
            },
        });
    }
    let bucket = env
        .bucket("BLOBS")
        .map_err(|e| format!("R2 binding BLOBS: {e}"))?;
    let db = env.d1("DB").map_err(|e| format!("D1 binding DB: {e}"))?;
    let mut blobs = R2Blobs::new(bucket, vars.text("WHARF_R2_PREFIX").unwrap_or_default());
    // Tests only: a lower single-put limit sends smaller blobs through the multipart
    // assembly that blobs over 4.995 GiB take.
    #[cfg(feature = "conformance")]
    if let Some(n) = vars.optional_number("WHARF_R2_MAX_SINGLE_PUT")? {
        blobs = blobs.with_max_single_put(n);
    }
    if let Some(url) = vars.text("WHARF_R2_PRESIGN_URL") {
        let id = vars.required_by("R2_ACCESS_KEY_ID", "WHARF_R2_PRESIGN_URL")?;
        let secret = vars.required_by("R2_SECRET_ACCESS_KEY", "WHARF_R2_PRESIGN_URL")?;
        blobs = blobs.with_presign(&url, &id, &secret);
    }
    let meta = D1Meta::new(db);
    let config = vars.config(Some(config::FREE_PLAN_BODY))?;
    let mut app = Registry::new(blobs, meta, WorkerEnv, config);
    if let Some(settings) = vars.tokens()? {
        let keys = match vars.token_keys_pem()? {
            Some(keys) => keys,
            None => stored_keys(&app.meta, &WorkerEnv)
                .await
                .map_err(|e| format!("token key in D1: {}", e.message))?,
        };
        if let Some(p) = vars.admin_password() {
            wharf_core::auth::ensure_admin(&app.meta, &WorkerEnv, Some(&p))
                .await
                .map_err(|e| e.message)?;
        }
        app = app.with_auth(TokenService::new(keys, settings));
    } else {
        tracing::warn!("auth is off: anyone who can reach this Worker can push, pull and delete");
    }
    Ok(Isolate {
        mode: Mode::Edge(app),
        origin,
        upload_max_age_ms: vars.upload_max_age_hours()? * 3_600_000,
        gc: vars.gc_schedule()?,
    })
}

fn unavailable(msg: &str) -> worker::Result<Response> {
    let body = serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": msg}]});
    let headers = Headers::new();
    headers.append("content-type", "application/json")?;
    Ok(ResponseBuilder::new()
        .with_status(503)
        .with_headers(headers)
        .fixed(body.to_string().into_bytes()))
}

#[event(fetch)]
async fn fetch(mut req: HttpRequest, env: Env, ctx: Context) -> worker::Result<Response> {
    let isolate = match isolate(&env).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            worker::console_error!("wharf cannot start: {e}");
            return unavailable(&format!("the registry is misconfigured: {e}"));
        }
    };
    let origin = isolate.origin.origin(req.uri(), req.headers());
    let client = req
        .headers()
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    req.extensions_mut().insert(origin);
    req.extensions_mut().insert(ClientAddr(client));
    let (parts, req_body) = req.into_parts();
    let req_body = body::Retained::new(req_body);
    let req = http::Request::from_parts(parts, req_body.clone());
    let app = match &isolate.mode {
        Mode::Front(front) => {
            let resp = front.handle(req).await;
            drain_if_refused(&req_body, resp.status()).await;
            return into_response::<front::FrontBlobs>(resp);
        }
        Mode::Edge(app) => app,
    };
    #[cfg(feature = "conformance")]
    if req.uri().path() == "/__conformance" && req.method() == http::Method::POST {
        conformance::run(&app.meta, &app.blobs).await;
        return Response::ok("conformance passed");
    }
    #[cfg(feature = "conformance")]
    if req.uri().path() == "/__r2" {
        return r2_keys(&env, req.uri().query().unwrap_or_default()).await;
    }
    let resp = app.handle(req).await;
    drain_if_refused(&req_body, resp.status()).await;
    // Audit events of this request are written after the response is sent, so a pull
    // costs one D1 read and no write on its way.
    let events = app.meta.take_events();
    ctx.wait_until(async move {
        if let Err(e) = events.write().await {
            tracing::error!(error = %e, "writing audit events failed");
        }
    });
    into_response::<R2Blobs>(resp)
}

/// An error answer may leave the body unread: read it (bounded) first, or workerd resets
/// the connection under a client still sending it.
async fn drain_if_refused(body: &body::Retained, status: http::StatusCode) {
    if (status.is_client_error() || status.is_server_error()) && !body.is_done() {
        body.drain().await;
    }
}

/// `GET /__r2?prefix=P` (tests only): the R2 keys under P, so a test can see that nothing
/// of an upload is left behind.
#[cfg(feature = "conformance")]
async fn r2_keys(env: &Env, query: &str) -> worker::Result<Response> {
    let prefix = query.strip_prefix("prefix=").unwrap_or_default().to_owned();
    let bucket = env.bucket("BLOBS")?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let mut list = bucket.list().prefix(prefix.clone());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await?;
        keys.extend(page.objects().iter().map(|o| o.key()));
        cursor = page.cursor();
        if !page.truncated() {
            break;
        }
    }
    Response::ok(format!("{} keys\n{}", keys.len(), keys.join("\n")))
}

/// How a blob store's body becomes a workerd response body.
trait IntoResponseBody {
    fn into_body(self, b: ResponseBuilder) -> worker::Result<Response>;
}

/// R2's own stream, handed over as is (no copy through wasm).
impl IntoResponseBody for wharf_r2::R2Reader {
    fn into_body(self, b: ResponseBuilder) -> worker::Result<Response> {
        match self.into_raw() {
            Some(raw) => Ok(b.stream(raw)),
            None => Err("blob stream was already read".into()),
        }
    }
}

/// The front's S3 reads are whole bodies (it serves no blob downloads).
impl IntoResponseBody
    for futures_util::stream::Once<
        futures_util::future::Ready<Result<bytes::Bytes, wharf_core::StoreError>>,
    >
{
    fn into_body(self, b: ResponseBuilder) -> worker::Result<Response> {
        use futures_util::{FutureExt, StreamExt};
        let mut s = self;
        match s.next().now_or_never().flatten() {
            Some(Ok(bytes)) => Ok(b.fixed(bytes.to_vec())),
            Some(Err(e)) => Err(e.to_string().into()),
            None => Ok(b.empty()),
        }
    }
}

/// `http::Response` of the core → workerd's Response.
fn into_response<B>(resp: wharf_core::http::ApiResponse<B>) -> worker::Result<Response>
where
    B: wharf_core::BlobStore,
    B::Reader: IntoResponseBody,
{
    let (parts, body) = resp.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        // Every header the core sets is visible ASCII; skip rather than fail on others.
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v)?;
        }
    }
    let b = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers);
    Ok(match body {
        wharf_core::Body::Empty | wharf_core::Body::Full(None) => b.empty(),
        wharf_core::Body::Full(Some(bytes)) => b.fixed(bytes.to_vec()),
        wharf_core::Body::Stream(r) => return r.into_body(b),
    })
}

/// Subrequests one invocation may make on the Workers Paid plan (binding calls to D1 and
/// R2 count): a cron run plans its phases to stay inside it, and logs what it made.
const SUBREQUESTS_PER_INVOCATION: u64 = 1_000;

/// Subrequests this isolate has made so far (D1 and R2 binding calls).
fn subrequests() -> u64 {
    wharf_d1::d1::subrequests() + wharf_r2::subrequests()
}

/// What is left of an invocation's subrequests that started at `start`, less a margin for
/// the phase that overruns its estimate.
fn left(start: u64) -> u64 {
    (SUBREQUESTS_PER_INVOCATION - 100).saturating_sub(subrequests() - start)
}

/// Uploads one cron run removes at most: each costs about five subrequests (D1 page, R2
/// list, deletes, D1 delete); the next run takes the rest.
const CLEANUP_PER_RUN: usize = 100;

/// The cron trigger, bounded by an invocation's subrequests, each phase continuing next
/// time where it stopped: the upload cleanup, a step of the retention pass and of the
/// garbage-collection runs (each queued when due, every `WHARF_GC_INTERVAL_HOURS`), steps
/// of the metadata backfill, and the outbox's trim.
#[event(scheduled)]
async fn scheduled(event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    let start = subrequests();
    let isolate = match isolate(&env).await {
        Ok(i) => i,
        Err(e) => {
            worker::console_error!("wharf cannot start: {e}");
            return;
        }
    };
    let app = match &isolate.mode {
        Mode::Edge(app) => app,
        // The deployment's own scheduled functions clean up its uploads.
        Mode::Front(_) => return,
    };
    let cron = event.cron();
    let cleanup = CLEANUP_PER_RUN.min((left(start) / 5 / 3) as usize);
    match app
        .cleanup_uploads_at_most(isolate.upload_max_age_ms, cleanup)
        .await
    {
        Ok(n) => tracing::info!(cron = %cron, removed = n, "upload cleanup"),
        Err(e) => tracing::error!(cron = %cron, error = %e.message, "upload cleanup failed"),
    }
    // Retention before collection, so the collection frees what retention deleted.
    let schedule = &isolate.gc;
    if schedule.every_ms > 0 {
        match app
            .retention_tick(
                schedule.every_ms,
                RETENTION_CALLS_PER_RUN.min(left(start) / 3),
            )
            .await
        {
            Ok(Some(p)) => tracing::info!(
                cron = %cron, finished = p.finished_ms.is_some(), deleted = p.deleted(),
                projects = p.projects.len(), "retention step"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(cron = %cron, error = %e.message, "retention failed"),
        }
    }
    // Garbage collection: a scheduled run when one is due, and a bounded step of the runs
    // queued (by the schedule or the API); each run continues from its checkpoint at the
    // next tick.
    match app
        .gc_tick(schedule, GC_CALLS_PER_RUN.min(left(start) / 2))
        .await
    {
        Ok(runs) => {
            for r in runs {
                tracing::info!(cron = %cron, run = %r.id, status = ?r.status, "garbage collection step");
            }
        }
        Err(e) => tracing::error!(cron = %cron, error = %e.message, "garbage collection failed"),
    }
    // Content written before this version gets its records, a bounded step per run (each
    // step is a few subrequests); garbage collection will wait for it.
    use wharf_core::ports::{Backfill, BackfillProgress};
    for _ in 0..BACKFILL_STEPS_PER_RUN {
        if left(start) < 10 {
            break;
        }
        match app.meta.backfill_step(BACKFILL_ROWS_PER_STEP).await {
            Ok(BackfillProgress::Done) => break,
            Ok(BackfillProgress::Running { .. }) => {}
            Err(e) => {
                tracing::error!(cron = %cron, error = %e, "metadata backfill failed");
                break;
            }
        }
    }
    // The outbox loses what every replica is past (two subrequests).
    if left(start) >= 2
        && let Err(e) = app.trim_outbox().await
    {
        tracing::error!(cron = %cron, error = %e.message, "outbox trim failed");
    }
    tracing::info!(
        cron = %cron,
        subrequests = subrequests() - start,
        limit = SUBREQUESTS_PER_INVOCATION,
        "cron run done"
    );
}

/// Store calls a cron run's retention step makes, about.
const RETENTION_CALLS_PER_RUN: u64 = 150;

/// Store calls a cron run's garbage-collection step makes, about.
const GC_CALLS_PER_RUN: u64 = 150;

/// Backfill steps one cron run makes at most, and rows each step counts: about 3 D1 calls
/// a step.
const BACKFILL_STEPS_PER_RUN: usize = 20;
const BACKFILL_ROWS_PER_STEP: usize = 200;

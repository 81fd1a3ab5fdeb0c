//! `wharf`: the registry server and the admin CLI. A thin shell: it builds adapters from
//! configuration and hands every request to `wharf_core::Registry`.

mod api_client;
mod cli;
mod config;
mod keys;
mod limits;
mod replication_cli;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use clap::{Parser, Subcommand};
use config::{Backend, Limits, ServeArgs, Settings};
use limits::{ConnectionLimit, Retained};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_aws_stack::{AwsSettings, AwsStores};
use wharf_core::auth::{Keys, TokenService};
use wharf_core::http::{ClientAddr, OriginRule, TrustedProxies};
use wharf_core::jobs::replicate::pass::PassOptions;
use wharf_core::jobs::replicate::triggers::TickReport;
use wharf_core::jobs::replicate::v2::V2Target;
use wharf_core::oci::home::ForwardHome;
use wharf_core::runs::GcOptions;
use wharf_core::settings::Vars;
use wharf_core::{Registry, ports::DocumentStore};
use wharf_dynamodb::DynamoMetadata;
use wharf_embedded::EmbeddedMetadata;
use wharf_fs::FsBlobStore;
use wharf_os::SystemEnv;
use wharf_s3::S3BlobStore;
use wharf_v2_client::{Forwarder, HttpConnector, HttpTransport};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A container registry for people who would rather not run servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: api_client::Conn,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the registry (local disk and an embedded database, or S3 and DynamoDB).
    Serve(ServeArgs),
    /// Set up an AWS deployment's stores.
    #[command(subcommand)]
    Aws(AwsCommand),
    /// Manage users, projects, members, robots and read the audit log of a running registry.
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

#[derive(Subcommand)]
enum AwsCommand {
    /// Create the bucket and table named by WHARF_S3_BUCKET and WHARF_DYNAMODB_TABLE (if
    /// missing), the token signing key and the user 'admin' (password from
    /// WHARF_ADMIN_PASSWORD, or generated and printed once). For development and tests;
    /// in the cloud, Terraform creates the bucket and table.
    Bootstrap,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP front needs of a registry, object-safe and with `Send` futures.
///
/// The core is generic over its stores and its futures are `Send` only by inference on
/// concrete types (its ports carry no `Send` bound, for Workers); implementing this for
/// each concrete registry checks that once per backend and lets one server loop serve any.
trait App: Send + Sync + 'static {
    fn call(&self, req: Request) -> BoxFuture<'_, Response>;
    fn cleanup_uploads(&self, max_age_ms: u64) -> BoxFuture<'_, Result<usize, String>>;
    /// Advances unfinished garbage-collection runs; how many it advanced.
    fn advance_gc(&self, budget: u64) -> BoxFuture<'_, Result<usize, String>>;
    /// Queues a scheduled garbage-collection run.
    fn queue_gc(&self, options: GcOptions) -> BoxFuture<'_, Result<String, String>>;
    /// Applies every project's retention policy; artifacts deleted.
    fn apply_retention(&self) -> BoxFuture<'_, Result<u64, String>>;
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// One replication step to the replica: (entries handled, finished).
    fn replicate<'a>(
        &'a self,
        target: &'a Replicator,
    ) -> BoxFuture<'a, Result<(usize, bool), String>>;
    fn backfill(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Removes the outbox entries every replica is past; how many went.
    fn trim_outbox(&self) -> BoxFuture<'_, Result<usize, String>>;
    /// The home region to forward a write to, on a registry of several regions.
    fn forward_target<'a>(
        &'a self,
        parts: &'a http::request::Parts,
    ) -> BoxFuture<'a, Option<ForwardHome>>;
    /// One tick of the replication rules' scheduler.
    fn replication_tick(&self, deadline_ms: u64) -> BoxFuture<'_, Result<TickReport, String>>;
}

/// The metadata stores' backfill (records for content written before this version), for
/// the stores that have one yet.
trait StoreBackfill {
    fn run_backfill(&self) -> BoxFuture<'_, Result<(), String>>;
}

impl StoreBackfill for EmbeddedMetadata {
    fn run_backfill(&self) -> BoxFuture<'_, Result<(), String>> {
        use wharf_core::ports::{Backfill, BackfillProgress};
        Box::pin(async move {
            // Steps of 1,000 rows, each its own transaction, so serving goes on beside it.
            while let BackfillProgress::Running { .. } =
                self.backfill_step(1000).await.map_err(|e| e.to_string())?
            {}
            Ok(())
        })
    }
}

impl StoreBackfill for DynamoMetadata {
    fn run_backfill(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

macro_rules! app_for {
    ($blobs:ty, $meta:ty) => {
        impl App for Registry<$blobs, $meta, SystemEnv> {
            fn call(&self, req: Request) -> BoxFuture<'_, Response> {
                Box::pin(async move { self.handle(req).await.map(axum::body::Body::new) })
            }
            fn cleanup_uploads(&self, max_age_ms: u64) -> BoxFuture<'_, Result<usize, String>> {
                Box::pin(async move {
                    Registry::cleanup_uploads(self, max_age_ms)
                        .await
                        .map_err(|e| e.message)
                })
            }
            fn advance_gc(&self, budget: u64) -> BoxFuture<'_, Result<usize, String>> {
                Box::pin(async move {
                    Registry::advance_gc(self, budget)
                        .await
                        .map(|runs| runs.iter().filter(|r| r.error.is_none()).count())
                        .map_err(|e| e.message)
                })
            }
            fn queue_gc(&self, options: GcOptions) -> BoxFuture<'_, Result<String, String>> {
                Box::pin(async move {
                    Registry::queue_gc(self, options, "scheduler")
                        .await
                        .map(|run| run.id)
                        .map_err(|e| e.message)
                })
            }
            fn apply_retention(&self) -> BoxFuture<'_, Result<u64, String>> {
                Box::pin(async move {
                    Registry::apply_retention(self)
                        .await
                        .map(|p| p.deleted())
                        .map_err(|e| e.message)
                })
            }
            fn backfill(&self) -> BoxFuture<'_, Result<(), String>> {
                self.meta.run_backfill()
            }
            fn forward_target<'a>(
                &'a self,
                parts: &'a http::request::Parts,
            ) -> BoxFuture<'a, Option<ForwardHome>> {
                Box::pin(Registry::forward_target(self, parts))
            }
            fn replication_tick(
                &self,
                deadline_ms: u64,
            ) -> BoxFuture<'_, Result<TickReport, String>> {
                Box::pin(async move {
                    Registry::replication_tick(self, &HttpConnector, deadline_ms)
                        .await
                        .map_err(|e| e.message)
                })
            }
            fn trim_outbox(&self) -> BoxFuture<'_, Result<usize, String>> {
                Box::pin(async move { Registry::trim_outbox(self).await.map_err(|e| e.message) })
            }
            fn replicate<'a>(
                &'a self,
                target: &'a Replicator,
            ) -> BoxFuture<'a, Result<(usize, bool), String>> {
                Box::pin(async move {
                    let r = self
                        .replicate_step(target, REPLICA, PassOptions::default())
                        .await
                        .map_err(|e| e.message)?;
                    if let Some(e) = &r.state.last_error {
                        return Err(e.clone());
                    }
                    Ok((r.handled, r.finished))
                })
            }
            fn flush(&self) -> BoxFuture<'_, ()> {
                Box::pin(async move {
                    if let Err(e) = self.meta.flush_events().await {
                        tracing::warn!(error = %e, "could not flush audit events");
                    }
                })
            }
        }
    };
}
app_for!(FsBlobStore, EmbeddedMetadata);
app_for!(S3BlobStore, DynamoMetadata);

struct AppState {
    app: Box<dyn App>,
    /// Wakes the garbage-collection runner when the API queued a run.
    gc_queued: tokio::sync::Notify,
    origin: OriginRule,
    limits: Limits,
    trusted_proxies: TrustedProxies,
    /// Sends requests on to their project's home region (a registry of several regions).
    forwarder: Option<Forwarder>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.resolve().and_then(serve),
        Command::Aws(AwsCommand::Bootstrap) => aws_bootstrap(),
        Command::Admin(cmd) => cli::run(cli.conn, cmd),
    };
    if let Err(e) = result {
        eprintln!("wharf: {e}");
        std::process::exit(1);
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting runtime: {e}"))
}

fn serve(s: Settings) -> Result<(), String> {
    init_logging(s.json_logs);
    runtime()?.block_on(run(s))
}

/// The process environment, through the core's settings loader: what `wharf aws
/// bootstrap` and the AWS stores of `wharf serve` read (they have no flags).
fn env_vars() -> Vars<impl Fn(&str) -> Option<String>> {
    Vars::new(|name: &str| std::env::var(name).ok())
}

fn aws_bootstrap() -> Result<(), String> {
    init_logging(false);
    runtime()?.block_on(async {
        let vars = env_vars();
        let stores = wharf_aws_stack::open(&AwsSettings::from_vars(&vars)?).await?;
        for line in wharf_aws_stack::bootstrap(&stores).await? {
            println!("{line}");
        }
        let keys = wharf_aws_stack::token_keys(&stores, &SystemEnv, vars.token_keys_pem()?).await?;
        println!("token signing key {}", keys.signing_kid());
        keys::ensure_admin(&stores.meta, &SystemEnv, vars.admin_password().as_deref()).await?;
        println!("user admin ready");
        Ok(())
    })
}

/// Builds the registry on `blobs` and `meta`, with auth from `keys` when it is on.
async fn registry<B, M>(
    s: &Settings,
    blobs: B,
    meta: M,
    keys: impl AsyncFnOnce(&M) -> Result<Keys, String>,
) -> Result<Registry<B, M, SystemEnv>, String>
where
    B: wharf_core::BlobStore,
    M: wharf_core::ports::ServingMeta,
{
    let mut registry = Registry::new(blobs, meta, SystemEnv, s.config.clone());
    if let Some(settings) = &s.tokens {
        let keys = keys(&registry.meta).await?;
        keys::ensure_admin(&registry.meta, &registry.env, s.admin_password.as_deref()).await?;
        registry = registry.with_auth(TokenService::new(keys, settings.clone()));
    } else {
        tracing::warn!("auth is off: anyone who can reach this address can push, pull and delete");
    }
    Ok(registry)
}

async fn build_app(s: &Settings) -> Result<(Box<dyn App>, Option<AwsStores>), String> {
    match s.backend {
        Backend::Local => {
            std::fs::create_dir_all(&s.data_dir)
                .map_err(|e| format!("creating {}: {e}", s.data_dir.display()))?;
            let blobs =
                FsBlobStore::open(&s.data_dir).map_err(|e| format!("opening blob store: {e}"))?;
            let meta = EmbeddedMetadata::open(&s.data_dir.join("meta.redb"))
                .map_err(|e| format!("opening metadata database: {e}"))?;
            let r = registry(s, blobs, meta, async |_: &EmbeddedMetadata| {
                keys::load_keys(&s.token_keys, &s.data_dir, &SystemEnv)
            })
            .await?;
            Ok((Box::new(r), None))
        }
        Backend::Aws => {
            let vars = env_vars();
            let stores = wharf_aws_stack::open(&AwsSettings::from_vars(&vars)?).await?;
            let r = registry(
                s,
                stores.blobs.clone(),
                stores.meta.clone(),
                async |_: &DynamoMetadata| {
                    if s.token_keys.is_empty() {
                        wharf_aws_stack::token_keys(&stores, &SystemEnv, vars.token_keys_pem()?)
                            .await
                    } else {
                        keys::load_keys(&s.token_keys, &s.data_dir, &SystemEnv)
                    }
                },
            )
            .await?;
            Ok((Box::new(r), Some(stores)))
        }
    }
}

async fn run(mut s: Settings) -> Result<(), String> {
    if s.config.secret_key.is_none() && s.backend == Backend::Local {
        s.config.secret_key = Some(keys::load_secret_key(&s.data_dir, &SystemEnv)?);
    }
    let (app, aws) = build_app(&s).await?;
    let state = Arc::new(AppState {
        app,
        gc_queued: tokio::sync::Notify::new(),
        origin: s.origin.clone(),
        limits: s.limits,
        trusted_proxies: s.trusted_proxies.clone(),
        forwarder: match &s.config.regions {
            Some(_) => Some(Forwarder::new()?),
            None => None,
        },
    });
    // The first sweep is part of start-up, then one every ten minutes.
    sweep_uploads(&state, s.upload_max_age_hours).await;
    tokio::spawn(upload_cleanup(state.clone(), s.upload_max_age_hours));
    tokio::spawn(gc_runner(state.clone()));
    tokio::spawn(replication_rules(state.clone()));
    if s.gc.every_ms > 0 {
        tokio::spawn(gc_schedule(state.clone(), s.gc));
    }
    if let Some(replica) = &s.replica {
        let mut transport =
            HttpTransport::new(replica.credentials.clone()).map_err(|e| e.message)?;
        // Another region of this registry takes the writes as its home's replication.
        if let Some(r) = &s.config.regions {
            transport = transport.from_region(&r.here).map_err(|e| e.message)?;
        }
        let target = V2Target {
            transport,
            base: replica.url.clone(),
        };
        tracing::info!(replica = %replica.url, "replicating every change");
        tokio::spawn(replicator(state.clone(), target));
    }
    // Content written before this version gets its records in the background; garbage
    // collection will wait for it.
    let b = state.clone();
    tokio::spawn(async move {
        match b.app.backfill().await {
            Ok(()) => tracing::debug!("metadata backfill done"),
            Err(e) => {
                tracing::warn!(error = %e, "metadata backfill failed; it resumes at the next start")
            }
        }
    });
    // Counted calls start after set-up, so a benchmark sees only what requests cost.
    let calls = aws.and_then(|a| a.calls);
    if let Some(c) = &calls {
        c.reset();
    }

    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(
        handle.clone(),
        Duration::from_secs(s.shutdown_grace_secs),
    ));
    let scheme = if s.tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %s.listen, data_dir = %s.data_dir.display(), %scheme, "wharf serving");
    let served = match &s.tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| format!("loading TLS certificate/key: {e}"))?;
            limited(axum_server::bind_rustls(s.listen, tls), &s.limits)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
        None => {
            limited(axum_server::bind(s.listen), &s.limits)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
    };
    served.map_err(|e| format!("serving on {}: {e}", s.listen))?;
    state.app.flush().await;
    if let Some(c) = &calls {
        // One line of JSON on standard error, for bench/aws-calls.sh.
        let counts = c.snapshot();
        eprintln!("wharf-aws-calls {}", serde_json::json!(counts));
    }
    tracing::info!("wharf stopped");
    Ok(())
}

/// Applies the connection limit and the header timeout. hyper's `header_read_timeout`
/// bounds each request head once HTTP/1 is chosen (and an idle keep-alive connection's wait
/// for the next one); `first_request_timeout` also bounds the protocol detection before it,
/// which reads the first bytes with no timer.
fn limited<A>(
    server: axum_server::Server<SocketAddr, A>,
    limits: &Limits,
) -> axum_server::Server<SocketAddr, ConnectionLimit<A>> {
    let mut server = server
        .first_request_timeout(limits.header_timeout)
        .map(|a| ConnectionLimit::new(a, limits.max_connections));
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_timeout);
    server
}

async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let started = Instant::now();
    let origin = state.origin.origin(req.uri(), req.headers());
    req.extensions_mut().insert(origin);
    let client = state.trusted_proxies.client(peer.ip(), req.headers());
    req.extensions_mut().insert(ClientAddr(client.to_string()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let expects_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    // A write of a project homed in another region goes there, as it came.
    if let Some(fw) = &state.forwarder
        && let Some(home) = state.app.forward_target(&parts).await
    {
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
        let resp = forwarded(
            fw.forward(&home, &client.to_string(), Request::from_parts(parts, body))
                .await,
        );
        tracing::debug!(%method, %path, home = %home.region, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request forwarded");
        return resp;
    }
    let read = state.forwarder.as_ref().map(|_| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let body = Retained::new(body, state.limits.body_idle_timeout);
    let req = Request::from_parts(parts, axum::body::Body::new(body.clone()));
    let mut resp = state.app.call(req).await;
    // A read this region cannot answer yet goes to the home region.
    if let (Some(fw), Some((m, uri, headers)), Some(home)) = (
        &state.forwarder,
        read,
        resp.extensions().get::<ForwardHome>().cloned(),
    ) {
        let mut again = Request::new(reqwest::Body::from(Vec::new()));
        *again.method_mut() = m;
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        let resp = forwarded(fw.forward(&home, &client.to_string(), again).await);
        tracing::debug!(%method, %path, home = %home.region, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "read forwarded");
        return resp;
    }
    if method == http::Method::POST
        && path.trim_end_matches('/') == "/api/v1/gc"
        && resp.status() == http::StatusCode::ACCEPTED
    {
        state.gc_queued.notify_one();
    }
    if resp.status().is_client_error() || resp.status().is_server_error() {
        // hyper closes a connection whose request body was dropped unread, under a client
        // still sending it (one that ignores `Expect`): read the rest, bounded, so the
        // client gets to read this answer instead of a reset.
        body.drain_after_error(
            expects_continue,
            state.limits.drain_body_bytes,
            state.limits.body_idle_timeout,
        );
    }
    if let Some(base) = state.origin.base_url()
        && let Some(loc) = resp.headers().get(http::header::LOCATION)
        && loc.as_bytes().starts_with(b"/")
        && let Ok(v) =
            http::HeaderValue::from_str(&format!("{base}{}", loc.to_str().unwrap_or_default()))
    {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// The home region's answer, or `503 UNAVAILABLE` when it could not be reached.
fn forwarded(r: Result<http::Response<reqwest::Body>, String>) -> Response {
    match r {
        Ok(resp) => resp.map(axum::body::Body::new),
        Err(e) => {
            tracing::warn!(error = %e, "the project's home region is unreachable");
            let body = serde_json::json!({"errors": [{"code": "UNAVAILABLE",
                "message": format!("the project's home region is unreachable: {e}")}]});
            let mut r = Response::new(axum::body::Body::from(body.to_string()));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>, grace: Duration) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    handle.graceful_shutdown(Some(grace));
}

/// Runs replication rules: a scheduler tick every few seconds (schedules, on-push
/// triggers, queued and retried runs), each advancing runs for at most a minute so one long
/// copy does not hold the others back for long.
async fn replication_rules(state: Arc<AppState>) {
    const EVERY: Duration = Duration::from_secs(3);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let deadline = wharf_core::Env::now_ms(&SystemEnv) + 60_000;
        match state.app.replication_tick(deadline).await {
            Ok(r) if r.queued + r.advanced > 0 => tracing::debug!(
                queued = r.queued,
                advanced = r.advanced,
                finished = r.finished,
                "replication rules"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "replication rules' tick failed; next tick retries")
            }
        }
    }
}

/// The replica's transport and address.
type Replicator = V2Target<HttpTransport>;
/// The name of the replica's state document.
const REPLICA: &str = "replica";

/// Copies the outbox's changes to the replica: a step every half second, more at once while
/// work is left. A step that fails (the replica is down) keeps its checkpoint; the next
/// tick tries again.
async fn replicator(state: Arc<AppState>, target: Replicator) {
    const EVERY: Duration = Duration::from_millis(500);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        for _ in 0..100 {
            match state.app.replicate(&target).await {
                Ok((n, finished)) => {
                    if failing {
                        tracing::info!("replication resumed");
                        failing = false;
                    }
                    if n > 0 {
                        tracing::debug!(entries = n, "replicated");
                    }
                    if finished {
                        break;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "replication step failed; retrying");
                        failing = true;
                    }
                    break;
                }
            }
        }
    }
}

/// Removes uploads left idle past the configured age (and trims the outbox), every ten
/// minutes.
async fn upload_cleanup(state: Arc<AppState>, max_age_hours: u64) {
    const EVERY: Duration = Duration::from_secs(600);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        tick.tick().await;
        sweep_uploads(&state, max_age_hours).await;
    }
}

/// Removes uploads untouched for `max_age_hours`, and the outbox entries every replica is
/// past; failures are logged, never fatal.
async fn sweep_uploads(state: &AppState, max_age_hours: u64) {
    match state.app.cleanup_uploads(max_age_hours * 3_600_000).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "stale uploads removed"),
        Err(e) => tracing::warn!(error = %e, "upload cleanup failed"),
    }
    if let Err(e) = state.app.trim_outbox().await {
        tracing::warn!(error = %e, "outbox trim failed");
    }
}

/// Advances queued and unfinished garbage-collection runs (the API's and the schedule's),
/// a bounded step every two seconds: a run is stored, so a restart resumes it here.
async fn gc_runner(state: Arc<AppState>) {
    const EVERY: Duration = Duration::from_secs(2);
    /// Store calls per step: a few seconds of work on the embedded store.
    const BUDGET: u64 = 20_000;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.gc_queued.notified() => {}
        }
        // Work left after a step: go on at once rather than wait for the tick (bounded, so
        // a store that keeps failing is retried at the next tick, not in a hot loop).
        for _ in 0..100 {
            match state.app.advance_gc(BUDGET).await {
                Ok(0) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collection step failed");
                    break;
                }
            }
        }
    }
}

/// Applies retention and queues a garbage-collection run every `schedule.every_ms` (the
/// first one interval after start).
async fn gc_schedule(state: Arc<AppState>, schedule: wharf_core::settings::GcSchedule) {
    let every = Duration::from_millis(schedule.every_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        // Retention first, so the collection that follows frees what it deleted.
        match state.app.apply_retention().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention deleted artifacts"),
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
        let options = GcOptions {
            grace_ms: schedule.grace_ms,
            upload_max_age_ms: schedule.upload_max_age_ms,
            dry_run: false,
            verify: false,
        };
        match state.app.queue_gc(options).await {
            Ok(id) => tracing::info!(run = %id, "scheduled garbage collection queued"),
            Err(e) => tracing::warn!(error = %e, "could not queue scheduled garbage collection"),
        }
    }
}

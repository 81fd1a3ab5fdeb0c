//! `wharf`: the registry server on the embedded default (files + redb) and, later, the
//! admin CLI. A thin shell: it builds adapters from configuration and hands every request
//! to `wharf_core::Registry`.

mod cli;
mod config;
mod keys;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use clap::{Parser, Subcommand};
use config::{ServeArgs, Settings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wharf_core::auth::{TokenService, TokenSettings};
use wharf_core::gate::{ClientAddr, PublicOrigin};
use wharf_core::{Config, Env, Registry, ports::DocumentStore};
use wharf_embedded::EmbeddedMetadata;
use wharf_fs::FsBlobStore;

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
    conn: cli::Conn,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry on local disk and an embedded database.
    Serve(ServeArgs),
    /// Manage users, projects, members, robots and read the audit log of a running registry.
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

/// Time and randomness from the operating system.
struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // No entropy means no safe ids: stop rather than hand out guessable ones.
            panic!("operating system random source failed: {e}");
        }
    }
}

type LocalRegistry = Registry<FsBlobStore, EmbeddedMetadata, SystemEnv>;

struct AppState {
    registry: LocalRegistry,
    base_url: Option<String>,
    scheme: &'static str,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.resolve().and_then(serve),
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

fn serve(s: Settings) -> Result<(), String> {
    init_logging(s.json_logs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting runtime: {e}"))?;
    rt.block_on(run(s))
}

async fn run(s: Settings) -> Result<(), String> {
    std::fs::create_dir_all(&s.data_dir)
        .map_err(|e| format!("creating {}: {e}", s.data_dir.display()))?;
    let blobs = FsBlobStore::open(&s.data_dir).map_err(|e| format!("opening blob store: {e}"))?;
    let meta = EmbeddedMetadata::open(&s.data_dir.join("meta.redb"))
        .map_err(|e| format!("opening metadata database: {e}"))?;
    let config = Config {
        delete_enabled: s.delete_enabled,
        ..Config::default()
    };
    let mut registry = Registry::new(blobs, meta, SystemEnv, config);
    if s.auth {
        let keys = keys::load_keys(&s.token_keys, &s.data_dir)?;
        let settings = TokenSettings {
            service: s.service.clone(),
            ttl_secs: s.token_ttl_secs,
            ..TokenSettings::default()
        };
        keys::ensure_admin(&registry.meta, &registry.env).await?;
        registry = registry.with_auth(TokenService::new(keys, settings));
    } else {
        tracing::warn!("auth is off: anyone who can reach this address can push, pull and delete");
    }
    let state = Arc::new(AppState {
        registry,
        base_url: s.base_url.clone(),
        scheme: if s.tls.is_some() { "https" } else { "http" },
    });
    tokio::spawn(upload_cleanup(state.clone(), s.upload_max_age_hours));

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
            axum_server::bind_rustls(s.listen, tls)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
        None => {
            axum_server::bind(s.listen)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        }
    };
    served.map_err(|e| format!("serving on {}: {e}", s.listen))?;
    if let Err(e) = state.registry.meta.flush_events().await {
        tracing::warn!(error = %e, "could not flush audit events");
    }
    tracing::info!("wharf stopped");
    Ok(())
}

async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let started = Instant::now();
    let origin = match &state.base_url {
        Some(b) => b.clone(),
        None => {
            // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in the Host header.
            let host = req
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    let h = req.headers().get(http::header::HOST)?;
                    h.to_str().ok().map(str::to_owned)
                })
                .unwrap_or_else(|| "localhost".into());
            format!("{}://{host}", state.scheme)
        }
    };
    req.extensions_mut().insert(PublicOrigin(origin));
    req.extensions_mut()
        .insert(ClientAddr(peer.ip().to_string()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = state.registry.handle(req).await.map(axum::body::Body::new);
    if let Some(base) = &state.base_url
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

/// Removes uploads left idle past the configured age, every ten minutes.
async fn upload_cleanup(state: Arc<AppState>, max_age_hours: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match state
            .registry
            .cleanup_uploads(max_age_hours * 3_600_000)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "stale uploads removed"),
            Err(e) => tracing::warn!(error = %e, "upload cleanup failed"),
        }
    }
}

//! Configuration: defaults, then a TOML file, then environment variables and flags
//! (clap merges those two; a flag wins over its variable). The settings the server shares
//! with the Lambda and the Worker are parsed, with their defaults, by the core's loader
//! (`wharf_core::settings::Vars`), over a lookup that answers each of their variables with
//! the flag or variable, else the file; only the server's own (listen address, TLS, data
//! directory, limits, backend) are resolved here.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wharf_core::Config;
use wharf_core::auth::TokenSettings;
use wharf_core::http::{OriginRule, RequestOrigin, TrustedProxies};
use wharf_core::settings::{SettingError, Vars, var};

/// `wharf serve` options. Every one can also come from the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with '_' for '-').
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "WHARF_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for blobs and the metadata database [default: ./wharf-data].
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "WHARF_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WHARF_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Public base URL (e.g. https://registry.example.com); Location headers become absolute.
    #[arg(long, env = "WHARF_BASE_URL")]
    pub base_url: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "WHARF_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Disable DELETE of manifests, tags and blobs.
    #[arg(long, env = "WHARF_DISABLE_DELETE")]
    pub disable_delete: Option<bool>,
    /// Uploads idle this many hours are removed [default: 24].
    #[arg(long, env = "WHARF_UPLOAD_MAX_AGE_HOURS")]
    pub upload_max_age_hours: Option<u64>,
    /// Hours between scheduled garbage collections; 0 turns them off [default: 24].
    #[arg(long, env = "WHARF_GC_INTERVAL_HOURS")]
    pub gc_interval_hours: Option<u64>,
    /// Grace period of scheduled garbage collections, in seconds [default: 3600].
    #[arg(long, env = "WHARF_GC_GRACE_SECS")]
    pub gc_grace_secs: Option<u64>,
    /// Storage quota of each new project, in bytes [default: none].
    #[arg(long, env = "WHARF_DEFAULT_QUOTA_BYTES")]
    pub default_quota_bytes: Option<u64>,
    /// Seconds to let in-flight requests finish on shutdown [default: 30].
    #[arg(long, env = "WHARF_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Token auth: on or off [default: on]. Off serves everyone: trusted networks only.
    #[arg(long, env = "WHARF_AUTH")]
    pub auth: Option<String>,
    /// PEM P-256 private keys for tokens, comma-separated; the first signs, all verify
    /// [default: DATA_DIR/keys/token-signing.pem, generated on first start].
    #[arg(long, env = "WHARF_TOKEN_KEYS", value_delimiter = ',')]
    pub token_keys: Option<Vec<PathBuf>>,
    /// Access token lifetime in seconds [default: 300].
    #[arg(long, env = "WHARF_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds [default: 2592000, 30 days].
    #[arg(long, env = "WHARF_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,
    /// Token service name (`service` in challenges, `aud` of tokens) [default: wharf].
    #[arg(long, env = "WHARF_SERVICE")]
    pub service: Option<String>,
    /// Where blobs live: fs (DATA_DIR) or s3 (WHARF_S3_BUCKET, AWS environment) [default: fs].
    #[arg(long, env = "WHARF_STORAGE")]
    pub storage: Option<String>,
    /// Where metadata lives: embedded (DATA_DIR/meta.redb) or dynamodb (WHARF_DYNAMODB_TABLE)
    /// [default: embedded]. s3 goes with dynamodb: the pair is one AWS deployment.
    #[arg(long, env = "WHARF_METADATA")]
    pub metadata: Option<String>,
    /// Base URL of an upload front: upload sessions send their bytes there, with a signed
    /// capability in the URL (needs WHARF_UPLOAD_SECRET, shared with the front).
    #[arg(long, env = "WHARF_UPLOAD_URL")]
    pub upload_url: Option<String>,
    /// Secret (at least 32 characters) that signs upload capabilities; a front needs it to
    /// accept them. Prefer the variable to the flag: flags show in process lists.
    #[arg(long, env = "WHARF_UPLOAD_SECRET", hide_env_values = true)]
    pub upload_secret: Option<String>,
    /// Base URL of a registry every change here is replicated to (another wharf region,
    /// any registry of the distribution API): manifests with their blobs, tags, deletions.
    #[arg(long, env = "WHARF_REPLICA_URL")]
    pub replica_url: Option<String>,
    /// User or robot the replica is pushed to as (with WHARF_REPLICA_PASSWORD, which is
    /// read from the environment only).
    #[arg(long, env = "WHARF_REPLICA_USERNAME")]
    pub replica_username: Option<String>,
    /// This region's name, on a registry served from several (one of --regions).
    #[arg(long, env = "WHARF_REGION")]
    pub region: Option<String>,
    /// Every region of the registry, `name=https://base-url,…`: a project's writes are
    /// redirected to its home region, and reads this region cannot answer yet too.
    #[arg(long, env = "WHARF_REGIONS")]
    pub regions: Option<String>,
    /// The region users, robots, members, projects and policies are written in, when this
    /// one mirrors them (it then refuses their writes).
    #[arg(long, env = "WHARF_IDENTITY_HOME")]
    pub identity_home: Option<String>,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open) [default: 30].
    #[arg(long, env = "WHARF_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may go without sending a byte before the request is cut off
    /// [default: 60].
    #[arg(long, env = "WHARF_BODY_IDLE_TIMEOUT_SECS")]
    pub body_idle_timeout_secs: Option<u64>,
    /// Open connections at most; beyond it new ones are closed at once [default: 1024].
    #[arg(long, env = "WHARF_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes of an unread request body read and discarded after an error answer, so a
    /// client that sends its body without waiting for `100 Continue` sees the error
    /// [default: 67108864]; beyond it the connection is closed.
    #[arg(long, env = "WHARF_DRAIN_BODY_BYTES")]
    pub drain_body_bytes: Option<u64>,
    /// Proxies (IP addresses or CIDR ranges, comma-separated) whose X-Forwarded-For is
    /// believed; the client is the right-most address not among them [default: none: the
    /// peer address, and X-Forwarded-For is ignored].
    #[arg(
        long = "trusted-proxy",
        env = "WHARF_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
}

/// The config file's shape.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    base_url: Option<String>,
    log_format: Option<String>,
    disable_delete: Option<bool>,
    upload_max_age_hours: Option<u64>,
    gc_interval_hours: Option<u64>,
    gc_grace_secs: Option<u64>,
    default_quota_bytes: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    auth: Option<String>,
    token_keys: Option<Vec<PathBuf>>,
    token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    service: Option<String>,
    storage: Option<String>,
    metadata: Option<String>,
    upload_url: Option<String>,
    upload_secret: Option<String>,
    replica_url: Option<String>,
    replica_username: Option<String>,
    region: Option<String>,
    regions: Option<String>,
    identity_home: Option<String>,
    header_timeout_secs: Option<u64>,
    body_idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    drain_body_bytes: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
}

/// Resolved settings.
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub json_logs: bool,
    pub upload_max_age_hours: u64,
    /// Scheduled garbage collection.
    pub gc: wharf_core::settings::GcSchedule,
    pub shutdown_grace_secs: u64,
    pub token_keys: Vec<PathBuf>,
    pub backend: Backend,
    pub limits: Limits,
    /// The API's behaviour: deletes, the upload front.
    pub config: Config,
    /// Token auth; `None` when it is off.
    pub tokens: Option<TokenSettings>,
    /// The password `admin` is created with (`WHARF_ADMIN_PASSWORD`, environment only).
    pub admin_password: Option<String>,
    /// `--base-url`, else the request's host with this server's scheme.
    pub origin: OriginRule,
    pub trusted_proxies: TrustedProxies,
    /// The registry changes are replicated to.
    pub replica: Option<wharf_core::settings::Replica>,
}

/// What one client may hold of the server: time for headers and between body bytes,
/// connections, and how much of a refused request's body is read to answer it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_body_bytes: u64,
}

/// Which stores the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Files under the data directory and an embedded redb database.
    Local,
    /// S3 and DynamoDB (the AWS deployment's stores, shared with its Lambda function).
    Aws,
}

impl ServeArgs {
    /// Merges flags/env over the file over defaults.
    pub fn resolve(self) -> Result<Settings, String> {
        let file: FileConfig = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("reading {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let json_logs = match log_format.as_str() {
            "json" => true,
            "text" => false,
            other => return Err(format!("log format must be text or json, not {other:?}")),
        };
        let storage = self.storage.or(file.storage).unwrap_or_else(|| "fs".into());
        let metadata = self
            .metadata
            .or(file.metadata)
            .unwrap_or_else(|| "embedded".into());
        let backend = match (storage.as_str(), metadata.as_str()) {
            ("fs", "embedded") => Backend::Local,
            ("s3", "dynamodb") => Backend::Aws,
            (s, m) if !matches!(s, "fs" | "s3") || !matches!(m, "embedded" | "dynamodb") => {
                return Err(format!(
                    "storage must be fs or s3 and metadata embedded or dynamodb, not {s:?}/{m:?}"
                ));
            }
            (s, m) => {
                return Err(format!(
                    "--storage {s} with --metadata {m} is not supported: use fs with embedded, or s3 with dynamodb"
                ));
            }
        };
        let secs = |v: Option<u64>, default: u64, what: &str| match v.unwrap_or(default) {
            0 => Err(format!("{what} must be at least 1 second")),
            n => Ok(Duration::from_secs(n)),
        };
        let limits = Limits {
            header_timeout: secs(
                self.header_timeout_secs.or(file.header_timeout_secs),
                30,
                "the header timeout",
            )?,
            body_idle_timeout: secs(
                self.body_idle_timeout_secs.or(file.body_idle_timeout_secs),
                60,
                "the body idle timeout",
            )?,
            max_connections: match self.max_connections.or(file.max_connections) {
                Some(0) => return Err("max connections must be at least 1".into()),
                n => n.unwrap_or(1024),
            },
            drain_body_bytes: self
                .drain_body_bytes
                .or(file.drain_body_bytes)
                .unwrap_or(64 << 20),
        };
        // What the core's settings loader reads, from the flag or its variable (clap), else
        // the file; with each variable's flag, to name both in an error.
        let num = |n: Option<u64>| n.map(|n| n.to_string());
        let shared = [
            (var::BASE_URL, "--base-url", self.base_url.or(file.base_url)),
            (
                var::DISABLE_DELETE,
                "--disable-delete",
                self.disable_delete
                    .or(file.disable_delete)
                    .map(|b| b.to_string()),
            ),
            (
                var::UPLOAD_MAX_AGE_HOURS,
                "--upload-max-age-hours",
                num(self.upload_max_age_hours.or(file.upload_max_age_hours)),
            ),
            (
                var::GC_INTERVAL_HOURS,
                "--gc-interval-hours",
                num(self.gc_interval_hours.or(file.gc_interval_hours)),
            ),
            (
                var::GC_GRACE_SECS,
                "--gc-grace-secs",
                num(self.gc_grace_secs.or(file.gc_grace_secs)),
            ),
            (
                var::DEFAULT_QUOTA_BYTES,
                "--default-quota-bytes",
                num(self.default_quota_bytes.or(file.default_quota_bytes)),
            ),
            (var::AUTH, "--auth", self.auth.or(file.auth)),
            (
                var::TOKEN_TTL_SECS,
                "--token-ttl-secs",
                num(self.token_ttl_secs.or(file.token_ttl_secs)),
            ),
            (
                var::REFRESH_TOKEN_TTL_SECS,
                "--refresh-token-ttl-secs",
                num(self.refresh_token_ttl_secs.or(file.refresh_token_ttl_secs)),
            ),
            (var::SERVICE, "--service", self.service.or(file.service)),
            (
                var::UPLOAD_URL,
                "--upload-url",
                self.upload_url.or(file.upload_url),
            ),
            (
                var::UPLOAD_SECRET,
                "--upload-secret",
                self.upload_secret.or(file.upload_secret),
            ),
            (
                var::REPLICA_URL,
                "--replica-url",
                self.replica_url.or(file.replica_url),
            ),
            (
                var::REPLICA_USERNAME,
                "--replica-username",
                self.replica_username.or(file.replica_username),
            ),
            (var::REGION, "--region", self.region.or(file.region)),
            (var::REGIONS, "--regions", self.regions.or(file.regions)),
            (
                var::IDENTITY_HOME,
                "--identity-home",
                self.identity_home.or(file.identity_home),
            ),
            (
                var::TRUSTED_PROXIES,
                "--trusted-proxy",
                self.trusted_proxies
                    .or(file.trusted_proxies)
                    .map(|v| v.join(",")),
            ),
        ];
        let vars = Vars::new(
            |name: &str| match shared.iter().find(|(v, ..)| *v == name) {
                Some((.., value)) => value.clone(),
                // The ones the server takes from its environment only (README: "env only");
                // nothing else: WHARF_MAX_BODY_BYTES and WHARF_PRESIGN_TTL_SECS are not its.
                None if [
                    var::ADMIN_PASSWORD,
                    var::REPLICA_PASSWORD,
                    var::SECRET_KEY,
                    var::REPLICATION_RETRY_SECS,
                ]
                .contains(&name) =>
                {
                    std::env::var(name).ok()
                }
                None => None,
            },
        );
        let named = |e: SettingError| {
            e.describe(|v| match shared.iter().find(|(name, ..)| *name == v) {
                Some((_, flag, _)) => format!("{v} ({flag})"),
                None => v.to_owned(),
            })
        };
        Ok(Settings {
            limits,
            backend,
            config: vars.config(None).map_err(named)?,
            tokens: vars.tokens().map_err(named)?,
            admin_password: vars.admin_password(),
            origin: vars.origin(RequestOrigin::Direct { tls: tls.is_some() }),
            trusted_proxies: vars.trusted_proxies().map_err(named)?,
            upload_max_age_hours: vars.upload_max_age_hours().map_err(named)?,
            gc: vars.gc_schedule().map_err(named)?,
            replica: vars.replica().map_err(named)?,
            token_keys: self.token_keys.or(file.token_keys).unwrap_or_default(),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "wharf-data".into()),
            tls,
            json_logs,
            shutdown_grace_secs: self
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("wharf-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("wharf.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"/srv/x\"\nlog_format = \"json\"\n",
        )
        .expect("write");
        let s = ServeArgs {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:8000".parse().expect("addr")),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        assert_eq!(s.listen.port(), 8000);
        assert_eq!(s.data_dir, PathBuf::from("/srv/x"));
        assert!(s.json_logs);
        assert_eq!(s.upload_max_age_hours, 24);
        std::fs::write(&file, "nonsense = 1\n").expect("write");
        let e = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve();
        assert!(e.is_err());
        let e = ServeArgs {
            tls_cert: Some("c".into()),
            ..Default::default()
        }
        .resolve();
        assert!(e.is_err());
    }

    #[test]
    fn shared_settings_go_through_the_core_loader_flags_over_the_file() {
        let dir = std::env::temp_dir().join(format!("wharf-cfg-shared-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("wharf.toml");
        std::fs::write(
            &file,
            "auth = \"off\"\ndisable_delete = true\nbase_url = \"https://r.example/\"\n\
             trusted_proxies = [\"10.0.0.0/8\"]\nupload_max_age_hours = 2\n",
        )
        .expect("write");
        let s = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        assert!(s.tokens.is_none(), "auth off from the file");
        assert!(!s.config.delete_enabled);
        assert_eq!(
            s.config.max_request_body, None,
            "the server has no body limit"
        );
        assert_eq!(s.origin.base_url(), Some("https://r.example"));
        assert!(!s.trusted_proxies.is_empty());
        assert_eq!(s.upload_max_age_hours, 2);
        let s = ServeArgs {
            config: Some(file),
            auth: Some("on".into()),
            token_ttl_secs: Some(60),
            service: Some("reg".into()),
            disable_delete: Some(false),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        let t = s.tokens.expect("the flag beats the file");
        assert_eq!((t.ttl_secs, t.service.as_str()), (60, "reg"));
        assert!(s.config.delete_enabled);
        // Without a base URL, the origin is the request's host with the server's scheme.
        let s = ServeArgs {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "r.example:5000".parse().expect("host"));
        let o = s.origin.origin(&"/v2/".parse().expect("uri"), &h);
        assert_eq!(o.0, "https://r.example:5000");
    }

    #[test]
    fn bad_shared_settings_name_the_variable_and_the_flag() {
        let refused = |args: ServeArgs| args.resolve().err().expect("refused");
        assert_eq!(
            refused(ServeArgs {
                upload_url: Some("https://front.example".into()),
                ..Default::default()
            }),
            "WHARF_UPLOAD_URL (--upload-url) needs WHARF_UPLOAD_SECRET (--upload-secret)"
        );
        assert_eq!(
            refused(ServeArgs {
                upload_secret: Some("short".into()),
                ..Default::default()
            }),
            "WHARF_UPLOAD_SECRET (--upload-secret) must be at least 32 characters"
        );
        assert_eq!(
            refused(ServeArgs {
                auth: Some("maybe".into()),
                ..Default::default()
            }),
            r#"WHARF_AUTH (--auth) must be on or off, not "maybe""#
        );
        assert_eq!(
            refused(ServeArgs {
                trusted_proxies: Some(vec!["10.0.0.0/8".into(), "proxy.example".into()]),
                ..Default::default()
            }),
            "WHARF_TRUSTED_PROXIES (--trusted-proxy) must be IP addresses or CIDR ranges, \
             comma-separated, not \"proxy.example\""
        );
    }
}

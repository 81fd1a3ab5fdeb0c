//! The deployment's settings: [`Config`], the behaviour of the API, and [`Vars`], the one
//! reader of the `WHARF_*` variables that `wharf serve`, the Lambda and the Worker share.
//! Each runtime hands it its own lookup (`std::env`, the Worker's variables and secrets,
//! or flags over variables over a config file), so a variable means the same, has the
//! same default and is refused with the same message everywhere:
//!
//! | variable | default | accessor |
//! |---|---|---|
//! | `WHARF_AUTH` | `on` | [`Vars::tokens`]: `None` when off |
//! | `WHARF_SERVICE` | `wharf` | [`Vars::tokens`] (token `service`/`aud`) |
//! | `WHARF_TOKEN_TTL_SECS` | 300 | [`Vars::tokens`] |
//! | `WHARF_REFRESH_TOKEN_TTL_SECS` | 2592000 (30 days) | [`Vars::tokens`] |
//! | `WHARF_TOKEN_KEYS_PEM` | none (a stored or generated key) | [`Vars::token_keys_pem`] |
//! | `WHARF_ADMIN_PASSWORD` | none | [`Vars::admin_password`] |
//! | `WHARF_DISABLE_DELETE` | off | [`Vars::config`] |
//! | `WHARF_PRESIGN_TTL_SECS` | 900 | [`Vars::config`] |
//! | `WHARF_MAX_BODY_BYTES` | the runtime's (none, Lambda's 6 MB, the Workers plan's 100 MB) | [`Vars::config`], [`Vars::front_config`] |
//! | `WHARF_UPLOAD_URL` | none | [`Vars::config`]; needs `WHARF_UPLOAD_SECRET` |
//! | `WHARF_UPLOAD_SECRET` | none | [`Vars::config`], [`Vars::front_config`] (required); at least 32 characters |
//! | `WHARF_BASE_URL` | none (the request's origin) | [`Vars::origin`] |
//! | `WHARF_TRUSTED_PROXIES` | none | [`Vars::trusted_proxies`] |
//! | `WHARF_UPLOAD_MAX_AGE_HOURS` | 24 | [`Vars::upload_max_age_hours`] |
//! | `WHARF_GC_INTERVAL_HOURS` | 24 (0: no scheduled collection) | [`Vars::gc_schedule`] |
//! | `WHARF_GC_GRACE_SECS` | 3600 | [`Vars::gc_schedule`] |
//! | `WHARF_DEFAULT_QUOTA_BYTES` | none (no quota) | [`Vars::config`]: the quota of each new project |
//! | `WHARF_REGION`, `WHARF_REGIONS` | none (one region) | [`Vars::config`]: this region's name, and every region's as `name=https://url,…`; a project's writes go to its home region (307), and reads this region cannot answer yet too |
//! | `WHARF_IDENTITY_HOME` | none (identity is written here) | [`Vars::config`]: the region users, robots, members, projects and policies are written in; this one mirrors them and refuses their writes |
//! | `WHARF_REPLICA_URL` | none (no replication) | [`Vars::replica`]: the registry this one's changes are copied to |
//! | `WHARF_REPLICA_USERNAME`, `WHARF_REPLICA_PASSWORD` | none (the replica takes anonymous pushes) | [`Vars::replica`]; one needs the other |
//!
//! A runtime reads what it has (the Lambda has no trusted proxies, the server's lookup
//! answers only the variables it documents) and its own variables (listen address, table,
//! bindings) through the same [`Vars`]: [`Vars::text`], [`Vars::number`],
//! [`Vars::switch`], [`Vars::required`]. The loader reads no environment itself: it does no
//! I/O, like the rest of the core.
//!
//! May use: [`crate::http`] (origin rule, trusted proxies), [`crate::auth`] (token settings
//! and keys) and what they stand on. The registry takes its [`Config`] from here.

mod error;
mod vars;

#[cfg(test)]
mod tests;

pub use crate::model::regions::Regions;
pub use error::{Problem, SettingError};
pub use vars::{DEFAULT_UPLOAD_MAX_AGE_HOURS, GcSchedule, Replica, Vars};

/// The names of the variables [`Vars`] reads itself.
pub mod var {
    /// Token auth, on or off.
    pub const AUTH: &str = "WHARF_AUTH";
    /// Token service name.
    pub const SERVICE: &str = "WHARF_SERVICE";
    /// Access token lifetime in seconds.
    pub const TOKEN_TTL_SECS: &str = "WHARF_TOKEN_TTL_SECS";
    /// Refresh token lifetime in seconds.
    pub const REFRESH_TOKEN_TTL_SECS: &str = "WHARF_REFRESH_TOKEN_TTL_SECS";
    /// Token keys as PEM text.
    pub const TOKEN_KEYS_PEM: &str = "WHARF_TOKEN_KEYS_PEM";
    /// Password of `admin` when it is created.
    pub const ADMIN_PASSWORD: &str = "WHARF_ADMIN_PASSWORD";
    /// Refuse deletes.
    pub const DISABLE_DELETE: &str = "WHARF_DISABLE_DELETE";
    /// Presigned URL lifetime in seconds.
    pub const PRESIGN_TTL_SECS: &str = "WHARF_PRESIGN_TTL_SECS";
    /// Largest request body in bytes.
    pub const MAX_BODY_BYTES: &str = "WHARF_MAX_BODY_BYTES";
    /// Base URL of the upload front.
    pub const UPLOAD_URL: &str = "WHARF_UPLOAD_URL";
    /// Secret that signs upload capabilities.
    pub const UPLOAD_SECRET: &str = "WHARF_UPLOAD_SECRET";
    /// Public base URL.
    pub const BASE_URL: &str = "WHARF_BASE_URL";
    /// Proxies whose `X-Forwarded-For` is believed.
    pub const TRUSTED_PROXIES: &str = "WHARF_TRUSTED_PROXIES";
    /// Age in hours after which idle uploads are removed.
    pub const UPLOAD_MAX_AGE_HOURS: &str = "WHARF_UPLOAD_MAX_AGE_HOURS";
    /// Hours between scheduled garbage collections (0: none).
    pub const GC_INTERVAL_HOURS: &str = "WHARF_GC_INTERVAL_HOURS";
    /// The scheduled collections' grace period, in seconds.
    pub const GC_GRACE_SECS: &str = "WHARF_GC_GRACE_SECS";
    /// The storage quota of each project created from now on, in bytes.
    pub const DEFAULT_QUOTA_BYTES: &str = "WHARF_DEFAULT_QUOTA_BYTES";
    /// This region's name, one of [`REGIONS`].
    pub const REGION: &str = "WHARF_REGION";
    /// Every region: `name=https://base-url,name=…`.
    pub const REGIONS: &str = "WHARF_REGIONS";
    /// The region identity is written in, when this one mirrors it.
    pub const IDENTITY_HOME: &str = "WHARF_IDENTITY_HOME";
    /// Base URL of the registry changes are replicated to.
    pub const REPLICA_URL: &str = "WHARF_REPLICA_URL";
    /// User (or robot) the replica is pushed to as.
    pub const REPLICA_USERNAME: &str = "WHARF_REPLICA_USERNAME";
    /// Its password (or robot secret).
    pub const REPLICA_PASSWORD: &str = "WHARF_REPLICA_PASSWORD";
    /// The secret remote registries' passwords are sealed with (at least 32 characters).
    pub const SECRET_KEY: &str = "WHARF_SECRET_KEY";
    /// Seconds before a failed replication run's first retry (each next one doubles).
    pub const REPLICATION_RETRY_SECS: &str = "WHARF_REPLICATION_RETRY_SECS";
}

/// Behaviour switches of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Allow DELETE of manifests, tags and blob links.
    pub delete_enabled: bool,
    /// Answer blob GETs with a redirect when the store can presign.
    pub redirect_blobs: bool,
    /// Lifetime of presigned URLs.
    pub presign_ttl_secs: u64,
    /// Largest request body accepted in one request (`None`: no limit). Lambda sets 6 MB.
    pub max_request_body: Option<u64>,
    /// Base URL of an upload front (`WHARF_UPLOAD_URL`): upload sessions started here send
    /// their bytes there, with a capability in the URL (see [`crate::auth::capability`]). Needs
    /// `upload_secret`.
    pub upload_front: Option<String>,
    /// Secret that signs upload capabilities, shared by the API and its upload front. With
    /// it, a request that carries a valid capability for its upload needs no token.
    pub upload_secret: Option<Vec<u8>>,
    /// Lifetime of an upload capability (checked when each request of the upload starts).
    pub upload_capability_ttl_secs: u64,
    /// Serve only requests that carry a valid upload capability, and refuse everything else
    /// with `401`: an upload front that has no token service of its own (the Worker in front
    /// of a Lambda deployment) must not fall back to anonymous access.
    pub capability_only: bool,
    /// The quota a new project starts with (`None`: none; a system admin sets one later).
    pub default_quota_bytes: Option<u64>,
    /// The region that arbitrates identity (`WHARF_IDENTITY_HOME`, its name or URL), when
    /// this one only mirrors it: users, robots, members, projects and their policies are
    /// written there and copied here by the replication job, so the management API here
    /// refuses to write them.
    pub identity_home: Option<String>,
    /// The registry's regions, when it has several (`WHARF_REGION`, `WHARF_REGIONS`).
    pub regions: Option<Regions>,
    /// Seals remote registries' passwords (`WHARF_SECRET_KEY`; `wharf serve` makes one
    /// of its own when it is unset). Without it, remotes take no password.
    pub secret_key: Option<crate::auth::sealed::SealKey>,
    /// The wait before a failed replication run's first retry (ms).
    pub replication_retry_base_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            delete_enabled: true,
            redirect_blobs: true,
            presign_ttl_secs: 900,
            max_request_body: None,
            upload_front: None,
            upload_secret: None,
            upload_capability_ttl_secs: 3600,
            capability_only: false,
            default_quota_bytes: None,
            identity_home: None,
            regions: None,
            secret_key: None,
            replication_retry_base_ms: 30_000,
        }
    }
}

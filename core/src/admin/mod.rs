//! The management API under `/api/v1` (JSON; Basic credentials only): users, robots,
//! projects, members, repositories, tags, the audit log and garbage-collection runs. Same rules in every runtime.
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`], [`crate::http`],
//! [`crate::auth`], [`crate::policy`] and [`crate::runs`]. Not the `/v2` handlers, the jobs or the registry:
//! what it needs of a registry comes in an [`Admin`] of borrowed parts.

mod audit;
mod gc;
mod policies;
mod projects;
mod replication;
mod repositories;
mod robots;
mod users;
mod views;

use crate::auth::authorize::Gate;
use crate::auth::{Directory, Principal, Right};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::http::body::read_limited;
use crate::http::headers::is_json;
use crate::http::query::Query;
use crate::http::response::{ApiResponse, json_response};
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore, ServingMeta};
use http::{Method, Request, StatusCode};
use projects::{NewMember, RoleUpdate};
use serde::de::DeserializeOwned;

/// What the management API needs of a registry, borrowed for one request.
pub(crate) struct Admin<'a, M, E> {
    /// Metadata storage, which holds the identities too.
    pub(crate) meta: &'a M,
    /// Time and randomness.
    pub(crate) env: &'a E,
    /// Logins and audit.
    pub(crate) gate: Gate<'a, M, E>,
    /// Allow deleting tags (`--disable-delete` turns it off).
    pub(crate) delete_enabled: bool,
    /// The quota each new project starts with.
    pub(crate) default_quota_bytes: Option<u64>,
    /// Where identity is written, when this region mirrors it.
    pub(crate) identity_home: Option<&'a str>,
    /// The regions, when there are several.
    pub(crate) regions: Option<&'a crate::model::regions::Regions>,
    /// Seals remote registries' passwords.
    pub(crate) secret_key: Option<&'a crate::auth::sealed::SealKey>,
}

pub(super) fn denied() -> RegistryError {
    RegistryError::new(ErrorCode::Denied, "you may not do this")
}

pub(super) fn not_found(what: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, format!("{what} not found"))
}

pub(super) fn bad(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

pub(super) fn ok_json<B: BlobStore>(status: StatusCode, v: serde_json::Value) -> ApiResponse<B> {
    json_response::<B>(status, v.to_string().into_bytes())
}

/// Account and project names: lowercase letters, digits, '.', '_', '-'.
pub(super) fn validate_simple(kind: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(RegistryError::new(
            ErrorCode::NameInvalid,
            format!("invalid {kind} name {s:?}"),
        ))
    }
}

impl<M: ServingMeta, E: Env> Admin<'_, M, E> {
    /// Serves `/api/v1/…`.
    pub(crate) async fn api<B: BlobStore, In>(&self, req: Request<In>) -> Result<ApiResponse<B>>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        if self.gate.tokens.is_none() {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "the management API needs authentication, which is disabled on this registry",
            )
            .with_status(StatusCode::NOT_FOUND));
        }
        let (parts, body) = req.into_parts();
        // Writes carry JSON: a browser on another origin cannot send that without a CORS
        // preflight, which this API never answers, so a page cannot forge a request with
        // credentials the browser holds.
        if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            && !is_json(&parts.headers)
        {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "management API writes take a JSON body with Content-Type: application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        // No `WWW-Authenticate: Basic` challenge: it would invite a browser to prompt for
        // and then cache credentials that every later cross-site request would carry.
        let who = match self
            .gate
            .login(&parts.headers, &parts.extensions, None)
            .await?
        {
            Some(p) => p,
            None => {
                return Err(RegistryError::new(
                    ErrorCode::Unauthorized,
                    "the management API needs Basic credentials (user name and password)",
                ));
            }
        };
        self.gate.events.act_as(who.name());
        let body = read_limited(body, 1 << 20).await?;
        let path = parts
            .uri
            .path()
            .trim_start_matches("/api/v1")
            .trim_matches('/')
            .to_owned();
        let query = Query::parse(parts.uri.query());
        let q = |k: &str| query.get(k).map(str::to_owned);
        let seg: Vec<&str> = path.split('/').collect();
        let m = &parts.method;
        if let Some(home) = self.identity_home
            && m != Method::GET
            && writes_identity(&seg)
        {
            return Err(RegistryError::new(
                ErrorCode::Denied,
                format!(
                    "users, robots, members, projects and their policies are written in region {home}; this region mirrors them (write there)"
                ),
            ));
        }
        match (m.clone(), seg.as_slice()) {
            (Method::GET, ["users"]) => self.list_users::<B>(&who).await,
            (Method::POST, ["users"]) => self.create_user::<B>(&who, parse(&body)?).await,
            (Method::GET, ["users", name]) => self.get_user::<B>(&who, name).await,
            (Method::DELETE, ["users", name]) => self.delete_user::<B>(&who, name).await,
            (Method::PUT, ["users", name, "password"]) => {
                self.set_password::<B>(&who, name, parse(&body)?).await
            }
            (Method::GET, ["projects"]) => self.list_projects::<B>(&who).await,
            (Method::POST, ["projects"]) => self.create_project::<B>(&who, parse(&body)?).await,
            (Method::GET, ["projects", p]) => self.get_project::<B>(&who, p).await,
            (Method::PUT, ["projects", p]) => {
                self.update_project::<B>(&who, p, parse(&body)?).await
            }
            (Method::DELETE, ["projects", p]) => self.delete_project::<B>(&who, p).await,
            (Method::GET, ["projects", p, "members"]) => self.list_members::<B>(&who, p).await,
            (Method::POST, ["projects", p, "members"]) => {
                self.add_member::<B>(&who, p, parse(&body)?).await
            }
            (Method::PUT, ["projects", p, "members", u]) => {
                let r: RoleUpdate = parse(&body)?;
                self.add_member::<B>(
                    &who,
                    p,
                    NewMember {
                        username: (*u).to_owned(),
                        role: r.role,
                    },
                )
                .await
            }
            (Method::DELETE, ["projects", p, "members", u]) => {
                self.remove_member::<B>(&who, p, u).await
            }
            (Method::GET, ["projects", p, "repositories"]) => {
                self.project_repositories::<B>(&who, p).await
            }
            (_, ["projects", p, rest @ ..])
                if matches!(
                    rest.first(),
                    Some(&("retention" | "immutability" | "quota"))
                ) =>
            {
                self.policy_api::<B>(&who, m, p, rest, &body).await
            }
            (Method::GET, ["robots"]) => self.list_robots::<B>(&who).await,
            (Method::POST, ["robots"]) => self.create_robot::<B>(&who, parse(&body)?).await,
            (Method::DELETE, ["robots", name]) => self.delete_robot::<B>(&who, name).await,
            (Method::GET, ["audit"]) => {
                self.read_audit::<B>(
                    &who,
                    q("project"),
                    q("actor"),
                    q("action"),
                    q("since_ms"),
                    q("limit"),
                )
                .await
            }
            (Method::POST, ["gc"]) => self.queue_gc::<B>(&who, parse(&body)?).await,
            (Method::GET, ["gc"]) => self.gc_history::<B>(&who, q("after"), q("limit")).await,
            (Method::GET, ["gc", id]) => self.get_gc::<B>(&who, id).await,
            (_, ["replication", rest @ ..]) => {
                self.replication_api::<B>(&who, m, rest, &body).await
            }
            (_, ["repositories", ..]) => {
                self.repository_api::<B>(&who, m, &path["repositories/".len().min(path.len())..])
                    .await
            }
            _ => Err(no_endpoint(m, &path)),
        }
    }
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    pub(super) fn dir(&self) -> Directory<'_, M> {
        Directory(self.meta)
    }

    pub(super) async fn may(&self, who: &Principal, project: &str, right: Right) -> Result<()> {
        if self.dir().allowed(who, project, right).await? {
            Ok(())
        } else {
            Err(denied())
        }
    }
}

/// Whether a write to `seg` (the path under `/api/v1`) changes identity: users, robots,
/// projects, their members and policies, the records a region that mirrors identity holds
/// only as copies. A retention run (`…/retention/run`) is this region's own work.
fn writes_identity(seg: &[&str]) -> bool {
    match seg {
        ["users" | "robots", ..] => true,
        ["projects", _, "retention", "run"] => false,
        ["projects"] | ["projects", _] => true,
        [
            "projects",
            _,
            "members" | "retention" | "immutability" | "quota",
            ..,
        ] => true,
        _ => false,
    }
}

/// A create-only write that found the record there already: 409 naming what exists.
pub(super) fn exists(e: RegistryError, what: &str, name: &str) -> RegistryError {
    if e.code == ErrorCode::Conflict {
        RegistryError::new(
            ErrorCode::Conflict,
            format!("{what} named {name:?} already exists"),
        )
    } else {
        e
    }
}

/// 404 for a path no endpoint serves.
pub(super) fn no_endpoint(m: &Method, path: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("no such endpoint: {m} /api/v1/{path}"),
    )
    .with_status(StatusCode::NOT_FOUND)
}

pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

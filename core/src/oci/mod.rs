//! The OCI Distribution API under `/v2`: routing, authorization of each route (a token, or
//! an upload capability), and one file per endpoint family.
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`], [`crate::http`],
//! [`crate::auth`] and [`crate::policy`]. Not the management API, the jobs or the registry
//! that holds it: what it needs of a registry comes in an [`Oci`] of borrowed parts.

mod base;
mod blobs;
pub mod home;
mod manifests;
mod referrers;
pub mod route;
mod tags;
mod uploads;

use crate::auth::authorize::{Gate, SystemCall};
use crate::auth::capability;
use crate::auth::{Action, Caller, Directory};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::http::headers;
use crate::http::query::Query;
use crate::http::response::ApiResponse;
use crate::model::name::validate_name;
use crate::model::{Digest, Reference};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use route::{Route, route};

type Resp<B> = Result<ApiResponse<B>>;

/// The registry's behaviour switches, as the `/v2` handlers read them.
pub(crate) struct Settings<'a> {
    /// Allow DELETE of manifests, tags and blob links.
    pub(crate) delete_enabled: bool,
    /// Answer blob GETs with a redirect when the store can presign.
    pub(crate) redirect_blobs: bool,
    /// Lifetime of presigned URLs.
    pub(crate) presign_ttl_secs: u64,
    /// Largest request body accepted in one request (`None`: no limit).
    pub(crate) max_request_body: Option<u64>,
    /// Base URL of an upload front.
    pub(crate) upload_front: Option<&'a str>,
    /// Secret that signs upload capabilities.
    pub(crate) upload_secret: Option<&'a [u8]>,
    /// Lifetime of an upload capability.
    pub(crate) upload_capability_ttl_secs: u64,
    /// Serve only requests that carry a valid upload capability.
    pub(crate) capability_only: bool,
    /// The regions, when the registry is served from several ([`home`]).
    pub(crate) regions: Option<&'a crate::model::regions::Regions>,
}

/// What the `/v2` handlers need of a registry, borrowed for one request.
pub(crate) struct Oci<'a, B, M, E> {
    /// Blob storage.
    pub(crate) blobs: &'a B,
    /// Metadata storage.
    pub(crate) meta: &'a M,
    /// Time and randomness.
    pub(crate) env: &'a E,
    /// Authorization and audit.
    pub(crate) gate: Gate<'a, M, E>,
    /// Behaviour.
    pub(crate) settings: Settings<'a>,
}

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    /// Serves a `/v2` request.
    pub(crate) async fn dispatch<In>(&self, req: Request<In>) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let query = Query::parse(parts.uri.query());
        let m = &parts.method;
        let Some(r) = route(path) else {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("no such endpoint {path}"),
            )
            .with_status(StatusCode::NOT_FOUND));
        };
        if let Some(n) = r.name() {
            validate_name(n)?;
        }
        let head = *m == Method::HEAD;
        let mut query = query;
        let cap = self.upload_capability(&r, &query)?;
        // Where the project's home is another region, writes go there (and so do reads
        // this region cannot answer yet, below). Replication's own writes stay here.
        let regions = self
            .settings
            .regions
            .filter(|_| cap.is_none() && parts.extensions.get::<SystemCall>().is_none());
        let forwarded = home::forwarded(&parts.headers);
        let replicated = home::replicated(&parts.headers);
        let mut replica_write = false;
        if let (Some(regions), Some(name)) = (regions, r.name())
            && replicated
            && home::writes(m)
        {
            replica_write = home::elsewhere(self.meta, regions, name).await?.is_some();
        } else if let (Some(regions), Some(name)) = (regions, r.name())
            && (home::writes(m) || forwarded)
            && let Some(home) = home::elsewhere(self.meta, regions, name).await?
        {
            if forwarded {
                return Err(home::not_home(&home));
            }
            return home::redirect::<B>(home, &parts.uri);
        }
        if cap.is_none() && self.settings.capability_only {
            return Err(RegistryError::new(
                ErrorCode::Unauthorized,
                "this is an upload front: it takes only the bytes of uploads started at the \
                 registry's API, at the URL (with its capability) the API gave",
            ));
        }
        let caller = match cap {
            Some(_) => Caller {
                name: "upload-capability".into(),
                claims: None,
            },
            None => {
                self.authorize_route(&r, m, &mut query, &parts.headers, &parts.extensions)
                    .await?
            }
        };
        if replica_write
            && !Directory(self.meta)
                .user(&caller.name)
                .await?
                .is_some_and(|u| u.admin)
        {
            return Err(home::not_replication());
        }
        self.gate.events.act_as(&caller.name);
        let mut result = self
            .route_request(r.clone(), m, head, &query, &parts.headers, body)
            .await;
        if let (Some(regions), Some(name), Err(e)) = (regions, r.name(), &result)
            && !forwarded
            && !replicated
            && home::missing_here(e)
            && let Some(home) = home::elsewhere(self.meta, regions, name).await?
        {
            return home::redirect::<B>(home, &parts.uri);
        }
        let cap = cap.as_deref();
        match &mut result {
            Ok(resp) => {
                let new = resp
                    .headers()
                    .get(headers::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| self.upload_location_for(&r, cap, loc))
                    .and_then(|l| HeaderValue::from_str(&l).ok());
                if let Some(v) = new {
                    resp.headers_mut().insert(headers::LOCATION, v);
                }
            }
            Err(e) => {
                for (k, v) in e.headers.iter_mut() {
                    if *k == headers::LOCATION
                        && let Some(new) = self.upload_location_for(&r, cap, v)
                    {
                        *v = new;
                    }
                }
            }
        }
        result
    }

    /// The upload capability a request carries (`?cap=`), if it is valid for its upload.
    /// A capability that is present but invalid is refused outright (401) rather than
    /// ignored, so a forged or expired one never falls through to anonymous access.
    fn upload_capability(&self, r: &Route<'_>, query: &Query) -> Result<Option<String>> {
        let Some(cap) = query.get(capability::PARAM) else {
            return Ok(None);
        };
        let refuse = |msg: String| RegistryError::new(ErrorCode::Unauthorized, msg);
        let Route::Upload { name, id } = r else {
            return Err(refuse(
                "an upload capability is only valid on its upload's URL".into(),
            ));
        };
        let Some(secret) = self.settings.upload_secret else {
            return Err(refuse(
                "this registry accepts no upload capabilities (no upload secret is configured)"
                    .into(),
            ));
        };
        capability::verify(secret, name, id, cap, self.env.now_ms() / 1000)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(Some(cap.to_owned()))
    }

    /// Keeps an upload's `Location` on the path its bytes should take: a request that came
    /// with a capability gets it back in the `Location`, and a session started here goes to
    /// the upload front when one is configured.
    fn upload_location_for(&self, r: &Route<'_>, cap: Option<&str>, loc: &str) -> Option<String> {
        let (_, id) = loc.strip_prefix("/v2/")?.rsplit_once("/blobs/uploads/")?;
        let new = match (
            r,
            cap,
            self.settings.upload_front,
            self.settings.upload_secret,
        ) {
            (Route::Upload { .. }, Some(cap), _, _) => {
                format!("{loc}?{}={}", capability::PARAM, cap)
            }
            (Route::UploadStart { name }, None, Some(front), Some(secret)) => {
                let expiry = self.env.now_ms() / 1000 + self.settings.upload_capability_ttl_secs;
                let cap = capability::mint(secret, name, id, expiry);
                format!(
                    "{}{loc}?{}={cap}",
                    front.trim_end_matches('/'),
                    capability::PARAM
                )
            }
            _ => return None,
        };
        Some(new)
    }

    /// Checks the caller's token for what the route needs; drops a mount whose source the
    /// caller may not pull (the spec's fallback: a plain upload session).
    async fn authorize_route(
        &self,
        r: &Route<'_>,
        m: &Method,
        query: &mut Query,
        headers: &HeaderMap,
        ext: &http::Extensions,
    ) -> Result<Caller> {
        let action = match m {
            &Method::GET | &Method::HEAD => Action::Pull,
            &Method::DELETE if !matches!(r, Route::Upload { .. }) => Action::Delete,
            _ => Action::Push,
        };
        let catalog = matches!(r, Route::Catalog);
        let caller = self
            .gate
            .authorize(headers, ext, r.name().map(|n| (n, action)), catalog)
            .await?;
        if let (Some(claims), Some(from)) = (&caller.claims, query.get("from"))
            && !claims.grants(from, Action::Pull)
        {
            query.remove(&["mount", "from"]);
        }
        Ok(caller)
    }

    async fn route_request<In>(
        &self,
        r: Route<'_>,
        m: &Method,
        head: bool,
        query: &Query,
        headers: &HeaderMap,
        body: In,
    ) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let parts_headers = headers;
        match (r, m.clone()) {
            (Route::Base, Method::GET | Method::HEAD) => self.base(head),
            (Route::Catalog, Method::GET) => self.catalog(query).await,
            (Route::Tags { name }, Method::GET) => self.tags(name, query).await,
            (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
                self.get_manifest(name, reference, parts_headers, head)
                    .await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                self.put_manifest(name, reference, query, parts_headers, body)
                    .await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => {
                self.delete_manifest(name, reference).await
            }
            (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
                self.get_blob(name, digest, parts_headers, head).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => self.delete_blob(name, digest).await,
            (Route::UploadStart { name }, Method::POST) => {
                self.start_upload(name, query, parts_headers, body).await
            }
            (Route::Upload { name, id }, Method::GET) => self.upload_status(name, id).await,
            (Route::Upload { name, id }, Method::PATCH) => {
                self.patch_upload(name, id, parts_headers, body).await
            }
            (Route::Upload { name, id }, Method::PUT) => {
                self.finish_upload(name, id, query, parts_headers, body)
                    .await
            }
            (Route::Upload { name, id }, Method::DELETE) => self.cancel_upload(name, id).await,
            (Route::Referrers { name, digest }, Method::GET) => {
                self.referrers(name, digest, query).await
            }
            (_, m) => Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("method {m} is not supported on this endpoint"),
            )),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, format!("internal error: {e}"))
}

fn name_unknown(name: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::NameUnknown,
        format!("repository {name:?} is not known to this registry"),
    )
    .with_detail(serde_json::json!({ "name": name }))
}

fn manifest_unknown(r: &Reference) -> RegistryError {
    let what = match r {
        Reference::Tag(t) => format!("tag {t:?}"),
        Reference::Digest(d) => format!("manifest {d}"),
    };
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("{what} is not in this repository"),
    )
}

fn blob_unknown(d: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} is not in this repository"),
    )
    .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

//! The OCI Distribution API: one handler for every runtime. `http::Request` in,
//! `http::Response` out; storage through the ports.

use crate::auth::{Action, TokenService};
use crate::body::Body;
use crate::capability;
use crate::digest::{Algorithm, Digest, Hasher, to_hex};
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::gate::Caller;
use crate::manifest::{self, Descriptor, MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::name::{validate_name, validate_tag};
use crate::ports::DocumentStore;
use crate::ports::{
    BlobStore, BlobWriter, ByteRange, DEFAULT_ALGORITHM, Env, MAX_TAGS_PER_PUT, MetadataStore,
    Reference, StoredManifest, UploadRecord,
};
use crate::route::{Route, route};
use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::pin::pin;

/// `Docker-Content-Digest`.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `Docker-Distribution-API-Version`.
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// `OCI-Chunk-Min-Length`.
pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
/// `OCI-Subject`.
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// `OCI-Tag`: one per tag a manifest `PUT` set.
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// `OCI-Filters-Applied`.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Largest page of tags or repositories returned at once.
pub const MAX_PAGE: usize = 10_000;

/// Behaviour switches of the API.
#[derive(Debug, Clone)]
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
    /// their bytes there, with a capability in the URL (see [`crate::capability`]). Needs
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
        }
    }
}

/// The registry: adapters plus configuration. Cheap to share by reference.
pub struct Registry<B, M, E> {
    /// Blob storage.
    pub blobs: B,
    /// Metadata storage.
    pub meta: M,
    /// Time and randomness.
    pub env: E,
    /// Behaviour.
    pub config: Config,
    /// Token auth; `None` serves everyone (trusted networks, tests).
    pub auth: Option<TokenService>,
}

/// The response type of the core.
pub type ApiResponse<B> = Response<Body<<B as BlobStore>::Reader>>;

type Resp<B> = Result<ApiResponse<B>>;

impl<B: BlobStore, M: MetadataStore + DocumentStore, E: Env> Registry<B, M, E> {
    /// Builds a registry with auth off.
    pub fn new(blobs: B, meta: M, env: E, config: Config) -> Self {
        Self {
            blobs,
            meta,
            env,
            config,
            auth: None,
        }
    }

    /// Turns token auth on.
    pub fn with_auth(mut self, tokens: TokenService) -> Self {
        self.auth = Some(tokens);
        self
    }

    /// Handles one request. Never fails: errors become OCI error responses.
    pub async fn handle<In>(&self, req: Request<In>) -> ApiResponse<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let result = if path == "/token" {
            self.token_request(req).await
        } else if path == "/.well-known/jwks.json" {
            self.jwks()
        } else if path == "/api/v1" || path.starts_with("/api/v1/") {
            self.api(req).await
        } else {
            self.dispatch(req).await
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!(%method, %path, code = ?e.code, message = %e.message, "request failed");
                } else {
                    tracing::debug!(%method, %path, code = ?e.code, message = %e.message, "request refused");
                }
                error_response::<B>(&e, method == Method::HEAD)
            }
        };
        resp.headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        // No response is to be sniffed into HTML or script by a browser.
        resp.headers_mut().insert(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
        resp
    }

    async fn dispatch<In>(&self, req: Request<In>) -> Resp<B>
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
        if cap.is_none() && self.config.capability_only {
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
        let audit = audit_action(&r, m);
        let mut result = self
            .route_request(r.clone(), m, head, &query, &parts.headers, body)
            .await;
        let cap = cap.as_deref();
        match &mut result {
            Ok(resp) => {
                let new = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| self.upload_location_for(&r, cap, loc))
                    .and_then(|l| HeaderValue::from_str(&l).ok());
                if let Some(v) = new {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
            }
            Err(e) => {
                for (k, v) in e.headers.iter_mut() {
                    if *k == header::LOCATION
                        && let Some(new) = self.upload_location_for(&r, cap, v)
                    {
                        *v = new;
                    }
                }
            }
        }
        if let (Ok(resp), Some((action, repo, reference))) = (&result, audit)
            && resp.status().is_success()
        {
            self.audit(
                &parts.extensions,
                &caller.name,
                action,
                repo,
                Some(reference.to_owned()),
            )
            .await;
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
        let Some(secret) = &self.config.upload_secret else {
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
            &self.config.upload_front,
            &self.config.upload_secret,
        ) {
            (Route::Upload { .. }, Some(cap), _, _) => {
                format!("{loc}?{}={}", capability::PARAM, cap)
            }
            (Route::UploadStart { name }, None, Some(front), Some(secret)) => {
                let expiry = self.env.now_ms() / 1000 + self.config.upload_capability_ttl_secs;
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
            .authorize(headers, ext, r.name().map(|n| (n, action)), catalog)
            .await?;
        if let (Some(claims), Some(from)) = (&caller.claims, query.get("from"))
            && !claims.grants(from, Action::Pull)
        {
            query.0.retain(|(k, _)| k != "mount" && k != "from");
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
            (Route::Base, Method::GET | Method::HEAD) => {
                Ok(json::<B>(StatusCode::OK, b"{}".to_vec(), head))
            }
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

    // ---- catalog and tags -------------------------------------------------------------

    async fn catalog(&self, q: &Query) -> Resp<B> {
        let (n, last) = q.page()?;
        let page = self.meta.list_repositories(last, n).await?;
        let body = serde_json::json!({ "repositories": page.items });
        let mut resp = json::<B>(StatusCode::OK, body.to_string().into_bytes(), false);
        if page.more
            && let Some(l) = page.items.last()
        {
            set_link(&mut resp, &format!("/v2/_catalog?n={n}&last={}", enc(l)));
        }
        Ok(resp)
    }

    async fn tags(&self, name: &str, q: &Query) -> Resp<B> {
        let (n, last) = q.page()?;
        let Some(page) = self.meta.list_tags(name, last, n).await? else {
            return Err(name_unknown(name));
        };
        let body = serde_json::json!({ "name": name, "tags": page.items });
        let mut resp = json::<B>(StatusCode::OK, body.to_string().into_bytes(), false);
        if page.more
            && let Some(l) = page.items.last()
        {
            set_link(
                &mut resp,
                &format!("/v2/{name}/tags/list?n={n}&last={}", enc(l)),
            );
        }
        Ok(resp)
    }

    // ---- manifests --------------------------------------------------------------------

    async fn get_manifest(
        &self,
        name: &str,
        reference: &str,
        headers: &HeaderMap,
        head: bool,
    ) -> Resp<B> {
        let reference = parse_reference(reference)?;
        let Some(m) = self.meta.manifest(name, &reference).await? else {
            if !self.meta.repository_exists(name).await? {
                return Err(name_unknown(name));
            }
            return Err(manifest_unknown(&reference));
        };
        // By tag, a client that cannot read the stored type gets 404 rather than a document
        // it would misparse (Distribution does the same); by digest, content is content.
        if let Reference::Tag(t) = &reference
            && !accepts(headers, &m.info.media_type)
        {
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "tag {t:?} is a {} manifest, which the request's Accept header does not include",
                    m.info.media_type
                ),
            ));
        }
        let mut resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, &m.info.media_type)
            .header(header::CONTENT_LENGTH, m.bytes.len())
            .header(DOCKER_CONTENT_DIGEST, m.info.digest.to_string())
            .header(header::ETAG, format!("\"{}\"", m.info.digest));
        if let Some(s) = &m.info.subject {
            resp = resp.header(OCI_SUBJECT, s.to_string());
        }
        let body = if head {
            Body::Empty
        } else {
            Body::full(m.bytes)
        };
        resp.body(body).map_err(internal)
    }

    async fn put_manifest<In>(
        &self,
        name: &str,
        reference: &str,
        q: &Query,
        headers: &HeaderMap,
        body: In,
    ) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let reference = parse_reference(reference)?;
        let tags = tags_to_set(&reference, q)?;
        let bytes = read_limited(body, MAX_MANIFEST_BYTES).await.map_err(|e| {
            if e.code == ErrorCode::SizeInvalid {
                RegistryError::new(
                    ErrorCode::ManifestInvalid,
                    format!("manifest exceeds the {MAX_MANIFEST_BYTES}-byte limit"),
                )
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                e
            }
        })?;
        let digest = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(RegistryError::new(
                        ErrorCode::DigestInvalid,
                        format!("manifest body has digest {actual}, not {d}"),
                    )
                    .with_detail(serde_json::json!({ "digest": d.to_string() })));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let info = manifest::parse(&bytes, content_type, digest.clone())?;
        let missing = self.meta.missing_blobs(name, &info.blobs).await?;
        if let Some(d) = missing.first() {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("blob {d} is not in repository {name}; push it before the manifest"),
            )
            .with_detail(serde_json::json!({ "digest": d.to_string() })));
        }
        let missing = self.meta.missing_manifests(name, &info.children).await?;
        if let Some(d) = missing.first() {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {d} is not in repository {name}; push it before the index"),
            )
            .with_detail(serde_json::json!({ "digest": d.to_string() })));
        }
        let subject = info.subject.clone();
        let stored = StoredManifest { info, bytes };
        self.meta.put_manifest(name, &stored, &tags).await?;
        tracing::info!(repo = name, %digest, ?tags, "manifest pushed");
        let mut resp = Response::builder()
            .status(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
            .header(DOCKER_CONTENT_DIGEST, digest.to_string())
            .header(header::CONTENT_LENGTH, 0);
        // One `OCI-Tag` line listing every tag set: the same list as one line per tag (RFC 9110
        // §5.3), and what survives Lambda function URLs, whose response headers hold one value
        // per name.
        if !tags.is_empty() {
            resp = resp.header(OCI_TAG, tags.join(", "));
        }
        if let Some(s) = subject {
            resp = resp.header(OCI_SUBJECT, s.to_string());
        }
        resp.body(Body::Empty).map_err(internal)
    }

    async fn delete_manifest(&self, name: &str, reference: &str) -> Resp<B> {
        self.check_delete()?;
        let reference = parse_reference(reference)?;
        let found = match &reference {
            Reference::Digest(d) => self.meta.delete_manifest(name, d).await?,
            Reference::Tag(t) => self.meta.delete_tag(name, t).await?,
        };
        if !found {
            return Err(manifest_unknown(&reference));
        }
        tracing::info!(repo = name, reference = ?reference, "manifest deleted");
        Ok(empty::<B>(StatusCode::ACCEPTED))
    }

    async fn referrers(&self, name: &str, digest: &str, q: &Query) -> Resp<B> {
        let subject: Digest = digest.parse()?;
        let mut list = self.meta.referrers(name, &subject).await?;
        let filter = q.get("artifactType");
        if let Some(f) = filter {
            list.retain(|d| d.artifact_type.as_deref() == Some(f));
        }
        list.sort_by(|a, b| a.digest.cmp(&b.digest));
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Index<'a> {
            schema_version: u8,
            media_type: &'a str,
            manifests: &'a [Descriptor],
        }
        let body = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: &list,
        })
        .map_err(internal)?;
        let mut resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, OCI_INDEX)
            .header(header::CONTENT_LENGTH, body.len());
        if filter.is_some() {
            resp = resp.header(OCI_FILTERS_APPLIED, "artifactType");
        }
        resp.body(Body::full(body)).map_err(internal)
    }

    // ---- blobs ------------------------------------------------------------------------

    async fn get_blob(&self, name: &str, digest: &str, headers: &HeaderMap, head: bool) -> Resp<B> {
        let digest: Digest = digest.parse()?;
        let Some(size) = self.meta.blob_link(name, &digest).await? else {
            return Err(blob_unknown(&digest));
        };
        let base = Response::builder()
            .header(DOCKER_CONTENT_DIGEST, digest.to_string())
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest}\""));
        if head {
            return base
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, size)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::Empty)
                .map_err(internal);
        }
        // Checked before any redirect: the size is known here, so an unsatisfiable range
        // gets the same 416 (with `Content-Range: bytes */size`) on every runtime, instead
        // of whatever the object store behind a presigned URL answers.
        let range = match headers.get(header::RANGE) {
            Some(v) => parse_range(v, size)?,
            None => None,
        };
        if self.config.redirect_blobs
            && let Some(url) =
                self.blobs
                    .presign_get(&digest, self.env.now_ms(), self.config.presign_ttl_secs)
        {
            return base
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url)
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::Empty)
                .map_err(internal);
        }
        let reader = self.blobs.get(&digest, range).await.map_err(|e| match e {
            StoreError::NotFound => RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("blob {digest} is linked but its data is missing"),
            ),
            e => e.into(),
        })?;
        let resp = match range {
            Some(r) => base
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.end),
                )
                .header(header::CONTENT_LENGTH, r.len()),
            None => base
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, size),
        };
        resp.header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::Stream(reader))
            .map_err(internal)
    }

    async fn delete_blob(&self, name: &str, digest: &str) -> Resp<B> {
        self.check_delete()?;
        let digest: Digest = digest.parse()?;
        if !self.meta.unlink_blob(name, &digest).await? {
            return Err(blob_unknown(&digest));
        }
        Ok(empty::<B>(StatusCode::ACCEPTED))
    }

    // ---- uploads ----------------------------------------------------------------------

    async fn start_upload<In>(
        &self,
        name: &str,
        q: &Query,
        headers: &HeaderMap,
        body: In,
    ) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
            let digest: Digest = mount.parse()?;
            validate_name(from)?;
            if let Some(size) = self.meta.blob_link(from, &digest).await? {
                self.meta.link_blob(name, &digest, size).await?;
                tracing::info!(repo = name, from, %digest, "blob mounted");
                return Ok(blob_created::<B>(name, &digest));
            }
            // Not mountable: the spec says to fall back to a regular upload session.
        }
        let digest = match q.get("digest") {
            Some(d) => Some(d.parse::<Digest>()?),
            None => None,
        };
        let algorithm = digest.as_ref().map_or(DEFAULT_ALGORITHM, Digest::algorithm);
        let mut upload = self.new_upload(name, algorithm, digest.clone()).await?;
        if let Some(digest) = digest {
            // Monolithic upload: the whole blob is this request's body.
            let written = self.append(&mut upload, headers, body, None).await;
            return match written {
                Ok(()) => self.commit(&upload, &digest).await,
                Err(e) => {
                    self.discard(&upload).await;
                    Err(e)
                }
            };
        }
        Ok(self.upload_accepted(&upload, StatusCode::ACCEPTED))
    }

    async fn new_upload(
        &self,
        name: &str,
        algorithm: Algorithm,
        digest: Option<Digest>,
    ) -> Result<UploadRecord> {
        let mut id = [0u8; 16];
        self.env.fill_random(&mut id);
        let now = self.env.now_ms();
        let upload = UploadRecord {
            id: to_hex(&id),
            repo: name.to_owned(),
            offset: 0,
            hash_state: Hasher::new(algorithm).save(),
            store_state: String::new(),
            digest,
            created_ms: now,
            updated_ms: now,
        };
        self.meta.create_upload(&upload).await?;
        Ok(upload)
    }

    async fn find_upload(&self, name: &str, id: &str) -> Result<UploadRecord> {
        let unknown = || {
            RegistryError::new(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id:?} is unknown to {name}"),
            )
        };
        if id.len() > 128 {
            return Err(unknown());
        }
        match self.meta.upload(id).await? {
            Some(u) if u.repo == name => Ok(u),
            _ => Err(unknown()),
        }
    }

    async fn upload_status(&self, name: &str, id: &str) -> Resp<B> {
        let upload = self.find_upload(name, id).await?;
        Ok(self.upload_accepted(&upload, StatusCode::NO_CONTENT))
    }

    async fn patch_upload<In>(&self, name: &str, id: &str, headers: &HeaderMap, body: In) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let mut upload = self.find_upload(name, id).await?;
        let range = parse_content_range(headers)?;
        self.append(&mut upload, headers, body, range).await?;
        Ok(self.upload_accepted(&upload, StatusCode::ACCEPTED))
    }

    async fn finish_upload<In>(
        &self,
        name: &str,
        id: &str,
        q: &Query,
        headers: &HeaderMap,
        body: In,
    ) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let mut upload = self.find_upload(name, id).await?;
        let Some(digest) = q.get("digest") else {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                "closing an upload needs ?digest=<digest>",
            ));
        };
        let digest: Digest = digest.parse()?;
        let range = parse_content_range(headers)?;
        self.append(&mut upload, headers, body, range).await?;
        self.commit(&upload, &digest).await
    }

    async fn cancel_upload(&self, name: &str, id: &str) -> Resp<B> {
        let upload = self.find_upload(name, id).await?;
        self.blobs.abort(&upload).await?;
        self.meta.delete_upload(&upload.id).await?;
        Ok(empty::<B>(StatusCode::NO_CONTENT))
    }

    /// Streams a request body into the upload, hashing as it goes. The new offset and hash
    /// state are recorded only after the store made the bytes durable; on any failure the
    /// record is untouched, so the bytes of a failed request never count.
    async fn append<In>(
        &self,
        upload: &mut UploadRecord,
        headers: &HeaderMap,
        body: In,
        range: Option<ByteRange>,
    ) -> Result<()>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let declared_len = content_length(headers)?;
        if let Some(r) = range {
            if r.start != upload.offset {
                return Err(RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!(
                        "chunk starts at byte {} but the upload has {} bytes; send chunks in order",
                        r.start, upload.offset
                    ),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::LOCATION, upload_location(upload))
                .with_header(header::RANGE, range_value(upload.offset)));
            }
            if let Some(n) = declared_len
                && n != r.len()
            {
                return Err(RegistryError::new(
                    ErrorCode::SizeInvalid,
                    format!(
                        "Content-Range covers {} bytes but Content-Length is {n}",
                        r.len()
                    ),
                ));
            }
        }
        if let (Some(max), Some(n)) = (self.config.max_request_body, declared_len)
            && n > max
        {
            return Err(body_too_large(max));
        }
        if declared_len == Some(0) {
            return Ok(());
        }
        let mut hasher = Hasher::restore(&upload.hash_state).ok_or_else(|| {
            RegistryError::new(
                ErrorCode::BlobUploadInvalid,
                "upload hash state is corrupt; restart the upload",
            )
        })?;
        let mut writer = self.blobs.writer(upload).await?;
        let mut received: u64 = 0;
        let mut body = pin!(body);
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.map_err(|e| {
                RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("request body ended early after {received} bytes: {e}"),
                )
            })?;
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let chunk = data.copy_to_bytes(data.remaining());
            received = received
                .checked_add(chunk.len() as u64)
                .ok_or_else(|| too_many_bytes(upload.offset))?;
            if let Some(max) = self.config.max_request_body
                && received > max
            {
                return Err(body_too_large(max));
            }
            hasher.update(&chunk);
            writer.write(chunk).await?;
        }
        let expected = range.map(|r| r.len()).or(declared_len);
        if let Some(n) = expected
            && n != received
        {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("expected {n} bytes, received {received}"),
            ));
        }
        if received == 0 {
            return Ok(());
        }
        let store_state = writer.finish().await?;
        let expected_offset = upload.offset;
        let mut next = upload.clone();
        next.offset = upload
            .offset
            .checked_add(received)
            .ok_or_else(|| too_many_bytes(upload.offset))?;
        next.hash_state = hasher.save();
        next.store_state = store_state;
        next.updated_ms = self.env.now_ms();
        self.meta
            .update_upload(&next, expected_offset)
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    "the upload was changed by a concurrent request",
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
                // Closed (PUT) or cancelled (DELETE) while this request was sending: what
                // it wrote is in nothing the record lists.
                StoreError::NotFound => RegistryError::new(
                    ErrorCode::BlobUploadUnknown,
                    "the upload was closed or cancelled while this request was sending",
                ),
                e => e.into(),
            })?;
        *upload = next;
        Ok(())
    }

    /// Verifies the digest, makes the blob visible in the repository, forgets the upload.
    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Resp<B> {
        let mut actual = Hasher::restore(&upload.hash_state).map(Hasher::finish);
        if let Some(a) = &actual
            && a.algorithm() != digest.algorithm()
            && let Some(again) = self.rehash(upload, digest.algorithm()).await?
        {
            actual = Some(again);
        }
        if actual.as_ref() != Some(digest) {
            self.discard(upload).await;
            let msg = match actual {
                Some(a) if a.algorithm() != digest.algorithm() => format!(
                    "the upload was hashed with {}; give a {} digest (or name the algorithm when starting it with ?digest=)",
                    a.algorithm().as_str(),
                    a.algorithm().as_str()
                ),
                Some(a) => format!(
                    "uploaded content has digest {a}, not {digest}; the upload was discarded"
                ),
                None => "upload hash state is corrupt; the upload was discarded".to_owned(),
            };
            return Err(RegistryError::new(ErrorCode::DigestInvalid, msg)
                .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        }
        self.blobs.commit(upload, digest).await?;
        // Racing closing `PUT`s may all commit (content-addressed, idempotent); only the
        // one that claims the record links the blob and answers 201.
        self.meta
            .claim_upload(&upload.id, upload.offset)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => RegistryError::new(
                    ErrorCode::BlobUploadUnknown,
                    "the upload was closed or cancelled by a concurrent request",
                ),
                StoreError::Precondition(_) => RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    "the upload was changed by a concurrent request",
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
                e => e.into(),
            })?;
        self.meta
            .link_blob(&upload.repo, digest, upload.offset)
            .await?;
        tracing::info!(repo = %upload.repo, %digest, size = upload.offset, "blob pushed");
        Ok(blob_created::<B>(&upload.repo, digest))
    }

    /// The digest under `algorithm` of what the upload staged, read back from the store: an
    /// upload is hashed as it arrives with the algorithm named at its `POST` (sha256 when
    /// none was), and a client may name sha512 only at the closing `PUT`. `None` if the store
    /// cannot read staged bytes back. A read failure is returned without discarding the
    /// upload, so the client can retry the `PUT`.
    async fn rehash(&self, upload: &UploadRecord, algorithm: Algorithm) -> Result<Option<Digest>> {
        let mut hasher = Hasher::new(algorithm);
        let mut read: u64 = 0;
        let mut sink = |b: &[u8]| {
            hasher.update(b);
            read = read.saturating_add(b.len() as u64);
        };
        match self.blobs.read_staged(upload, &mut sink).await {
            Ok(()) => {}
            Err(StoreError::NotSupported(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if read != upload.offset {
            return Err(internal(format!(
                "upload {} staged {read} bytes, {} recorded",
                upload.id, upload.offset
            )));
        }
        Ok(Some(hasher.finish()))
    }

    /// Best-effort removal of an upload after a failure (the cleanup job catches leftovers).
    async fn discard(&self, upload: &UploadRecord) {
        if let Err(e) = self.blobs.abort(upload).await {
            tracing::warn!(upload = %upload.id, error = %e, "could not discard upload data");
        }
        if let Err(e) = self.meta.delete_upload(&upload.id).await {
            tracing::warn!(upload = %upload.id, error = %e, "could not forget upload");
        }
    }

    fn upload_accepted(&self, upload: &UploadRecord, status: StatusCode) -> ApiResponse<B> {
        let mut resp = Response::builder()
            .status(status)
            .header(header::LOCATION, upload_location(upload))
            .header(header::RANGE, range_value(upload.offset))
            .header(DOCKER_UPLOAD_UUID, &upload.id)
            .header(header::CONTENT_LENGTH, 0);
        if let Some(min) = self.blobs.min_chunk() {
            resp = resp.header(OCI_CHUNK_MIN_LENGTH, min);
        }
        resp.body(Body::Empty)
            .unwrap_or_else(|_| empty::<B>(status))
    }

    fn check_delete(&self) -> Result<()> {
        if self.config.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::new(
                ErrorCode::Unsupported,
                "deletes are disabled on this registry",
            ))
        }
    }

    /// Removes uploads untouched for `max_age_ms` (the scheduled upload cleanup job).
    pub async fn cleanup_uploads(&self, max_age_ms: u64) -> Result<usize> {
        self.cleanup_uploads_at_most(max_age_ms, usize::MAX).await
    }

    /// [`Self::cleanup_uploads`], stopping after `max` removals: a runtime that limits the
    /// calls one invocation may make (Workers: 1,000 subrequests) takes the rest next time.
    /// Each removal is independent, so stopping early loses nothing.
    pub async fn cleanup_uploads_at_most(&self, max_age_ms: u64, max: usize) -> Result<usize> {
        let before = self.env.now_ms().saturating_sub(max_age_ms);
        let mut removed = 0;
        while removed < max {
            let stale = self
                .meta
                .stale_uploads(before, (max - removed).min(100))
                .await?;
            if stale.is_empty() {
                break;
            }
            for u in &stale {
                self.blobs.abort(u).await?;
                self.meta.delete_upload(&u.id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

// ---- helpers ----------------------------------------------------------------------------

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

fn body_too_large(max: u64) -> RegistryError {
    RegistryError::new(
        ErrorCode::SizeInvalid,
        format!(
            "request body exceeds this runtime's limit of {max} bytes per request; send the \
             blob in chunks of at most {max} bytes (PATCH with Content-Range) (on AWS Lambda \
             the operator can also set WHARF_UPLOAD_URL: uploads then go to an upload front \
             that takes any size)"
        ),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// An upload would pass the largest offset a `u64` holds.
fn too_many_bytes(offset: u64) -> RegistryError {
    RegistryError::new(
        ErrorCode::SizeInvalid,
        format!(
            "the upload has {offset} bytes and cannot grow past {}",
            u64::MAX
        ),
    )
}

/// The tags a manifest `PUT` sets: the reference if it is a tag, then each `?tag=` (the
/// spec's tags pushed with a manifest by digest), repeats dropped. All are validated here,
/// before the body is read, so a bad one fails the request with `TAG_INVALID` before
/// anything is written.
fn tags_to_set<'q>(reference: &'q Reference, q: &'q Query) -> Result<Vec<&'q str>> {
    let mut tags: Vec<&str> = Vec::new();
    if let Reference::Tag(t) = reference {
        tags.push(t);
    }
    for t in q.all("tag") {
        validate_tag(t)?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > MAX_TAGS_PER_PUT {
        return Err(RegistryError::new(
            ErrorCode::TagInvalid,
            format!(
                "{} tags in one manifest PUT; at most {MAX_TAGS_PER_PUT} are set at once",
                tags.len()
            ),
        )
        .with_status(StatusCode::URI_TOO_LONG));
    }
    Ok(tags)
}

fn parse_reference(r: &str) -> Result<Reference> {
    if r.contains(':') {
        Ok(Reference::Digest(r.parse()?))
    } else {
        validate_tag(r)?;
        Ok(Reference::Tag(r.to_owned()))
    }
}

fn upload_location(u: &UploadRecord) -> String {
    format!("/v2/{}/blobs/uploads/{}", u.repo, u.id)
}

/// The spec's `Range: 0-<last byte>` ("0-0" for an empty upload, as Distribution sends).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| RegistryError::new(ErrorCode::SizeInvalid, "invalid Content-Length")),
    }
}

/// `Content-Range: <start>-<end>` on a PATCH (also accepting a `bytes ` or `bytes=` prefix,
/// which some clients send). Anything else, an empty range included, is a 416.
fn parse_content_range(h: &HeaderMap) -> Result<Option<ByteRange>> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must be <start>-<end>",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map_or(s, |r| r.trim_start_matches([' ', '=']));
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    // `end < u64::MAX`: the upload's offset after this chunk, `end + 1`, must fit a u64
    // (`0-18446744073709551615` would otherwise cover "0 bytes" after wrapping).
    if end == u64::MAX {
        return Err(bad());
    }
    ByteRange::new(start, end).map(Some).ok_or_else(bad)
}

/// A single `Range: bytes=…` against a blob of `size`; multi-range requests get the whole
/// blob. As RFC 9110 says, a last position past the end means the end, however many digits
/// it has (so a number beyond `u64` counts as `u64::MAX`, it does not fail the request).
fn parse_range(v: &HeaderValue, size: u64) -> Result<Option<ByteRange>> {
    let unsatisfiable = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("requested range is not satisfiable (blob has {size} bytes)"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let Some(spec) = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Err(unsatisfiable());
    };
    let number = |s: &str| -> Result<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(unsatisfiable());
        }
        // Digits only: the one way to fail is overflow.
        Ok(s.parse().unwrap_or(u64::MAX))
    };
    // An empty blob has no satisfiable range.
    let last = size.checked_sub(1).ok_or_else(unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // `bytes=-n`: the last n bytes.
        let n = number(b)?;
        if n == 0 {
            return Err(unsatisfiable());
        }
        ByteRange::new(size.saturating_sub(n), last)
    } else {
        let start = number(a)?;
        let end = if b.is_empty() { last } else { number(b)? };
        if start > last || end < start {
            return Err(unsatisfiable());
        }
        ByteRange::new(start, end.min(last))
    };
    range.map(Some).ok_or_else(unsatisfiable)
}

fn accepts(h: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for v in h.get_all(header::ACCEPT) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any = true;
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
        }
    }
    !any
}

/// Reads a whole (small) body, failing with `SIZE_INVALID` beyond `limit` bytes.
pub(crate) async fn read_limited<In>(body: In, limit: usize) -> Result<Bytes>
where
    In: http_body::Body,
    In::Error: std::fmt::Display,
{
    let mut body = pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("request body ended early: {e}"),
            )
        })?;
        if let Ok(mut data) = frame.into_data() {
            if out.len().saturating_add(data.remaining()) > limit {
                return Err(RegistryError::new(ErrorCode::SizeInvalid, "body too large"));
            }
            while data.has_remaining() {
                let c = data.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                data.advance(n);
            }
        }
    }
    Ok(out.freeze())
}

fn empty<B: BlobStore>(status: StatusCode) -> ApiResponse<B> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON response.
pub(crate) fn json_response<B: BlobStore>(status: StatusCode, body: Vec<u8>) -> ApiResponse<B> {
    json::<B>(status, body, false)
}

/// Which successful requests the audit log records: (action, repository, reference).
fn audit_action<'a>(r: &Route<'a>, m: &Method) -> Option<(&'static str, &'a str, &'a str)> {
    match (r, m) {
        (Route::Manifest { name, reference }, &Method::GET) => Some(("pull", name, reference)),
        (Route::Manifest { name, reference }, &Method::PUT) => Some(("push", name, reference)),
        (Route::Manifest { name, reference }, &Method::DELETE) => Some(("delete", name, reference)),
        (Route::Blob { name, digest }, &Method::DELETE) => Some(("delete", name, digest)),
        _ => None,
    }
}

fn json<B: BlobStore>(status: StatusCode, body: Vec<u8>, head: bool) -> ApiResponse<B> {
    let len = body.len();
    let mut r = Response::new(if head { Body::Empty } else { Body::full(body) });
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn blob_created<B: BlobStore>(name: &str, digest: &Digest) -> ApiResponse<B> {
    let mut r = empty::<B>(StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/blobs/{digest}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        r.headers_mut().insert(DOCKER_CONTENT_DIGEST, v);
    }
    r
}

/// Renders an error as the spec's JSON body with its status and headers.
pub fn error_response<B: BlobStore>(e: &RegistryError, head: bool) -> ApiResponse<B> {
    let mut r = json::<B>(e.status, e.body(), head);
    for (k, v) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(k.clone(), v);
        }
    }
    r
}

fn set_link<R>(resp: &mut Response<R>, target: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{target}>; rel=\"next\"")) {
        resp.headers_mut().insert(header::LINK, v);
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decoded query parameters.
pub(crate) struct Query(pub(crate) Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated parameter, in order.
    fn all<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    /// `n` (at most [`MAX_PAGE`]) and `last`.
    fn page(&self) -> Result<(usize, Option<&str>)> {
        let n = match self.get("n") {
            None => MAX_PAGE,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| {
                    RegistryError::new(
                        ErrorCode::Unsupported,
                        format!("n must be a number, got {s:?}"),
                    )
                    .with_status(StatusCode::BAD_REQUEST)
                })?
                .min(MAX_PAGE),
        };
        Ok((n, self.get("last").filter(|l| !l.is_empty())))
    }
}

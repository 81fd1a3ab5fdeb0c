//! The token endpoint (`/token`, Docker token spec plus its OAuth2 form), the JWKS
//! document, per-request authorization of `/v2/` routes, and the audit trail.

use crate::auth::{
    ANONYMOUS, Access, Action, Claims, Directory, Principal, Project, Right, Scope, TokenError,
    new_incarnation, parse_basic, project_of, rfc3339,
};
use crate::digest::to_hex;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::name::validate_name;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use crate::registry::{ApiResponse, Registry, json_response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;

/// The document kind of first insufficient-scope refusals (see `first_scope_refusal`).
pub const SCOPE_REFUSAL_KIND: &str = "scope_refusal";

/// The client's address, inserted as a request extension by the runtime (for the audit log
/// and login throttling).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The registry's public origin (`https://host:port`), inserted as a request extension by
/// the runtime; the token realm is `<origin>/token`.
#[derive(Debug, Clone)]
pub struct PublicOrigin(pub String);

/// Who made a request, once authorized.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Subject name (`anonymous` without a token or with auth off).
    pub name: String,
    /// The token's claims, when auth is on.
    pub claims: Option<Claims>,
}

/// An audit event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// Who: user, robot or `anonymous`.
    pub actor: String,
    /// `login`, `login_failed`, `push`, `pull`, `delete`.
    pub action: String,
    /// Repository (or project/user for management actions).
    pub resource: String,
    /// Tag or digest, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Client address.
    pub client: String,
    /// The project the event belongs to, set by whoever records it: `None` for logins and
    /// account changes, which must never show in a project's log (a project named after a
    /// user would otherwise read that user's logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl AuditEvent {
    /// The event's project. Events recorded before events carried one are read as before
    /// only for repository actions, whose resource is a repository name.
    pub fn project(&self) -> Option<&str> {
        match (&self.project, self.action.as_str()) {
            (Some(p), _) => Some(p),
            (None, "push" | "pull" | "delete") => Some(project_of(&self.resource)),
            (None, _) => None,
        }
    }
}

/// `host[:port]` as RFC 3986 allows it in an authority (reg-name, IPv4 or `[IPv6]`),
/// without user info: what a runtime may put into the token realm from a `Host` header.
pub fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        // `[v6]` without a port, or a bare IPv6 address (refused below).
        Some((a, _)) if !a.ends_with(']') && a.contains(':') => (h, None),
        Some((a, p)) => (a, Some(p)),
        None => (h, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

fn challenge(realm: &str, service: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let mut v = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        v.push_str(&format!(",error=\"{e}\""));
    }
    v
}

/// The scope words a client should ask for to do `action` (docker asks pull,push to push).
fn scope_actions(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    }
}

impl<B: BlobStore, M: MetadataStore + DocumentStore, E: Env> Registry<B, M, E> {
    pub(crate) fn realm(&self, headers: &HeaderMap, ext: &http::Extensions) -> String {
        if let Some(o) = ext.get::<PublicOrigin>() {
            return format!("{}/token", o.0);
        }
        // The Host header is the client's to set: only a plain host[:port] goes into the
        // challenge, so nothing can be injected into `WWW-Authenticate`.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h))
            .unwrap_or("localhost");
        format!("http://{host}/token")
    }

    /// Authorizes a `/v2/` request needing `need` (`None`: any valid token; `Some((repo,
    /// action))`; the catalog is `Some(("", Pull))` with `catalog = true`).
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        ext: &http::Extensions,
        need: Option<(&str, Action)>,
        catalog: bool,
    ) -> Result<Caller> {
        let Some(tokens) = &self.auth else {
            return Ok(Caller {
                name: "anonymous".into(),
                claims: None,
            });
        };
        let realm = self.realm(headers, ext);
        let service = &tokens.settings.service;
        let scope = if catalog {
            Some("registry:catalog:*".to_owned())
        } else {
            need.map(|(repo, a)| format!("repository:{repo}:{}", scope_actions(a)))
        };
        let unauthorized = |msg: &str, error: Option<&str>| {
            RegistryError::new(ErrorCode::Unauthorized, msg).with_header(
                header::WWW_AUTHENTICATE,
                challenge(&realm, service, scope.as_deref(), error),
            )
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let Some(token) = bearer else {
            return Err(unauthorized("authentication required", None));
        };
        let claims = match tokens.verify(token.trim(), self.env.now_ms()) {
            Ok(c) => c,
            Err(TokenError::Expired) => {
                return Err(unauthorized("token expired", Some("invalid_token")));
            }
            Err(TokenError::NotYetValid) => {
                return Err(unauthorized("token not yet valid", Some("invalid_token")));
            }
            Err(TokenError::Invalid(m)) => return Err(unauthorized(&m, Some("invalid_token"))),
        };
        let ok = if catalog {
            claims.grants_catalog()
        } else {
            need.is_none_or(|(repo, a)| claims.grants(repo, a))
        };
        if !ok {
            // Clients ask for a wider token only on a 401 (containerd's resolver, Go clients
            // of the token spec, Distribution itself): so a token that lacks a scope the
            // caller could be granted gets 401 with an `insufficient_scope` challenge naming
            // it, and only a caller who cannot be granted it at all gets 403 DENIED.
            let challenge = challenge(
                &realm,
                service,
                scope.as_deref(),
                Some("insufficient_scope"),
            );
            if self.could_be_granted(&claims, need, catalog).await?
                && self
                    .first_scope_refusal(token.trim(), scope.as_deref().unwrap_or(""), claims.exp)
                    .await
            {
                return Err(RegistryError::new(
                    ErrorCode::Unauthorized,
                    "the token does not grant this; ask the token endpoint for the scope in the challenge",
                )
                .with_detail(serde_json::json!({ "scope": scope }))
                .with_header(header::WWW_AUTHENTICATE, challenge));
            }
            return Err(RegistryError::new(
                ErrorCode::Denied,
                "requested access to the resource is denied",
            )
            .with_detail(serde_json::json!({ "scope": scope }))
            .with_header(header::WWW_AUTHENTICATE, challenge));
        }
        Ok(Caller {
            name: claims.sub.clone(),
            claims: Some(claims),
        })
    }

    /// Whether the token endpoint would give the token's subject what `need` asks: an
    /// anonymous caller may log in and so always could; a user or robot that no longer
    /// exists could not.
    /// Whether this is the first time `token` is refused for lacking `scope`, on any
    /// instance. A client that asks for a wider token after a 401 (containerd, Go clients of
    /// the token spec) never sends the narrow one again; one that retries with the same
    /// token (the oras Python SDK asks again only after a 403) gets the 403 on its second
    /// try. Instances share nothing but the stores (a Lambda's next request may reach
    /// another instance), so the first refusal is a create-only document per (token, scope),
    /// keyed by their hash and kept with the token's expiry; refusals are rare (docker and
    /// containerd ask for every scope they need up front). If the store cannot say, the
    /// answer is 401, which such a client retries.
    async fn first_scope_refusal(&self, token: &str, scope: &str, exp_secs: u64) -> bool {
        let id = crate::digest::Digest::sha256_of(format!("{token}\n{scope}").as_bytes());
        let doc = serde_json::json!({ "exp": exp_secs }).to_string();
        !matches!(
            self.meta
                .put_doc(SCOPE_REFUSAL_KIND, id.hex(), doc.as_bytes(), true)
                .await,
            Err(crate::error::StoreError::Precondition(_))
        )
    }

    async fn could_be_granted(
        &self,
        claims: &Claims,
        need: Option<(&str, Action)>,
        catalog: bool,
    ) -> Result<bool> {
        if claims.kind == ANONYMOUS {
            return Ok(true);
        }
        let who = match self.principal(&claims.sub).await {
            Ok(p) => p,
            Err(e) if e.code == ErrorCode::Unauthorized => return Ok(false),
            Err(e) => return Err(e),
        };
        if catalog {
            return Ok(who.is_admin());
        }
        let Some((repo, action)) = need else {
            return Ok(true);
        };
        let project = project_of(repo);
        Ok(validate_name(repo).is_ok()
            && (who.is_admin()
                || Directory(&self.meta)
                    .allowed(&who, project, Right::Repo(action))
                    .await?))
    }

    /// Records an event on repository `repo` (in `repo`'s project).
    pub(crate) async fn audit(
        &self,
        ext: &http::Extensions,
        actor: &str,
        action: &str,
        repo: &str,
        reference: Option<String>,
    ) {
        self.record_event(ext, Some(project_of(repo)), actor, action, repo, reference)
            .await
    }

    /// Records an event that belongs to no project (logins, accounts).
    pub(crate) async fn audit_global(
        &self,
        ext: &http::Extensions,
        actor: &str,
        action: &str,
        resource: &str,
    ) {
        self.record_event(ext, None, actor, action, resource, None)
            .await
    }

    /// Records an audit event; failures are logged, never fail the request.
    pub(crate) async fn record_event(
        &self,
        ext: &http::Extensions,
        project: Option<&str>,
        actor: &str,
        action: &str,
        resource: &str,
        reference: Option<String>,
    ) {
        if self.auth.is_none() {
            return;
        }
        let now = self.env.now_ms();
        let event = AuditEvent {
            time_ms: now,
            actor: actor.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            reference,
            client: ext
                .get::<ClientAddr>()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            project: project.map(str::to_owned),
        };
        let mut r = [0u8; 4];
        self.env.fill_random(&mut r);
        let id = format!("{now:016}-{}", to_hex(&r));
        let Ok(raw) = serde_json::to_vec(&event) else {
            return;
        };
        if let Err(e) = self.meta.append_event(&id, &raw).await {
            tracing::warn!(error = %e, "could not record audit event");
        }
    }

    /// Identifies the caller of the token endpoint or the management API from Basic
    /// credentials (throttled) or a bearer token. `Ok(None)`: no credentials.
    pub(crate) async fn login(
        &self,
        headers: &HeaderMap,
        ext: &http::Extensions,
        basic: Option<(String, String)>,
    ) -> Result<Option<Principal>> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let basic = basic.or_else(|| auth.and_then(parse_basic));
        if let Some((user, password)) = basic {
            if user == ANONYMOUS {
                return Err(RegistryError::new(
                    ErrorCode::Unauthorized,
                    "invalid username or password",
                ));
            }
            return self.password_login(ext, &user, &password).await.map(Some);
        }
        // Registry tokens are credentials for `/v2/` scopes only: a pull token for one
        // repository must not change its owner's password or create an admin.
        if auth.is_some_and(|a| a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ")) {
            return Err(RegistryError::new(
                ErrorCode::Unauthorized,
                "registry tokens are not accepted here; authenticate with Basic credentials",
            ));
        }
        Ok(None)
    }

    /// Loads a user or robot that still exists and has not expired.
    pub(crate) async fn principal(&self, name: &str) -> Result<Principal> {
        let dir = Directory(&self.meta);
        let gone = || RegistryError::new(ErrorCode::Unauthorized, "account no longer exists");
        if name == ANONYMOUS {
            // Even if a record of that name was created before the name was reserved.
            return Err(gone());
        }
        if name.starts_with("robot$") {
            let r = dir.robot(name).await?.ok_or_else(gone)?;
            if r.expires_ms.is_some_and(|e| e <= self.env.now_ms()) {
                return Err(RegistryError::new(
                    ErrorCode::Unauthorized,
                    "robot account has expired",
                ));
            }
            Ok(Principal::Robot(r))
        } else {
            dir.user(name).await?.map(Principal::User).ok_or_else(gone)
        }
    }

    async fn password_login(
        &self,
        ext: &http::Extensions,
        user: &str,
        password: &str,
    ) -> Result<Principal> {
        use crate::throttle;
        let client = ext
            .get::<ClientAddr>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let now = self.env.now_ms();
        // A slot of the (user, address) and the address counters before any password is
        // looked at: racing guesses cannot exceed either limit (429 when one is full).
        let claim = throttle::claim(&self.meta, &self.env, user, &client).await?;
        let dir = Directory(&self.meta);
        let found = if user.starts_with("robot$") {
            dir.robot(user)
                .await
                .map(|r| r.map(|r| (r.secret_hash.clone(), Principal::Robot(r))))
        } else {
            dir.user(user)
                .await
                .map(|u| u.map(|u| (u.password_hash.clone(), Principal::User(u))))
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                throttle::give_back(&self.meta, &claim).await;
                return Err(e);
            }
        };
        // An unknown name costs the same Argon2 check as a known one (a dummy hash).
        let hash = found.as_ref().map(|(h, _)| h.as_str());
        let ok = throttle::check_password(&self.env, password, hash).await;
        let Some((_, p)) = found.filter(|_| ok) else {
            throttle::record_failure(&self.meta, &claim, self.env.now_ms()).await;
            self.audit_global(ext, user, "login_failed", user).await;
            return Err(RegistryError::new(
                ErrorCode::Unauthorized,
                "invalid username or password",
            ));
        };
        throttle::release(&self.meta, claim).await;
        if let Principal::Robot(r) = &p
            && r.expires_ms.is_some_and(|e| e <= now)
        {
            return Err(RegistryError::new(
                ErrorCode::Unauthorized,
                "robot account has expired",
            ));
        }
        Ok(p)
    }

    /// What `who` may do of what `scopes` ask for. A system admin asking to push into a
    /// project that does not exist creates it (private), like ECR's create-on-push.
    async fn grant(&self, who: &Principal, scopes: &[Scope]) -> Result<Vec<Access>> {
        let dir = Directory(&self.meta);
        let mut out = Vec::new();
        for s in scopes {
            if s.kind == "registry" && s.name == "catalog" {
                if who.is_admin() {
                    out.push(Access {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
                continue;
            }
            if s.kind != "repository" || validate_name(&s.name).is_err() {
                continue;
            }
            let project = project_of(&s.name);
            let wanted: Vec<Action> = if s.actions.iter().any(|a| a == "*") {
                vec![Action::Pull, Action::Push, Action::Delete]
            } else {
                s.actions.iter().filter_map(|a| Action::parse(a)).collect()
            };
            if who.is_admin()
                && wanted.contains(&Action::Push)
                && dir.project(project).await?.is_none()
            {
                let p = Project {
                    name: project.to_owned(),
                    public: false,
                    created_ms: self.env.now_ms(),
                    incarnation: new_incarnation(&self.env),
                };
                // Losing a creation race to another push is fine.
                let _ = dir.put("project", project, &p, true).await;
                tracing::info!(project, by = who.name(), "project created on first push");
            }
            let mut actions = Vec::new();
            for a in wanted {
                if dir.allowed(who, project, Right::Repo(a)).await? {
                    actions.push(a.as_str().to_owned());
                }
            }
            if !actions.is_empty() {
                out.push(Access {
                    kind: "repository".into(),
                    name: s.name.clone(),
                    actions,
                });
            }
        }
        Ok(out)
    }

    /// `GET /token` (Basic auth or anonymous) and `POST /token` (OAuth2 password and
    /// refresh_token grants, as `docker login` sends).
    pub(crate) async fn token_endpoint(
        &self,
        parts: &http::request::Parts,
        form: Option<Vec<(String, String)>>,
    ) -> Result<ApiResponse<B>> {
        let Some(tokens) = &self.auth else {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "authentication is disabled on this registry",
            )
            .with_status(StatusCode::NOT_FOUND));
        };
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let post = parts.method == Method::POST;
        let params = form.unwrap_or(query);
        let get = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        let mut scopes = Vec::new();
        for (k, v) in &params {
            if k == "scope" {
                // POST sends space-separated scopes in one field; GET repeats the field.
                scopes.extend(v.split(' ').filter_map(Scope::parse));
            }
        }
        let now = self.env.now_ms();
        let mut refresh_in = None;
        let principal = match (post, get("grant_type")) {
            (true, Some("password")) => {
                let (u, p) = (get("username").unwrap_or(""), get("password").unwrap_or(""));
                self.login(
                    &parts.headers,
                    &parts.extensions,
                    Some((u.to_owned(), p.to_owned())),
                )
                .await?
            }
            (true, Some("refresh_token")) => {
                let t = get("refresh_token").unwrap_or("");
                let claims = tokens.verify_refresh(t, now).map_err(|e| {
                    RegistryError::new(
                        ErrorCode::Unauthorized,
                        format!("invalid refresh token: {e:?}"),
                    )
                })?;
                let who = self.principal(&claims.sub).await?;
                // Bound to the identity's incarnation and credential generation: a deletion,
                // a password change or a reset revokes every refresh token issued before it.
                // Tokens from before this binding carry neither claim and are refused (their
                // users log in once more).
                if (claims.inc, claims.cgen) != (Some(who.binding().0), Some(who.binding().1)) {
                    return Err(RegistryError::new(
                        ErrorCode::Unauthorized,
                        "the refresh token was revoked (the account or its password changed); log in again",
                    ));
                }
                // Not rotated: docker keeps the refresh token of `docker login` and sends it
                // on every later pull (its credential store ignores a new one).
                refresh_in = Some(t.to_owned());
                Some(who)
            }
            (true, other) => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "grant_type {other:?} is not supported (use password or refresh_token)"
                    ),
                )
                .with_status(StatusCode::BAD_REQUEST));
            }
            (false, _) => self.login(&parts.headers, &parts.extensions, None).await?,
        };
        let who = principal.unwrap_or(Principal::Anonymous);
        let access = self.grant(&who, &scopes).await?;
        let (token, claims) = tokens.issue(&self.env, &who, access, false)?;
        let offline = get("offline_token") == Some("true") || get("access_type") == Some("offline");
        let refresh = match (&who, refresh_in) {
            (_, Some(t)) => Some(t),
            (Principal::Anonymous, None) => None,
            (_, None) if offline || post => {
                Some(tokens.issue(&self.env, &who, Vec::new(), true)?.0)
            }
            _ => None,
        };
        if !matches!(who, Principal::Anonymous) && get("grant_type") != Some("refresh_token") {
            self.audit_global(&parts.extensions, who.name(), "login", who.name())
                .await;
        }
        let mut body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": claims.exp.saturating_sub(claims.iat),
            "issued_at": rfc3339(claims.iat),
        });
        if let Some(r) = refresh {
            body["refresh_token"] = serde_json::json!(r);
        }
        if post {
            body["scope"] = serde_json::json!(
                scopes
                    .iter()
                    .map(|s| format!("{}:{}:{}", s.kind, s.name, s.actions.join(",")))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let mut resp = json_response::<B>(StatusCode::OK, body.to_string().into_bytes());
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `GET /.well-known/jwks.json`: the token verification keys.
    pub(crate) fn jwks(&self) -> Result<ApiResponse<B>> {
        let Some(tokens) = &self.auth else {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "authentication is disabled on this registry",
            )
            .with_status(StatusCode::NOT_FOUND));
        };
        let body = serde_json::to_vec(&tokens.jwks())
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
        Ok(json_response::<B>(StatusCode::OK, body))
    }
}

impl<B: BlobStore, M: MetadataStore + DocumentStore, E: Env> Registry<B, M, E> {
    /// Reads the form body of `POST /token` and answers it, or a `GET /token`.
    pub(crate) async fn token_request<In>(&self, req: http::Request<In>) -> Result<ApiResponse<B>>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let form = match parts.method {
            Method::GET => None,
            Method::POST => {
                let raw = crate::registry::read_limited(body, 64 * 1024).await?;
                Some(form_urlencoded::parse(&raw).into_owned().collect())
            }
            _ => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "use GET or POST",
                ));
            }
        };
        self.token_endpoint(&parts, form).await
    }
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts() {
        for h in [
            "reg.example",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[::1]",
            "a-b.c",
        ] {
            assert!(valid_host(h), "{h}");
        }
        for h in [
            "a.example\",error=\"x",
            "",
            "u@h",
            "h:",
            "h:123456",
            "::1",
            "h/x",
            "h p",
        ] {
            assert!(!valid_host(h), "{h}");
        }
    }
}

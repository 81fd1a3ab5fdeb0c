//! Who a request comes from and whether it may do what it asks: bearer tokens on `/v2/`
//! (with the challenge that tells a client which token to fetch), Basic logins (throttled)
//! for the token endpoint and the management API.

use crate::auth::basic::parse_basic;
use crate::auth::directory::Directory;
use crate::auth::model::{ANONYMOUS, Action, Principal, Right, project_of};
use crate::auth::throttle;
use crate::auth::token::{Claims, TokenError, TokenService};
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::events::{Emitter, Event};
use crate::http::headers;
use crate::http::request::{ClientAddr, authorization, bearer_token, public_origin};
use crate::model::digest::Digest;
use crate::model::name::validate_name;
use crate::ports::{DocumentStore, Env};
use http::header::HeaderMap;

/// The document kind of first insufficient-scope refusals (see `Gate::first_scope_refusal`).
pub const SCOPE_REFUSAL_KIND: &str = "scope_refusal";

/// Marks a request the core itself makes of a registry in-process (replication into
/// another region's registry): it is authorized as [`SYSTEM_CALLER`]. Only this crate can
/// make one, and a request extension is a type, never something a client sends, so no
/// request from outside can carry it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemCall(());

impl SystemCall {
    pub(crate) fn new() -> Self {
        SystemCall(())
    }
}

/// The caller name of the core's own in-process requests (audit records name it).
pub const SYSTEM_CALLER: &str = "wharf:system";

/// What authorization needs of a registry: the identities' store, the clock and randomness,
/// and the token service (`None`: auth is off and everyone is served).
pub(crate) struct Gate<'a, D, E> {
    /// Identities, throttle slots and audit events.
    pub(crate) docs: &'a D,
    /// Time and randomness.
    pub(crate) env: &'a E,
    /// Token auth; `None` serves everyone.
    pub(crate) tokens: Option<&'a TokenService>,
    /// The request's events.
    pub(crate) events: &'a Emitter,
}

impl<D, E> Clone for Gate<'_, D, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D, E> Copy for Gate<'_, D, E> {}

/// Who made a request, once authorized.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Subject name (`anonymous` without a token or with auth off).
    pub name: String,
    /// The token's claims, when auth is on.
    pub claims: Option<Claims>,
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

impl<D: DocumentStore, E: Env> Gate<'_, D, E> {
    fn realm(&self, headers: &HeaderMap, ext: &http::Extensions) -> String {
        format!("{}/token", public_origin(headers, ext))
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
        if ext.get::<SystemCall>().is_some() {
            return Ok(Caller {
                name: SYSTEM_CALLER.into(),
                claims: None,
            });
        }
        let Some(tokens) = &self.tokens else {
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
                headers::WWW_AUTHENTICATE,
                challenge(&realm, service, scope.as_deref(), error),
            )
        };
        let bearer = bearer_token(headers);
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
                .with_header(headers::WWW_AUTHENTICATE, challenge));
            }
            return Err(RegistryError::new(
                ErrorCode::Denied,
                "requested access to the resource is denied",
            )
            .with_detail(serde_json::json!({ "scope": scope }))
            .with_header(headers::WWW_AUTHENTICATE, challenge));
        }
        Ok(Caller {
            name: claims.sub.clone(),
            claims: Some(claims),
        })
    }

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
        let id = Digest::sha256_of(format!("{token}\n{scope}").as_bytes());
        let doc = serde_json::json!({ "exp": exp_secs }).to_string();
        !matches!(
            self.docs
                .put_doc(SCOPE_REFUSAL_KIND, id.hex(), doc.as_bytes(), true)
                .await,
            Err(StoreError::Precondition(_))
        )
    }

    /// Whether the token endpoint would give the token's subject what `need` asks: an
    /// anonymous caller may log in and so always could; a user or robot that no longer
    /// exists could not.
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
                || Directory(self.docs)
                    .allowed(&who, project, Right::Repo(action))
                    .await?))
    }

    /// Identifies the caller of the token endpoint or the management API from Basic
    /// credentials (throttled) or a bearer token. `Ok(None)`: no credentials.
    pub(crate) async fn login(
        &self,
        headers: &HeaderMap,
        ext: &http::Extensions,
        basic: Option<(String, String)>,
    ) -> Result<Option<Principal>> {
        let auth = authorization(headers);
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
        let dir = Directory(self.docs);
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
        let client = ext
            .get::<ClientAddr>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let now = self.env.now_ms();
        // A slot of the (user, address) and the address counters before any password is
        // looked at: racing guesses cannot exceed either limit (429 when one is full).
        let claim = throttle::claim(self.docs, self.env, user, &client).await?;
        let dir = Directory(self.docs);
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
                throttle::give_back(self.docs, &claim).await;
                return Err(e);
            }
        };
        // An unknown name costs the same Argon2 check as a known one (a dummy hash).
        let hash = found.as_ref().map(|(h, _)| h.as_str());
        let ok = throttle::check_password(self.env, password, hash).await;
        let Some((_, p)) = found.filter(|_| ok) else {
            throttle::record_failure(self.docs, &claim, self.env.now_ms()).await;
            self.events.emit_by(
                user,
                Event::LoginFailed {
                    account: user.to_owned(),
                },
            );
            return Err(RegistryError::new(
                ErrorCode::Unauthorized,
                "invalid username or password",
            ));
        };
        throttle::release(self.docs, claim).await;
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
}

//! The token endpoint (`/token`, Docker token spec plus its OAuth2 form) and the JWKS
//! document.

use crate::auth::authorize::Gate;
use crate::auth::directory::Directory;
use crate::auth::model::{Action, Principal, Project, Right, new_incarnation, project_of};
use crate::auth::token::{Access, Scope};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::Event;
use crate::http::body::read_limited;
use crate::http::headers;
use crate::http::query::Query;
use crate::http::response::{ApiResponse, json_response};
use crate::model::name::validate_name;
use crate::ports::{BlobStore, DocumentStore, Env};
use http::header::HeaderValue;
use http::{Method, StatusCode};

impl<D: DocumentStore, E: Env> Gate<'_, D, E> {
    /// What `who` may do of what `scopes` ask for. A system admin asking to push into a
    /// project that does not exist creates it (private), like ECR's create-on-push.
    async fn grant(&self, who: &Principal, scopes: &[Scope]) -> Result<Vec<Access>> {
        let dir = Directory(self.docs);
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
                    incarnation: new_incarnation(self.env),
                    home_region: None,
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
    async fn token_endpoint<B: BlobStore>(
        &self,
        parts: &http::request::Parts,
        form: Option<Query>,
    ) -> Result<ApiResponse<B>> {
        let Some(tokens) = &self.tokens else {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "authentication is disabled on this registry",
            )
            .with_status(StatusCode::NOT_FOUND));
        };
        let post = parts.method == Method::POST;
        let params = form.unwrap_or_else(|| Query::parse(parts.uri.query()));
        let get = |k: &str| params.get(k);
        let mut scopes = Vec::new();
        for v in params.all("scope") {
            // POST sends space-separated scopes in one field; GET repeats the field.
            scopes.extend(v.split(' ').filter_map(Scope::parse));
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
        let (token, claims) = tokens.issue(self.env, &who, access, false)?;
        let offline = get("offline_token") == Some("true") || get("access_type") == Some("offline");
        let refresh = match (&who, refresh_in) {
            (_, Some(t)) => Some(t),
            (Principal::Anonymous, None) => None,
            (_, None) if offline || post => Some(tokens.issue(self.env, &who, Vec::new(), true)?.0),
            _ => None,
        };
        if !matches!(who, Principal::Anonymous) && get("grant_type") != Some("refresh_token") {
            self.events.emit_by(
                who.name(),
                Event::Login {
                    account: who.name().to_owned(),
                },
            );
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
            .insert(headers::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `GET /.well-known/jwks.json`: the token verification keys.
    pub(crate) fn jwks<B: BlobStore>(&self) -> Result<ApiResponse<B>> {
        let Some(tokens) = &self.tokens else {
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

    /// Reads the form body of `POST /token` and answers it, or a `GET /token`.
    pub(crate) async fn token_request<B: BlobStore, In>(
        &self,
        req: http::Request<In>,
    ) -> Result<ApiResponse<B>>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let form = match parts.method {
            Method::GET => None,
            Method::POST => {
                let raw = read_limited(body, 64 * 1024).await?;
                Some(Query::from_form(&raw))
            }
            _ => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "use GET or POST",
                ));
            }
        };
        self.token_endpoint::<B>(&parts, form).await
    }
}

/// Seconds since the epoch as RFC 3339 (`issued_at`), without a date library.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

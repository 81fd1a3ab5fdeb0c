//! The distribution API over HTTP: for the replication engine, a [`Transport`] on reqwest
//! that answers a registry's bearer challenge (the Docker token spec) with Basic
//! credentials, once per repository and token lifetime.
//!
//! Request bodies stream: a blob's bytes go from the source's reader to the socket through
//! a small channel, never whole in memory. A streamed body cannot be sent twice, so a token
//! is fetched on the replayable requests that come first (the engine's `HEAD` and upload
//! `POST` of the same repository), and refreshed before it would expire mid-upload.

pub mod forward;
mod tls;

pub use forward::Forwarder;

/// Replication rules' remote registries over HTTP: one transport per run, logging in with
/// the remote's credentials.
pub struct HttpConnector;

impl wharf_core::jobs::replicate::triggers::Connector for HttpConnector {
    type Transport = HttpTransport;
    fn connect(
        &self,
        _remote: &wharf_core::policy::replication::Remote,
        credentials: Option<wharf_core::policy::replication::Credentials>,
    ) -> Result<HttpTransport> {
        HttpTransport::new(credentials.map(|c| (c.username, c.password)))
    }
}

use base64::Engine as _;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt as _;
use http::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wharf_core::error::Result;
use wharf_core::http::Body;
use wharf_core::jobs::replicate::remote::NoCredentials;
use wharf_core::jobs::replicate::v2::Transport;
use wharf_core::{ErrorCode, RegistryError, StoreError};

/// Tokens are used until this long before they expire.
const MARGIN: Duration = Duration::from_secs(30);

/// How a request is authorized.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// A token from the registry's token endpoint.
    Bearer(&'a str),
    /// The credentials themselves.
    Basic,
}

/// A registry reached over HTTP.
pub struct HttpTransport {
    client: reqwest::Client,
    credentials: Option<(String, String)>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The registry asked for Basic credentials (Distribution with htpasswd): from then on
    /// every request carries them, streamed uploads too, which cannot answer a challenge.
    basic: std::sync::atomic::AtomicBool,
    /// This region's name, when the target is another region of the same registry.
    source_region: Option<http::HeaderValue>,
}

impl HttpTransport {
    /// A transport that logs in with `credentials` when a registry asks for a token.
    pub fn new(credentials: Option<(String, String)>) -> Result<Self> {
        let client = tls::client_builder()
            .map_err(unavailable)?
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            basic: std::sync::atomic::AtomicBool::new(false),
            source_region: None,
        })
    }

    /// Marks every request as replication from region `name` of the same registry
    /// (`Wharf-Replicated-From`), so the target takes the writes itself rather than
    /// forwarding them to the project's home, which is where they come from.
    pub fn from_region(mut self, name: &str) -> Result<Self> {
        let v = http::HeaderValue::from_str(name)
            .map_err(|e| refused(format!("region name {name:?}: {e}")))?;
        self.source_region = Some(v);
        Ok(self)
    }

    fn cached(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Answers a bearer challenge: a token for `scope`, cached under `key`.
    async fn login(&self, key: &str, scope: &str, challenge: &str) -> Result<String> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| {
            refused(format!(
                "the registry's challenge names no realm: {challenge}"
            ))
        })?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| refused(format!("the registry's token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.client.get(url);
        if let Some((u, p)) = &self.credentials {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let e = RegistryError::new(
                if status.is_server_error() {
                    ErrorCode::Unavailable
                } else {
                    ErrorCode::Unauthorized
                },
                format!("the registry's token endpoint refused the replication login: {status}"),
            );
            return Err(e.with_status(status));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("token endpoint answered no JSON: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| refused("token endpoint answered no token".into()))?
            .to_owned();
        let ttl = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60);
        let until = Instant::now() + Duration::from_secs(ttl).saturating_sub(MARGIN);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), (token.clone(), until));
        Ok(token)
    }

    async fn execute<S>(
        &self,
        parts: &http::request::Parts,
        body: Body<S>,
        token: Option<Auth<'_>>,
    ) -> Result<reqwest::Response>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        let mut req = self
            .client
            .request(parts.method.clone(), parts.uri.to_string())
            .headers(parts.headers.clone());
        match token {
            Some(Auth::Bearer(t)) => req = req.bearer_auth(t),
            Some(Auth::Basic) => {
                if let Some((u, p)) = &self.credentials {
                    req = req.basic_auth(u, Some(p));
                }
            }
            None => {}
        }
        if let Some(r) = &self.source_region {
            req = req.header(wharf_core::http::headers::WHARF_REPLICATED_FROM, r.clone());
        }
        match body {
            Body::Empty => Ok(req.send().await.map_err(sent)?),
            Body::Full(b) => Ok(req.body(b.unwrap_or_default()).send().await.map_err(sent)?),
            Body::Stream(mut s) => {
                let (tx, rx) =
                    tokio::sync::mpsc::channel::<std::result::Result<Bytes, StoreError>>(4);
                let rx = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|x| (x, rx))
                });
                let send = req.body(reqwest::Body::wrap_stream(rx)).send();
                let pump = async move {
                    while let Some(chunk) = s.next().await {
                        let failed = chunk.is_err();
                        if tx.send(chunk).await.is_err() || failed {
                            break;
                        }
                    }
                };
                let (resp, ()) = futures_util::future::join(send, pump).await;
                Ok(resp.map_err(sent)?)
            }
        }
    }
}

fn unavailable(m: String) -> RegistryError {
    RegistryError::new(ErrorCode::Unavailable, m)
}

fn refused(m: String) -> RegistryError {
    RegistryError::new(ErrorCode::Unauthorized, m)
}

fn sent(e: reqwest::Error) -> RegistryError {
    unavailable(format!("the registry did not answer: {}", chain(&e)))
}

/// An error with its causes (reqwest's own message leaves out why: a refused connection, a
/// certificate no CA vouches for).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// `repo` of a `/v2/<repo>/blobs/…` or `/v2/<repo>/manifests/…` path.
fn repository(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.rfind(m).map(|i| &rest[..i]))
        .max_by_key(|r| r.len())
}

/// What a request to `path` logs in for: the token cache's key and the scope asked for.
/// A repository's requests share one token for everything replication does there; the
/// catalog has no repository, and its own scope (the Docker token spec's
/// `registry:catalog:*`).
fn scope(path: &str) -> Option<(String, String)> {
    if path == "/v2/_catalog" {
        return Some(("registry:catalog".into(), "registry:catalog:*".into()));
    }
    let repo = repository(path)?;
    Some((
        repo.to_owned(),
        format!("repository:{repo}:pull,push,delete"),
    ))
}

/// The parameters of a `Bearer realm="…",service="…",scope="…"` challenge.
fn parse_challenge(v: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(rest) = v
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| v.trim().strip_prefix("bearer "))
    else {
        return out;
    };
    let mut s = rest;
    while let Some(eq) = s.find('=') {
        let key = s[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &s[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(c) => (&after[..c], &after[c..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        s = next;
    }
    out
}

impl Transport for HttpTransport {
    type Body = reqwest::Body;

    async fn send<S>(&self, req: Request<Body<S>>) -> Result<Response<Self::Body>>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        let (parts, body) = req.into_parts();
        // A request marked for no credentials (a blob redirected to another host) gets no
        // token and answers no challenge.
        let scope = if parts.extensions.get::<NoCredentials>().is_some() {
            None
        } else {
            scope(parts.uri.path())
        };
        use std::sync::atomic::Ordering::Relaxed;
        let basic = scope.is_some() && self.credentials.is_some() && self.basic.load(Relaxed);
        let token = scope.as_ref().and_then(|(key, _)| self.cached(key));
        let auth = if basic {
            Some(Auth::Basic)
        } else {
            token.as_deref().map(Auth::Bearer)
        };
        let replayable = match &body {
            Body::Stream(_) => None,
            Body::Empty => Some(Body::<S>::Empty),
            Body::Full(b) => Some(Body::<S>::Full(b.clone())),
        };
        let resp = self.execute(&parts, body, auth).await?;
        let challenge = (resp.status() == StatusCode::UNAUTHORIZED && !basic)
            .then(|| resp.headers().get(http::header::WWW_AUTHENTICATE))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let resp = match (challenge, scope, replayable) {
            (Some(c), Some((key, scope)), Some(again))
                if c.to_ascii_lowercase().starts_with("bearer ") =>
            {
                let token = self.login(&key, &scope, &c).await?;
                self.execute(&parts, again, Some(Auth::Bearer(&token)))
                    .await?
            }
            (Some(c), Some(_), Some(again))
                if c.to_ascii_lowercase().starts_with("basic") && self.credentials.is_some() =>
            {
                self.basic.store(true, Relaxed);
                self.execute(&parts, again, Some(Auth::Basic)).await?
            }
            _ => resp,
        };
        Ok(resp.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_repositories_parse() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:5000/token",service="wharf",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c["realm"], "http://127.0.0.1:5000/token");
        assert_eq!(c["service"], "wharf");
        assert_eq!(c["scope"], "repository:a/b:pull,push");
        assert!(parse_challenge("Basic realm=\"x\"").is_empty());
        assert_eq!(repository("/v2/p/app/blobs/uploads/"), Some("p/app"));
        assert_eq!(
            repository("/v2/p/manifests/x/manifests/v1"),
            Some("p/manifests/x")
        );
        assert_eq!(repository("/v2/"), None);
    }

    #[test]
    fn the_catalog_logs_in_for_the_catalog_and_a_repository_for_the_repository() {
        assert_eq!(
            scope("/v2/_catalog"),
            Some(("registry:catalog".into(), "registry:catalog:*".into()))
        );
        assert_eq!(
            scope("/v2/p/app/tags/list"),
            Some(("p/app".into(), "repository:p/app:pull,push,delete".into()))
        );
        assert_eq!(
            scope("/v2/p/app/referrers/sha256:00"),
            Some(("p/app".into(), "repository:p/app:pull,push,delete".into()))
        );
        assert_eq!(scope("/v2/"), None);
        assert_eq!(scope("/bucket/blob"), None);
    }
}

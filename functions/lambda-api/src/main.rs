//! The registry on AWS Lambda: every request (the OCI API, `/token`, `/api/v1`) goes to
//! the same `wharf_core::Registry` as `wharf serve`, on S3 and DynamoDB.
//!
//! Lambda takes at most 6 MB per request, so this function refuses larger bodies itself
//! (413 with the way around it): the local emulator does not enforce the limit, and a
//! truncated layer must never look like a short one. Layers bigger than that go through an
//! upload front (`WHARF_UPLOAD_URL`, see `wharf_core::auth::capability`) or in chunks.
//!
//! Configuration is the environment, read by the core's settings loader
//! (`wharf_core::settings`, which has the defaults): the stores' variables (see
//! `wharf_aws_stack`), and
//!
//! | variable | meaning |
//! |---|---|
//! | `WHARF_AUTH` | `on` (default) or `off` |
//! | `WHARF_SERVICE` | token service name (default `wharf`) |
//! | `WHARF_TOKEN_TTL_SECS` | access token lifetime (default 300) |
//! | `WHARF_REFRESH_TOKEN_TTL_SECS` | refresh token lifetime (default 2592000, 30 days) |
//! | `WHARF_TOKEN_KEYS_PEM` | signing keys (PEM); default: the key kept in the table |
//! | `WHARF_ADMIN_PASSWORD` | creates `admin` with it if missing (else `wharf aws bootstrap` does) |
//! | `WHARF_UPLOAD_URL`, `WHARF_UPLOAD_SECRET` | the upload front, and the secret shared with it |
//! | `WHARF_MAX_BODY_BYTES` | largest request body (default 6291456, Lambda's limit) |
//! | `WHARF_PRESIGN_TTL_SECS` | lifetime of presigned blob URLs (default 900) |
//! | `WHARF_DISABLE_DELETE` | `true` refuses DELETEs |
//! | `WHARF_BASE_URL` | public URL, when the Host header is not it (custom domains) |

use bytes::Bytes;
use http_body_util::BodyExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use wharf_core::Registry;
use wharf_core::auth::TokenService;
use wharf_core::http::{ClientAddr, OriginRule, RequestOrigin};
use wharf_core::oci::home::ForwardHome;
use wharf_core::settings::Vars;
use wharf_dynamodb::DynamoMetadata;
use wharf_os::SystemEnv;
use wharf_s3::S3BlobStore;
use wharf_v2_client::Forwarder;

/// Lambda's limit on a synchronous request or response payload.
const LAMBDA_PAYLOAD: u64 = 6 * 1024 * 1024;

type ApiRegistry = Registry<S3BlobStore, DynamoMetadata, SystemEnv>;

/// The function's settings: its environment, through the core's loader.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What one instance keeps: the registry, and how requests get their public origin.
struct Function {
    registry: ApiRegistry,
    origin: OriginRule,
    /// Sends requests on to their project's home region (a registry of several regions).
    forwarder: Option<Forwarder>,
}

/// Builds the registry once per cold start.
async fn build() -> Result<Function, String> {
    let vars = Vars::new(env_var);
    let stores = wharf_aws_stack::open(&wharf_aws_stack::AwsSettings::from_vars(&vars)?).await?;
    let config = vars.config(Some(LAMBDA_PAYLOAD))?;
    let mut registry = Registry::new(stores.blobs.clone(), stores.meta.clone(), SystemEnv, config);
    if let Some(settings) = vars.tokens()? {
        let keys = wharf_aws_stack::token_keys(&stores, &SystemEnv, vars.token_keys_pem()?).await?;
        if let Some(p) = vars.admin_password() {
            wharf_core::auth::ensure_admin(&registry.meta, &SystemEnv, Some(&p))
                .await
                .map_err(|e| e.message)?;
        }
        registry = registry.with_auth(TokenService::new(keys, settings));
    } else {
        tracing::warn!("auth is off: anyone who can reach this function can push, pull and delete");
    }
    let forwarder = match registry.config.regions {
        Some(_) => Some(Forwarder::new()?),
        None => None,
    };
    Ok(Function {
        forwarder,
        registry,
        // Function URLs, API Gateway and ALBs terminate TLS and say so in X-Forwarded-Proto.
        origin: vars.origin(RequestOrigin::Forwarded),
    })
}

/// The client's address, from what AWS measured, never from a header alone: function URLs
/// and HTTP APIs (`ApiGatewayV2`) and REST APIs (`ApiGatewayV1`) carry the source IP in the
/// request context. An ALB's context has none, but the ALB appends the address it saw to
/// `X-Forwarded-For`, so there its right-most entry is the client (anything left of it is
/// the client's own to write). Unknown otherwise.
fn client_addr(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.clone().unwrap_or_default(),
        Some(RequestContext::ApiGatewayV1(c)) => c.identity.source_ip.clone().unwrap_or_default(),
        Some(RequestContext::Alb(_)) => last_forwarded_for(req.headers()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The right-most `X-Forwarded-For` entry (the one the last proxy appended).
fn last_forwarded_for(headers: &http::HeaderMap) -> Option<String> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let hop = last.to_str().ok()?.rsplit(',').next()?.trim();
    (!hop.is_empty()).then(|| hop.to_owned())
}

async fn handle(f: &Function, mut req: Request) -> Response<Body> {
    let origin = f.origin.origin(req.uri(), req.headers());
    let client = client_addr(&req);
    req.extensions_mut().insert(origin);
    req.extensions_mut().insert(ClientAddr(client.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // A write of a project homed in another region goes there, as it came; so does a read
    // this region cannot answer yet (its response says where).
    let (parts, body) = req.into_parts();
    if let Some(fw) = &f.forwarder
        && let Some(home) = f.registry.forward_target(&parts).await
    {
        let body = reqwest::Body::from(body.to_vec());
        tracing::debug!(%method, %path, home = %home.region, "request forwarded");
        return buffered(
            fw.forward(&home, &client, http::Request::from_parts(parts, body))
                .await,
        )
        .await;
    }
    let read = f.forwarder.as_ref().map(|_| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let resp = f.registry.handle(Request::from_parts(parts, body)).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    if let (Some(fw), Some((m, uri, headers)), Some(home)) = (
        &f.forwarder,
        read,
        resp.extensions().get::<ForwardHome>().cloned(),
    ) {
        let mut again = http::Request::new(reqwest::Body::from(Vec::new()));
        *again.method_mut() = m;
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        tracing::debug!(%method, %path, home = %home.region, "read forwarded");
        return buffered(fw.forward(&home, &client, again).await).await;
    }
    let (parts, body) = resp.into_parts();
    // Responses are small (manifests, JSON, redirects): blob GETs redirect to S3. A blob
    // the store could not presign would be streamed by the core; Lambda cannot return it.
    // (A HEAD states a blob's size with no body: that is fine.)
    let too_big = !http_body::Body::is_end_stream(&body)
        && parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > LAMBDA_PAYLOAD);
    if too_big {
        tracing::error!("response over Lambda's payload limit (presigning unavailable?)");
        return unavailable("this blob cannot be served right now; retry shortly");
    }
    let bytes: Bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "reading a response body failed");
            return unavailable("storage failed while reading; retry shortly");
        }
    };
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.into())
    };
    Response::from_parts(parts, body)
}

/// The home region's answer, whole (Lambda returns buffered responses; the home's own are
/// small: blob GETs redirect to its bucket), or `503` when it could not be reached.
async fn buffered(r: Result<http::Response<reqwest::Body>, String>) -> Response<Body> {
    let resp = match r {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "the project's home region is unreachable");
            return unavailable("the project's home region is unreachable; retry shortly");
        }
    };
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(c) => {
            let bytes = c.to_bytes();
            let body = if bytes.is_empty() {
                Body::Empty
            } else {
                Body::Binary(bytes.into())
            };
            Response::from_parts(parts, body)
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the home region's answer failed");
            unavailable("the project's home region failed mid-answer; retry shortly")
        }
    }
}

fn unavailable(msg: &str) -> Response<Body> {
    let body = format!(r#"{{"errors":[{{"code":"UNAVAILABLE","message":"{msg}"}}]}}"#);
    let mut r = Response::new(Body::Text(body));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time() // CloudWatch stamps each line
        .init();
    let function: &'static Function = match build().await {
        Ok(f) => Box::leak(Box::new(f)),
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return Err(e.into());
        }
    };
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(function, req).await)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::{
        ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
    };

    #[test]
    fn client_address_comes_from_the_request_context_not_the_header() {
        let spoofed = || {
            http::Request::builder()
                .header("x-forwarded-for", "203.0.113.66")
                .body(Body::Empty)
                .expect("request")
        };
        // A function URL / HTTP API request: the context's source IP, not the header.
        // (non_exhaustive: built by assignment.)
        let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
        http.source_ip = Some("198.51.100.7".into());
        let mut ctx = ApiGatewayV2httpRequestContext::default();
        ctx.http = http;
        let req = spoofed().with_request_context(RequestContext::ApiGatewayV2(ctx));
        assert_eq!(client_addr(&req), "198.51.100.7");
        // No context (not from AWS): a header alone is not believed.
        assert_eq!(client_addr(&spoofed()), "");
        // Behind an ALB: the entry the ALB appended, not what the client wrote before it.
        let mut h = http::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "203.0.113.66, 10.0.0.1".parse().expect("value"),
        );
        h.append("x-forwarded-for", "198.51.100.9".parse().expect("value"));
        assert_eq!(last_forwarded_for(&h).as_deref(), Some("198.51.100.9"));
    }
}

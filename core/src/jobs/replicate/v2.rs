//! The target side over the distribution API: the requests a client would send, over any
//! [`Transport`] (the destination registry in-process, or HTTP).

use super::Target;
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::http::Body;
use crate::http::body::read_limited;
use crate::http::headers;
use crate::model::Digest;
use crate::model::manifest::MANIFEST_TYPES;
use crate::ports::StoredManifest;
use bytes::Bytes;
use futures_core::Stream;
use http::{Method, Request, Response, StatusCode};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Sends distribution-API requests somewhere. `uri` is absolute (`http://host/v2/…`) for
/// HTTP, and may be a path for an in-process registry, which ignores the authority.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// A response body.
    type Body: http_body::Body<Data = Bytes, Error: std::fmt::Display> + Unpin;
    /// Sends one request; `Err` only when no response came (the target is down).
    async fn send<S>(&self, req: Request<Body<S>>) -> Result<Response<Self::Body>>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin;
}

/// A stream with nothing in it: the body type of requests that have none.
pub struct NoBody;

impl Stream for NoBody {
    type Item = std::result::Result<Bytes, StoreError>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

/// A destination registry reached through `transport` at `base` (`http://host:port`, or
/// empty in-process).
pub struct V2Target<T> {
    /// How requests get there.
    pub transport: T,
    /// Scheme and authority prefixed to every path.
    pub base: String,
}

/// Largest error body read from a target.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

impl<T: Transport> V2Target<T> {
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(super) fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(self.url(path))
            .header(headers::ACCEPT, MANIFEST_TYPES.join(", "))
    }

    /// The target's error, from its status and the spec's JSON error body.
    pub(super) async fn refused(&self, what: &str, resp: Response<T::Body>) -> RegistryError {
        let status = resp.status();
        let body = read_limited(resp.into_body(), ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let first = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errors")?.get(0).cloned());
        let code = first
            .as_ref()
            .and_then(|e| serde_json::from_value::<ErrorCode>(e.get("code")?.clone()).ok())
            .unwrap_or(if status.is_server_error() {
                ErrorCode::Unavailable
            } else {
                ErrorCode::Unknown
            });
        let message = first
            .as_ref()
            .and_then(|e| e.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        RegistryError::new(code, format!("target refused {what}: {status} {message}"))
            .with_status(status)
    }
}

pub(super) fn build<S>(b: http::request::Builder, body: Body<S>) -> Result<Request<Body<S>>> {
    b.body(body)
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("building a request: {e}")))
}

pub(super) fn empty() -> Body<NoBody> {
    Body::Empty
}

impl<T: Transport> Target for V2Target<T> {
    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let req = build(
            self.request(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}")),
            empty(),
        )?;
        let resp = self.transport.send(req).await?;
        match resp.status() {
            s if s.is_success() || s.is_redirection() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused("a blob check", resp).await),
        }
    }

    async fn put_blob<S>(&self, repo: &str, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        let req = build(
            self.request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .header(headers::CONTENT_LENGTH, "0"),
            empty(),
        )?;
        let resp = self.transport.send(req).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.refused("an upload", resp).await);
        }
        let location = resp
            .headers()
            .get(headers::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::new(ErrorCode::Unknown, "target gave an upload no Location")
            })?
            .to_owned();
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            self.url(&location)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let req = build(
            Request::builder()
                .method(Method::PUT)
                .uri(url)
                .header(headers::CONTENT_LENGTH, size.to_string())
                .header(headers::CONTENT_TYPE, "application/octet-stream"),
            Body::Stream(body),
        )?;
        let resp = self.transport.send(req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.refused("a blob", resp).await);
        }
        Ok(())
    }

    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let req = build(
            self.request(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}")),
            empty(),
        )?;
        let resp = self.transport.send(req).await?;
        match resp.status() {
            s if s.is_success() => {
                let d = resp
                    .headers()
                    .get(headers::DOCKER_CONTENT_DIGEST)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                Ok(d)
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.refused("a manifest check", resp).await),
        }
    }

    async fn put_manifest(&self, repo: &str, reference: &str, m: &StoredManifest) -> Result<()> {
        let req = build(
            self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header(headers::CONTENT_TYPE, m.info.media_type.as_str())
                .header(headers::CONTENT_LENGTH, m.bytes.len().to_string()),
            Body::<NoBody>::Full(Some(m.bytes.clone())),
        )?;
        let resp = self.transport.send(req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.refused("a manifest", resp).await);
        }
        Ok(())
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        self.delete(repo, &digest.to_string()).await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.delete(repo, tag).await
    }
}

impl<T: Transport> V2Target<T> {
    async fn delete(&self, repo: &str, reference: &str) -> Result<()> {
        let req = build(
            self.request(Method::DELETE, &format!("/v2/{repo}/manifests/{reference}")),
            empty(),
        )?;
        let resp = self.transport.send(req).await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.refused("a delete", resp).await),
        }
    }
}

impl<T: Transport> Transport for &T {
    type Body = T::Body;
    async fn send<S>(&self, req: Request<Body<S>>) -> Result<Response<Self::Body>>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        (**self).send(req).await
    }
}

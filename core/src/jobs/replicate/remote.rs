//! The source side over the distribution API: a remote registry (another wharf, Debian's
//! docker-registry, any OCI registry) read through the same [`V2Target`] that writes to
//! one, so a rule can pull from it as well as push to it.
//!
//! Nothing the remote says is trusted: a manifest's bytes must hash to the digest asked
//! for and parse as a manifest (the registry's own parser, its size limit), and a blob's
//! stream ([`Verified`]) fails at its end unless its length and digest are the ones asked
//! for. A refusal keeps the remote's code and status (`refused`), so a remote that is down
//! is retried and one that denies is not.

use super::v2::{Transport, V2Target, build, empty};
use super::{Catalog, Source};
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::http::body::read_limited;
use crate::http::headers;
use crate::http::query::enc;
use crate::model::manifest::{self, MANIFEST_TYPES, MAX_MANIFEST_BYTES};
use crate::model::{Digest, Hasher, Reference};
use crate::ports::StoredManifest;
use bytes::Bytes;
use futures_core::Stream;
use http::{Method, Request, Response, StatusCode};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Redirects followed for one blob before giving up.
const MAX_REDIRECTS: usize = 5;

/// A request extension: send this request without credentials (no bearer token, no
/// login). Set on a blob redirect to another host (a storage bucket, a CDN), which must
/// never see the registry's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoCredentials;

/// A blob's body that hashes what passes through it and fails at the end if the length
/// or the digest is not the one asked for (or at once when the body is longer).
pub struct Verified<B> {
    body: B,
    hasher: Option<Hasher>,
    expected: Digest,
    size: u64,
    read: u64,
}

impl<B> Verified<B> {
    /// `body`, expected to be `size` bytes with digest `expected`.
    pub fn new(body: B, expected: Digest, size: u64) -> Self {
        Self {
            body,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected,
            size,
            read: 0,
        }
    }
}

impl<B> Stream for Verified<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Item = std::result::Result<Bytes, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.hasher.is_none() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    if data.is_empty() {
                        continue;
                    }
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.size {
                        this.hasher = None;
                        return Poll::Ready(Some(Err(StoreError::Other(format!(
                            "the source sent more than the {} bytes of blob {}",
                            this.size, this.expected
                        )))));
                    }
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&data);
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Some(Err(e)) => {
                    this.hasher = None;
                    return Poll::Ready(Some(Err(StoreError::Unavailable(format!(
                        "the source's blob {} broke off: {e}",
                        this.expected
                    )))));
                }
                None => {
                    let Some(h) = this.hasher.take() else {
                        return Poll::Ready(None);
                    };
                    if this.read != this.size {
                        return Poll::Ready(Some(Err(StoreError::Other(format!(
                            "the source sent {} of the {} bytes of blob {}",
                            this.read, this.size, this.expected
                        )))));
                    }
                    let actual = h.finish();
                    if actual != this.expected {
                        return Poll::Ready(Some(Err(StoreError::Other(format!(
                            "the source's blob {} has digest {actual}",
                            this.expected
                        )))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// A JSON or manifest body of the remote, at most the manifest limit. A body that breaks
/// off is the network's fault (retryable); one too large is the remote's.
async fn read_body<B>(body: B, what: &str) -> Result<Bytes>
where
    B: http_body::Body,
    B::Error: std::fmt::Display,
{
    read_limited(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e.code {
            ErrorCode::SizeInvalid => RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("the source's {what} exceeds the {MAX_MANIFEST_BYTES}-byte limit"),
            ),
            _ => RegistryError::new(
                ErrorCode::Unavailable,
                format!("the source's {what} broke off: {}", e.message),
            ),
        })
}

fn json<'a, D: serde::Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<D> {
    serde_json::from_slice(bytes).map_err(|e| {
        RegistryError::new(
            ErrorCode::Unknown,
            format!("the source's {what} is not the API's JSON: {e}"),
        )
    })
}

/// The scheme and authority of `url`, empty for a bare path (in-process).
fn origin(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?', '#']).map_or(url.len(), |j| i + 3 + j);
            &url[..end]
        }
        None => "",
    }
}

/// The host (and port) of `url`, lowercased; `None` for a bare path.
fn authority(url: &str) -> Option<String> {
    let o = origin(url);
    o.find("://").map(|i| o[i + 3..].to_ascii_lowercase())
}

/// `location` (absolute, scheme-relative, absolute-path or relative) against `current`.
fn join(current: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = current.find("://").map_or("https", |i| &current[..i]);
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", origin(current));
    }
    let path_end = current.find(['?', '#']).unwrap_or(current.len());
    let dir = current[..path_end]
        .rfind('/')
        .map_or("", |i| &current[..=i]);
    format!("{dir}{location}")
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(
        s,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

#[derive(serde::Deserialize)]
struct RepositoryList {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Option<Vec<Entry>>,
}

#[derive(serde::Deserialize)]
struct Entry {
    digest: Digest,
}

/// Names after `after`, in lexical order, at most `limit`: what the remote listed, held
/// to the [`Catalog`] contract whatever its order.
fn page(mut names: Vec<String>, after: Option<&str>, limit: usize) -> Vec<String> {
    names.sort();
    names.dedup();
    if let Some(a) = after {
        names.retain(|n| n.as_str() > a);
    }
    names.truncate(limit);
    names
}

impl<T: Transport> V2Target<T> {
    async fn get(&self, path: &str) -> Result<Response<T::Body>> {
        let req = build(self.request(Method::GET, path), empty())?;
        self.transport.send(req).await
    }

    /// A `?n=&last=` listing's body, `None` on 404.
    async fn listing(
        &self,
        path: &str,
        after: Option<&str>,
        limit: usize,
        what: &str,
    ) -> Result<Option<Bytes>> {
        let mut path = format!("{path}?n={limit}");
        if let Some(a) = after {
            path.push_str(&format!("&last={}", enc(a)));
        }
        let resp = self.get(&path).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(read_body(resp.into_body(), what).await?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.refused(what, resp).await),
        }
    }
}

impl<T: Transport> Source for V2Target<T> {
    type Blob = Verified<T::Body>;

    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<StoredManifest>> {
        let resp = self.get(&format!("/v2/{repo}/manifests/{digest}")).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.refused("a manifest", resp).await),
        }
        // A generic type (`application/json`) says nothing; the manifest's own does.
        let content_type = resp
            .headers()
            .get(headers::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|c| MANIFEST_TYPES.contains(&c.as_str()));
        let bytes = read_body(resp.into_body(), "manifest").await?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("the source's manifest {repo}@{digest} has digest {actual}"),
            ));
        }
        let info = manifest::parse(&bytes, content_type.as_deref(), actual)?;
        Ok(Some(StoredManifest { info, bytes }))
    }

    async fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let Ok(Reference::Tag(tag)) = Reference::parse(tag) else {
            return Ok(None);
        };
        let path = format!("/v2/{repo}/manifests/{tag}");
        let resp = self
            .transport
            .send(build(self.request(Method::HEAD, &path), empty())?)
            .await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.refused("a tag", resp).await),
        }
        let named = resp
            .headers()
            .get(headers::DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        if named.is_some() {
            return Ok(named);
        }
        // No Docker-Content-Digest (it is optional): the digest of the bytes themselves.
        let resp = self.get(&path).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.refused("a tag", resp).await),
        }
        let bytes = read_body(resp.into_body(), "manifest").await?;
        Ok(Some(Digest::sha256_of(&bytes)))
    }

    async fn blob(&self, repo: &str, digest: &Digest) -> Result<(u64, Self::Blob)> {
        let first = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let home = authority(&first);
        let mut url = first;
        let mut anonymous = false;
        let mut hops = 0;
        let resp = loop {
            let mut b = Request::builder().method(Method::GET).uri(url.as_str());
            if anonymous {
                b = b.extension(NoCredentials);
            }
            let resp = self.transport.send(build(b, empty())?).await?;
            let status = resp.status();
            if !is_redirect(status) {
                break resp;
            }
            hops += 1;
            let location = resp
                .headers()
                .get(headers::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| hops <= MAX_REDIRECTS) else {
                return Err(RegistryError::new(
                    ErrorCode::Unknown,
                    format!(
                        "the source's blob {repo}@{digest}: {status} with no Location, or over {MAX_REDIRECTS} redirects"
                    ),
                ));
            };
            url = join(&url, &location);
            // Once off the registry's host, never back on with its credentials.
            anonymous = anonymous || authority(&url) != home;
        };
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::new(
                    ErrorCode::BlobUnknown,
                    format!("the source has no blob {repo}@{digest}"),
                ));
            }
            _ => return Err(self.refused("a blob", resp).await),
        }
        let size = headers::content_length(resp.headers())?.ok_or_else(|| {
            RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("the source gave blob {repo}@{digest} no Content-Length"),
            )
        })?;
        Ok((size, Verified::new(resp.into_body(), digest.clone(), size)))
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>> {
        let resp = self.get(&format!("/v2/{repo}/referrers/{digest}")).await?;
        match resp.status() {
            s if s.is_success() => {}
            // No referrers API (docker-registry), or none for this digest.
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            _ => return Err(self.refused("a referrers list", resp).await),
        }
        let bytes = read_body(resp.into_body(), "referrers list").await?;
        let index: Index = json(&bytes, "referrers list")?;
        Ok(index
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.digest)
            .collect())
    }
}

impl<T: Transport> Catalog for V2Target<T> {
    async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(bytes) = self
            .listing("/v2/_catalog", after, limit, "catalog")
            .await?
        else {
            return Ok(Vec::new());
        };
        let list: RepositoryList = json(&bytes, "catalog")?;
        Ok(page(list.repositories.unwrap_or_default(), after, limit))
    }

    async fn tags(&self, repo: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(bytes) = self
            .listing(&format!("/v2/{repo}/tags/list"), after, limit, "tag list")
            .await?
        else {
            return Ok(Vec::new());
        };
        let list: TagList = json(&bytes, "tag list")?;
        Ok(page(list.tags.unwrap_or_default(), after, limit))
    }
}

#[cfg(test)]
mod tests;

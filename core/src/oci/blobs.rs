//! Blobs: get (a stream, a range or a redirect) and delete.

use super::{blob_unknown, internal};
use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::events::Event;
use crate::http::body::Body;
use crate::http::headers;
use crate::http::headers::*;
use crate::http::response::{ApiResponse, empty};
use crate::model::Digest;
use crate::oci::{Oci, Resp};
use crate::policy::check_delete;
use crate::ports::{BlobStore, Env, ServingMeta};
use http::header::{HeaderMap, HeaderValue};
use http::{Response, StatusCode};

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    pub(super) async fn get_blob(
        &self,
        name: &str,
        digest: &str,
        headers: &HeaderMap,
        head: bool,
    ) -> Resp<B> {
        let digest: Digest = digest.parse()?;
        let Some(size) = self.meta.blob_link(name, &digest).await? else {
            return Err(blob_unknown(&digest));
        };
        let base = Response::builder()
            .header(DOCKER_CONTENT_DIGEST, digest.to_string())
            .header(headers::ACCEPT_RANGES, "bytes")
            .header(headers::ETAG, format!("\"{digest}\""));
        if head {
            // Docker skips the upload of a blob it finds: the link's time keeps garbage
            // collection off it for the grace period (its manifest `PUT` checks the link
            // in its own write all the same).
            self.meta
                .touch_link(name, &digest, self.env.now_ms())
                .await?;
            return base
                .status(StatusCode::OK)
                .header(headers::CONTENT_LENGTH, size)
                .header(headers::CONTENT_TYPE, "application/octet-stream")
                .body(Body::Empty)
                .map_err(internal);
        }
        // Checked before any redirect: the size is known here, so an unsatisfiable range
        // gets the same 416 (with `Content-Range: bytes */size`) on every runtime, instead
        // of whatever the object store behind a presigned URL answers.
        let range = match headers.get(headers::RANGE) {
            Some(v) => parse_range(v, size)?,
            None => None,
        };
        if self.settings.redirect_blobs
            && let Some(url) =
                self.blobs
                    .presign_get(&digest, self.env.now_ms(), self.settings.presign_ttl_secs)
        {
            return base
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(headers::LOCATION, url)
                .header(headers::CONTENT_LENGTH, 0)
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
                    headers::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.end),
                )
                .header(headers::CONTENT_LENGTH, r.len()),
            None => base
                .status(StatusCode::OK)
                .header(headers::CONTENT_LENGTH, size),
        };
        resp.header(headers::CONTENT_TYPE, "application/octet-stream")
            .body(Body::Stream(reader))
            .map_err(internal)
    }

    pub(super) async fn delete_blob(&self, name: &str, digest: &str) -> Resp<B> {
        check_delete(self.settings.delete_enabled)?;
        let digest: Digest = digest.parse()?;
        let unlinked = self
            .meta
            .unlink_blob(name, &digest, self.env.now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Precondition(m) => RegistryError::new(ErrorCode::Denied, m),
                e => e.into(),
            })?;
        if !unlinked {
            return Err(blob_unknown(&digest));
        }
        self.gate.events.emit(Event::BlobUnlinked {
            repository: name.to_owned(),
            digest,
        });
        Ok(empty::<B>(StatusCode::ACCEPTED))
    }
}

/// `201 Created` for a blob now in repository `name`.
pub(super) fn blob_created<B: BlobStore>(name: &str, digest: &Digest) -> ApiResponse<B> {
    let mut r = empty::<B>(StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/blobs/{digest}")) {
        r.headers_mut().insert(headers::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        r.headers_mut().insert(DOCKER_CONTENT_DIGEST, v);
    }
    r
}

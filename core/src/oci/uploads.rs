//! The upload engine: sessions (`POST`, `PATCH`, `PUT`, `GET`, `DELETE` of
//! `/v2/<name>/blobs/uploads/…`), mounts, monolithic uploads, and the hashing, recording and
//! committing of an upload's bytes.

use super::blobs::blob_created;
use super::internal;
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::events::Event;
use crate::http::body::Body;
use crate::http::headers;
use crate::http::headers::*;
use crate::http::query::Query;
use crate::http::response::{ApiResponse, empty};
use crate::model::name::RepoName;
use crate::model::upload::valid_upload_id;
use crate::model::{Algorithm, Digest, Hasher, to_hex};
use crate::oci::{Oci, Resp};
use crate::policy::quota;
use crate::ports::DEFAULT_ALGORITHM;
use crate::ports::{BlobStore, BlobWriter, ByteRange, Env, ServingMeta, UploadRecord};
use bytes::Buf;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use std::pin::pin;

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    pub(super) async fn start_upload<In>(
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
            let from = RepoName::parse(from)?;
            if let Some(size) = self.meta.blob_link(&from, &digest).await? {
                // Over quota is refused, not turned into an upload the commit would refuse.
                quota::check_link(self.meta, name, &digest, size).await?;
                if self.mount(name, &digest, size).await? {
                    tracing::info!(repo = name, from = %from, %digest, "blob mounted");
                    self.gate.events.emit(Event::BlobMounted {
                        repository: name.to_owned(),
                        digest: digest.clone(),
                        from: from.into(),
                    });
                    return Ok(blob_created::<B>(name, &digest));
                }
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

    /// Links a blob that `from` links into `name` (a mount): its record first, as for an
    /// upload. False if garbage collection is deleting it: then the client uploads it, as
    /// the spec says for a blob that cannot be mounted.
    async fn mount(&self, name: &str, digest: &Digest, size: u64) -> Result<bool> {
        let now = self.env.now_ms();
        let linked = match self.meta.touch_blob(digest, size, now).await {
            Ok(()) => self.meta.link_blob(name, digest, size, now).await,
            Err(e) => Err(e),
        };
        match linked {
            Ok(()) => Ok(true),
            Err(StoreError::Precondition(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        match self.meta.upload(id).await? {
            Some(u) if u.repo == name => Ok(u),
            _ => Err(unknown()),
        }
    }

    pub(super) async fn upload_status(&self, name: &str, id: &str) -> Resp<B> {
        let upload = self.find_upload(name, id).await?;
        Ok(self.upload_accepted(&upload, StatusCode::NO_CONTENT))
    }

    pub(super) async fn patch_upload<In>(
        &self,
        name: &str,
        id: &str,
        headers: &HeaderMap,
        body: In,
    ) -> Resp<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let mut upload = self.find_upload(name, id).await?;
        let range = parse_content_range(headers)?;
        self.append(&mut upload, headers, body, range).await?;
        Ok(self.upload_accepted(&upload, StatusCode::ACCEPTED))
    }

    pub(super) async fn finish_upload<In>(
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

    pub(super) async fn cancel_upload(&self, name: &str, id: &str) -> Resp<B> {
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
                .with_header(headers::LOCATION, upload_location(upload))
                .with_header(headers::RANGE, range_value(upload.offset)));
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
        if let (Some(max), Some(n)) = (self.settings.max_request_body, declared_len)
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
            if let Some(max) = self.settings.max_request_body
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
        // A link over the project's quota is refused before anything is committed, so
        // nothing of the push is counted.
        if let Err(e) = quota::check_link(self.meta, &upload.repo, digest, upload.offset).await {
            self.discard(upload).await;
            return Err(e);
        }
        // The blob's record first: it takes the blob off garbage collection's list before
        // its bytes are committed (which is a no-op if they exist), and refuses while they
        // are being deleted, so collection never deletes bytes this upload relies on.
        match self
            .meta
            .touch_blob(digest, upload.offset, self.env.now_ms())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Precondition(_)) => {
                self.discard(upload).await;
                return Err(gone_while_pushing(digest, "the upload was discarded"));
            }
            Err(e) => return Err(e.into()),
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
            .link_blob(&upload.repo, digest, upload.offset, self.env.now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => {
                    gone_while_pushing(digest, "the upload was committed but not linked")
                }
                e => e.into(),
            })?;
        tracing::info!(repo = %upload.repo, %digest, size = upload.offset, "blob pushed");
        self.gate.events.emit(Event::BlobPushed {
            repository: upload.repo.clone(),
            digest: digest.clone(),
            size: upload.offset,
        });
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
            .header(headers::LOCATION, upload_location(upload))
            .header(headers::RANGE, range_value(upload.offset))
            .header(DOCKER_UPLOAD_UUID, &upload.id)
            .header(headers::CONTENT_LENGTH, 0);
        if let Some(min) = self.blobs.min_chunk() {
            resp = resp.header(OCI_CHUNK_MIN_LENGTH, min);
        }
        resp.body(Body::Empty)
            .unwrap_or_else(|_| empty::<B>(status))
    }
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

fn upload_location(u: &UploadRecord) -> String {
    format!("/v2/{}/blobs/uploads/{}", u.repo, u.id)
}

/// The spec's `Range: 0-<last byte>` ("0-0" for an empty upload, as Distribution sends).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A push that lost a race with garbage collection: the blob was being deleted. The client
/// gets the spec's error for an upload it must start again, and simply pushing again works.
fn gone_while_pushing(digest: &Digest, what: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadUnknown,
        format!("blob {digest} was being garbage-collected, so {what}; push it again"),
    )
    .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

//! Manifests: get, put (with tags), delete.

use super::{internal, manifest_unknown, name_unknown};
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::events::Event;
use crate::http::body::Body;
use crate::http::body::read_limited;
use crate::http::headers;
use crate::http::headers::*;
use crate::http::query::Query;
use crate::http::response::empty;
use crate::model::manifest::{self, MAX_MANIFEST_BYTES};
use crate::model::name::Tag;
use crate::model::{Digest, Reference};
use crate::oci::{Oci, Resp};
use crate::policy::{check_delete, immutability};
use crate::ports::{BlobStore, Env, ServingMeta, TagExpect, all_tag_entries};
use crate::ports::{MAX_TAGS_PER_PUT, StoredManifest};
use http::header::HeaderMap;
use http::{Response, StatusCode};

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    pub(super) async fn get_manifest(
        &self,
        name: &str,
        reference: &str,
        headers: &HeaderMap,
        head: bool,
    ) -> Resp<B> {
        let reference = Reference::parse(reference)?;
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
            .header(headers::CONTENT_TYPE, &m.info.media_type)
            .header(headers::CONTENT_LENGTH, m.bytes.len())
            .header(DOCKER_CONTENT_DIGEST, m.info.digest.to_string())
            .header(headers::ETAG, format!("\"{}\"", m.info.digest));
        if let Some(s) = &m.info.subject {
            resp = resp.header(OCI_SUBJECT, s.to_string());
        }
        let repository = name.to_owned();
        let digest = m.info.digest.clone();
        let body = if head {
            self.gate
                .events
                .emit(Event::ManifestChecked { repository, digest });
            Body::Empty
        } else {
            self.gate.events.emit(Event::ManifestPulled {
                repository,
                reference: reference.to_string(),
                digest,
            });
            Body::full(m.bytes)
        };
        resp.body(body).map_err(internal)
    }

    pub(super) async fn put_manifest<In>(
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
        let reference = Reference::parse(reference)?;
        let owned_tags = tags_to_set(&reference, q)?;
        let tags: Vec<&str> = owned_tags.iter().map(Tag::as_str).collect();
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
            .get(headers::CONTENT_TYPE)
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
        self.store_manifest(name, &stored, &tags).await?;
        tracing::info!(repo = name, %digest, ?tags, "manifest pushed");
        self.gate.events.emit(Event::ManifestPushed {
            repository: name.to_owned(),
            reference: reference.to_string(),
            digest: digest.clone(),
        });
        for tag in &tags {
            self.gate.events.emit(Event::TagMoved {
                repository: name.to_owned(),
                tag: (*tag).to_owned(),
                digest: digest.clone(),
            });
        }
        let mut resp = Response::builder()
            .status(StatusCode::CREATED)
            .header(headers::LOCATION, format!("/v2/{name}/manifests/{digest}"))
            .header(DOCKER_CONTENT_DIGEST, digest.to_string())
            .header(headers::CONTENT_LENGTH, 0);
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

    /// Writes the manifest with its tags. A tag an immutability rule protects is written
    /// only if absent or already at this manifest (`TagExpect`), re-read and decided again
    /// when a racing push changed it, so of two racing pushes of one immutable tag exactly
    /// one wins and the other gets `DENIED`.
    async fn store_manifest(
        &self,
        name: &str,
        stored: &StoredManifest,
        tags: &[&str],
    ) -> Result<()> {
        let gone = |m: String| {
            // What it references left the repository (garbage collection) after the
            // checks: the store wrote nothing, and pushing again uploads it.
            RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("{m}; push it again before the manifest"),
            )
        };
        let rules = if tags.is_empty() {
            None
        } else {
            immutability::rules(self.meta, name).await?
        };
        let protected: Vec<&str> = match &rules {
            Some(r) => tags
                .iter()
                .copied()
                .filter(|t| r.rule_for(name, t).is_some())
                .collect(),
            None => Vec::new(),
        };
        let now = self.env.now_ms();
        if protected.is_empty() {
            return self
                .meta
                .put_manifest(name, stored, tags, now)
                .await
                .map_err(|e| match e {
                    StoreError::Precondition(m) => gone(m),
                    e => e.into(),
                });
        }
        let digest = &stored.info.digest;
        let mut last: Option<Vec<TagExpect>> = None;
        for _ in 0..4 {
            let mut expect = Vec::with_capacity(tags.len());
            for t in tags {
                let rule = rules.as_ref().and_then(|r| r.rule_for(name, t));
                let Some(rule) = rule else {
                    expect.push(TagExpect::Any);
                    continue;
                };
                let tag = Reference::Tag(Tag::parse(t)?);
                expect.push(match self.meta.manifest(name, &tag).await? {
                    None => TagExpect::Absent,
                    Some(m) if &m.info.digest == digest => TagExpect::At(digest.clone()),
                    Some(m) => {
                        return Err(immutability::refused(
                            name,
                            t,
                            rule,
                            &format!("moved from {} to {digest}", m.info.digest),
                        ));
                    }
                });
            }
            // The same expectations failing twice is not a tag that moved: a reference the
            // manifest needs is gone.
            if last.as_ref() == Some(&expect) {
                break;
            }
            let pairs: Vec<(&str, TagExpect)> =
                tags.iter().copied().zip(expect.iter().cloned()).collect();
            match self
                .meta
                .put_manifest_expecting(name, stored, &pairs, now)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Precondition(_)) => last = Some(expect),
                Err(e) => return Err(e.into()),
            }
        }
        Err(gone(format!(
            "a blob or manifest {digest} references is not in {name}"
        )))
    }

    /// Refuses deleting `tag`, or a manifest that an immutable tag points at.
    async fn check_mutable(&self, name: &str, reference: &Reference) -> Result<()> {
        let Some(rules) = immutability::rules(self.meta, name).await? else {
            return Ok(());
        };
        match reference {
            Reference::Tag(t) => match rules.rule_for(name, t.as_str()) {
                Some(rule) => Err(immutability::refused(name, t.as_str(), rule, "deleted")),
                None => Ok(()),
            },
            Reference::Digest(d) => {
                for t in all_tag_entries(self.meta, name).await? {
                    if &t.digest == d
                        && let Some(rule) = rules.rule_for(name, &t.tag)
                    {
                        return Err(immutability::refused(
                            name,
                            &t.tag,
                            rule,
                            &format!("deleted with manifest {d}"),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) async fn delete_manifest(&self, name: &str, reference: &str) -> Resp<B> {
        check_delete(self.settings.delete_enabled)?;
        let reference = Reference::parse(reference)?;
        self.check_mutable(name, &reference).await?;
        let found = match &reference {
            Reference::Digest(d) => {
                self.meta
                    .delete_manifest(name, d, self.env.now_ms())
                    .await?
            }
            Reference::Tag(t) => self.meta.delete_tag(name, t, self.env.now_ms()).await?,
        };
        if !found {
            return Err(manifest_unknown(&reference));
        }
        tracing::info!(repo = name, reference = ?reference, "manifest deleted");
        self.gate.events.emit(match reference {
            Reference::Digest(digest) => Event::ManifestDeleted {
                repository: name.to_owned(),
                digest,
            },
            Reference::Tag(tag) => Event::TagDeleted {
                repository: name.to_owned(),
                tag: tag.into(),
            },
        });
        Ok(empty::<B>(StatusCode::ACCEPTED))
    }
}

/// The tags a manifest `PUT` sets: the reference if it is a tag, then each `?tag=` (the
/// spec's tags pushed with a manifest by digest), repeats dropped. All are validated here,
/// before the body is read, so a bad one fails the request with `TAG_INVALID` before
/// anything is written.
fn tags_to_set(reference: &Reference, q: &Query) -> Result<Vec<Tag>> {
    let mut tags: Vec<Tag> = Vec::new();
    if let Reference::Tag(t) = reference {
        tags.push(t.clone());
    }
    for t in q.all("tag") {
        let t = Tag::parse(t)?;
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

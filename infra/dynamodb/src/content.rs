//! The content writes (links, manifests, tags) with the records they keep: each one
//! `TransactWriteItems` holding the change, its blob-record, reverse-index, usage and time
//! updates and its outbox entry, decided from items read just before and conditioned on
//! them (read again and retried when a concurrent write changed one).

use super::*;
use wharf_core::ports::{Change, TagExpect};

/// What a manifest write is made of, before the table is read.
struct ManifestParts {
    /// `SET …` clauses and values of the manifest item's payload, and what it removes.
    payload: items::Item,
    removes: &'static [&'static str],
}

impl DynamoMetadata {
    pub(crate) async fn link(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.touch_repo(repo).await?;
        shared::link(self, repo, digest, size, at_ms).await
    }

    /// `unlink_blob`: refused (`Precondition`) while a manifest of `repo` references the
    /// blob ([`ledger::unlink_writes`]).
    pub(crate) async fn unlink(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        shared::unlink(self, repo, digest, at_ms).await
    }

    /// The payload shared by the manifest item and its tags' copies: inline, or in S3 (put
    /// now) when too large for an item or for the transaction with every tag's copy.
    async fn manifest_payload(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: usize,
    ) -> Result<ManifestParts, StoreError> {
        let info = serde_json::to_string(&m.info).map_err(other)?;
        let mut payload = items::Item::new();
        let inline = info.len() + m.bytes.len();
        if inline > self.0.inline_limit || inline.saturating_mul(1 + tags) > TRANSACT_PAYLOAD_BUDGET
        {
            let Some((client, bucket, prefix)) = &self.0.s3 else {
                return Err(other(format!(
                    "manifest of {} bytes is too large for a DynamoDB item and no S3 bucket is configured",
                    m.bytes.len()
                )));
            };
            let k = self.manifest_object_key(prefix, repo, &m.info.digest);
            client
                .put_object()
                .bucket(bucket)
                .key(&k)
                .content_type("application/octet-stream")
                .body(m.to_record()?.into())
                .send()
                .await
                .map_err(store_error)?;
            payload.insert("s3".into(), Attr::S(k));
            Ok(ManifestParts {
                payload,
                removes: &["info", "body"],
            })
        } else {
            payload.insert("info".into(), Attr::S(info));
            payload.insert("body".into(), Attr::B(m.bytes.to_vec()));
            Ok(ManifestParts {
                payload,
                removes: &["s3"],
            })
        }
    }

    /// `put_manifest`, with each tag written only if it is as expected.
    ///
    /// One transaction holds the manifest, its tags, referrer entry, reverse-index item and
    /// outbox entry and a check of each distinct child manifest; what keeps each blob's link
    /// from collection until then (its +1 reference or a check, in that transaction while
    /// there is room, else a +1 first) and the blob records' counts are planned by
    /// [`ledger::manifest_plan`]. Any number of blobs fits; children are limited
    /// ([`ledger::check_manifest_fits`]).
    pub(crate) async fn put_manifest_with(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        // One transaction item per tag, and two operations on one item fail a transaction.
        let mut distinct: Vec<(&str, &TagExpect)> = Vec::with_capacity(tags.len());
        for (t, e) in tags {
            if !distinct.iter().any(|(d, _)| d == t) {
                distinct.push((t, e));
            }
        }
        let digest = &m.info.digest;
        let blobs = ledger::distinct(&m.info.blobs);
        let children = ledger::distinct(&m.info.children);
        ledger::check_manifest_fits(distinct.len(), m.info.subject.is_some(), children.len())?;
        self.touch_repo(repo).await?;
        let parts = self.manifest_payload(repo, m, distinct.len()).await?;
        let tag_names: Vec<String> = distinct.iter().map(|(t, _)| (*t).to_owned()).collect();
        let keys = ledger::manifest_reads(repo, digest, &blobs, &children);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // What the write decides on: is the manifest counted yet, are its blobs' links,
            // records and child manifests there, is a blob being deleted.
            let found = self.batch_get(&keys).await?;
            let seen = ledger::ManifestSeen::from_found(blobs.len(), children.len(), found)?;
            let main =
                self.manifest_writes(repo, m, &parts, &distinct, &tag_names, seen.is_new(), at_ms)?;
            let plan = ledger::manifest_plan(repo, &blobs, &children, &seen, main)?;
            let result = if plan.before.is_empty() {
                self.transact_writes(&plan.atomic).await
            } else {
                self.refs_then(&plan.before, &plan.atomic).await
            };
            if result.is_ok() {
                for w in &plan.release {
                    self.take_back(w).await;
                }
            }
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Precondition(e)) => {
                    // A tag not as expected is the caller's answer; anything else raced.
                    for (t, expect) in &distinct {
                        if **expect != TagExpect::Any {
                            let now = self.tag_digest(repo, t).await?;
                            wharf_core::ledger::check_tag(t, now.as_ref(), expect)?;
                        }
                    }
                    tracing::debug!(error = %e, attempt, "manifest write raced; reading again");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "manifest {digest} kept changing while being written: {}",
            last.unwrap_or_default()
        )))
    }

    /// The manifest item, its tags, referrer entry, reverse-index item (if new) and outbox
    /// entry: the writes that must be one.
    #[allow(clippy::too_many_arguments)]
    fn manifest_writes(
        &self,
        repo: &str,
        m: &StoredManifest,
        parts: &ManifestParts,
        tags: &[(&str, &TagExpect)],
        tag_names: &[String],
        is_new: bool,
        at_ms: u64,
    ) -> Result<Vec<Write>, StoreError> {
        let pk = repo_pk(repo);
        let digest = &m.info.digest;
        let mut sets = vec![
            "#mt = :mt".to_owned(),
            "#size = :size".to_owned(),
            "#pushed = :at".to_owned(),
            "#counted = :one".to_owned(),
        ];
        let mut w_values: Vec<(String, Attr)> = vec![
            ("mt".into(), Attr::S(m.info.media_type.clone())),
            ("size".into(), Attr::N(m.info.size)),
            ("at".into(), Attr::N(at_ms)),
            ("one".into(), Attr::N(1)),
        ];
        for (name, v) in &parts.payload {
            sets.push(format!("#{name} = :p_{name}"));
            w_values.push((format!("p_{name}"), v.clone()));
        }
        if let Some(subject) = &m.info.subject {
            sets.push("#subject = :subject".into());
            w_values.push(("subject".into(), Attr::S(subject.to_string())));
        }
        let removes: Vec<String> = parts.removes.iter().map(|r| format!("#{r}")).collect();
        let expr = format!(
            "SET {} REMOVE {} ADD #rev :one",
            sets.join(", "),
            removes.join(", ")
        );
        let mut w = Write::update(ledger::manifest_key(repo, digest), expr).when(if is_new {
            "attribute_not_exists(#counted)"
        } else {
            "attribute_exists(#counted)"
        });
        for (k, v) in w_values {
            w = w.value(&k, v);
        }
        let mut out = vec![w];
        for (tag, expect) in tags {
            let mut item = items::key(&pk, format!("TAG#{tag}"));
            item.insert("digest".into(), Attr::S(digest.to_string()));
            item.insert("pushed".into(), Attr::N(at_ms));
            item.extend(parts.payload.clone());
            let w = Write::put(item);
            out.push(match expect {
                TagExpect::Any => w,
                TagExpect::Absent => w.when("attribute_not_exists(pk)"),
                TagExpect::At(d) => w
                    .when("#digest = :expect")
                    .value("expect", Attr::S(d.to_string())),
            });
        }
        if let Some(subject) = &m.info.subject {
            let mut item = items::key(&pk, format!("REFERRER#{subject}#{digest}"));
            let desc = serde_json::to_string(&m.info.referrer_descriptor()).map_err(other)?;
            item.insert("desc".into(), Attr::S(desc));
            out.push(Write::put(item));
        }
        if is_new {
            out.push(
                Write::update(ledger::reverse_key(digest, repo), "SET #m = :one")
                    .value("one", Attr::N(1)),
            );
        }
        out.push(ledger::outbox_write(
            at_ms,
            Change::ManifestPut {
                repository: repo.to_owned(),
                digest: digest.clone(),
                tags: tag_names.to_vec(),
            },
        )?);
        Ok(out)
    }

    /// What `tag` of `repo` points at.
    pub(crate) async fn tag_digest(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<Digest>, StoreError> {
        let item = self
            .get(key(repo_pk(repo), format!("TAG#{tag}")), None)
            .await?;
        match item.as_ref().and_then(|i| get_s(i, "digest")) {
            Some(d) => d
                .parse()
                .map(Some)
                .map_err(|_| other("tag item with a bad digest")),
            None => Ok(None),
        }
    }

    /// The writes that uncount a deleted (counted) manifest `info` of `repo`: its reverse
    /// flag (in the delete's transaction) and its blobs' reference counts (`refs`, in it if
    /// there is room, else after it).
    pub(crate) async fn uncount_manifest(
        &self,
        repo: &str,
        info: &ManifestInfo,
    ) -> Result<(Write, Vec<Write>), StoreError> {
        let blobs = ledger::distinct(&info.blobs);
        let mut keys = vec![ledger::reverse_key(&info.digest, repo)];
        for b in &blobs {
            keys.push(ledger::link_key(repo, b));
            keys.push(ledger::record_key(b));
        }
        let found = self.batch_get(&keys).await?;
        let rkey = ledger::reverse_key(&info.digest, repo);
        let reverse = if found[0].as_ref().is_some_and(|r| r.contains_key("l")) {
            Write::update(rkey, "REMOVE #m").when("attribute_exists(#l)")
        } else {
            Write::delete(rkey).when("attribute_not_exists(#l)")
        };
        let mut refs = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            refs.extend(ledger::ref_writes(
                repo,
                b,
                found[1 + 2 * i].as_ref(),
                found[2 + 2 * i].as_ref(),
                false,
            ));
        }
        Ok((reverse, refs))
    }

    /// The facts of a manifest item (from the item, or from S3 for one kept there).
    pub(crate) async fn manifest_info(&self, item: &Item) -> Result<ManifestInfo, StoreError> {
        match get_s(item, "info") {
            Some(info) => serde_json::from_str(info).map_err(other),
            None => Ok(self.decode_manifest(item).await?.info),
        }
    }

    pub(crate) async fn delete_tag_with(
        &self,
        repo: &str,
        tag: &str,
        at_ms: u64,
        expect: Option<&Digest>,
    ) -> Result<bool, StoreError> {
        let mut w = Write::delete(items::key(repo_pk(repo), format!("TAG#{tag}")))
            .when("attribute_exists(pk)");
        if let Some(d) = expect {
            w = w.when("#digest = :d").value("d", Attr::S(d.to_string()));
        }
        let entry = ledger::outbox_write(
            at_ms,
            Change::TagDeleted {
                repository: repo.to_owned(),
                tag: tag.to_owned(),
            },
        )?;
        match self.transact_writes(&[w, entry]).await {
            Ok(()) => Ok(true),
            Err(StoreError::Precondition(e)) => match (expect, self.tag_digest(repo, tag).await?) {
                (_, None) => Ok(false),
                (Some(d), Some(now)) => Err(StoreError::Precondition(format!(
                    "tag {tag} points at {now}, not {d}"
                ))),
                (None, Some(_)) => Err(StoreError::Unavailable(format!(
                    "tag {tag} kept changing while being deleted: {e}"
                ))),
            },
            Err(e) => Err(e),
        }
    }
}

//! The optional metadata abilities on the table: the manifest index, blob records, link
//! collection, the outbox, usage counters and conditional tag writes. Every listing is a
//! `Query` on a key range (or on the sparse index `gsi1`); nothing scans.

use super::*;
use wharf_core::ports::{
    BlobRecord, BlobRecords, Cleared, ConditionalTags, LinkCollection, LinkCursor, LinkEntry,
    ManifestEntry, ManifestIndex, Outbox, OutboxEntry, PullTimes, TagEntry, UnreferencedLink,
    Usage, UsageCounters,
};
use wharf_dynamodb_items::ledger::LinkTouch;
use wharf_dynamodb_items::ledger::lists::{self, IndexPage, IndexQuery};

fn digest_after(sk: &str, prefix: &str) -> Result<Digest, StoreError> {
    sk.strip_prefix(prefix)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| other(format!("item {sk} has no digest")))
}

fn opt_n(item: &Item, name: &str) -> Option<u64> {
    get_n(item, name).ok()
}

impl DynamoMetadata {
    /// Items of `pk` whose sort key starts with `prefix`, after `prefix` + `after`.
    async fn page(
        &self,
        pk: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let hi = format!("{}$", prefix.trim_end_matches('#'));
        let (items, _) = self
            .query(
                pk,
                SortCond::Between(prefix, &hi),
                after.map(|a| format!("{prefix}{a}")),
                limit,
                projection,
            )
            .await?;
        Ok(items)
    }

    /// One page of `gsi1` (an index is never read strongly consistent).
    async fn index_page(&self, q: IndexQuery) -> Result<IndexPage, StoreError> {
        let (cond, after) = match q.after {
            Some(a) => ("gsi1pk = :p AND gsi1sk > :a", Some(s(a))),
            None => ("gsi1pk = :p", None),
        };
        let mut req = self
            .0
            .client
            .query()
            .table_name(&self.0.table)
            .index_name("gsi1")
            .key_condition_expression(cond)
            .expression_attribute_values(":p", s(q.pk))
            .set_exclusive_start_key(q.start.map(sdk))
            .limit(q.limit.clamp(1, 1000) as i32);
        if let Some(a) = after {
            req = req.expression_attribute_values(":a", a);
        }
        let out = req.send().await.map_err(store_error)?;
        Ok(IndexPage {
            items: out
                .items
                .unwrap_or_default()
                .into_iter()
                .map(from_sdk)
                .collect::<Result<_, _>>()?,
            next: out.last_evaluated_key.map(from_sdk).transpose()?,
        })
    }

    /// A single-item update conditioned on what it expects; false if the condition failed.
    async fn conditional(&self, w: &Write) -> Result<bool, StoreError> {
        match self.write_one(w).await {
            Ok(()) => Ok(true),
            Err(StoreError::Precondition(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl ManifestIndex for DynamoMetadata {
    async fn list_manifests(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError> {
        let after = after.map(Digest::to_string);
        let rows = self
            .page(&repo_pk(repo), "MANIFEST#", after.as_deref(), limit, None)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for item in &rows {
            let digest = digest_after(get_s(item, "sk").unwrap_or_default(), "MANIFEST#")?;
            let (media_type, size) = match (get_s(item, "mt"), opt_n(item, "size")) {
                (Some(mt), Some(size)) => (mt.to_owned(), size),
                // Written before these were kept (the backfill adds them).
                _ => {
                    let info = self.manifest_info(item).await?;
                    (info.media_type, info.size)
                }
            };
            let subject = match get_s(item, "subject") {
                Some(s) => Some(s.parse().map_err(|_| other("bad subject"))?),
                None => None,
            };
            out.push(ManifestEntry {
                digest,
                media_type,
                size,
                subject,
                pushed_ms: opt_n(item, "pushed"),
                pulled_ms: None,
            });
        }
        // Pull times live in small items of their own (a pull rewrites 1 KB, not the
        // manifest): one BatchGetItem for the page.
        let keys: Vec<items::Item> = out
            .iter()
            .map(|e| ledger::pull_key(repo, &e.digest))
            .collect();
        if !keys.is_empty() {
            for (e, p) in out.iter_mut().zip(self.batch_get(&keys).await?) {
                e.pulled_ms = p.and_then(|p| items::get_n(&p, "pulled").ok());
            }
        }
        Ok(out)
    }

    async fn list_tag_entries(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError> {
        let rows = self
            .page(
                &repo_pk(repo),
                "TAG#",
                after,
                limit,
                Some("sk, digest, pushed"),
            )
            .await?;
        rows.iter()
            .map(|i| {
                let sk = get_s(i, "sk").unwrap_or_default();
                Ok(TagEntry {
                    tag: sk.strip_prefix("TAG#").unwrap_or(sk).to_owned(),
                    digest: get_s(i, "digest")
                        .and_then(|d| d.parse().ok())
                        .ok_or_else(|| other(format!("tag item {sk} lacks its digest")))?,
                    pushed_ms: opt_n(i, "pushed"),
                })
            })
            .collect()
    }

    async fn list_links(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError> {
        let after = after.map(Digest::to_string);
        let rows = self
            .page(&repo_pk(repo), "BLOB#", after.as_deref(), limit, None)
            .await?;
        rows.iter()
            .map(|i| {
                Ok(LinkEntry {
                    digest: digest_after(get_s(i, "sk").unwrap_or_default(), "BLOB#")?,
                    size: get_n(i, "size")?,
                    linked_ms: opt_n(i, "linked"),
                    refs: opt_n(i, "refs").unwrap_or(0),
                })
            })
            .collect()
    }

    async fn repositories_with(
        &self,
        digest: &Digest,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .page(&ledger::blob_pk(digest), "REPO#", after, limit, Some("sk"))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|i| get_s(i, "sk")?.strip_prefix("REPO#").map(str::to_owned))
            .collect())
    }
}

impl PullTimes for DynamoMetadata {
    /// One `TransactWriteItems` ([`ledger::pull_writes`]); the event alone when that
    /// fails its condition.
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        let writes = ledger::pull_writes(repo, digest, at_ms, event);
        match self.transact_writes(&writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Precondition(_)) => match event {
                Some((id, raw)) => self.append_event(id, raw).await,
                None => Ok(()),
            },
            Err(e) => Err(e),
        }
    }
}

impl BlobRecords for DynamoMetadata {
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        Ok(self
            .get_item(ledger::record_key(digest))
            .await?
            .map(|i| ledger::record_of(digest, &i)))
    }

    /// [`lists::unlinked_blobs`]: the `UNLINKED#` shards of `gsi1` in digest order.
    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        lists::unlinked_blobs(after, limit, |q| self.index_page(q)).await
    }

    async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError> {
        self.read_decide_write("blob touch", || async {
            let record = self.get_item(ledger::record_key(digest)).await?;
            Ok((
                vec![ledger::touch_write(digest, size, at_ms, record.as_ref())?],
                (),
            ))
        })
        .await
    }

    async fn mark_blob(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.conditional(&ledger::mark_write(digest, untouched_since_ms, at_ms))
            .await
    }

    async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let record = self.get_item(ledger::record_key(digest)).await?;
            match ledger::clear_mark(digest, record.as_ref(), at_ms) {
                (answer, None) => return Ok(answer),
                (answer, Some(w)) if self.conditional(&w).await? => return Ok(answer),
                _ => {}
            }
        }
        Err(StoreError::Unavailable(format!(
            "blob record {digest} kept changing"
        )))
    }

    async fn begin_blob_delete(
        &self,
        digest: &Digest,
        marked_at_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.conditional(&ledger::begin_delete_write(digest, marked_at_ms, at_ms))
            .await
    }

    async fn begin_unused_blob_delete(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.conditional(&ledger::begin_unused_delete_write(
            digest,
            untouched_since_ms,
            at_ms,
        ))
        .await
    }

    async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.conditional(&ledger::forget_write(digest)).await
    }
}

impl LinkCollection for DynamoMetadata {
    /// A `GetItem`, and an `UpdateItem` only if the link's time is stale (a `HEAD` of a blob
    /// checked in the last minute writes nothing).
    async fn touch_link(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let link = self.get_item(ledger::link_key(repo, digest)).await?;
        match ledger::link_touch(repo, digest, link.as_ref(), at_ms) {
            LinkTouch::NoLink => Ok(false),
            LinkTouch::Fresh => Ok(true),
            // Refused: touched later meanwhile (kept), or removed.
            LinkTouch::Write(w) => match self.conditional(&w).await? {
                true => Ok(true),
                false => Ok(self
                    .get_item(ledger::link_key(repo, digest))
                    .await?
                    .is_some()),
            },
        }
    }

    /// [`lists::unreferenced_links`]: the `UNREFERENCED#` shards of `gsi1`, merged.
    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError> {
        lists::unreferenced_links(after, limit, |q| self.index_page(q)).await
    }

    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.collect(repo, digest, untouched_since_ms, at_ms).await
    }
}

impl Outbox for DynamoMetadata {
    /// Every shard's next entries after `after`, merged by `seq`: the first `limit` of the
    /// union are among the first `limit` of each shard.
    async fn outbox_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut all = Vec::new();
        for shard in 0..ledger::OUTBOX_SHARDS {
            let pk = ledger::outbox_pk(shard);
            let (rows, _) = self
                .query(&pk, SortCond::All, after.map(str::to_owned), limit, None)
                .await?;
            for r in rows {
                all.push(ledger::outbox_from(&from_sdk(r)?)?);
            }
        }
        all.sort_by(|a, b| a.seq.cmp(&b.seq));
        all.truncate(limit);
        Ok(all)
    }

    async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError> {
        let doomed: Vec<(String, String)> = {
            let mut v = Vec::new();
            for shard in 0..ledger::OUTBOX_SHARDS {
                let pk = ledger::outbox_pk(shard);
                let (rows, _) = self
                    .query(&pk, SortCond::UpTo(upto), None, limit, Some("sk"))
                    .await?;
                v.extend(
                    rows.iter()
                        .filter_map(|r| get_s(r, "sk"))
                        .map(|sk| (pk.clone(), sk.to_owned())),
                );
            }
            v.sort_by(|a, b| a.1.cmp(&b.1));
            v.truncate(limit);
            v
        };
        for chunk in doomed.chunks(25) {
            let mut requests: Vec<aws_sdk_dynamodb::types::WriteRequest> = chunk
                .iter()
                .map(|(pk, sk)| {
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(key(pk, sk)))
                        .build()
                        .map(|d| {
                            aws_sdk_dynamodb::types::WriteRequest::builder()
                                .delete_request(d)
                                .build()
                        })
                        .map_err(other)
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0;
            while !requests.is_empty() {
                let out = self
                    .0
                    .client
                    .batch_write_item()
                    .request_items(&self.0.table, requests)
                    .send()
                    .await
                    .map_err(store_error)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.0.table))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(StoreError::Unavailable(
                            "DynamoDB kept outbox deletes unprocessed".into(),
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(doomed.len())
    }
}

impl UsageCounters for DynamoMetadata {
    /// One `Query` over the project's usage shards, summed.
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError> {
        let (rows, _) = self
            .query(
                &ledger::project_pk(project),
                SortCond::Prefix(ledger::USAGE_PREFIX),
                None,
                usize::MAX,
                None,
            )
            .await?;
        fn n<'a>(i: &'a Item, name: &str) -> Option<&'a str> {
            i.get(name).and_then(|v| v.as_n().ok()).map(String::as_str)
        }
        Ok(ledger::usage_sum(
            rows.iter().map(|i| [n(i, "bytes"), n(i, "blobs")]),
        ))
    }
    /// One `GetItem`: the project's count of repositories linking the digest.
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .get_item(ledger::pblob_key(project, digest))
            .await?
            .is_some_and(|i| items::get_n(&i, "n").unwrap_or(0) > 0))
    }
}

impl ConditionalTags for DynamoMetadata {
    async fn put_manifest_expecting(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.put_manifest_with(repo, manifest, tags, at_ms).await
    }

    async fn delete_tag_expecting(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.delete_tag_with(repo, tag, at_ms, Some(digest)).await
    }
}

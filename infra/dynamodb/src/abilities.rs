//! The optional metadata abilities on the table: the manifest index, blob records, link
//! collection, the outbox, usage counters and conditional tag writes. Every listing is a
//! `Query` on a key range (or on the sparse index `gsi1`); nothing scans.

use super::*;
use wharf_core::ports::{
    ConditionalTags, LinkEntry, ManifestEntry, ManifestIndex, Outbox, OutboxEntry, PullTimes,
    TagEntry, Usage, UsageCounters,
};

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

// Blob records and link collection: the same items, decisions and conditions as
// `DynamoRest`'s, from one definition.
wharf_dynamodb_items::shared_abilities!(impl [] for DynamoMetadata);

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

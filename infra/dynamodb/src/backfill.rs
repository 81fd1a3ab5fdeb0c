//! The schema version and the backfill: the resumable walk that gives content written
//! before the records (schema 1: the format of 727e058 and before) what live writes keep
//! for it now. It pages by `Query` through the catalog and, per repository, its links and
//! then its manifests, counting each with the same conditional writes as a live write
//! (decided from the reverse-index item and the manifest's `counted` flag, so a piece live
//! traffic already counted is skipped, and running it twice counts nothing twice). Tags
//! need nothing: a tag item is its own index entry, and one without `pushed` reads as
//! "set before push times were kept".
//!
//! The checkpoint (`META`/`BACKFILL`, `cp` = `<phase>|<repository>|<last sort key>`) is
//! saved after each page, so a killed run resumes where the last page ended.
//!
//! A table whose backfill was done under an older schema (2: before the unreferenced-link
//! work list) runs it again from the start: links counted already are only put on the work
//! list (or taken off it) by their `refs`, so every link gets what schema 3 keeps.

use super::*;
use wharf_core::ports::{Backfill, BackfillProgress, BlobState, SCHEMA_VERSION};

/// Where the backfill is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Counting the links of `repo` after `after`.
    Links { repo: String, after: Option<String> },
    /// Counting the manifests of `repo` after `after`.
    Manifests { repo: String, after: Option<String> },
    /// Going on with the repository after `repo` (from the first with `None`).
    Next { repo: Option<String> },
}

impl Phase {
    fn encode(&self) -> String {
        match self {
            Phase::Links { repo, after } => {
                format!("links|{repo}|{}", after.as_deref().unwrap_or(""))
            }
            Phase::Manifests { repo, after } => {
                format!("manifests|{repo}|{}", after.as_deref().unwrap_or(""))
            }
            Phase::Next { repo } => format!("next|{}|", repo.as_deref().unwrap_or("")),
        }
    }
    fn decode(cp: &str) -> Result<Self, StoreError> {
        let mut parts = cp.splitn(3, '|');
        let (kind, repo, after) = (parts.next(), parts.next(), parts.next());
        let opt = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        match (kind, repo) {
            (Some("links"), Some(r)) => Ok(Phase::Links {
                repo: r.to_owned(),
                after: opt(after),
            }),
            (Some("manifests"), Some(r)) => Ok(Phase::Manifests {
                repo: r.to_owned(),
                after: opt(after),
            }),
            (Some("next"), r) => Ok(Phase::Next { repo: opt(r) }),
            _ => Err(other(format!("bad backfill checkpoint {cp:?}"))),
        }
    }
}

impl DynamoMetadata {
    /// Marks the store as at [`SCHEMA_VERSION`] with its backfill done.
    pub(crate) async fn mark_backfill_done(&self) -> Result<(), StoreError> {
        let mut done = ledger::meta_key("BACKFILL");
        done.insert("done".into(), Attr::N(1));
        let mut version = ledger::meta_key("SCHEMA");
        version.insert("version".into(), Attr::N(u64::from(SCHEMA_VERSION)));
        self.transact_writes(&[Write::put(done), Write::put(version)])
            .await
    }

    async fn save_checkpoint(&self, phase: &Phase) -> Result<(), StoreError> {
        let mut item = ledger::meta_key("BACKFILL");
        item.insert("cp".into(), Attr::S(phase.encode()));
        self.write_one(&Write::put(item)).await
    }

    /// Counts an old link, if nothing counted it yet, and puts it on the unreferenced-link
    /// list (or takes it off) by its `refs`.
    async fn backfill_link(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        shared::read_decide_write(self, "backfill of a link", || async {
            let seen = shared::link_seen(self, repo, digest).await?;
            let writes = ledger::link_writes(repo, digest, size, None, &seen)?;
            // Checks alone: counted already.
            let writes = if writes.iter().all(|w| matches!(w.op, Op::Check(_))) {
                Vec::new()
            } else {
                writes
            };
            Ok((writes, ()))
        })
        .await
    }

    /// Counts an old manifest's references, if nothing counted them yet, and gives its item
    /// the media type and size the index lists.
    async fn backfill_manifest(&self, repo: &str, item: &Item) -> Result<(), StoreError> {
        if item.contains_key("counted") {
            return Ok(());
        }
        let info = self.manifest_info(item).await?;
        let blobs = ledger::distinct(&info.blobs);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut keys = vec![ledger::manifest_key(repo, &info.digest)];
            for b in &blobs {
                keys.push(ledger::link_key(repo, b));
                keys.push(ledger::record_key(b));
            }
            let found = self.batch_get(&keys).await?;
            match &found[0] {
                Some(m) if !m.contains_key("counted") => {}
                // Counted by a live write meanwhile, or deleted.
                _ => return Ok(()),
            }
            let mut refs = Vec::new();
            for (i, b) in blobs.iter().enumerate() {
                let record = found[2 + 2 * i].as_ref();
                // A blob being deleted is not counted into (it is going).
                if record.is_some_and(|r| matches!(ledger::state_of(r), BlobState::Deleting { .. }))
                {
                    continue;
                }
                refs.extend(ledger::ref_writes(
                    repo,
                    b,
                    found[1 + 2 * i].as_ref(),
                    record,
                    true,
                ));
            }
            let main = vec![
                Write::update(
                    ledger::manifest_key(repo, &info.digest),
                    "SET #counted = :one, #mt = :mt, #size = :size",
                )
                .when("attribute_exists(pk) AND attribute_not_exists(#counted)")
                .value("one", Attr::N(1))
                .value("mt", Attr::S(info.media_type.clone()))
                .value("size", Attr::N(info.size)),
                Write::update(ledger::reverse_key(&info.digest, repo), "SET #m = :one")
                    .value("one", Attr::N(1)),
            ];
            let result = if main.len() + refs.len() <= TX_MAX {
                refs.extend(main);
                self.transact_writes(&refs).await
            } else {
                self.refs_then(&refs, &main).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Precondition(e)) => {
                    tracing::debug!(error = %e, attempt, "backfill of a manifest raced; reading again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "manifest {} of {repo} kept changing during the backfill",
            info.digest
        )))
    }
}

impl Backfill for DynamoMetadata {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        let item = self.get_item(ledger::meta_key("SCHEMA")).await?;
        Ok(item
            .and_then(|i| items::get_n(&i, "version").ok())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1))
    }

    async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError> {
        let cp = self.get_item(ledger::meta_key("BACKFILL")).await?;
        let mut phase = match cp.as_ref().and_then(|c| items::get_s(c, "cp")) {
            _ if cp.as_ref().is_some_and(|c| c.contains_key("done")) => {
                if self.schema_version().await? >= SCHEMA_VERSION {
                    return Ok(BackfillProgress::Done);
                }
                // Done for an older schema: again, for what this one keeps.
                Phase::Next { repo: None }
            }
            Some(c) => Phase::decode(c)?,
            None => Phase::Next { repo: None },
        };
        let mut left = budget.max(1);
        loop {
            if left == 0 {
                self.save_checkpoint(&phase).await?;
                return Ok(BackfillProgress::Running {
                    checkpoint: phase.encode(),
                });
            }
            phase = match phase {
                Phase::Next { repo } => {
                    let (rows, _) = self
                        .query("CATALOG", SortCond::All, repo, 1, Some("sk"))
                        .await?;
                    match rows.first().and_then(|r| get_s(r, "sk")) {
                        Some(r) => Phase::Links {
                            repo: r.to_owned(),
                            after: None,
                        },
                        None => {
                            self.mark_backfill_done().await?;
                            return Ok(BackfillProgress::Done);
                        }
                    }
                }
                Phase::Links { repo, after } => {
                    let rows = self
                        .query(
                            &repo_pk(&repo),
                            SortCond::Between("BLOB#", "BLOB$"),
                            after.clone().map(|a| format!("BLOB#{a}")),
                            left,
                            None,
                        )
                        .await?
                        .0;
                    let mut last = after;
                    for r in &rows {
                        let sk = get_s(r, "sk").unwrap_or_default();
                        let d: Digest = sk
                            .strip_prefix("BLOB#")
                            .and_then(|d| d.parse().ok())
                            .ok_or_else(|| other(format!("link item {sk} has no digest")))?;
                        self.backfill_link(&repo, &d, get_n(r, "size")?).await?;
                        last = Some(d.to_string());
                    }
                    let full = rows.len() == left;
                    left -= rows.len();
                    let next = if full {
                        Phase::Links { repo, after: last }
                    } else {
                        Phase::Manifests { repo, after: None }
                    };
                    self.save_checkpoint(&next).await?;
                    next
                }
                Phase::Manifests { repo, after } => {
                    let rows = self
                        .query(
                            &repo_pk(&repo),
                            SortCond::Between("MANIFEST#", "MANIFEST$"),
                            after.clone().map(|a| format!("MANIFEST#{a}")),
                            left,
                            None,
                        )
                        .await?
                        .0;
                    let mut last = after;
                    for r in &rows {
                        self.backfill_manifest(&repo, r).await?;
                        last = get_s(r, "sk")
                            .and_then(|sk| sk.strip_prefix("MANIFEST#"))
                            .map(str::to_owned);
                    }
                    let full = rows.len() == left;
                    left -= rows.len();
                    let next = if full {
                        Phase::Manifests { repo, after: last }
                    } else {
                        Phase::Next { repo: Some(repo) }
                    };
                    self.save_checkpoint(&next).await?;
                    next
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip() {
        for p in [
            Phase::Next { repo: None },
            Phase::Next {
                repo: Some("a/b".into()),
            },
            Phase::Links {
                repo: "a/b".into(),
                after: Some("sha256:00".into()),
            },
            Phase::Manifests {
                repo: "a".into(),
                after: None,
            },
        ] {
            assert_eq!(Phase::decode(&p.encode()).expect("decode"), p);
        }
        assert!(Phase::decode("what").is_err());
    }
}

//! The optional metadata abilities on redb: the core's ledger ([`wharf_core::ledger`]) in one
//! more table, `ledger`, written in the same transaction as each content write.

use crate::{EmbeddedMetadata, LINKS, MANIFESTS, REPOS, TAGS, err};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use wharf_core::ledger::{self, Kv, Old};
use wharf_core::ports::*;
use wharf_core::{Digest, StoreError};

/// key → JSON value (see `wharf_core::ledger`'s keys).
pub(crate) const LEDGER: TableDefinition<&str, &[u8]> = TableDefinition::new("ledger");

/// The ledger table of a write transaction.
pub(crate) struct WriteKv<'t>(pub(crate) redb::Table<'t, &'static str, &'static [u8]>);

impl Kv for WriteKv<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.insert(key, value).map_err(err)?;
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.0.remove(key).map_err(err)?;
        Ok(())
    }
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        scan(&self.0, prefix, after, limit)
    }
}

/// The ledger table of a read transaction (reads only).
struct ReadKv(redb::ReadOnlyTable<&'static str, &'static [u8]>);

impl Kv for ReadKv {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }
    fn put(&mut self, _key: &str, _value: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Other("write in a read transaction".into()))
    }
    fn delete(&mut self, _key: &str) -> Result<(), StoreError> {
        Err(StoreError::Other("write in a read transaction".into()))
    }
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        scan(&self.0, prefix, after, limit)
    }
}

fn scan(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let start = match after {
        Some(a) if a >= prefix => a,
        _ => prefix,
    };
    let mut out = Vec::new();
    for e in t.range(start..).map_err(err)? {
        let (k, v) = e.map_err(err)?;
        let k = k.value();
        if Some(k) == after {
            continue;
        }
        if !k.starts_with(prefix) || out.len() >= limit {
            break;
        }
        out.push((k.to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// Opens the ledger in `tx`.
pub(crate) fn kv<'t>(tx: &'t redb::WriteTransaction) -> Result<WriteKv<'t>, StoreError> {
    Ok(WriteKv(tx.open_table(LEDGER).map_err(err)?))
}

/// At open: a store with no content and no ledger is new, so its backfill is done; one
/// with content and no ledger was written by a version before it (schema 1).
pub(crate) fn init(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut kv = kv(tx)?;
    if ledger::backfill_checkpoint(&mut kv)?.is_some() {
        return Ok(());
    }
    let empty = tx.open_table(REPOS).map_err(err)?.is_empty().map_err(err)?;
    if empty {
        ledger::set_backfill_checkpoint(&mut kv, "")?;
    }
    Ok(())
}

impl EmbeddedMetadata {
    fn with_ledger<T>(
        &self,
        f: impl FnOnce(&mut ReadKv) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.read()?;
        let mut kv = ReadKv(tx.open_table(LEDGER).map_err(err)?);
        f(&mut kv)
    }

    async fn ledger_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteKv<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(move |tx| f(&mut kv(tx)?)).await
    }
}

impl ManifestIndex for EmbeddedMetadata {
    async fn list_manifests(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError> {
        self.with_ledger(|kv| ledger::list_manifests(kv, repo, after, limit))
    }
    async fn list_tag_entries(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError> {
        self.with_ledger(|kv| ledger::list_tag_entries(kv, repo, after, limit))
    }
    async fn list_links(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError> {
        self.with_ledger(|kv| ledger::list_links(kv, repo, after, limit))
    }
    async fn repositories_with(
        &self,
        digest: &Digest,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.with_ledger(|kv| ledger::repositories_with(kv, digest, after, limit))
    }
}

impl PullTimes for EmbeddedMetadata {
    /// Reads first: a pull within the hour already recorded commits nothing (a commit is an
    /// fsync), and the audit record goes through the batching writer.
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        if self.with_ledger(|kv| ledger::pull_is_news(kv, repo, digest, at_ms))? {
            let (repo, digest) = (repo.to_owned(), digest.clone());
            self.ledger_write(move |kv| ledger::on_pull(kv, &repo, &digest, at_ms))
                .await?;
        }
        // Audit records go through the batching writer (no extra fsync on the pull path).
        if let Some((id, raw)) = event {
            wharf_core::ports::DocumentStore::append_event(self, id, raw).await?;
        }
        Ok(())
    }
}

impl LinkCollection for EmbeddedMetadata {
    /// A `HEAD`: reads first, and writes only a link whose time is stale.
    async fn touch_link(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        match self.with_ledger(|kv| ledger::link_touch_needed(kv, repo, digest, at_ms))? {
            None => Ok(false),
            Some(false) => Ok(true),
            Some(true) => {
                let (r, d) = (repo.to_owned(), digest.clone());
                self.ledger_write(move |kv| ledger::touch_link(kv, &r, &d, at_ms))
                    .await
            }
        }
    }
    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError> {
        self.with_ledger(|kv| ledger::unreferenced_links(kv, after, limit))
    }
    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.write(move |tx| {
            let mut kv = kv(tx)?;
            if !ledger::link_collectable(&mut kv, &repo, &digest, untouched_since_ms)? {
                return Ok(false);
            }
            let d = digest.to_string();
            let removed = tx
                .open_table(LINKS)
                .map_err(err)?
                .remove((repo.as_str(), d.as_str()))
                .map_err(err)?
                .is_some();
            if !removed {
                return Ok(false);
            }
            ledger::on_unlink(&mut kv, &repo, &digest, at_ms)?;
            Ok(true)
        })
        .await
    }
}

impl BlobRecords for EmbeddedMetadata {
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        self.with_ledger(|kv| ledger::blob_record(kv, digest))
    }
    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        self.with_ledger(|kv| ledger::unlinked_blobs(kv, after, limit))
    }
    async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError> {
        let d = digest.clone();
        self.ledger_write(move |kv| ledger::touch_blob(kv, &d, size, at_ms))
            .await
    }
    async fn mark_blob(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let d = digest.clone();
        self.ledger_write(move |kv| ledger::mark_blob(kv, &d, untouched_since_ms, at_ms))
            .await
    }
    async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError> {
        // A HEAD: read first, and write only to clear a mark.
        let state = self.with_ledger(|kv| ledger::blob_record(kv, digest))?;
        match state.map(|r| r.state) {
            None | Some(BlobState::Live) => Ok(Cleared::Live),
            Some(BlobState::Deleting { .. }) => Ok(Cleared::Gone),
            Some(BlobState::Marked { .. }) => {
                let d = digest.clone();
                self.ledger_write(move |kv| ledger::clear_blob_mark(kv, &d, at_ms))
                    .await
            }
        }
    }
    async fn begin_blob_delete(
        &self,
        digest: &Digest,
        marked_at_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let d = digest.clone();
        self.ledger_write(move |kv| ledger::begin_blob_delete(kv, &d, marked_at_ms, at_ms))
            .await
    }
    async fn begin_unused_blob_delete(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let d = digest.clone();
        self.ledger_write(move |kv| {
            ledger::begin_unused_blob_delete(kv, &d, untouched_since_ms, at_ms)
        })
        .await
    }
    async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let d = digest.clone();
        self.ledger_write(move |kv| ledger::forget_blob(kv, &d))
            .await
    }
}

impl Outbox for EmbeddedMetadata {
    async fn outbox_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with_ledger(|kv| ledger::outbox_after(kv, after, limit))
    }
    async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError> {
        let upto = upto.to_owned();
        self.ledger_write(move |kv| ledger::outbox_trim(kv, &upto, limit))
            .await
    }
}

impl UsageCounters for EmbeddedMetadata {
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError> {
        self.with_ledger(|kv| ledger::project_usage(kv, project))
    }
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError> {
        self.with_ledger(|kv| ledger::counts_blob(kv, project, digest))
    }
}

/// Where the backfill resumes: the table it is in and the last key done.
#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    /// 0 links, 1 manifests, 2 tags.
    phase: u8,
    /// The last (repo, key) done in that table.
    last: Option<(String, String)>,
}

impl Backfill for EmbeddedMetadata {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        self.with_ledger(ledger::schema_version)
    }

    /// One write transaction of at most `budget` rows (links first, then manifests, then
    /// tags), resuming from the checkpoint it saves in the same transaction.
    async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError> {
        let budget = budget.max(1);
        self.write(move |tx| {
            let mut kv = kv(tx)?;
            let mut cp = match ledger::backfill_checkpoint(&mut kv)? {
                Some(s) if s.is_empty() => return Ok(BackfillProgress::Done),
                Some(s) => serde_json::from_str(&s).map_err(err)?,
                None => Checkpoint {
                    phase: 0,
                    last: None,
                },
            };
            let mut done = 0usize;
            while cp.phase < 3 && done < budget {
                let from = cp.last.clone().unwrap_or_default();
                let from = (from.0.as_str(), from.1.as_str());
                let mut rows = Vec::new();
                match cp.phase {
                    0 => {
                        let t = tx.open_table(LINKS).map_err(err)?;
                        for e in t.range(from..).map_err(err)? {
                            let (k, v) = e.map_err(err)?;
                            let (r, d) = k.value();
                            if cp
                                .last
                                .as_ref()
                                .is_some_and(|l| (l.0.as_str(), l.1.as_str()) == (r, d))
                            {
                                continue;
                            }
                            rows.push((
                                r.to_owned(),
                                d.to_owned(),
                                v.value().to_le_bytes().to_vec(),
                            ));
                            if rows.len() + done >= budget {
                                break;
                            }
                        }
                    }
                    1 => {
                        let t = tx.open_table(MANIFESTS).map_err(err)?;
                        for e in t.range(from..).map_err(err)? {
                            let (k, v) = e.map_err(err)?;
                            let (r, d) = k.value();
                            if cp
                                .last
                                .as_ref()
                                .is_some_and(|l| (l.0.as_str(), l.1.as_str()) == (r, d))
                            {
                                continue;
                            }
                            rows.push((r.to_owned(), d.to_owned(), v.value().to_vec()));
                            if rows.len() + done >= budget {
                                break;
                            }
                        }
                    }
                    _ => {
                        let t = tx.open_table(TAGS).map_err(err)?;
                        for e in t.range(from..).map_err(err)? {
                            let (k, v) = e.map_err(err)?;
                            let (r, tag) = k.value();
                            if cp
                                .last
                                .as_ref()
                                .is_some_and(|l| (l.0.as_str(), l.1.as_str()) == (r, tag))
                            {
                                continue;
                            }
                            rows.push((
                                r.to_owned(),
                                tag.to_owned(),
                                v.value().as_bytes().to_vec(),
                            ));
                            if rows.len() + done >= budget {
                                break;
                            }
                        }
                    }
                }
                if rows.is_empty() {
                    cp = Checkpoint {
                        phase: cp.phase + 1,
                        last: None,
                    };
                    continue;
                }
                for (repo, key, value) in &rows {
                    let bad = || StoreError::Other(format!("corrupt row {repo} {key}"));
                    match cp.phase {
                        0 => {
                            let digest: Digest = key.parse().map_err(|_| bad())?;
                            let size =
                                u64::from_le_bytes(value.as_slice().try_into().map_err(|_| bad())?);
                            ledger::backfill(
                                &mut kv,
                                Old::Link {
                                    repo,
                                    digest: &digest,
                                    size,
                                },
                            )?;
                        }
                        1 => {
                            let m = StoredManifest::from_record(value)?;
                            ledger::backfill(
                                &mut kv,
                                Old::Manifest {
                                    repo,
                                    info: &m.info,
                                },
                            )?;
                        }
                        _ => {
                            let digest: Digest = std::str::from_utf8(value)
                                .map_err(|_| bad())?
                                .parse()
                                .map_err(|_| bad())?;
                            ledger::backfill(
                                &mut kv,
                                Old::Tag {
                                    repo,
                                    tag: key,
                                    digest: &digest,
                                },
                            )?;
                        }
                    }
                }
                done += rows.len();
                cp.last = rows.last().map(|(r, k, _)| (r.clone(), k.clone()));
            }
            if cp.phase >= 3 {
                ledger::set_backfill_checkpoint(&mut kv, "")?;
                return Ok(BackfillProgress::Done);
            }
            let s = serde_json::to_string(&cp).map_err(err)?;
            ledger::set_backfill_checkpoint(&mut kv, &s)?;
            Ok(BackfillProgress::Running { checkpoint: s })
        })
        .await
    }
}

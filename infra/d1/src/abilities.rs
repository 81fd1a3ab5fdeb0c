//! The optional metadata abilities on D1 (schema `0002_ledger.sql`, statements in
//! [`crate::ledger`]): each method one statement or one batch, like the port's own.

use crate::ledger::{self, Phase};
use crate::sql::{self, get_int, get_text, opt_text, other};
use crate::{D1Meta, Db};
use wharf_core::model::manifest::ManifestInfo;
use wharf_core::ports::*;
use wharf_core::{Digest, StoreError};

impl<S: Db> ManifestIndex for D1Meta<S> {
    /// The manifests the index has: every one once the backfill is done (until then, one
    /// from before the upgrade is listed once pushed again or reached).
    async fn list_manifests(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError> {
        let o = self
            .one(ledger::list_manifests(repo, after, limit)?)
            .await?;
        o.rows.iter().map(ledger::decode_manifest_entry).collect()
    }

    async fn list_tag_entries(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError> {
        let o = self
            .one(ledger::list_tag_entries(repo, after, limit)?)
            .await?;
        o.rows.iter().map(ledger::decode_tag_entry).collect()
    }

    /// Every link row, those from before the upgrade too (no link time; their `refs`
    /// right once the backfill has counted the manifests).
    async fn list_links(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError> {
        let o = self.one(ledger::list_links(repo, after, limit)?).await?;
        o.rows.iter().map(ledger::decode_link_entry).collect()
    }

    async fn repositories_with(
        &self,
        digest: &Digest,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let o = self
            .one(ledger::repositories_with(digest, after, limit)?)
            .await?;
        o.rows.iter().map(|r| get_text(r, "repo")).collect()
    }
}

impl<S: Db> PullTimes for D1Meta<S> {
    /// The pull time and the event in one batch (a manifest from before the upgrade gets
    /// its pull time too).
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        let mut stmts = vec![ledger::note_pull(repo, digest, at_ms)?];
        if let Some((id, raw)) = event {
            let value = sql::utf8("audit events", raw)?;
            stmts.extend(sql::insert_events(&[(id.to_owned(), value)]));
        }
        self.db.run(stmts).await?;
        Ok(())
    }
}

impl<S: Db> BlobRecords for D1Meta<S> {
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        match self.one(ledger::blob_record(digest)?).await?.rows.first() {
            Some(row) => ledger::decode_record(row).map(Some),
            None => Ok(None),
        }
    }

    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let o = self.one(ledger::unlinked_blobs(after, limit)?).await?;
        o.rows.iter().map(ledger::decode_record).collect()
    }

    async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError> {
        let list = ledger::digest_list(std::slice::from_ref(digest))?;
        let stmts = vec![
            ledger::guard_blobs(&list)?,
            ledger::touch_blob(digest, size, at_ms)?,
        ];
        self.db.run(stmts).await.map_err(ledger::refused)?;
        Ok(())
    }

    async fn mark_blob(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let stmt = ledger::mark_blob(digest, untouched_since_ms, at_ms)?;
        Ok(self.one(stmt).await?.changes > 0)
    }

    async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError> {
        let out = self.db.run(ledger::clear_blob_mark(digest, at_ms)?).await?;
        match sql::nth(&out, 1)?.rows.first() {
            Some(row) if get_text(row, "state")? == "deleting" => Ok(Cleared::Gone),
            _ => Ok(Cleared::Live),
        }
    }

    async fn begin_blob_delete(
        &self,
        digest: &Digest,
        marked_at_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let stmt = ledger::begin_blob_delete(digest, marked_at_ms, at_ms)?;
        Ok(self.one(stmt).await?.changes > 0)
    }

    async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.one(ledger::forget_blob(digest)?).await?.changes > 0)
    }
}

impl<S: Db> LinkCollection for D1Meta<S> {
    /// One batch: the conditional update of the link's time, and a read of the link.
    async fn touch_link(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .db
            .run(ledger::touch_link(repo, digest, at_ms)?)
            .await?;
        Ok(!sql::nth(&out, 1)?.rows.is_empty())
    }

    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let o = self.one(ledger::unreferenced_links(after, limit)?).await?;
        o.rows.iter().map(ledger::decode_unreferenced).collect()
    }

    /// `unlink_blob`'s batch with every statement also conditioned on the link being
    /// unreferenced and untouched since the cutoff: a manifest `PUT` or a touch committed
    /// first leaves the link, and one committed after fails or finds it gone.
    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let how = ledger::Removal::Collect {
            since: untouched_since_ms,
        };
        let out = self
            .db
            .run(ledger::remove_link(repo, digest, how, at_ms)?)
            .await?;
        Ok(out.last().is_some_and(|o| o.changes > 0))
    }
}

impl<S: Db> Outbox for D1Meta<S> {
    async fn outbox_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let o = self.one(ledger::outbox_after(after, limit)?).await?;
        o.rows.iter().map(ledger::decode_outbox_entry).collect()
    }

    async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError> {
        Ok(self.one(ledger::outbox_trim(upto, limit)?).await?.changes as usize)
    }
}

impl<S: Db> UsageCounters for D1Meta<S> {
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError> {
        match self
            .one(ledger::project_usage(project)?)
            .await?
            .rows
            .first()
        {
            Some(row) => Ok(Usage {
                bytes: get_int(row, "bytes")?,
                blobs: get_int(row, "blobs")?,
            }),
            None => Ok(Usage::default()),
        }
    }
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError> {
        Ok(!self
            .one(ledger::counts_blob(project, digest)?)
            .await?
            .rows
            .is_empty())
    }
}

impl<S: Db> ConditionalTags for D1Meta<S> {
    /// One batch: a guard per conditional tag first, so a tag not as expected fails it
    /// before anything is written.
    async fn put_manifest_expecting(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let stmts = ledger::put_manifest(repo, manifest, tags, at_ms)?;
        self.db.run(stmts).await.map_err(ledger::refused)?;
        Ok(())
    }

    async fn delete_tag_expecting(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let stmts = ledger::delete_tag(repo, tag, Some(digest), at_ms)?;
        let out = self.db.run(stmts).await.map_err(ledger::refused)?;
        Ok(out.last().is_some_and(|o| o.changes > 0))
    }
}

impl<S: Db> Backfill for D1Meta<S> {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        let o = self.one(ledger::backfill_state()).await?;
        for row in &o.rows {
            if get_text(row, "k")? == "schema" {
                return u32::try_from(get_int(row, "n")?).map_err(other);
            }
        }
        Ok(1)
    }

    /// Reads at most `budget` old rows (at least one) from the checkpoint and counts them in
    /// one batch that also moves the checkpoint: links, then manifests (an inline record's
    /// info is cut out by the query; one in parts costs a read of its parts). Two or three
    /// D1 calls a step, some five statements a row.
    ///
    /// A database done at an older version that D1's schema keeps everything of
    /// ([`ledger::DONE_SINCE`]) is only marked at today's.
    async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError> {
        let state = self.one(ledger::backfill_state()).await?;
        let mut checkpoint = None;
        for row in &state.rows {
            match get_text(row, "k")?.as_str() {
                "schema" if get_int(row, "n")? >= u64::from(SCHEMA_VERSION) => {
                    return Ok(BackfillProgress::Done);
                }
                "schema" if get_int(row, "n")? >= u64::from(ledger::DONE_SINCE) => {
                    self.db.run(ledger::finish_backfill()?).await?;
                    return Ok(BackfillProgress::Done);
                }
                "backfill" => checkpoint = opt_text(row, "v")?,
                _ => {}
            }
        }
        let n = budget.max(1);
        let mut stmts = Vec::new();
        let next = match Phase::parse(checkpoint.as_deref())? {
            Phase::Links(key) => {
                let rows = self.one(ledger::old_links(&key, n)?).await?.rows;
                for row in &rows {
                    let digest = parse_digest(&get_text(row, "digest")?)?;
                    let repo = get_text(row, "repo")?;
                    stmts.extend(ledger::count_link(&repo, &digest, get_int(row, "size")?)?);
                }
                Some(match rows.last() {
                    Some(last) if rows.len() >= n => {
                        Phase::Links(Some((get_text(last, "repo")?, get_text(last, "digest")?)))
                    }
                    _ => Phase::Manifests(None),
                })
            }
            Phase::Manifests(key) => {
                let rows = self.one(ledger::old_manifests(&key, n)?).await?.rows;
                for row in &rows {
                    let repo = get_text(row, "repo")?;
                    if let Some(info) = self.old_info(&repo, row).await? {
                        stmts.extend(ledger::count_manifest(&repo, &info)?);
                    }
                }
                match rows.last() {
                    Some(last) if rows.len() >= n => Some(Phase::Manifests(Some((
                        get_text(last, "repo")?,
                        get_text(last, "digest")?,
                    )))),
                    _ => None,
                }
            }
        };
        match next {
            Some(phase) => {
                stmts.push(ledger::set_checkpoint(&phase)?);
                self.db.run(stmts).await?;
                Ok(BackfillProgress::Running {
                    checkpoint: phase.checkpoint(),
                })
            }
            None => {
                stmts.extend(ledger::finish_backfill()?);
                self.db.run(stmts).await?;
                Ok(BackfillProgress::Done)
            }
        }
    }
}

impl<S: Db> D1Meta<S> {
    /// The info of an old manifest row of [`ledger::old_manifests`]; `None` if its parts
    /// went (deleted since the row was read).
    async fn old_info(
        &self,
        repo: &str,
        row: &crate::Row,
    ) -> Result<Option<ManifestInfo>, StoreError> {
        let parts = get_int(row, "parts")?;
        if parts == 0 {
            let info = get_text(row, "info")?;
            return serde_json::from_str(&info).map(Some).map_err(other);
        }
        let digest = get_text(row, "digest")?;
        let o = self.one(sql::manifest_parts(repo, &digest)).await?;
        Ok(sql::decode_parts(&o, parts)?.map(|m| m.info))
    }
}

fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|_| other(format!("D1 holds an invalid digest {s:?}")))
}

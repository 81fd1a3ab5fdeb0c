//! The memory metadata store's optional abilities, over [`crate::ledger`]: the reference the
//! conformance suite of each ability is written against.

use super::memory::{MemoryMetadata, lock};
use crate::error::StoreError;
use crate::ledger;
use crate::model::Digest;
use crate::ports::*;

impl ManifestIndex for MemoryMetadata {
    async fn list_manifests(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError> {
        ledger::list_manifests(&mut lock(&self.0).ledger, repo, after, limit)
    }
    async fn list_tag_entries(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError> {
        ledger::list_tag_entries(&mut lock(&self.0).ledger, repo, after, limit)
    }
    async fn list_links(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError> {
        ledger::list_links(&mut lock(&self.0).ledger, repo, after, limit)
    }
    async fn repositories_with(
        &self,
        digest: &Digest,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        ledger::repositories_with(&mut lock(&self.0).ledger, digest, after, limit)
    }
}

impl PullTimes for MemoryMetadata {
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        ledger::on_pull(&mut lock(&self.0).ledger, repo, digest, at_ms)?;
        if let Some((id, raw)) = event {
            self.append_event(id, raw).await?;
        }
        Ok(())
    }
}

impl BlobRecords for MemoryMetadata {
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        ledger::blob_record(&mut lock(&self.0).ledger, digest)
    }
    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        ledger::unlinked_blobs(&mut lock(&self.0).ledger, after, limit)
    }
    async fn touch_blob(&self, digest: &Digest, size: u64, at_ms: u64) -> Result<(), StoreError> {
        ledger::touch_blob(&mut lock(&self.0).ledger, digest, size, at_ms)
    }
    async fn mark_blob(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        ledger::mark_blob(&mut lock(&self.0).ledger, digest, untouched_since_ms, at_ms)
    }
    async fn clear_blob_mark(&self, digest: &Digest, at_ms: u64) -> Result<Cleared, StoreError> {
        ledger::clear_blob_mark(&mut lock(&self.0).ledger, digest, at_ms)
    }
    async fn begin_blob_delete(
        &self,
        digest: &Digest,
        marked_at_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        ledger::begin_blob_delete(&mut lock(&self.0).ledger, digest, marked_at_ms, at_ms)
    }
    async fn begin_unused_blob_delete(
        &self,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        ledger::begin_unused_blob_delete(
            &mut lock(&self.0).ledger,
            digest,
            untouched_since_ms,
            at_ms,
        )
    }
    async fn forget_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        ledger::forget_blob(&mut lock(&self.0).ledger, digest)
    }
}

impl LinkCollection for MemoryMetadata {
    async fn touch_link(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        ledger::touch_link(&mut lock(&self.0).ledger, repo, digest, at_ms)
    }
    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError> {
        ledger::unreferenced_links(&mut lock(&self.0).ledger, after, limit)
    }
    async fn collect_link(
        &self,
        repo: &str,
        digest: &Digest,
        untouched_since_ms: u64,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        if !ledger::link_collectable(&mut s.ledger, repo, digest, untouched_since_ms)? {
            return Ok(false);
        }
        if s.links.remove(&(repo.to_owned(), digest.clone())).is_none() {
            return Ok(false);
        }
        ledger::on_unlink(&mut s.ledger, repo, digest, at_ms)?;
        Ok(true)
    }
}

impl Outbox for MemoryMetadata {
    async fn outbox_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        ledger::outbox_after(&mut lock(&self.0).ledger, after, limit)
    }
    async fn outbox_trim(&self, upto: &str, limit: usize) -> Result<usize, StoreError> {
        ledger::outbox_trim(&mut lock(&self.0).ledger, upto, limit)
    }
}

impl UsageCounters for MemoryMetadata {
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError> {
        ledger::project_usage(&mut lock(&self.0).ledger, project)
    }
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError> {
        ledger::counts_blob(&mut lock(&self.0).ledger, project, digest)
    }
}

impl ConditionalTags for MemoryMetadata {
    async fn put_manifest_expecting(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        for (tag, expect) in tags {
            let now = s.tags.get(&(repo.to_owned(), (*tag).to_owned()));
            ledger::check_tag(tag, now, expect)?;
        }
        let names: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
        s.put_manifest(repo, manifest, &names, at_ms)
    }
    async fn delete_tag_expecting(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        let key = (repo.to_owned(), tag.to_owned());
        let Some(now) = s.tags.get(&key) else {
            return Ok(false);
        };
        ledger::check_tag(tag, Some(now), &TagExpect::At(digest.clone()))?;
        s.tags.remove(&key);
        ledger::on_tag_delete(&mut s.ledger, repo, tag, at_ms)?;
        Ok(true)
    }
}

impl Backfill for MemoryMetadata {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        ledger::schema_version(&mut lock(&self.0).ledger)
    }
    async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError> {
        let mut s = lock(&self.0);
        let s = &mut *s;
        if ledger::backfill_checkpoint(&mut s.ledger)?.as_deref() == Some("") {
            return Ok(BackfillProgress::Done);
        }
        // The memory store is small: one step does everything, links first.
        let _ = budget;
        for ((repo, digest), size) in s.links.iter() {
            ledger::backfill(
                &mut s.ledger,
                ledger::Old::Link {
                    repo,
                    digest,
                    size: *size,
                },
            )?;
        }
        for ((repo, _), m) in s.manifests.iter() {
            ledger::backfill(
                &mut s.ledger,
                ledger::Old::Manifest {
                    repo,
                    info: &m.info,
                },
            )?;
        }
        for ((repo, tag), digest) in s.tags.iter() {
            ledger::backfill(&mut s.ledger, ledger::Old::Tag { repo, tag, digest })?;
        }
        ledger::set_backfill_checkpoint(&mut s.ledger, "")?;
        Ok(BackfillProgress::Done)
    }
}

impl MemoryMetadata {
    /// Makes this store look like one written before the ledger (its content kept, its
    /// records dropped, schema version 1), for backfill tests.
    pub fn forget_ledger(&self) {
        lock(&self.0).ledger.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{all_capabilities_conformance, link, metadata_conformance, test_manifest};
    use futures_executor::block_on;

    #[test]
    fn the_memory_store_passes_every_ability_suite() {
        let m = MemoryMetadata::default();
        block_on(metadata_conformance(&m));
        block_on(all_capabilities_conformance(&m));
    }

    #[test]
    fn the_backfill_rebuilds_what_live_writes_kept() {
        let m = MemoryMetadata::default();
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        block_on(async {
            link(&m, "p/one", &a, 3, 1).await.expect("link");
            link(&m, "p/two", &a, 3, 2).await.expect("link");
            link(&m, "p/one", &b, 4, 3).await.expect("link");
            let img = test_manifest(&[a.clone(), b.clone()], None, None);
            m.put_manifest("p/one", &img, &["v1"], 4)
                .await
                .expect("put");
            let live = (
                m.blob_record(&a).await.expect("a"),
                m.project_usage("p").await.expect("usage"),
                m.repositories_with(&a, None, 10).await.expect("with"),
                m.list_links("p/one", None, 10).await.expect("links"),
            );
            assert_eq!(m.schema_version().await.expect("version"), SCHEMA_VERSION);
            m.forget_ledger();
            assert_eq!(
                m.schema_version().await.expect("version"),
                1,
                "an old store"
            );
            assert_eq!(m.blob_record(&a).await.expect("a"), None);
            // Live traffic before the backfill reaches it: counted once, not twice.
            link(&m, "p/two", &a, 3, 5).await.expect("relink");
            assert_eq!(
                m.backfill_step(10).await.expect("backfill"),
                BackfillProgress::Done
            );
            assert_eq!(
                m.backfill_step(10).await.expect("again"),
                BackfillProgress::Done
            );
            assert_eq!(m.schema_version().await.expect("version"), SCHEMA_VERSION);
            let a_now = m.blob_record(&a).await.expect("a").expect("record");
            let a_live = live.0.expect("record");
            assert_eq!(
                (a_now.links, a_now.refs, a_now.size),
                (a_live.links, a_live.refs, a_live.size)
            );
            assert_eq!(m.project_usage("p").await.expect("usage"), live.1);
            assert_eq!(
                m.repositories_with(&a, None, 10).await.expect("with"),
                live.2
            );
            let links = m.list_links("p/one", None, 10).await.expect("links");
            let refs = |v: &[LinkEntry]| {
                v.iter()
                    .map(|l| (l.digest.clone(), l.refs))
                    .collect::<Vec<_>>()
            };
            assert_eq!(refs(&links), refs(&live.3));
            let ms = m
                .list_manifests("p/one", None, 10)
                .await
                .expect("manifests");
            assert_eq!(
                (ms.len(), ms[0].pushed_ms),
                (1, None),
                "no push time is invented"
            );
        });
    }
}

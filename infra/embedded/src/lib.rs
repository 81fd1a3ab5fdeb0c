//! Registry metadata in redb, an embedded ACID key-value store: one file, MVCC readers
//! that never block the writer, and fsync'd commits (`Durability::Immediate`), so a crash
//! loses nothing a client was told is committed.
//!
//! Reads run inline (microseconds, no I/O wait on a warm page cache); writes, which wait
//! for fsync, run on tokio's blocking pool.
#![deny(missing_docs)]

mod ledger;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::{
    ConditionalTags, DocumentStore, MetadataStore, Page, StoredManifest, TagExpect, UploadRecord,
};
use wharf_core::{Digest, Reference, StoreError};

/// Repositories ever written to.
pub(crate) const REPOS: TableDefinition<&str, ()> = TableDefinition::new("repos");
/// (repo, digest) → blob size: the blob is linked into the repository.
pub(crate) const LINKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("links");
/// (repo, digest) → manifest record (see [`StoredManifest::to_record`]).
pub(crate) const MANIFESTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("manifests");
/// (repo, tag) → manifest digest.
pub(crate) const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
/// (repo, subject, referrer digest) → referrer descriptor (JSON).
const REFERRERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("referrers");
/// upload id → upload record (JSON).
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// (kind, id) → JSON document (users, robots, projects, members, audit, throttles).
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");

/// The redb metadata store.
#[derive(Clone)]
pub struct EmbeddedMetadata {
    db: Arc<Database>,
    audit: Arc<std::sync::mpsc::SyncSender<AuditMsg>>,
}

/// What the audit writer thread receives.
enum AuditMsg {
    /// An event: id and JSON.
    Event(String, Vec<u8>),
    /// Answer once everything queued before has been written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Audit events waiting for the writer thread, at most.
const AUDIT_QUEUE: usize = 16_384;
/// Audit events written in one transaction, at most.
const AUDIT_BATCH: usize = 2_048;

/// Writes queued audit events in batches, one durable transaction each, until the store is
/// dropped. A pull costs a channel send, not a write transaction; a crash loses at most the
/// batch being collected (milliseconds); a clean shutdown calls `flush_events` first.
fn audit_writer(db: std::sync::Weak<Database>, rx: std::sync::mpsc::Receiver<AuditMsg>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                AuditMsg::Event(id, v) => batch.push((id, v)),
                AuditMsg::Flush(w) => waiters.push(w),
            }
            if batch.len() < AUDIT_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let write = || -> Result<(), StoreError> {
            // The store owns the database; once it is dropped there is nothing to write to.
            let db = db
                .upgrade()
                .ok_or_else(|| StoreError::Other("database closed".into()))?;
            let tx = db.begin_write().map_err(err)?;
            {
                let mut t = tx.open_table(DOCS).map_err(err)?;
                for (id, v) in &batch {
                    t.insert(("audit", id.as_str()), v.as_slice())
                        .map_err(err)?;
                }
            }
            tx.commit().map_err(err)
        };
        if !batch.is_empty()
            && let Err(e) = write()
        {
            tracing::warn!(error = %e, events = batch.len(), "could not write audit events");
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

impl EmbeddedMetadata {
    /// Opens (creating) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(REPOS).map_err(err)?;
            tx.open_table(LINKS).map_err(err)?;
            tx.open_table(MANIFESTS).map_err(err)?;
            tx.open_table(TAGS).map_err(err)?;
            tx.open_table(REFERRERS).map_err(err)?;
            tx.open_table(UPLOADS).map_err(err)?;
            tx.open_table(DOCS).map_err(err)?;
            ledger::init(&tx)?;
        }
        tx.commit().map_err(err)?;
        let db = Arc::new(db);
        let (tx, rx) = std::sync::mpsc::sync_channel(AUDIT_QUEUE);
        let writer_db = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("wharf-audit".into())
            .spawn(move || audit_writer(writer_db, rx))
            .map_err(err)?;
        Ok(Self {
            db,
            audit: Arc::new(tx),
        })
    }

    /// Runs a write transaction on the blocking pool and commits it durably.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(err)?;
            let out = f(&tx)?;
            tx.commit().map_err(err)?;
            Ok(out)
        })
        .await
        .map_err(err)?
    }

    /// Of `digests`, those with no `(repo, digest)` key in `table`.
    fn missing<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<(&str, &str), V>,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        let t = self.read()?.open_table(table).map_err(err)?;
        let mut out = Vec::new();
        for d in digests {
            if t.get((repo, d.to_string().as_str()))
                .map_err(err)?
                .is_none()
            {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().map_err(err)
    }
}

fn touch_repo(tx: &redb::WriteTransaction, repo: &str) -> Result<(), StoreError> {
    tx.open_table(REPOS)
        .map_err(err)?
        .insert(repo, ())
        .map_err(err)?;
    Ok(())
}

/// The condition of the writes to an upload: it exists (else `NotFound`) at `expected`
/// (else `Precondition`), read in the writing transaction.
fn upload_at(t: &redb::Table<&str, &[u8]>, id: &str, expected: u64) -> Result<(), StoreError> {
    let current: UploadRecord = match t.get(id).map_err(err)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(err)?,
        None => return Err(StoreError::NotFound),
    };
    if current.offset != expected {
        return Err(StoreError::Precondition(format!(
            "upload {id} is at {}, not {expected}",
            current.offset
        )));
    }
    Ok(())
}

/// Deletes a tag (only if it points at `expect`, when given) with its ledger records.
fn delete_tag_tx(
    tx: &redb::WriteTransaction,
    repo: &str,
    tag: &str,
    expect: Option<&Digest>,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let mut t = tx.open_table(TAGS).map_err(err)?;
    let now: Option<Digest> = match t.get((repo, tag)).map_err(err)? {
        Some(v) => Some(v.value().parse().map_err(err)?),
        None => return Ok(false),
    };
    if let Some(d) = expect {
        wharf_core::ledger::check_tag(tag, now.as_ref(), &TagExpect::At(d.clone()))?;
    }
    t.remove((repo, tag)).map_err(err)?;
    wharf_core::ledger::on_tag_delete(&mut ledger::kv(tx)?, repo, tag, at_ms)?;
    Ok(true)
}

impl ConditionalTags for EmbeddedMetadata {
    async fn put_manifest_expecting(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[(&str, TagExpect)],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let names: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
        let put = ManifestPut::new(repo, manifest, &names)?;
        let expect: Vec<(String, TagExpect)> = tags
            .iter()
            .map(|(t, e)| ((*t).to_owned(), e.clone()))
            .collect();
        self.write(move |tx| {
            {
                let t = tx.open_table(TAGS).map_err(err)?;
                for (tag, e) in &expect {
                    let now: Option<Digest> =
                        match t.get((put.repo.as_str(), tag.as_str())).map_err(err)? {
                            Some(v) => Some(v.value().parse().map_err(err)?),
                            None => None,
                        };
                    wharf_core::ledger::check_tag(tag, now.as_ref(), e)?;
                }
            }
            put.run(tx, at_ms)
        })
        .await
    }

    async fn delete_tag_expecting(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let (repo, tag, digest) = (repo.to_owned(), tag.to_owned(), digest.clone());
        self.write(move |tx| delete_tag_tx(tx, &repo, &tag, Some(&digest), at_ms))
            .await
    }
}

/// A manifest `PUT`, prepared outside the write transaction.
struct ManifestPut {
    repo: String,
    info: wharf_core::model::manifest::ManifestInfo,
    record: Vec<u8>,
    referrer: Option<(String, Vec<u8>)>,
    tags: Vec<String>,
}

impl ManifestPut {
    fn new(repo: &str, m: &StoredManifest, tags: &[&str]) -> Result<Self, StoreError> {
        let referrer = match &m.info.subject {
            Some(s) => Some((
                s.to_string(),
                serde_json::to_vec(&m.info.referrer_descriptor()).map_err(err)?,
            )),
            None => None,
        };
        Ok(Self {
            repo: repo.to_owned(),
            info: m.info.clone(),
            record: m.to_record()?,
            referrer,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        })
    }

    /// The manifest, its tags, its referrer entry and its ledger records, in `tx`.
    fn run(&self, tx: &redb::WriteTransaction, at_ms: u64) -> Result<(), StoreError> {
        let (repo, d) = (self.repo.as_str(), self.info.digest.to_string());
        let mut kv = ledger::kv(tx)?;
        wharf_core::ledger::check_referenceable(&mut kv, &self.info)?;
        // In the same write: what the manifest references is still in the repository (a
        // link garbage collection removed after the core's check fails the push here).
        {
            let links = tx.open_table(LINKS).map_err(err)?;
            for b in &self.info.blobs {
                if links
                    .get((repo, b.to_string().as_str()))
                    .map_err(err)?
                    .is_none()
                {
                    return Err(StoreError::Precondition(format!(
                        "blob {b} is not in repository {repo}"
                    )));
                }
            }
            let manifests = tx.open_table(MANIFESTS).map_err(err)?;
            for c in &self.info.children {
                if manifests
                    .get((repo, c.to_string().as_str()))
                    .map_err(err)?
                    .is_none()
                {
                    return Err(StoreError::Precondition(format!(
                        "manifest {c} is not in repository {repo}"
                    )));
                }
            }
        }
        touch_repo(tx, repo)?;
        tx.open_table(MANIFESTS)
            .map_err(err)?
            .insert((repo, d.as_str()), self.record.as_slice())
            .map_err(err)?;
        let mut tag_table = tx.open_table(TAGS).map_err(err)?;
        for t in &self.tags {
            tag_table
                .insert((repo, t.as_str()), d.as_str())
                .map_err(err)?;
        }
        drop(tag_table);
        if let Some((subject, desc)) = &self.referrer {
            tx.open_table(REFERRERS)
                .map_err(err)?
                .insert((repo, subject.as_str(), d.as_str()), desc.as_slice())
                .map_err(err)?;
        }
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        wharf_core::ledger::on_manifest_put(&mut kv, repo, &self.info, &tags, at_ms)
    }
}

impl MetadataStore for EmbeddedMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError> {
        let t = self.read()?.open_table(REPOS).map_err(err)?;
        Ok(t.get(repo).map_err(err)?.is_some())
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let t = self.read()?.open_table(LINKS).map_err(err)?;
        let d = digest.to_string();
        Ok(t.get((repo, d.as_str())).map_err(err)?.map(|v| v.value()))
    }

    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.write(move |tx| {
            let mut kv = ledger::kv(tx)?;
            wharf_core::ledger::check_linkable(&mut kv, &digest)?;
            touch_repo(tx, &repo)?;
            tx.open_table(LINKS)
                .map_err(err)?
                .insert((repo.as_str(), digest.to_string().as_str()), size)
                .map_err(err)?;
            wharf_core::ledger::on_link(&mut kv, &repo, &digest, size, at_ms)
        })
        .await
    }

    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.write(move |tx| {
            wharf_core::ledger::check_unlinkable(&mut ledger::kv(tx)?, &repo, &digest)?;
            let mut t = tx.open_table(LINKS).map_err(err)?;
            let d = digest.to_string();
            if t.remove((repo.as_str(), d.as_str()))
                .map_err(err)?
                .is_none()
            {
                return Ok(false);
            }
            wharf_core::ledger::on_unlink(&mut ledger::kv(tx)?, &repo, &digest, at_ms)?;
            Ok(true)
        })
        .await
    }

    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(LINKS, repo, digests)
    }

    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(MANIFESTS, repo, digests)
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let tx = self.read()?;
        let digest = match reference {
            Reference::Digest(d) => d.to_string(),
            Reference::Tag(t) => {
                let tags = tx.open_table(TAGS).map_err(err)?;
                match tags.get((repo, t.as_str())).map_err(err)? {
                    Some(d) => d.value().to_owned(),
                    None => return Ok(None),
                }
            }
        };
        let t = tx.open_table(MANIFESTS).map_err(err)?;
        match t.get((repo, digest.as_str())).map_err(err)? {
            Some(v) => StoredManifest::from_record(v.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn put_manifest(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let put = ManifestPut::new(repo, m, tags)?;
        self.write(move |tx| put.run(tx, at_ms)).await
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let (repo, d, digest) = (repo.to_owned(), digest.to_string(), digest.clone());
        self.write(move |tx| {
            let removed = {
                let mut t = tx.open_table(MANIFESTS).map_err(err)?;
                let v = t.remove((repo.as_str(), d.as_str())).map_err(err)?;
                match v {
                    Some(v) => Some(StoredManifest::from_record(v.value())?),
                    None => None,
                }
            };
            let Some(m) = removed else { return Ok(false) };
            let mut tags = tx.open_table(TAGS).map_err(err)?;
            let stale: Vec<String> = tags
                .range((repo.as_str(), "")..)
                .map_err(err)?
                .map_while(|e| e.ok())
                .take_while(|(k, _)| k.value().0 == repo)
                .filter(|(_, v)| v.value() == d)
                .map(|(k, _)| k.value().1.to_owned())
                .collect();
            for t in &stale {
                tags.remove((repo.as_str(), t.as_str())).map_err(err)?;
            }
            if let Some(s) = &m.info.subject {
                tx.open_table(REFERRERS)
                    .map_err(err)?
                    .remove((repo.as_str(), s.to_string().as_str(), d.as_str()))
                    .map_err(err)?;
            }
            wharf_core::ledger::on_manifest_delete(
                &mut ledger::kv(tx)?,
                &repo,
                &digest,
                &stale,
                at_ms,
            )?;
            Ok(true)
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.write(move |tx| delete_tag_tx(tx, &repo, &tag, None, at_ms))
            .await
    }

    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError> {
        let tx = self.read()?;
        if tx
            .open_table(REPOS)
            .map_err(err)?
            .get(repo)
            .map_err(err)?
            .is_none()
        {
            return Ok(None);
        }
        let t = tx.open_table(TAGS).map_err(err)?;
        let mut items = Vec::new();
        for e in t.range((repo, last.unwrap_or(""))..).map_err(err)? {
            let (k, _) = e.map_err(err)?;
            let (r, tag) = k.value();
            if r != repo {
                break;
            }
            if last.is_some_and(|l| tag <= l) {
                continue;
            }
            items.push(tag.to_owned());
            if items.len() > n {
                break;
            }
        }
        let more = items.len() > n;
        items.truncate(n);
        Ok(Some(Page { items, more }))
    }

    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let t = self.read()?.open_table(REPOS).map_err(err)?;
        let mut items = Vec::new();
        for e in t.range(last.unwrap_or("")..).map_err(err)? {
            let (k, _) = e.map_err(err)?;
            if last.is_some_and(|l| k.value() <= l) {
                continue;
            }
            items.push(k.value().to_owned());
            if items.len() > n {
                break;
            }
        }
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        let t = self.read()?.open_table(REFERRERS).map_err(err)?;
        let s = subject.to_string();
        let mut out = Vec::new();
        for e in t.range((repo, s.as_str(), "")..).map_err(err)? {
            let (k, v) = e.map_err(err)?;
            let (r, subj, _) = k.value();
            if r != repo || subj != s {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(err)?);
        }
        Ok(out)
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let rec = serde_json::to_vec(upload).map_err(err)?;
        let id = upload.id.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(UPLOADS).map_err(err)?;
            if t.get(id.as_str()).map_err(err)?.is_some() {
                return Err(StoreError::Precondition(format!("upload {id} exists")));
            }
            t.insert(id.as_str(), rec.as_slice()).map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let t = self.read()?.open_table(UPLOADS).map_err(err)?;
        match t.get(id).map_err(err)? {
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(err),
            None => Ok(None),
        }
    }

    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError> {
        let rec = serde_json::to_vec(upload).map_err(err)?;
        let id = upload.id.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(UPLOADS).map_err(err)?;
            upload_at(&t, &id, expected_offset)?;
            t.insert(id.as_str(), rec.as_slice()).map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            tx.open_table(UPLOADS)
                .map_err(err)?
                .remove(id.as_str())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let mut t = tx.open_table(UPLOADS).map_err(err)?;
            upload_at(&t, &id, expected_offset)?;
            t.remove(id.as_str()).map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        let t = self.read()?.open_table(UPLOADS).map_err(err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(err)? {
            let (_, v) = e.map_err(err)?;
            let u: UploadRecord = serde_json::from_slice(v.value()).map_err(err)?;
            if u.updated_ms < before_ms {
                out.push(u);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl DocumentStore for EmbeddedMetadata {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.read()?.open_table(DOCS).map_err(err)?;
        Ok(t.get((kind, id)).map_err(err)?.map(|v| v.value().to_vec()))
    }

    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let (kind, id, value) = (kind.to_owned(), id.to_owned(), value.to_vec());
        self.write(move |tx| {
            let mut t = tx.open_table(DOCS).map_err(err)?;
            if if_absent && t.get((kind.as_str(), id.as_str())).map_err(err)?.is_some() {
                return Err(StoreError::Precondition(format!("{kind}/{id} exists")));
            }
            t.insert((kind.as_str(), id.as_str()), value.as_slice())
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.write(move |tx| {
            let mut t = tx.open_table(DOCS).map_err(err)?;
            Ok(t.remove((kind.as_str(), id.as_str()))
                .map_err(err)?
                .is_some())
        })
        .await
    }

    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.read()?.open_table(DOCS).map_err(err)?;
        let start = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for e in t.range((kind, start)..).map_err(err)? {
            let (k, v) = e.map_err(err)?;
            let (k_kind, k_id) = k.value();
            if k_kind != kind || !k_id.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| k_id <= a) {
                continue;
            }
            out.push((k_id.to_owned(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Queues the event for the batching writer thread; if the queue is full, writes it
    /// directly (back-pressure instead of loss).
    async fn append_event(&self, id: &str, value: &[u8]) -> Result<(), StoreError> {
        match self
            .audit
            .try_send(AuditMsg::Event(id.to_owned(), value.to_vec()))
        {
            Ok(()) => Ok(()),
            Err(_) => self.put_doc("audit", id, value, false).await,
        }
    }

    async fn flush_events(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let queue = self.audit.clone();
        tokio::task::spawn_blocking(move || {
            queue.send(AuditMsg::Flush(tx)).map_err(err)?;
            rx.recv().map_err(err)
        })
        .await
        .map_err(err)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = EmbeddedMetadata::open(&dir.path().join("meta.redb")).expect("open");
        wharf_core::testing::metadata_conformance(&m).await;
        wharf_core::testing::document_conformance(&m).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_ability_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = EmbeddedMetadata::open(&dir.path().join("meta.redb")).expect("open");
        use wharf_core::ports::Backfill;
        assert_eq!(
            m.schema_version().await.expect("version"),
            wharf_core::ports::SCHEMA_VERSION,
            "a new store"
        );
        wharf_core::testing::metadata_conformance(&m).await;
        wharf_core::testing::all_capabilities_conformance(&m).await;
    }

    /// The data directory written by 727e058 (`tests/fixtures/data-727e058`, made by the
    /// security suite's `make_fixture`): read as schema 1, backfilled in small resumable
    /// steps (reopened between two), and then its records are what live writes keep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_written_by_727e058_is_backfilled() {
        use wharf_core::ports::*;
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/data-727e058/data/meta.redb");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        std::fs::copy(&fixture, &path).expect("copy the fixture");
        let m = EmbeddedMetadata::open(&path).expect("open");
        assert_eq!(m.schema_version().await.expect("version"), 1);
        let v1 = Reference::parse("v1").expect("a tag");
        let img = m
            .manifest("team/app", &v1)
            .await
            .expect("get")
            .expect("the fixture's image");
        assert!(
            m.list_manifests("team/app", None, 10)
                .await
                .expect("list")
                .is_empty(),
            "not yet"
        );
        // Live traffic before the backfill: a pull and a re-link of one of its blobs.
        let layer = img.info.blobs[1].clone();
        let size = m
            .blob_link("team/app", &layer)
            .await
            .expect("link")
            .expect("linked");
        wharf_core::testing::link(&m, "team/app", &layer, size, 5)
            .await
            .expect("relink");
        let mut steps = 0;
        let mut m = m;
        loop {
            steps += 1;
            assert!(steps < 100, "the backfill ends");
            match m.backfill_step(1).await.expect("step") {
                BackfillProgress::Done => break,
                BackfillProgress::Running { .. } => {}
            }
            if steps == 2 {
                drop(m);
                m = EmbeddedMetadata::open(&path).expect("reopen mid-backfill");
            }
        }
        assert!(steps > 3, "small steps: {steps}");
        assert_eq!(m.schema_version().await.expect("version"), SCHEMA_VERSION);
        let ms = m.list_manifests("team/app", None, 10).await.expect("list");
        assert_eq!(ms.len(), 1);
        assert_eq!(
            (ms[0].digest.clone(), ms[0].pushed_ms),
            (img.info.digest.clone(), None)
        );
        let tags = m
            .list_tag_entries("team/app", None, 10)
            .await
            .expect("tags");
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].tag.as_str(), &tags[0].digest),
            ("v1", &img.info.digest)
        );
        let mut bytes = 0;
        for b in &img.info.blobs {
            let r = m.blob_record(b).await.expect("record").expect("backfilled");
            assert_eq!(
                (r.links, r.refs, r.state),
                (1, 1, BlobState::Live),
                "{b}: counted once"
            );
            bytes += r.size;
            assert_eq!(
                m.repositories_with(b, None, 10).await.expect("with"),
                ["team/app"]
            );
        }
        let links = m.list_links("team/app", None, 10).await.expect("links");
        assert!(links.iter().all(|l| l.refs == 1), "{links:?}");
        assert_eq!(
            m.list_links("team/app", None, 10)
                .await
                .expect("links")
                .len(),
            img.info.blobs.len()
        );
        assert_eq!(
            m.project_usage("team").await.expect("usage"),
            Usage {
                bytes,
                blobs: img.info.blobs.len() as u64
            }
        );
        assert_eq!(
            m.backfill_step(10).await.expect("again"),
            BackfillProgress::Done
        );
        // And the image is still there to pull.
        let again = m
            .manifest("team/app", &v1)
            .await
            .expect("get")
            .expect("image");
        assert_eq!(again.bytes, img.bytes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        let d = Digest::sha256_of(b"a");
        {
            let m = EmbeddedMetadata::open(&path).expect("open");
            wharf_core::testing::link(&m, "r", &d, 1, 0)
                .await
                .expect("link");
        }
        let m = EmbeddedMetadata::open(&path).expect("reopen");
        assert_eq!(m.blob_link("r", &d).await.expect("link"), Some(1));
    }
}

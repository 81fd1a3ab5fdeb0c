//! The memory adapters: an [`Env`] with a clock tests move, blobs, metadata and documents.

use crate::error::StoreError;
use crate::ledger;
use crate::model::Reference;
use crate::model::digest::Digest;
use crate::model::manifest::Descriptor;
use crate::ports::*;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A deterministic clock and random source.
#[derive(Default)]
pub struct TestEnv {
    /// Current time in ms; tests may move it.
    pub now: AtomicU64,
    counter: AtomicU64,
}

impl Env for TestEnv {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
    /// Deterministic, and spread over every bit (splitmix64 of a counter), so ids drawn
    /// from the high bits (incarnations) differ from one call to the next.
    fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self
                .counter
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Blobs in memory. Like the fs store, every request writes a chunk of its own (named
/// `<offset>-<n>`), and an upload's `store_state` lists the recorded chunks in order, so the
/// bytes of a request that failed, lost a race or is still sending are in nothing the record
/// lists. A blob's modified time is its commit's, read from the store's clock
/// ([`MemoryBlobs::with_clock`]; the default clock stands at 0).
#[derive(Default, Clone)]
pub struct MemoryBlobs(Arc<MemoryInner>);

/// The clock a [`MemoryBlobs`] stamps commits with (ms since the epoch).
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Default)]
struct MemoryInner {
    /// Committed blobs with their commit time, in digest order (the inventory's).
    blobs: Mutex<BTreeMap<Digest, (Bytes, u64)>>,
    clock: Option<Clock>,
    /// Per upload id, the chunks finished requests wrote, by name.
    uploads: Mutex<HashMap<String, HashMap<String, Bytes>>>,
    chunks: AtomicU64,
}

impl MemoryBlobs {
    /// A store whose commits take their modified time from `clock` (e.g. a test's
    /// [`TestEnv`], or an `AtomicU64` the test moves).
    pub fn with_clock(clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(MemoryInner {
            clock: Some(Arc::new(clock)),
            ..MemoryInner::default()
        }))
    }
}

impl MemoryInner {
    fn now_ms(&self) -> u64 {
        self.clock.as_ref().map_or(0, |c| c())
    }

    /// The recorded bytes of `upload`: its chunks in the order its state lists them, which
    /// must add up to its offset.
    fn staged(&self, upload: &UploadRecord) -> Result<Vec<u8>, StoreError> {
        let uploads = lock(&self.uploads);
        let mut data = Vec::new();
        for name in upload.store_state.split(',').filter(|n| !n.is_empty()) {
            let chunk = uploads
                .get(&upload.id)
                .and_then(|c| c.get(name))
                .ok_or(StoreError::NotFound)?;
            data.extend_from_slice(chunk);
        }
        if data.len() as u64 != upload.offset {
            return Err(StoreError::Other(format!(
                "upload {} has {} recorded bytes, the record says {}",
                upload.id,
                data.len(),
                upload.offset
            )));
        }
        Ok(data)
    }
}

/// Writer of [`MemoryBlobs`]: one request's chunk.
pub struct MemoryWriter {
    store: Arc<MemoryInner>,
    id: String,
    name: String,
    recorded: String,
    buf: Vec<u8>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobStore for MemoryBlobs {
    type Reader = futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, StoreError>>>;
    type Writer = MemoryWriter;

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.0.blobs).get(digest).map(|(b, _)| b.len() as u64))
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Self::Reader, StoreError> {
        let (b, _) = lock(&self.0.blobs)
            .get(digest)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let b = match range {
            Some(r) => b.slice(r.start as usize..=r.end as usize),
            None => b,
        };
        Ok(futures_util::stream::iter(vec![Ok(b)]))
    }
    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        lock(&self.0.blobs).remove(digest);
        Ok(())
    }
    async fn writer(&self, upload: &UploadRecord) -> Result<Self::Writer, StoreError> {
        let n = self.0.chunks.fetch_add(1, Ordering::Relaxed);
        Ok(MemoryWriter {
            store: self.0.clone(),
            id: upload.id.clone(),
            name: format!("{}-{n}", upload.offset),
            recorded: upload.store_state.clone(),
            buf: Vec::new(),
        })
    }
    /// An existing blob is never replaced (content-addressed: it holds these bytes).
    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        if !lock(&self.0.blobs).contains_key(digest) {
            let data = self.0.staged(upload)?;
            let now = self.0.now_ms();
            lock(&self.0.blobs)
                .entry(digest.clone())
                .or_insert_with(|| (Bytes::from(data), now));
        }
        lock(&self.0.uploads).remove(&upload.id);
        Ok(())
    }
    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        lock(&self.0.uploads).remove(&upload.id);
        Ok(())
    }
    async fn read_staged(
        &self,
        upload: &UploadRecord,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        sink(&self.0.staged(upload)?);
        Ok(())
    }
}

impl BlobInventory for MemoryBlobs {
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(lock(&self.0.blobs)
            .range::<Digest, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(d, (b, t))| BlobEntry {
                digest: d.clone(),
                size: b.len() as u64,
                modified_ms: *t,
            })
            .collect())
    }
}

impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }
    async fn finish(self) -> Result<String, StoreError> {
        lock(&self.store.uploads)
            .entry(self.id)
            .or_default()
            .insert(self.name.clone(), Bytes::from(self.buf));
        Ok(if self.recorded.is_empty() {
            self.name
        } else {
            format!("{},{}", self.recorded, self.name)
        })
    }
}

/// Metadata in memory: the reference semantics of [`MetadataStore`] (and documents).
/// Clones share their state, like two functions on one table.
#[derive(Default, Clone)]
pub struct MemoryMetadata(pub(super) Arc<Mutex<MemState>>, Arc<MemoryDocs>);

impl MemoryMetadata {
    /// Plants a flaw in the bookkeeping (see [`ledger::Flaw`]); a link gone from the
    /// ledger goes from the store's links too.
    pub fn plant(&self, flaw: &ledger::Flaw) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        if let ledger::Flaw::LinkGone { repo, digest } = flaw {
            s.links.remove(&(repo.clone(), digest.clone()));
        }
        ledger::plant(&mut s.ledger, flaw)
    }
}

impl DocumentStore for MemoryMetadata {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.1.get_doc(kind, id).await
    }
    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError> {
        self.1.put_doc(kind, id, value, if_absent).await
    }
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        self.1.delete_doc(kind, id).await
    }
    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.1.list_docs(kind, prefix, after, limit).await
    }
}

pub(super) struct MemState {
    pub(super) repos: BTreeSet<String>,
    pub(super) links: HashMap<(String, Digest), u64>,
    pub(super) manifests: HashMap<(String, Digest), StoredManifest>,
    pub(super) tags: BTreeMap<(String, String), Digest>,
    referrers: BTreeMap<(String, Digest), BTreeMap<Digest, Descriptor>>,
    uploads: HashMap<String, UploadRecord>,
    /// Blob records, the manifest index, the outbox, usage ([`crate::ledger`]).
    pub(super) ledger: BTreeMap<String, Vec<u8>>,
}

impl Default for MemState {
    fn default() -> Self {
        let mut ledger = BTreeMap::new();
        // A new store has no content from before the ledger: its backfill is done.
        let _ = ledger::set_backfill_checkpoint(&mut ledger, "");
        Self {
            repos: BTreeSet::new(),
            links: HashMap::new(),
            manifests: HashMap::new(),
            tags: BTreeMap::new(),
            referrers: BTreeMap::new(),
            uploads: HashMap::new(),
            ledger,
        }
    }
}

impl MemState {
    /// `put_manifest` under the lock (conditional tag writes share it).
    pub(super) fn put_manifest(
        &mut self,
        repo: &str,
        m: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        ledger::check_referenceable(&mut self.ledger, &m.info)?;
        let r = repo.to_owned();
        if let Some(d) = m
            .info
            .blobs
            .iter()
            .find(|d| !self.links.contains_key(&(r.clone(), (*d).clone())))
        {
            return Err(StoreError::Precondition(format!(
                "blob {d} is not in repository {repo}"
            )));
        }
        if let Some(d) = m
            .info
            .children
            .iter()
            .find(|d| !self.manifests.contains_key(&(r.clone(), (*d).clone())))
        {
            return Err(StoreError::Precondition(format!(
                "manifest {d} is not in repository {repo}"
            )));
        }
        ledger::on_manifest_put(&mut self.ledger, repo, &m.info, tags, at_ms)?;
        let r = repo.to_owned();
        self.repos.insert(r.clone());
        self.manifests
            .insert((r.clone(), m.info.digest.clone()), m.clone());
        for t in tags {
            self.tags
                .insert((r.clone(), (*t).to_owned()), m.info.digest.clone());
        }
        if let Some(subject) = &m.info.subject {
            self.referrers
                .entry((r, subject.clone()))
                .or_default()
                .insert(m.info.digest.clone(), m.info.referrer_descriptor());
        }
        Ok(())
    }
}

fn page(items: impl Iterator<Item = String>, n: usize) -> Page {
    let mut items: Vec<String> = items.take(n.saturating_add(1)).collect();
    let more = items.len() > n;
    items.truncate(n);
    Page { items, more }
}

impl MetadataStore for MemoryMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.0).repos.contains(repo))
    }
    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.0)
            .links
            .get(&(repo.to_owned(), digest.clone()))
            .copied())
    }
    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        ledger::check_linkable(&mut s.ledger, digest)?;
        s.repos.insert(repo.to_owned());
        s.links.insert((repo.to_owned(), digest.clone()), size);
        ledger::on_link(&mut s.ledger, repo, digest, size, at_ms)
    }
    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        ledger::check_unlinkable(&mut s.ledger, repo, digest)?;
        if s.links.remove(&(repo.to_owned(), digest.clone())).is_none() {
            return Ok(false);
        }
        ledger::on_unlink(&mut s.ledger, repo, digest, at_ms)?;
        Ok(true)
    }
    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        let s = lock(&self.0);
        Ok(digests
            .iter()
            .filter(|d| !s.links.contains_key(&(repo.to_owned(), (*d).clone())))
            .cloned()
            .collect())
    }
    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        let s = lock(&self.0);
        Ok(digests
            .iter()
            .filter(|d| !s.manifests.contains_key(&(repo.to_owned(), (*d).clone())))
            .cloned()
            .collect())
    }
    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let s = lock(&self.0);
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match s.tags.get(&(repo.to_owned(), t.to_string())) {
                Some(d) => d.clone(),
                None => return Ok(None),
            },
        };
        Ok(s.manifests.get(&(repo.to_owned(), digest)).cloned())
    }
    async fn put_manifest(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        lock(&self.0).put_manifest(repo, m, tags, at_ms)
    }
    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        let r = repo.to_owned();
        let Some(m) = s.manifests.remove(&(r.clone(), digest.clone())) else {
            return Ok(false);
        };
        let tags: Vec<String> = s
            .tags
            .iter()
            .filter(|((rr, _), d)| rr == &r && *d == digest)
            .map(|((_, t), _)| t.clone())
            .collect();
        s.tags.retain(|(rr, _), d| !(rr == &r && d == digest));
        ledger::on_manifest_delete(&mut s.ledger, repo, digest, &tags, at_ms)?;
        if let Some(subject) = &m.info.subject
            && let Some(list) = s.referrers.get_mut(&(r, subject.clone()))
        {
            list.remove(digest);
        }
        Ok(true)
    }
    async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        if s.tags.remove(&(repo.to_owned(), tag.to_owned())).is_none() {
            return Ok(false);
        }
        ledger::on_tag_delete(&mut s.ledger, repo, tag, at_ms)?;
        Ok(true)
    }
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError> {
        let s = lock(&self.0);
        if !s.repos.contains(repo) {
            return Ok(None);
        }
        let from = (repo.to_owned(), last.unwrap_or("").to_owned());
        let it = s
            .tags
            .range(from..)
            .take_while(|((r, _), _)| r == repo)
            .map(|((_, t), _)| t.clone())
            .filter(|t| last.is_none_or(|l| t.as_str() > l));
        Ok(Some(page(it, n)))
    }
    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let s = lock(&self.0);
        let it = s
            .repos
            .iter()
            .filter(|r| last.is_none_or(|l| r.as_str() > l))
            .cloned();
        Ok(page(it, n))
    }
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        Ok(lock(&self.0)
            .referrers
            .get(&(repo.to_owned(), subject.clone()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        if s.uploads.contains_key(&upload.id) {
            return Err(StoreError::Precondition("upload exists".into()));
        }
        s.uploads.insert(upload.id.clone(), upload.clone());
        Ok(())
    }
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        Ok(lock(&self.0).uploads.get(id).cloned())
    }
    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        match s.uploads.get_mut(&upload.id) {
            Some(u) if u.offset == expected_offset => {
                *u = upload.clone();
                Ok(())
            }
            Some(_) => Err(StoreError::Precondition("offset moved".into())),
            None => Err(StoreError::NotFound),
        }
    }
    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        lock(&self.0).uploads.remove(id);
        Ok(())
    }
    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        match s.uploads.get(id) {
            Some(u) if u.offset == expected_offset => {
                s.uploads.remove(id);
                Ok(())
            }
            Some(_) => Err(StoreError::Precondition("offset moved".into())),
            None => Err(StoreError::NotFound),
        }
    }
    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(lock(&self.0)
            .uploads
            .values()
            .filter(|u| u.updated_ms < before_ms)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Documents in memory.
#[derive(Default)]
pub struct MemoryDocs(Mutex<BTreeMap<(String, String), Vec<u8>>>);

impl DocumentStore for MemoryDocs {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.0)
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned())
    }
    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let mut m = lock(&self.0);
        let k = (kind.to_owned(), id.to_owned());
        if if_absent && m.contains_key(&k) {
            return Err(StoreError::Precondition(format!("{kind}/{id} exists")));
        }
        m.insert(k, value.to_vec());
        Ok(())
    }
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.0)
            .remove(&(kind.to_owned(), id.to_owned()))
            .is_some())
    }
    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let m = lock(&self.0);
        Ok(m.range((kind.to_owned(), prefix.to_owned())..)
            .take_while(|((k, id), _)| k == kind && id.starts_with(prefix))
            .filter(|((_, id), _)| after.is_none_or(|a| id.as_str() > a))
            .take(limit)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect())
    }
}

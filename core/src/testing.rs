//! In-memory adapters and the metadata conformance suite.
//!
//! The memory adapters exist for unit tests of the core; they are never a runtime.
//! [`metadata_conformance`] is the one suite every [`MetadataStore`] backend must pass
//! (embedded, DynamoDB, D1): each backend's tests call it.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::manifest::{self, Descriptor};
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
    fn fill_random(&self, buf: &mut [u8]) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed).to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = n[i % 8] ^ (i as u8);
        }
    }
}

/// Blobs in memory.
#[derive(Default, Clone)]
pub struct MemoryBlobs(Arc<MemoryInner>);

#[derive(Default)]
struct MemoryInner {
    blobs: Mutex<HashMap<Digest, Bytes>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
}

/// Writer of [`MemoryBlobs`].
pub struct MemoryWriter {
    store: Arc<MemoryInner>,
    id: String,
    offset: usize,
    buf: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobStore for MemoryBlobs {
    type Reader = futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, StoreError>>>;
    type Writer = MemoryWriter;

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.0.blobs).get(digest).map(|b| b.len() as u64))
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Self::Reader, StoreError> {
        let b = lock(&self.0.blobs)
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
        Ok(MemoryWriter {
            store: self.0.clone(),
            id: upload.id.clone(),
            offset: upload.offset as usize,
            buf: Vec::new(),
        })
    }
    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let mut data = lock(&self.0.uploads).remove(&upload.id).unwrap_or_default();
        data.truncate(upload.offset as usize);
        lock(&self.0.blobs).insert(digest.clone(), Bytes::from(data));
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
        let uploads = lock(&self.0.uploads);
        let data = uploads.get(&upload.id).map_or(&[][..], Vec::as_slice);
        let n = usize::try_from(upload.offset).unwrap_or(usize::MAX);
        sink(data.get(..n).ok_or(StoreError::NotFound)?);
        Ok(())
    }
}

impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }
    async fn finish(self) -> Result<String, StoreError> {
        let mut uploads = lock(&self.store.uploads);
        let data = uploads.entry(self.id).or_default();
        data.truncate(self.offset);
        data.extend_from_slice(&self.buf);
        Ok(String::new())
    }
}

/// Metadata in memory: the reference semantics of [`MetadataStore`] (and documents).
/// Clones share their state, like two functions on one table.
#[derive(Default, Clone)]
pub struct MemoryMetadata(Arc<Mutex<MemState>>, Arc<MemoryDocs>);

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

#[derive(Default)]
struct MemState {
    repos: BTreeSet<String>,
    links: HashMap<(String, Digest), u64>,
    manifests: HashMap<(String, Digest), StoredManifest>,
    tags: BTreeMap<(String, String), Digest>,
    referrers: BTreeMap<(String, Digest), BTreeMap<Digest, Descriptor>>,
    uploads: HashMap<String, UploadRecord>,
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
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        s.repos.insert(repo.to_owned());
        s.links.insert((repo.to_owned(), digest.clone()), size);
        Ok(())
    }
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError> {
        Ok(lock(&self.0)
            .links
            .remove(&(repo.to_owned(), digest.clone()))
            .is_some())
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
            Reference::Tag(t) => match s.tags.get(&(repo.to_owned(), t.clone())) {
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
    ) -> Result<(), StoreError> {
        let mut s = lock(&self.0);
        let r = repo.to_owned();
        s.repos.insert(r.clone());
        s.manifests
            .insert((r.clone(), m.info.digest.clone()), m.clone());
        for t in tags {
            s.tags
                .insert((r.clone(), (*t).to_owned()), m.info.digest.clone());
        }
        if let Some(subject) = &m.info.subject {
            s.referrers
                .entry((r, subject.clone()))
                .or_default()
                .insert(m.info.digest.clone(), m.info.referrer_descriptor());
        }
        Ok(())
    }
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError> {
        let mut s = lock(&self.0);
        let r = repo.to_owned();
        let Some(m) = s.manifests.remove(&(r.clone(), digest.clone())) else {
            return Ok(false);
        };
        s.tags.retain(|(rr, _), d| !(rr == &r && d == digest));
        if let Some(subject) = &m.info.subject
            && let Some(list) = s.referrers.get_mut(&(r, subject.clone()))
        {
            list.remove(digest);
        }
        Ok(true)
    }
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.0)
            .tags
            .remove(&(repo.to_owned(), tag.to_owned()))
            .is_some())
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

/// The conformance suite for a [`DocumentStore`].
pub async fn document_conformance<D: DocumentStore>(d: &D) {
    assert_eq!(d.get_doc("user", "alice").await.expect("get"), None);
    d.put_doc("user", "alice", b"1", true)
        .await
        .expect("create");
    let again = d.put_doc("user", "alice", b"2", true).await;
    assert!(
        matches!(again, Err(StoreError::Precondition(_))),
        "{again:?}"
    );
    d.put_doc("user", "alice", b"3", false)
        .await
        .expect("overwrite");
    assert_eq!(
        d.get_doc("user", "alice").await.expect("get"),
        Some(b"3".to_vec())
    );
    assert_eq!(
        d.get_doc("robot", "alice").await.expect("get"),
        None,
        "kinds are separate"
    );
    for id in ["p/a", "p/b", "p/c", "q/a", "pp/a"] {
        d.put_doc("member", id, id.as_bytes(), false)
            .await
            .expect("put");
    }
    let ids = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        ids(d.list_docs("member", "p/", None, 10).await.expect("list")),
        ["p/a", "p/b", "p/c"]
    );
    assert_eq!(
        ids(d
            .list_docs("member", "p/", Some("p/a"), 1)
            .await
            .expect("list")),
        ["p/b"]
    );
    assert_eq!(
        ids(d.list_docs("member", "", None, 10).await.expect("list")).len(),
        5
    );
    assert!(d.delete_doc("member", "p/b").await.expect("delete"));
    assert!(!d.delete_doc("member", "p/b").await.expect("delete"));
    d.append_event("0000000000001-a", b"{}")
        .await
        .expect("event");
    d.flush_events().await.expect("flush");
    assert_eq!(
        ids(d.list_docs("audit", "", None, 10).await.expect("list")),
        ["0000000000001-a"]
    );
}

/// A stored manifest for tests: an OCI image manifest over `blobs`, with an optional subject.
pub fn test_manifest(
    blobs: &[Digest],
    subject: Option<&Digest>,
    artifact_type: Option<&str>,
) -> StoredManifest {
    let desc = |d: &Digest| serde_json::json!({"mediaType": "application/octet-stream", "digest": d, "size": 1});
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": desc(&blobs[0]),
        "layers": blobs[1..].iter().map(desc).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        doc["subject"] = desc(s);
    }
    if let Some(a) = artifact_type {
        doc["artifactType"] = serde_json::json!(a);
    }
    let bytes = Bytes::from(doc.to_string());
    let digest = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, digest).expect("test manifest is valid");
    StoredManifest { info, bytes }
}

/// The conformance suite for a [`MetadataStore`]: every backend must pass it, starting empty.
pub async fn metadata_conformance<M: MetadataStore>(m: &M) {
    let d = |n: u8| Digest::sha256_of(&[n]);
    // Repositories and blob links.
    assert!(!m.repository_exists("c/one").await.expect("exists"));
    assert_eq!(m.blob_link("c/one", &d(1)).await.expect("link"), None);
    m.link_blob("c/one", &d(1), 11).await.expect("link");
    m.link_blob("c/one", &d(2), 22).await.expect("link");
    assert!(m.repository_exists("c/one").await.expect("exists"));
    assert_eq!(m.blob_link("c/one", &d(1)).await.expect("link"), Some(11));
    assert_eq!(
        m.blob_link("c/two", &d(1)).await.expect("link"),
        None,
        "links are per repository"
    );
    assert_eq!(
        m.missing_blobs("c/one", &[d(1), d(3), d(2)])
            .await
            .expect("missing"),
        vec![d(3)]
    );
    assert!(m.unlink_blob("c/one", &d(2)).await.expect("unlink"));
    assert!(!m.unlink_blob("c/one", &d(2)).await.expect("unlink"));
    m.link_blob("c/one", &d(2), 22).await.expect("link");

    // Manifests, tags, referrers.
    let base = test_manifest(&[d(1), d(2)], None, None);
    m.put_manifest("c/one", &base, &["v1"]).await.expect("put");
    m.put_manifest("c/one", &base, &["latest"])
        .await
        .expect("put");
    let by_tag = m
        .manifest("c/one", &Reference::Tag("v1".into()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_tag.bytes, base.bytes);
    assert_eq!(by_tag.info, base.info);
    let by_digest = m
        .manifest("c/one", &Reference::Digest(base.info.digest.clone()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_digest.bytes, base.bytes);
    assert!(
        m.manifest("c/two", &Reference::Tag("v1".into()))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        m.missing_manifests("c/one", &[base.info.digest.clone(), d(9)])
            .await
            .expect("missing"),
        vec![d(9)]
    );
    let sig = test_manifest(
        &[d(1)],
        Some(&base.info.digest),
        Some("application/vnd.example.sig"),
    );
    let sbom = test_manifest(
        &[d(2)],
        Some(&base.info.digest),
        Some("application/vnd.example.sbom"),
    );
    m.put_manifest("c/one", &sig, &[]).await.expect("put");
    m.put_manifest("c/one", &sbom, &[]).await.expect("put");
    let mut refs = m
        .referrers("c/one", &base.info.digest)
        .await
        .expect("referrers");
    refs.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut want = vec![
        sig.info.referrer_descriptor(),
        sbom.info.referrer_descriptor(),
    ];
    want.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(refs, want);
    assert!(
        m.referrers("c/two", &base.info.digest)
            .await
            .expect("referrers")
            .is_empty()
    );

    // Tag pages.
    for t in ["a", "b", "c", "d"] {
        m.put_manifest("c/one", &base, &[t]).await.expect("put");
    }
    let p = m
        .list_tags("c/one", None, 3)
        .await
        .expect("tags")
        .expect("repo");
    assert_eq!(
        p,
        Page {
            items: vec!["a".into(), "b".into(), "c".into()],
            more: true
        }
    );
    let p = m
        .list_tags("c/one", Some("c"), 10)
        .await
        .expect("tags")
        .expect("repo");
    assert_eq!(
        p,
        Page {
            items: vec!["d".into(), "latest".into(), "v1".into()],
            more: false
        }
    );
    assert_eq!(
        m.list_tags("c/one", Some("v1"), 10)
            .await
            .expect("tags")
            .expect("repo")
            .items
            .len(),
        0
    );
    assert!(
        m.list_tags("c/none", None, 10)
            .await
            .expect("tags")
            .is_none()
    );

    // Deletes: a tag alone; a manifest with its tags and referrer entry.
    assert!(m.delete_tag("c/one", "a").await.expect("delete"));
    assert!(!m.delete_tag("c/one", "a").await.expect("delete"));
    assert!(
        m.manifest("c/one", &Reference::Tag("b".into()))
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        m.delete_manifest("c/one", &sig.info.digest)
            .await
            .expect("delete")
    );
    assert_eq!(
        m.referrers("c/one", &base.info.digest)
            .await
            .expect("referrers")
            .len(),
        1
    );
    assert!(
        m.delete_manifest("c/one", &base.info.digest)
            .await
            .expect("delete")
    );
    assert!(
        !m.delete_manifest("c/one", &base.info.digest)
            .await
            .expect("delete")
    );
    assert!(
        m.manifest("c/one", &Reference::Tag("b".into()))
            .await
            .expect("get")
            .is_none()
    );
    let p = m
        .list_tags("c/one", None, 100)
        .await
        .expect("tags")
        .expect("repo still known");
    assert!(
        p.items.is_empty(),
        "tags of a deleted manifest are gone: {p:?}"
    );

    // Catalog.
    m.link_blob("c/two", &d(1), 11).await.expect("link");
    m.link_blob("a/zero", &d(1), 11).await.expect("link");
    let p = m.list_repositories(None, 2).await.expect("catalog");
    assert_eq!(
        p,
        Page {
            items: vec!["a/zero".into(), "c/one".into()],
            more: true
        }
    );
    let p = m
        .list_repositories(Some("c/one"), 2)
        .await
        .expect("catalog");
    assert_eq!(
        p,
        Page {
            items: vec!["c/two".into()],
            more: false
        }
    );

    // Uploads: conditional update on the offset.
    let up = UploadRecord {
        id: "u1".into(),
        repo: "c/one".into(),
        offset: 0,
        hash_state: vec![1, 2, 3],
        store_state: "s".into(),
        digest: None,
        created_ms: 1000,
        updated_ms: 1000,
    };
    m.create_upload(&up).await.expect("create");
    assert_eq!(m.upload("u1").await.expect("get"), Some(up.clone()));
    assert!(m.upload("u2").await.expect("get").is_none());
    let next = UploadRecord {
        offset: 5,
        updated_ms: 2000,
        store_state: "t".into(),
        ..up.clone()
    };
    m.update_upload(&next, 0).await.expect("update");
    let lost = m
        .update_upload(
            &UploadRecord {
                offset: 9,
                ..up.clone()
            },
            0,
        )
        .await;
    assert!(matches!(lost, Err(StoreError::Precondition(_))), "{lost:?}");
    assert_eq!(m.upload("u1").await.expect("get"), Some(next.clone()));
    let stale = m.stale_uploads(1500, 10).await.expect("stale");
    assert!(stale.is_empty(), "{stale:?}");
    let stale = m.stale_uploads(2500, 10).await.expect("stale");
    assert_eq!(stale, vec![next.clone()]);
    let dup = m.create_upload(&up).await;
    assert!(matches!(dup, Err(StoreError::Precondition(_))), "{dup:?}");
    m.delete_upload("u1").await.expect("delete");
    assert!(m.upload("u1").await.expect("get").is_none());
    let gone = m.update_upload(&next, 5).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    // Claiming an upload (the closing PUT): only at its offset, and only once.
    m.create_upload(&next).await.expect("create");
    let moved = m.claim_upload("u1", 4).await;
    assert!(
        matches!(moved, Err(StoreError::Precondition(_))),
        "{moved:?}"
    );
    assert_eq!(m.upload("u1").await.expect("get"), Some(next.clone()));
    m.claim_upload("u1", 5).await.expect("claim");
    assert!(m.upload("u1").await.expect("get").is_none());
    let again = m.claim_upload("u1", 5).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");

    // Several tags in one write (a repeated one counts once: one DynamoDB transaction may
    // not touch an item twice); a later write moves some of them and leaves the others.
    let other = test_manifest(&[d(2), d(1)], None, None);
    let tagged = |t: &'static str| async move {
        m.manifest("z/multi", &Reference::Tag(t.into()))
            .await
            .expect("get")
            .map(|s| s.info.digest)
    };
    m.put_manifest("z/multi", &base, &["x", "y", "z", "y"])
        .await
        .expect("put with tags");
    for t in ["x", "y", "z"] {
        assert_eq!(tagged(t).await, Some(base.info.digest.clone()), "{t}");
    }
    m.put_manifest("z/multi", &other, &["y", "w"])
        .await
        .expect("put moving tags");
    for (t, want) in [("w", &other), ("x", &base), ("y", &other), ("z", &base)] {
        assert_eq!(tagged(t).await, Some(want.info.digest.clone()), "{t}");
    }
    assert_eq!(
        m.list_tags("z/multi", None, 10)
            .await
            .expect("tags")
            .expect("repo")
            .items,
        ["w", "x", "y", "z"]
    );
    let many: Vec<String> = (0..MAX_TAGS_PER_PUT).map(|i| format!("t{i:03}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    m.put_manifest("z/many", &base, &many)
        .await
        .expect("put with the most tags one PUT may set");
    assert_eq!(
        m.list_tags("z/many", None, 1000)
            .await
            .expect("tags")
            .expect("repo")
            .items
            .len(),
        MAX_TAGS_PER_PUT
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_metadata_conforms() {
        futures_executor::block_on(super::metadata_conformance(
            &super::MemoryMetadata::default(),
        ));
        futures_executor::block_on(super::document_conformance(&super::MemoryDocs::default()));
    }
}

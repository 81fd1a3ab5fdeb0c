//! The bookkeeping behind the optional metadata abilities (blob records, the manifest index,
//! the outbox, usage counters, the backfill), written once over a transactional key-value
//! map, for every store that has one (redb, the memory adapter). A store calls the
//! `on_*` function of each content write inside the same transaction as its own write, so
//! records and content cannot disagree; stores without such a map (DynamoDB, D1) keep the
//! same records in their own items and pass the same conformance suite.
//!
//! Every decision ("is this link new?", "was this the project's last copy?") is made from
//! the ledger's own entries, never from the caller, so a write of old content that the
//! backfill has not reached yet, and the backfill itself, count nothing twice.
//!
//! May use: [`crate::error`], [`crate::model`] and [`crate::ports`].

mod backfill;
mod collect;
mod keys;
mod read;

use crate::error::StoreError;
use crate::model::Digest;
use crate::model::manifest::ManifestInfo;
use crate::model::name::project_of;
use crate::ports::{BlobState, Change, OutboxEntry};
pub use backfill::*;
pub use collect::*;
use keys::*;
pub use read::*;
use serde::{Deserialize, Serialize};

/// A transactional key-value map: what the ledger needs of a store. Keys are UTF-8 and
/// sort bytewise; everything a `Kv` does between the store's begin and commit is atomic.
pub trait Kv {
    /// A value.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a value.
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes a value (absent is fine).
    fn delete(&mut self, key: &str) -> Result<(), StoreError>;
    /// Entries whose key starts with `prefix` and sorts after `after` (a whole key), at
    /// most `limit`, in key order.
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

fn corrupt(key: &str) -> StoreError {
    StoreError::Other(format!("corrupt ledger entry {key}"))
}

fn get_json<T: for<'de> Deserialize<'de>>(
    kv: &mut impl Kv,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match kv.get(key)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|_| corrupt(key)),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(kv: &mut impl Kv, key: &str, v: &T) -> Result<(), StoreError> {
    let raw = serde_json::to_vec(v).map_err(|e| StoreError::Other(e.to_string()))?;
    kv.put(key, &raw)
}

/// A blob record as the ledger keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BlobDoc {
    pub(crate) size: u64,
    pub(crate) links: u64,
    pub(crate) refs: u64,
    pub(crate) touched_ms: u64,
    /// `live`, `marked` or `deleting`.
    pub(crate) state: String,
    /// When it was marked or deletion began.
    #[serde(default)]
    pub(crate) at_ms: u64,
}

impl BlobDoc {
    pub(crate) fn state(&self) -> BlobState {
        match self.state.as_str() {
            "marked" => BlobState::Marked { at_ms: self.at_ms },
            "deleting" => BlobState::Deleting {
                since_ms: self.at_ms,
            },
            _ => BlobState::Live,
        }
    }
    fn set_state(&mut self, s: BlobState) {
        (self.state, self.at_ms) = match s {
            BlobState::Live => ("live".into(), 0),
            BlobState::Marked { at_ms } => ("marked".into(), at_ms),
            BlobState::Deleting { since_ms } => ("deleting".into(), since_ms),
        };
    }
}

/// Which ways a repository holds a digest (the reverse index).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct WithDoc {
    /// Linked as a blob.
    #[serde(default)]
    l: bool,
    /// Held as a manifest.
    #[serde(default)]
    m: bool,
}

/// A repository's link to a blob.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LinkDoc {
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) linked_ms: Option<u64>,
    #[serde(default)]
    pub(crate) refs: u64,
}

/// A manifest of a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestDoc {
    pub(crate) media_type: String,
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) subject: Option<Digest>,
    /// Distinct blobs it references (what its deletion un-references).
    #[serde(default)]
    pub(crate) blobs: Vec<Digest>,
    #[serde(default)]
    pub(crate) pushed_ms: Option<u64>,
    #[serde(default)]
    pub(crate) pulled_ms: Option<u64>,
}

/// A tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TagDoc {
    pub(crate) digest: Digest,
    #[serde(default)]
    pub(crate) pushed_ms: Option<u64>,
}

/// A project's usage.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct UsageDoc {
    pub(crate) bytes: u64,
    pub(crate) blobs: u64,
}

fn append_outbox(kv: &mut impl Kv, at_ms: u64, change: Change) -> Result<(), StoreError> {
    let n: u64 = get_json(kv, OUTBOX_COUNTER)?.unwrap_or(0) + 1;
    put_json(kv, OUTBOX_COUNTER, &n)?;
    let seq = format!("{at_ms:016}-{n:012}");
    let entry = OutboxEntry {
        seq: seq.clone(),
        at_ms,
        change,
    };
    put_json(kv, &outbox_key(&seq), &entry)
}

/// Writes a link's entry and keeps the work list of unreferenced links with it: listed
/// while no manifest of its repository references it.
pub(crate) fn save_link(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    link: &LinkDoc,
) -> Result<(), StoreError> {
    put_json(kv, &link_key(repo, digest), link)?;
    if link.refs == 0 {
        kv.put(&unref_key(repo, digest), b"")
    } else {
        kv.delete(&unref_key(repo, digest))
    }
}

/// Counts `repo`'s link of `digest` (size `size`) into the blob record, the reverse index,
/// the project's usage, if the ledger does not have it yet. No outbox entry.
fn count_link(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    size: u64,
    at_ms: Option<u64>,
) -> Result<(), StoreError> {
    let wkey = with_key(digest, repo);
    let mut with: WithDoc = get_json(kv, &wkey)?.unwrap_or_default();
    let bkey = blob_key(digest);
    let mut blob: BlobDoc = get_json(kv, &bkey)?.unwrap_or_else(|| BlobDoc {
        size,
        state: "live".into(),
        ..BlobDoc::default()
    });
    if let Some(at) = at_ms {
        blob.touched_ms = blob.touched_ms.max(at);
        blob.set_state(BlobState::Live);
    }
    let lkey = link_key(repo, digest);
    let mut link: LinkDoc = get_json(kv, &lkey)?.unwrap_or(LinkDoc {
        size,
        ..LinkDoc::default()
    });
    if at_ms.is_some() {
        link.linked_ms = at_ms;
    }
    if link.size == 0 {
        // Made by a manifest the backfill met before this link (see `count_manifest`).
        link.size = size;
    }
    save_link(kv, repo, digest, &link)?;
    if !with.l {
        with.l = true;
        blob.links += 1;
        put_json(kv, &wkey, &with)?;
        let pkey = project_blob_key(project_of(repo), digest);
        let n: u64 = get_json(kv, &pkey)?.unwrap_or(0);
        put_json(kv, &pkey, &(n + 1))?;
        if n == 0 {
            let ukey = usage_key(project_of(repo));
            let mut u: UsageDoc = get_json(kv, &ukey)?.unwrap_or_default();
            u.bytes += blob.size;
            u.blobs += 1;
            put_json(kv, &ukey, &u)?;
        }
    }
    kv.delete(&unlinked_key(digest))?;
    put_json(kv, &bkey, &blob)
}

/// Checks that `digest` may be linked: `Precondition` without a record (garbage
/// collection may have deleted its bytes: `touch_blob`, which the core calls before it
/// commits or mounts a blob, makes one) or while it is being deleted. The store then
/// writes nothing.
pub fn check_linkable(kv: &mut impl Kv, digest: &Digest) -> Result<(), StoreError> {
    let blob: Option<BlobDoc> = get_json(kv, &blob_key(digest))?;
    match blob.map(|b| b.state()) {
        None => Err(StoreError::Precondition(format!(
            "blob {digest} has no record (it may have been garbage-collected); upload it again"
        ))),
        Some(BlobState::Deleting { .. }) => Err(StoreError::Precondition(format!(
            "blob {digest} is being garbage-collected; upload it again"
        ))),
        _ => Ok(()),
    }
}

/// Checks that `digest` may be referenced by a manifest: `Precondition` while it is being
/// deleted. (That it is linked into the repository the store checks in its own tables, which
/// are complete before the backfill too.)
pub(crate) fn check_not_deleting(kv: &mut impl Kv, digest: &Digest) -> Result<(), StoreError> {
    let blob: Option<BlobDoc> = get_json(kv, &blob_key(digest))?;
    match blob.map(|b| b.state()) {
        Some(BlobState::Deleting { .. }) => Err(StoreError::Precondition(format!(
            "blob {digest} is being garbage-collected; upload it again"
        ))),
        _ => Ok(()),
    }
}

/// `link_blob`: call [`check_linkable`] before the store's own write, this after it.
pub fn on_link(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<(), StoreError> {
    count_link(kv, repo, digest, size, Some(at_ms))?;
    append_outbox(
        kv,
        at_ms,
        Change::BlobLinked {
            repository: repo.to_owned(),
            digest: digest.clone(),
            size,
        },
    )
}

/// `unlink_blob`, after the store removed an existing link.
pub fn on_unlink(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<(), StoreError> {
    let wkey = with_key(digest, repo);
    let mut with: WithDoc = get_json(kv, &wkey)?.unwrap_or_default();
    kv.delete(&link_key(repo, digest))?;
    kv.delete(&unref_key(repo, digest))?;
    if with.l {
        with.l = false;
        if with.m {
            put_json(kv, &wkey, &with)?;
        } else {
            kv.delete(&wkey)?;
        }
        let bkey = blob_key(digest);
        if let Some(mut blob) = get_json::<BlobDoc>(kv, &bkey)? {
            blob.links = blob.links.saturating_sub(1);
            if blob.links == 0 {
                kv.put(&unlinked_key(digest), b"")?;
            }
            let pkey = project_blob_key(project_of(repo), digest);
            let n: u64 = get_json(kv, &pkey)?.unwrap_or(0);
            if n <= 1 {
                kv.delete(&pkey)?;
                let ukey = usage_key(project_of(repo));
                let mut u: UsageDoc = get_json(kv, &ukey)?.unwrap_or_default();
                u.bytes = u.bytes.saturating_sub(blob.size);
                u.blobs = u.blobs.saturating_sub(1);
                put_json(kv, &ukey, &u)?;
            } else {
                put_json(kv, &pkey, &(n - 1))?;
            }
            put_json(kv, &bkey, &blob)?;
        }
    }
    append_outbox(
        kv,
        at_ms,
        Change::BlobUnlinked {
            repository: repo.to_owned(),
            digest: digest.clone(),
        },
    )
}

fn distinct(blobs: &[Digest]) -> Vec<Digest> {
    let mut v = blobs.to_vec();
    v.sort_by_key(Digest::to_string);
    v.dedup();
    v
}

/// Counts a manifest the ledger does not have yet (its references), or updates its push
/// time. `at_ms` `None`: the backfill (no push time is invented).
fn count_manifest(
    kv: &mut impl Kv,
    repo: &str,
    info: &ManifestInfo,
    at_ms: Option<u64>,
) -> Result<(), StoreError> {
    let mkey = manifest_key(repo, &info.digest);
    if let Some(mut m) = get_json::<ManifestDoc>(kv, &mkey)? {
        if at_ms.is_some() {
            m.pushed_ms = at_ms;
            put_json(kv, &mkey, &m)?;
        }
        return Ok(());
    }
    let blobs = distinct(&info.blobs);
    for b in &blobs {
        let bkey = blob_key(b);
        let blob = get_json::<BlobDoc>(kv, &bkey)?;
        // The store checked that the repository links every blob of the manifest; a link
        // without an entry is one the backfill has not reached yet, and gets it here, so
        // its count of references is never short (collection removes a link by it).
        let mut l = get_json::<LinkDoc>(kv, &link_key(repo, b))?.unwrap_or_else(|| LinkDoc {
            size: blob.as_ref().map_or(0, |d| d.size),
            ..LinkDoc::default()
        });
        l.refs += 1;
        save_link(kv, repo, b, &l)?;
        if let Some(mut blob) = blob {
            blob.refs += 1;
            put_json(kv, &bkey, &blob)?;
        }
    }
    let wkey = with_key(&info.digest, repo);
    let mut with: WithDoc = get_json(kv, &wkey)?.unwrap_or_default();
    with.m = true;
    put_json(kv, &wkey, &with)?;
    let doc = ManifestDoc {
        media_type: info.media_type.clone(),
        size: info.size,
        subject: info.subject.clone(),
        blobs,
        pushed_ms: at_ms,
        pulled_ms: None,
    };
    put_json(kv, &mkey, &doc)
}

/// Checks that the blobs a manifest references may be relied on: `Precondition` if one is
/// being deleted (the store then writes nothing, and the client pushes it again).
pub fn check_referenceable(kv: &mut impl Kv, info: &ManifestInfo) -> Result<(), StoreError> {
    for b in &info.blobs {
        check_not_deleting(kv, b)?;
    }
    Ok(())
}

/// `put_manifest`: call [`check_referenceable`] before the store's own write, this after.
pub fn on_manifest_put(
    kv: &mut impl Kv,
    repo: &str,
    info: &ManifestInfo,
    tags: &[&str],
    at_ms: u64,
) -> Result<(), StoreError> {
    count_manifest(kv, repo, info, Some(at_ms))?;
    let mut set = Vec::new();
    for t in tags {
        if set.iter().any(|s: &String| s == t) {
            continue;
        }
        let doc = TagDoc {
            digest: info.digest.clone(),
            pushed_ms: Some(at_ms),
        };
        put_json(kv, &tag_key(repo, t), &doc)?;
        set.push((*t).to_owned());
    }
    append_outbox(
        kv,
        at_ms,
        Change::ManifestPut {
            repository: repo.to_owned(),
            digest: info.digest.clone(),
            tags: set,
        },
    )
}

/// `delete_manifest`, after the store deleted an existing manifest and `tags` (the tags
/// that pointed at it).
pub fn on_manifest_delete(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    tags: &[String],
    at_ms: u64,
) -> Result<(), StoreError> {
    for t in tags {
        kv.delete(&tag_key(repo, t))?;
    }
    let mkey = manifest_key(repo, digest);
    if let Some(m) = get_json::<ManifestDoc>(kv, &mkey)? {
        kv.delete(&mkey)?;
        for b in &m.blobs {
            if let Some(mut l) = get_json::<LinkDoc>(kv, &link_key(repo, b))? {
                l.refs = l.refs.saturating_sub(1);
                save_link(kv, repo, b, &l)?;
            }
            let bkey = blob_key(b);
            if let Some(mut blob) = get_json::<BlobDoc>(kv, &bkey)? {
                blob.refs = blob.refs.saturating_sub(1);
                put_json(kv, &bkey, &blob)?;
            }
        }
        let wkey = with_key(digest, repo);
        let mut with: WithDoc = get_json(kv, &wkey)?.unwrap_or_default();
        with.m = false;
        if with.l {
            put_json(kv, &wkey, &with)?;
        } else {
            kv.delete(&wkey)?;
        }
    }
    append_outbox(
        kv,
        at_ms,
        Change::ManifestDeleted {
            repository: repo.to_owned(),
            digest: digest.clone(),
        },
    )
}

/// `delete_tag`, after the store deleted an existing tag.
pub fn on_tag_delete(
    kv: &mut impl Kv,
    repo: &str,
    tag: &str,
    at_ms: u64,
) -> Result<(), StoreError> {
    kv.delete(&tag_key(repo, tag))?;
    append_outbox(
        kv,
        at_ms,
        Change::TagDeleted {
            repository: repo.to_owned(),
            tag: tag.to_owned(),
        },
    )
}

/// `note_pull`: the manifest's last-pull time, never moved back; nothing for a manifest the
/// ledger does not know (the backfill adds it).
pub fn on_pull(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<(), StoreError> {
    let mkey = manifest_key(repo, digest);
    if let Some(mut m) = get_json::<ManifestDoc>(kv, &mkey)?
        && pulled_before(&m, at_ms)
    {
        m.pulled_ms = Some(at_ms);
        put_json(kv, &mkey, &m)?;
    }
    Ok(())
}

/// Whether [`on_pull`] at `at_ms` would write: a store whose writes are costly (an fsync
/// on redb) reads this first, so a manifest pulled again within the hour writes nothing.
pub fn pull_is_news(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<bool, StoreError> {
    Ok(get_json::<ManifestDoc>(kv, &manifest_key(repo, digest))?
        .is_some_and(|m| pulled_before(&m, at_ms)))
}

/// Whether `m`'s last pull (if any) is older than `at_ms`: the one rule of both.
fn pulled_before(m: &ManifestDoc, at_ms: u64) -> bool {
    m.pulled_ms.is_none_or(|p| p < at_ms)
}

/// An in-memory map is a `Kv` (the memory adapter, and tests); atomic under its owner's lock.
impl Kv for std::collections::BTreeMap<String, Vec<u8>> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(std::collections::BTreeMap::get(self, key).cloned())
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.remove(key);
        Ok(())
    }
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        Ok(self
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Checks a conditional tag write: `now` is what `tag` points at.
pub fn check_tag(
    tag: &str,
    now: Option<&Digest>,
    expect: &crate::ports::TagExpect,
) -> Result<(), StoreError> {
    use crate::ports::TagExpect;
    let ok = match expect {
        TagExpect::Any => true,
        TagExpect::Absent => now.is_none(),
        TagExpect::At(d) => now == Some(d),
    };
    if ok {
        return Ok(());
    }
    Err(StoreError::Precondition(match now {
        Some(d) => format!("tag {tag} points at {d}"),
        None => format!("tag {tag} does not exist"),
    }))
}

/// A flaw planted in a ledger's bookkeeping, for the tests of the verification
/// (`gc --verify`), which must report each.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone)]
pub enum Flaw {
    /// The link of `digest` in `repo` counts `refs` referencing manifests.
    LinkRefs {
        /// Repository.
        repo: String,
        /// Blob.
        digest: Digest,
        /// The wrong count.
        refs: u64,
    },
    /// The blob record of `digest` counts `links` linking repositories.
    RecordLinks {
        /// Blob.
        digest: Digest,
        /// The wrong count.
        links: u64,
    },
    /// The link of `digest` in `repo` is gone while its manifests remain.
    LinkGone {
        /// Repository.
        repo: String,
        /// Blob.
        digest: Digest,
    },
}

/// Plants `flaw` (tests only).
#[cfg(any(test, feature = "testing"))]
pub fn plant(kv: &mut impl Kv, flaw: &Flaw) -> Result<(), StoreError> {
    match flaw {
        Flaw::LinkRefs { repo, digest, refs } => {
            let mut l: LinkDoc =
                get_json(kv, &link_key(repo, digest))?.ok_or(StoreError::NotFound)?;
            l.refs = *refs;
            save_link(kv, repo, digest, &l)
        }
        Flaw::RecordLinks { digest, links } => {
            let mut b: BlobDoc = get_json(kv, &blob_key(digest))?.ok_or(StoreError::NotFound)?;
            b.links = *links;
            put_json(kv, &blob_key(digest), &b)
        }
        Flaw::LinkGone { repo, digest } => on_unlink(kv, repo, digest, 0),
    }
}

//! The blob inventory conformance suite rejects listings the core cannot rely on: the memory
//! store with one flaw at a time in its `list_blobs` (or what it lists) must fail it, and
//! passes it without one.

use futures_executor::block_on;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wharf_core::ports::{BlobEntry, BlobInventory, BlobStore, ByteRange, UploadRecord};
use wharf_core::testing::{
    MemoryBlobs, assert_every_flaw_caught, failure_of, inventory_conformance,
};
use wharf_core::{Algorithm, Digest, StoreError};

/// One way a listing can be wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flaw {
    None,
    /// The page starts at `after` itself.
    AfterInclusive,
    /// One entry more than `limit`.
    OverLimit,
    /// Pages of more than one entry come one short (a short page that is not the end).
    ShortPages,
    /// Each page in reverse.
    Unsorted,
    /// Sizes one byte too large.
    SizeOffByOne,
    /// The modified time is the start of the epoch.
    NoTime,
    /// sha512 blobs are never listed.
    OnlySha256,
    /// A deleted blob stays listed.
    ListsDeleted,
    /// An upload with a declared digest is listed under it before its commit.
    ListsStaged,
}

#[derive(Clone)]
struct Flawed {
    inner: MemoryBlobs,
    flaw: Flaw,
    /// [`Flaw::ListsDeleted`]: what deleted blobs were listed as; [`Flaw::ListsStaged`]: the
    /// declared digests of uploads that were written but not committed.
    ghosts: Arc<Mutex<BTreeMap<Digest, BlobEntry>>>,
}

type Inner = MemoryBlobs;

impl BlobStore for Flawed {
    type Reader = <Inner as BlobStore>::Reader;
    type Writer = <Inner as BlobStore>::Writer;

    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.inner.stat(d).await
    }
    async fn get(&self, d: &Digest, range: Option<ByteRange>) -> Result<Self::Reader, StoreError> {
        self.inner.get(d, range).await
    }
    async fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        if self.flaw == Flaw::ListsDeleted
            && let Some(e) = self
                .inner
                .list_blobs(None, usize::MAX)
                .await?
                .into_iter()
                .find(|e| &e.digest == d)
        {
            self.ghosts.lock().expect("lock").insert(d.clone(), e);
        }
        self.inner.delete(d).await
    }
    async fn writer(&self, u: &UploadRecord) -> Result<Self::Writer, StoreError> {
        if self.flaw == Flaw::ListsStaged
            && let Some(d) = &u.digest
        {
            let e = BlobEntry {
                digest: d.clone(),
                size: u.offset,
                modified_ms: 0,
            };
            self.ghosts.lock().expect("lock").insert(d.clone(), e);
        }
        self.inner.writer(u).await
    }
    async fn commit(&self, u: &UploadRecord, d: &Digest) -> Result<(), StoreError> {
        self.ghosts.lock().expect("lock").remove(d);
        self.inner.commit(u, d).await
    }
    async fn abort(&self, u: &UploadRecord) -> Result<(), StoreError> {
        self.inner.abort(u).await
    }
}

impl BlobInventory for Flawed {
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError> {
        let mut all = self.inner.list_blobs(None, usize::MAX).await?;
        all.extend(self.ghosts.lock().expect("lock").values().cloned());
        all.sort_by(|a, b| a.digest.cmp(&b.digest));
        all.dedup_by(|a, b| a.digest == b.digest);
        let keep = |e: &BlobEntry| match (self.flaw, after) {
            (Flaw::AfterInclusive, Some(a)) => &e.digest >= a,
            (_, Some(a)) => &e.digest > a,
            (_, None) => true,
        };
        let n = match self.flaw {
            Flaw::OverLimit => limit.saturating_add(1),
            Flaw::ShortPages if limit > 1 => limit - 1,
            _ => limit,
        };
        let mut page: Vec<BlobEntry> = all
            .into_iter()
            .filter(keep)
            .filter(|e| self.flaw != Flaw::OnlySha256 || e.digest.algorithm() == Algorithm::Sha256)
            .take(n)
            .collect();
        for e in &mut page {
            match self.flaw {
                Flaw::SizeOffByOne => e.size += 1,
                Flaw::NoTime => e.modified_ms = 0,
                _ => {}
            }
        }
        if self.flaw == Flaw::Unsorted {
            page.reverse();
        }
        Ok(page)
    }
}

/// Runs the suite on the memory store with `flaw` (it panics if it catches the flaw).
fn run(flaw: Flaw) {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let c = clock.clone();
    let store = Flawed {
        inner: MemoryBlobs::with_clock(move || c.fetch_add(10, Ordering::Relaxed)),
        flaw,
        ghosts: Arc::default(),
    };
    let now = || clock.load(Ordering::Relaxed);
    block_on(inventory_conformance(&store, &now, 0));
}

#[test]
fn the_inventory_suite_fails_every_flawed_listing() {
    assert_eq!(
        failure_of(|| run(Flaw::None)),
        None,
        "the unflawed store must pass"
    );
    assert_every_flaw_caught(
        &[
            Flaw::AfterInclusive,
            Flaw::OverLimit,
            Flaw::ShortPages,
            Flaw::Unsorted,
            Flaw::SizeOffByOne,
            Flaw::NoTime,
            Flaw::OnlySha256,
            Flaw::ListsDeleted,
            Flaw::ListsStaged,
        ],
        run,
    );
}

//! The blob store conformance suite rejects stores that break the port's rules: the memory
//! store with one flaw at a time must fail it (and passes it without one).

use bytes::Bytes;
use futures_executor::block_on;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wharf_core::ports::{BlobStore, ByteRange, UploadRecord};
use wharf_core::testing::{
    MemoryBlobs, MemoryWriter, assert_every_flaw_caught, blob_conformance, failure_of,
};
use wharf_core::{Digest, StoreError};

/// One way a blob store can be wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flaw {
    None,
    /// `get` of a missing blob is not `NotFound` (the core would answer 500, not 404).
    MissingIsOther,
    /// A range leaves out its last byte.
    RangeEndExclusive,
    /// `stat` says one byte more than the blob has.
    StatOffByOne,
    /// `commit` succeeds without making the blob.
    CommitDoesNothing,
    /// `commit` of a digest that exists writes the new upload's bytes over it.
    ReplacesExisting,
    /// A writer continues from the last request that finished, recorded or not.
    UnrecordedCounts,
    /// `read_staged` hands over all but the last byte.
    StagedShort,
    /// `abort` leaves the staged bytes.
    AbortKeeps,
    /// `delete` leaves the blob.
    DeleteKeeps,
}

#[derive(Clone)]
struct Flawed {
    inner: MemoryBlobs,
    flaw: Flaw,
    /// Per upload, the store state of the last writer that finished.
    finished: Arc<Mutex<HashMap<String, (u64, String)>>>,
}

struct FlawedWriter {
    inner: MemoryWriter,
    store: Flawed,
    id: String,
    offset: u64,
}

impl wharf_core::ports::BlobWriter for FlawedWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.offset += chunk.len() as u64;
        self.inner.write(chunk).await
    }
    async fn finish(self) -> Result<String, StoreError> {
        let state = self.inner.finish().await?;
        self.store
            .finished
            .lock()
            .expect("lock")
            .insert(self.id, (self.offset, state.clone()));
        Ok(state)
    }
}

type Reader = <MemoryBlobs as BlobStore>::Reader;

impl BlobStore for Flawed {
    type Reader = Reader;
    type Writer = FlawedWriter;

    async fn stat(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        let n = self.inner.stat(d).await?;
        Ok(match self.flaw {
            Flaw::StatOffByOne => n.map(|n| n + 1),
            _ => n,
        })
    }
    async fn get(&self, d: &Digest, range: Option<ByteRange>) -> Result<Reader, StoreError> {
        match (self.flaw, range) {
            (Flaw::MissingIsOther, _) => self.inner.get(d, range).await.map_err(|e| match e {
                StoreError::NotFound => StoreError::Other("no such key".into()),
                e => e,
            }),
            (Flaw::RangeEndExclusive, Some(r)) => {
                let mut all = Vec::new();
                let mut whole = self.inner.get(d, None).await?;
                while let Some(c) = whole.next().await {
                    all.extend_from_slice(&c?);
                }
                let part = Bytes::copy_from_slice(&all[r.start as usize..r.end as usize]);
                Ok(futures_util::stream::iter(vec![Ok(part)]))
            }
            _ => self.inner.get(d, range).await,
        }
    }
    async fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        match self.flaw {
            Flaw::DeleteKeeps => Ok(()),
            _ => self.inner.delete(d).await,
        }
    }
    fn min_chunk(&self) -> Option<u64> {
        // Small requests keep the runs quick; the sizes still cross it both ways.
        Some(4096)
    }
    async fn writer(&self, u: &UploadRecord) -> Result<FlawedWriter, StoreError> {
        let mut from = u.clone();
        if self.flaw == Flaw::UnrecordedCounts
            && let Some((offset, state)) = self.finished.lock().expect("lock").get(&u.id)
        {
            (from.offset, from.store_state) = (*offset, state.clone());
        }
        Ok(FlawedWriter {
            inner: self.inner.writer(&from).await?,
            store: self.clone(),
            id: u.id.clone(),
            offset: from.offset,
        })
    }
    async fn commit(&self, u: &UploadRecord, d: &Digest) -> Result<(), StoreError> {
        match self.flaw {
            Flaw::CommitDoesNothing => Ok(()),
            Flaw::ReplacesExisting => {
                let staged = self.inner.read_staged(u, &mut |_: &[u8]| {}).await;
                if u.offset > 0 && staged.is_ok() {
                    self.inner.delete(d).await?;
                }
                self.inner.commit(u, d).await
            }
            Flaw::UnrecordedCounts => {
                let last = self.finished.lock().expect("lock").get(&u.id).cloned();
                let mut from = u.clone();
                if let Some((offset, state)) = last {
                    (from.offset, from.store_state) = (offset, state);
                }
                self.inner.commit(&from, d).await
            }
            _ => self.inner.commit(u, d).await,
        }
    }
    async fn abort(&self, u: &UploadRecord) -> Result<(), StoreError> {
        match self.flaw {
            Flaw::AbortKeeps => Ok(()),
            _ => self.inner.abort(u).await,
        }
    }
    async fn read_staged(
        &self,
        u: &UploadRecord,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        let mut staged = Vec::new();
        self.inner
            .read_staged(u, &mut |b: &[u8]| staged.extend_from_slice(b))
            .await?;
        if self.flaw == Flaw::StagedShort {
            staged.pop();
        }
        sink(&staged);
        Ok(())
    }
}

/// Runs the suite on the memory store with `flaw` (it panics if it catches the flaw).
fn run(flaw: Flaw) {
    let store = Flawed {
        inner: MemoryBlobs::default(),
        flaw,
        finished: Arc::default(),
    };
    block_on(blob_conformance(&store));
}

#[test]
fn the_blob_suite_fails_every_flawed_store() {
    assert_eq!(
        failure_of(|| run(Flaw::None)),
        None,
        "the unflawed store must pass"
    );
    assert_every_flaw_caught(
        &[
            Flaw::MissingIsOther,
            Flaw::RangeEndExclusive,
            Flaw::StatOffByOne,
            Flaw::CommitDoesNothing,
            Flaw::ReplacesExisting,
            Flaw::UnrecordedCounts,
            Flaw::StagedShort,
            Flaw::AbortKeeps,
            Flaw::DeleteKeeps,
        ],
        run,
    );
}

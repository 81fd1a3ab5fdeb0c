//! The conformance suite every [`BlobStore`] backend must pass: memory, fs, S3 (over the SDK
//! and over signed HTTP) and R2 (inside the Worker). Each backend's tests call
//! [`blob_conformance`].
//!
//! It drives the port the way the core's upload engine (`oci/uploads.rs`) and blob reads
//! (`oci/blobs.rs`) do: an upload record as `POST` creates it; per request a writer opened at
//! the recorded offset, its bytes written in pieces, `finish`, and only then the new offset
//! and store state recorded (the compare-and-set of `update_upload`); `commit` under the
//! verified digest; then `stat`, `get` whole and by range, `read_staged` for a digest named
//! only at the closing `PUT`, `abort` for a cancel or a discarded upload, `delete` for
//! garbage collection. Request sizes are relative to [`BlobStore::min_chunk`] (S3 and R2 take
//! multipart parts of at least 5 MiB but the last): requests below and above it, in one
//! upload.
//!
//! What it holds a store to:
//! - a blob is visible only after `commit`, with exactly the recorded bytes, whole and in
//!   any range (first byte, middle, last byte, all);
//! - the bytes of a request that was never recorded (it failed, was dropped, lost the race
//!   for the offset, or is still writing when the upload is committed) are in no blob, and
//!   are ignored by the next writer;
//! - `commit` is idempotent: the same upload again, or another upload of a blob that exists
//!   (its digest already stored), succeeds and leaves the existing blob as it is;
//! - `commit` and `abort` release the staged bytes: `read_staged` no longer hands them over
//!   and a commit after an abort fails without making a blob; `abort` may be repeated;
//! - an upload whose digest was declared (`POST ?digest=`) and an empty blob commit too;
//! - `read_staged` hands over exactly the recorded bytes, or answers `NotSupported`;
//! - `stat` of a missing blob is `None`, `get` of one is [`StoreError::NotFound`] (which the
//!   core turns into `BLOB_UNKNOWN`), `delete` of one succeeds.
//!
//! Not covered: listing, an optional ability ([`crate::ports::BlobInventory`]) with a suite
//! of its own, [`super::inventory_conformance`], built on this one's helpers.
//!
//! The suite is generic over the store with no `Send` bounds and needs no runtime: it runs
//! under tokio, `futures_executor` and in a single-threaded Worker alike. It uses fixed
//! upload ids, deletes the blobs it is about to make before it starts, and leaves no blob
//! and nothing staged behind, so it may run again on the same store.

use crate::error::StoreError;
use crate::model::{Digest, Hasher};
use crate::ports::{BlobStore, BlobWriter, ByteRange, DEFAULT_ALGORITHM, UploadRecord};
use bytes::Bytes;
use futures_util::StreamExt;

/// The request size unit for a store without a minimum chunk: above the fs store's 1 MiB
/// write batch, so its batching is crossed too.
const UNIT: u64 = 1024 * 1024 + 17;

/// Runs the blob store conformance suite; panics on the first store behaviour the core
/// cannot rely on.
pub async fn blob_conformance<B: BlobStore>(store: &B) {
    let unit = store.min_chunk().unwrap_or(UNIT);
    assert!(unit > 0, "min_chunk() must be positive");
    let u = usize::try_from(unit).expect("min_chunk() fits in memory");
    missing_blobs(store).await;
    chunked_upload(store, u).await;
    existing_blob(store, u).await;
    declared_digest(store, u).await;
    empty_blob(store).await;
    aborted_upload(store, u).await;
}

/// Deterministic pseudo-random bytes: every seed makes other content.
pub(super) fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub(super) fn digest_of(bytes: &[u8]) -> Digest {
    Digest::of(DEFAULT_ALGORITHM, bytes)
}

/// A new upload as `POST` records it.
pub(super) fn new_upload(id: &str, digest: Option<Digest>) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        repo: "conformance/blobs".into(),
        offset: 0,
        hash_state: Hasher::new(DEFAULT_ALGORITHM).save(),
        store_state: String::new(),
        digest,
        created_ms: 1,
        updated_ms: 1,
    }
}

/// `bytes` cut into pieces of the given sizes (the last piece takes the rest).
pub(super) fn pieces<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes {
        let end = (at + n).min(bytes.len());
        out.push(&bytes[at..end]);
        at = end;
    }
    out.push(&bytes[at..]);
    out
}

/// Opens a writer at the record and writes `pieces` in order.
async fn write<B: BlobStore>(store: &B, up: &UploadRecord, pieces: &[&[u8]]) -> B::Writer {
    let mut w = store.writer(up).await.expect("writer");
    for p in pieces {
        w.write(Bytes::copy_from_slice(p)).await.expect("write");
    }
    w
}

/// Records what a finished request wrote, as the core does after `finish`.
fn record(up: &mut UploadRecord, written: usize, store_state: String) {
    up.offset += written as u64;
    up.store_state = store_state;
    up.updated_ms += 1;
}

/// One request that the core records: write, finish, record.
pub(super) async fn request<B: BlobStore>(store: &B, up: &mut UploadRecord, pieces: &[&[u8]]) {
    let w = write(store, up, pieces).await;
    let state = w.finish().await.expect("finish");
    record(up, pieces.iter().map(|p| p.len()).sum(), state);
}

/// Where two byte strings first differ (a message short enough for a megabyte blob).
fn differ(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    Some(format!(
        "{} bytes instead of {}, first difference at byte {at}",
        got.len(),
        want.len()
    ))
}

async fn read<B: BlobStore>(store: &B, d: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let mut reader = store.get(d, range).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = reader.next().await {
        out.extend_from_slice(&chunk.expect("reading a blob"));
    }
    out
}

/// The blob is there with exactly `want`: its size, its bytes whole, and ranges.
async fn check_blob<B: BlobStore>(store: &B, d: &Digest, want: &[u8], what: &str) {
    let size = store.stat(d).await.expect("stat");
    assert_eq!(size, Some(want.len() as u64), "{what}: stat");
    if let Some(e) = differ(&read(store, d, None).await, want) {
        panic!("{what}: get of the whole blob: {e}");
    }
    let Some(last) = want.len().checked_sub(1) else {
        return;
    };
    let (third, two_thirds) = (want.len() / 3, want.len() * 2 / 3);
    for (start, end) in [(0, 0), (third, two_thirds), (last, last), (0, last)] {
        let range = ByteRange::new(start as u64, end as u64).expect("range");
        if let Some(e) = differ(&read(store, d, Some(range)).await, &want[start..=end]) {
            panic!("{what}: get of bytes {start}-{end}: {e}");
        }
    }
}

/// What `read_staged` hands over; `None` if the store lacks the ability.
async fn staged<B: BlobStore>(store: &B, up: &UploadRecord) -> Result<Option<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    let result = {
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        store.read_staged(up, &mut sink).await
    };
    match result {
        Ok(()) => Ok(Some(out)),
        Err(StoreError::NotSupported(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `read_staged` hands over exactly `want`, or is not supported.
async fn check_staged<B: BlobStore>(store: &B, up: &UploadRecord, want: &[u8], what: &str) {
    match staged(store, up).await {
        Ok(Some(got)) => {
            if let Some(e) = differ(&got, want) {
                panic!("{what}: read_staged: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => panic!("{what}: read_staged failed: {e}"),
    }
}

/// The upload's staged bytes are released: `read_staged` fails (or is not supported).
async fn check_released<B: BlobStore>(store: &B, up: &UploadRecord, what: &str) {
    assert!(up.offset > 0, "only an upload with bytes can show it");
    if let Ok(Some(b)) = staged(store, up).await {
        panic!(
            "{what}: read_staged still hands over {} bytes of the upload",
            b.len()
        );
    }
}

async fn check_missing<B: BlobStore>(store: &B, d: &Digest, what: &str) {
    assert_eq!(store.stat(d).await.expect("stat"), None, "{what}: stat");
    let got = store.get(d, None).await.err();
    assert!(
        matches!(got, Some(StoreError::NotFound)),
        "{what}: get of a missing blob must be NotFound: {got:?}"
    );
}

/// A missing blob: `stat` says so, `get` is `NotFound`, `delete` succeeds.
async fn missing_blobs<B: BlobStore>(store: &B) {
    let d = digest_of(b"wharf blob conformance: never stored");
    check_missing(store, &d, "a blob never stored").await;
    store.delete(&d).await.expect("deleting a missing blob");
    store.delete(&d).await.expect("deleting it again");
}

/// Deletes what a previous run may have left, so that every blob starts missing.
async fn start_without<B: BlobStore>(store: &B, d: &Digest) {
    store.delete(d).await.expect("delete before the run");
    check_missing(store, d, "before the upload").await;
}

/// Deletes a blob the suite made: gone afterwards, and a second delete is fine.
async fn delete<B: BlobStore>(store: &B, d: &Digest, what: &str) {
    store.delete(d).await.expect("delete");
    check_missing(store, d, what).await;
    store.delete(d).await.expect("deleting a deleted blob");
}

/// An upload in several requests, below and above the store's minimum chunk, among
/// requests that fail, are dropped, lose a race or write after the commit.
async fn chunked_upload<B: BlobStore>(store: &B, u: usize) {
    let first = data(u / 2 + 1, 1);
    let second = data(u + u / 2, 2);
    let winner = data(u / 4, 3);
    let last = data(777, 4);
    let want = [&first[..], &second, &winner, &last].concat();
    let d = digest_of(&want);
    start_without(store, &d).await;
    let mut up = new_upload("conformance-chunked", None);

    // A writer opened and dropped without a byte (an empty PATCH body).
    drop(store.writer(&up).await.expect("writer"));
    // Below the minimum chunk, in pieces (an empty one among them).
    request(store, &mut up, &pieces(&first, &[1, 0, u / 8])).await;
    check_staged(store, &up, &first, "after a request below min_chunk").await;
    // A request that finished but was never recorded (the record's update failed) ...
    let lost = write(store, &up, &pieces(&data(u + 10, 90), &[u / 3])).await;
    let _ = lost.finish().await.expect("finish");
    // ... and one that failed while sending (dropped without finish).
    drop(write(store, &up, &[&data(1000, 91)]).await);
    // Above the minimum chunk, with a piece larger than it.
    request(store, &mut up, &pieces(&second, &[u / 8, u + 1])).await;
    check_staged(
        store,
        &up,
        &want[..up.offset as usize],
        "after ignored requests",
    )
    .await;
    // Two requests from one recorded state: the one recorded first wins; the loser writes
    // more and finishes afterwards, and its bytes must not count.
    let mut loser = write(store, &up, &[&data(u / 4 + 7, 92)]).await;
    let w = write(store, &up, &pieces(&winner, &[u / 16])).await;
    let state = w.finish().await.expect("finish");
    record(&mut up, winner.len(), state);
    loser.write(Bytes::from(data(99, 93))).await.expect("write");
    let _ = loser.finish().await;
    // The last request, small.
    request(store, &mut up, &[&last]).await;
    assert_eq!(up.offset, want.len() as u64);
    check_staged(store, &up, &want, "before commit").await;
    // A request still sending when the upload is committed.
    let mut late = write(store, &up, &[&data(u / 2, 94)]).await;

    check_missing(store, &d, "before commit").await;
    store.commit(&up, &d).await.expect("commit");
    check_blob(store, &d, &want, "committed").await;
    // The late request's bytes reach neither the blob nor anything else; whether its
    // writes and finish still succeed is the store's affair.
    let _ = late.write(Bytes::from(data(u, 95))).await;
    let _ = late.finish().await;
    check_blob(store, &d, &want, "after a late request").await;
    // A closing PUT retried (or racing another): the same commit again.
    store.commit(&up, &d).await.expect("commit again");
    check_blob(store, &d, &want, "committed twice").await;
    check_released(store, &up, "after commit").await;
    store.abort(&up).await.expect("abort after commit");
    delete(store, &d, "deleted").await;
}

/// Another upload of a blob that exists: commit succeeds, the blob stays as it was.
async fn existing_blob<B: BlobStore>(store: &B, u: usize) {
    let want = data(u / 3, 5);
    let d = digest_of(&want);
    start_without(store, &d).await;
    let mut one = new_upload("conformance-existing-1", None);
    request(store, &mut one, &[&want]).await;
    store.commit(&one, &d).await.expect("commit");
    check_blob(store, &d, &want, "first upload").await;

    let mut two = new_upload("conformance-existing-2", None);
    request(store, &mut two, &pieces(&want, &[u / 7])).await;
    store
        .commit(&two, &d)
        .await
        .expect("committing a blob that exists");
    check_blob(store, &d, &want, "second upload of the same content").await;
    check_released(store, &two, "second upload after commit").await;
    // An upload of other bytes of the same length under that digest: a store must take
    // the blob for present and write nothing (an existing blob is never replaced).
    let mut three = new_upload("conformance-existing-3", None);
    request(store, &mut three, &[&data(u / 3, 6)]).await;
    store
        .commit(&three, &d)
        .await
        .expect("committing a blob that exists");
    check_blob(store, &d, &want, "an existing blob is never replaced").await;
    check_released(store, &three, "third upload after commit").await;
    delete(store, &d, "deleted").await;
}

/// A digest declared at `POST` (a monolithic upload): the store may write in place.
async fn declared_digest<B: BlobStore>(store: &B, u: usize) {
    let want = data(2 * u + u / 3, 7);
    let d = digest_of(&want);
    start_without(store, &d).await;
    let mut up = new_upload("conformance-declared", Some(d.clone()));
    request(store, &mut up, &pieces(&want, &[u / 2, u + 1])).await;
    check_staged(store, &up, &want, "declared digest").await;
    check_missing(store, &d, "declared digest before commit").await;
    store.commit(&up, &d).await.expect("commit");
    check_blob(store, &d, &want, "declared digest").await;
    store.commit(&up, &d).await.expect("commit again");
    check_blob(store, &d, &want, "declared digest committed twice").await;
    store.abort(&up).await.expect("abort after commit");
    delete(store, &d, "deleted").await;
}

/// The empty blob: an upload closed without a byte, with and without a declared digest.
async fn empty_blob<B: BlobStore>(store: &B) {
    let d = digest_of(b"");
    start_without(store, &d).await;
    store
        .commit(&new_upload("conformance-empty", None), &d)
        .await
        .expect("commit of an empty upload");
    check_blob(store, &d, b"", "empty").await;
    delete(store, &d, "empty deleted").await;
    store
        .commit(
            &new_upload("conformance-empty-declared", Some(d.clone())),
            &d,
        )
        .await
        .expect("commit of an empty upload with its digest declared");
    check_blob(store, &d, b"", "empty, declared").await;
    delete(store, &d, "empty deleted").await;
}

/// A cancelled upload: `abort` releases what it staged, and no blob can come of it.
async fn aborted_upload<B: BlobStore>(store: &B, u: usize) {
    let first = data(u / 2, 8);
    let second = data(u, 9);
    let want = [&first[..], &second].concat();
    let d = digest_of(&want);
    start_without(store, &d).await;
    let mut up = new_upload("conformance-aborted", None);
    request(store, &mut up, &[&first]).await;
    request(store, &mut up, &pieces(&second, &[u / 5])).await;
    let lost = write(store, &up, &[&data(u / 2, 96)]).await;
    let _ = lost.finish().await.expect("finish");
    check_staged(store, &up, &want, "before abort").await;
    store.abort(&up).await.expect("abort");
    check_released(store, &up, "after abort").await;
    store.abort(&up).await.expect("abort again");
    let after = store.commit(&up, &d).await;
    assert!(after.is_err(), "commit after abort must fail: {after:?}");
    check_missing(store, &d, "commit after abort").await;
    store
        .abort(&new_upload("conformance-never-written", None))
        .await
        .expect("abort of an upload without bytes");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryBlobs;

    #[test]
    fn memory_blobs_conform() {
        futures_executor::block_on(blob_conformance(&MemoryBlobs::default()));
    }

    #[test]
    fn the_suite_can_run_twice_on_one_store() {
        let store = MemoryBlobs::default();
        futures_executor::block_on(blob_conformance(&store));
        futures_executor::block_on(blob_conformance(&store));
    }
}

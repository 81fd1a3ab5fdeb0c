//! The conformance suite every [`BlobInventory`] must pass: memory, fs, S3 (over the SDK and
//! over signed HTTP) and R2 (inside the Worker). Each backend's tests call
//! [`inventory_conformance`].
//!
//! It makes its blobs the way [`super::blob_conformance`] does (an upload record, requests
//! written and recorded, `commit`), of both algorithms, in one request or several, with the
//! digest declared at `POST` or not, one of them empty; and it leaves two uploads staged but
//! never committed, one with its digest declared (S3 and R2 stage that one as a multipart
//! upload at the blob's own key). What it holds a store to:
//! - every committed blob is listed exactly once, with its size, and a modified time within
//!   the time its upload took (by the caller's clock, give or take the caller's slack: a
//!   store's clock may be coarser, or another machine's);
//! - staged bytes are never listed, whatever key they are staged at;
//! - the whole listing is in strictly increasing digest order (algorithm, then hex), and
//!   `after` is exclusive and need not exist: after the last sha256 digest comes the first
//!   sha512 one;
//! - pages hold at most `limit` entries and fewer only at the end, and paging with small
//!   limits visits what one listing shows, each blob once, in order;
//! - a deleted blob is no longer listed.
//!
//! The store may hold other blobs: the suite checks its own by digest and the order over
//! everything listed, and touches only its own (the empty blob only if it was not there
//! before). It deletes what it made and aborts what it staged, so it may run again on the
//! same store. Like the blob suite it is generic with no `Send` bounds and needs no runtime.

use super::blob_conformance::{data, new_upload, pieces, request};
use crate::error::StoreError;
use crate::model::{Algorithm, Digest};
use crate::ports::{BlobEntry, BlobInventory, BlobStore, UploadRecord};

/// The largest page the suite asks for (S3's and R2's largest listing call).
const PAGE: usize = 1000;

/// One blob the suite makes.
struct Spec {
    id: &'static str,
    algorithm: Algorithm,
    size: usize,
    /// Request sizes (the last request takes the rest).
    requests: &'static [usize],
    /// The digest declared at `POST`.
    declared: bool,
}

const BLOBS: [Spec; 7] = [
    Spec {
        id: "inventory-one-byte",
        algorithm: Algorithm::Sha256,
        size: 1,
        requests: &[],
        declared: false,
    },
    Spec {
        id: "inventory-two-requests",
        algorithm: Algorithm::Sha256,
        size: 3000,
        requests: &[1000],
        declared: false,
    },
    Spec {
        id: "inventory-declared",
        algorithm: Algorithm::Sha256,
        size: 5000,
        requests: &[],
        declared: true,
    },
    Spec {
        id: "inventory-small",
        algorithm: Algorithm::Sha256,
        size: 64,
        requests: &[],
        declared: false,
    },
    Spec {
        id: "inventory-sha512",
        algorithm: Algorithm::Sha512,
        size: 700,
        requests: &[300],
        declared: false,
    },
    // Declared digests are sha256 only: s3s-fs, the S3 stand-in, cannot open a multipart
    // upload at a sha512 key (its metadata file's name gets too long).
    Spec {
        id: "inventory-sha512-single",
        algorithm: Algorithm::Sha512,
        size: 1234,
        requests: &[],
        declared: false,
    },
    // The empty blob's digest is everybody's: made (and deleted) only if it is not there.
    Spec {
        id: "inventory-empty",
        algorithm: Algorithm::Sha512,
        size: 0,
        requests: &[],
        declared: false,
    },
];

/// A blob the suite committed, and when its upload ran by the caller's clock.
struct Made {
    digest: Digest,
    size: u64,
    /// `None` for a blob that was there before the suite (the empty one).
    window: Option<(u64, u64)>,
}

/// Runs the blob inventory conformance suite; panics on the first listing the core (garbage
/// collection) cannot rely on. `now_ms` is the caller's clock, `slack_ms` how far a
/// modified time may lie outside the time an upload took by that clock.
pub async fn inventory_conformance<B: BlobStore + BlobInventory>(
    store: &B,
    now_ms: &dyn Fn() -> u64,
    slack_ms: u64,
) {
    let (made, staged) = setup(store, now_ms).await;
    let staged_digests: Vec<Digest> = staged.iter().flat_map(staged_digests).collect();
    assert!(
        list(store, None, 0).await.is_empty(),
        "a page of limit 0 must be empty"
    );

    let all = list_all(store).await;
    check_order(&all, "the whole listing");
    check_listed(&all, &made, slack_ms);
    for d in &staged_digests {
        assert!(
            !all.iter().any(|e| &e.digest == d),
            "staged upload data is listed as {d}"
        );
    }

    let (first, last) = (min(&made), max(&made));
    for limit in [1, 2, 3] {
        check_paging(store, &all, &first, &last, limit).await;
    }
    check_after(store, &all).await;

    // A deleted blob disappears; the others stay.
    let gone = &made[1];
    store.delete(&gone.digest).await.expect("delete");
    let before = all
        .iter()
        .take_while(|e| e.digest < gone.digest)
        .last()
        .map(|e| e.digest.clone());
    let page = list(store, before.as_ref(), 2).await;
    assert!(
        page.iter().all(|e| e.digest != gone.digest),
        "a deleted blob is still listed: {}",
        gone.digest
    );
    let now = list_all(store).await;
    check_order(&now, "the listing after a delete");
    assert!(!now.iter().any(|e| e.digest == gone.digest));
    let rest: Vec<&Made> = made.iter().filter(|m| m.digest != gone.digest).collect();
    for m in &rest {
        assert_eq!(
            now.iter().filter(|e| e.digest == m.digest).count(),
            1,
            "{} is listed once after another blob's delete",
            m.digest
        );
    }

    cleanup(store, &made, &staged).await;
    let after = list_all(store).await;
    for m in made.iter().filter(|m| m.window.is_some()) {
        assert!(
            !after.iter().any(|e| e.digest == m.digest),
            "{} is listed after its delete",
            m.digest
        );
    }
}

fn blob_data(i: usize, s: &Spec) -> Vec<u8> {
    data(s.size, 7000 + i as u64)
}

/// The uploads the suite leaves staged: one plain, one with its digest declared.
fn staged_uploads() -> [(UploadRecord, Vec<u8>); 2] {
    let plain = data(2000, 7100);
    let declared = data(1500, 7101);
    let d = Digest::of(Algorithm::Sha256, &declared);
    [
        (new_upload("inventory-staged", None), plain),
        (new_upload("inventory-staged-declared", Some(d)), declared),
    ]
}

/// Every digest staged bytes could be listed under.
fn staged_digests((up, bytes): &(UploadRecord, Vec<u8>)) -> Vec<Digest> {
    let mut out = vec![
        Digest::of(Algorithm::Sha256, bytes),
        Digest::of(Algorithm::Sha512, bytes),
    ];
    out.extend(up.digest.clone());
    out
}

/// Clears what an earlier run may have left, commits the suite's blobs and stages its
/// uploads.
async fn setup<B: BlobStore>(
    store: &B,
    now_ms: &dyn Fn() -> u64,
) -> (Vec<Made>, Vec<(UploadRecord, Vec<u8>)>) {
    let staged = staged_uploads();
    for (up, _) in &staged {
        store.abort(up).await.expect("abort before the run");
    }
    for d in staged.iter().flat_map(staged_digests) {
        store.delete(&d).await.expect("delete before the run");
    }
    let mut made = Vec::new();
    for (i, s) in BLOBS.iter().enumerate() {
        let bytes = blob_data(i, s);
        let digest = Digest::of(s.algorithm, &bytes);
        if bytes.is_empty() && store.stat(&digest).await.expect("stat").is_some() {
            made.push(Made {
                digest,
                size: 0,
                window: None,
            });
            continue;
        }
        store.delete(&digest).await.expect("delete before the run");
        let mut up = new_upload(s.id, s.declared.then(|| digest.clone()));
        store.abort(&up).await.expect("abort before the run");
        let start = now_ms();
        if !bytes.is_empty() {
            let cut = pieces(&bytes, s.requests);
            for p in cut.iter().filter(|p| !p.is_empty()) {
                request(store, &mut up, &[p]).await;
            }
        }
        store.commit(&up, &digest).await.expect("commit");
        made.push(Made {
            digest,
            size: bytes.len() as u64,
            window: Some((start, now_ms())),
        });
    }
    let mut out = Vec::new();
    for (mut up, bytes) in staged {
        request(store, &mut up, &pieces(&bytes, &[bytes.len() / 2])).await;
        out.push((up, bytes));
    }
    (made, out)
}

async fn cleanup<B: BlobStore>(store: &B, made: &[Made], staged: &[(UploadRecord, Vec<u8>)]) {
    for m in made.iter().filter(|m| m.window.is_some()) {
        store.delete(&m.digest).await.expect("delete");
    }
    for (up, _) in staged {
        store.abort(up).await.expect("abort");
    }
}

async fn list<B: BlobInventory>(store: &B, after: Option<&Digest>, limit: usize) -> Vec<BlobEntry> {
    let page = store
        .list_blobs(after, limit)
        .await
        .unwrap_or_else(|e: StoreError| panic!("list_blobs after {after:?}, limit {limit}: {e}"));
    assert!(
        page.len() <= limit,
        "list_blobs with limit {limit} returned {} entries",
        page.len()
    );
    page
}

/// Everything listed, in pages of [`PAGE`]; a short page must be the last.
async fn list_all<B: BlobInventory>(store: &B) -> Vec<BlobEntry> {
    let mut all: Vec<BlobEntry> = Vec::new();
    loop {
        let after = all.last().map(|e| e.digest.clone());
        let page = list(store, after.as_ref(), PAGE).await;
        let short = page.len() < PAGE;
        all.extend(page);
        if short {
            break;
        }
    }
    let after = all.last().map(|e| e.digest.clone());
    let more = list(store, after.as_ref(), PAGE).await;
    assert!(
        more.is_empty(),
        "a page shorter than its limit was followed by {} more entries",
        more.len()
    );
    all
}

fn check_order(entries: &[BlobEntry], what: &str) {
    for w in entries.windows(2) {
        assert!(
            w[0].digest < w[1].digest,
            "{what}: {} is listed before {} (order: algorithm, then hex; each once)",
            w[0].digest,
            w[1].digest
        );
    }
}

/// Each of the suite's blobs is listed once, with its size and a plausible modified time.
fn check_listed(all: &[BlobEntry], made: &[Made], slack_ms: u64) {
    for m in made {
        let found: Vec<&BlobEntry> = all.iter().filter(|e| e.digest == m.digest).collect();
        let [e] = found.as_slice() else {
            panic!("{} is listed {} times, not once", m.digest, found.len());
        };
        assert_eq!(e.size, m.size, "{}: listed size", m.digest);
        if let Some((start, end)) = m.window {
            let (lo, hi) = (start.saturating_sub(slack_ms), end.saturating_add(slack_ms));
            assert!(
                (lo..=hi).contains(&e.modified_ms),
                "{}: modified at {} ms, but its upload ran from {start} to {end} ms \
                 (slack {slack_ms} ms)",
                m.digest,
                e.modified_ms
            );
        }
    }
}

fn min(made: &[Made]) -> Digest {
    made.iter().map(|m| m.digest.clone()).min().expect("blobs")
}

fn max(made: &[Made]) -> Digest {
    made.iter().map(|m| m.digest.clone()).max().expect("blobs")
}

/// Pages of `limit` from just before `first` until past `last` visit what the whole
/// listing shows there, each once, in order; every page but the last is full.
async fn check_paging<B: BlobInventory>(
    store: &B,
    all: &[BlobEntry],
    first: &Digest,
    last: &Digest,
    limit: usize,
) {
    let skip = all.iter().take_while(|e| &e.digest < first).count();
    let mut after = skip.checked_sub(1).map(|i| all[i].digest.clone());
    let mut seen: Vec<BlobEntry> = Vec::new();
    loop {
        let page = list(store, after.as_ref(), limit).await;
        let short = page.len() < limit;
        seen.extend(page);
        match seen.last() {
            Some(e) if !short && &e.digest < last => after = Some(e.digest.clone()),
            _ => break,
        }
    }
    let want = &all[skip..(skip + seen.len()).min(all.len())];
    assert_eq!(
        seen.iter().map(|e| &e.digest).collect::<Vec<_>>(),
        want.iter().map(|e| &e.digest).collect::<Vec<_>>(),
        "pages of {limit} visit other blobs than one listing"
    );
    assert_eq!(seen.as_slice(), want, "pages of {limit}: entries differ");
    assert!(
        seen.iter().any(|e| &e.digest == last),
        "pages of {limit} never reached {last}"
    );
}

/// `after` is exclusive, need not be stored, and crosses from one algorithm to the next.
async fn check_after<B: BlobInventory>(store: &B, all: &[BlobEntry]) {
    let hex = |alg: &str, c: &str| -> Digest {
        let n = if alg == "sha256" { 64 } else { 128 };
        format!("{alg}:{}", c.repeat(n)).parse().expect("digest")
    };
    let never = Digest::of(
        Algorithm::Sha256,
        b"wharf inventory conformance: never stored",
    );
    for (after, what) in [
        (hex("sha256", "0"), "the smallest sha256 digest"),
        (never, "a digest never stored"),
        (hex("sha256", "f"), "the largest sha256 digest"),
        (hex("sha512", "0"), "the smallest sha512 digest"),
        (hex("sha512", "f"), "the largest sha512 digest"),
    ] {
        let want: Vec<&BlobEntry> = all.iter().filter(|e| e.digest > after).take(3).collect();
        let got = list(store, Some(&after), 3).await;
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want,
            "the page after {what} ({after})"
        );
    }
    // After each listed blob: the next ones.
    for (i, e) in all.iter().enumerate().take(PAGE) {
        if i % 3 != 0 {
            continue;
        }
        let want: Vec<&BlobEntry> = all[i + 1..].iter().take(2).collect();
        let got = list(store, Some(&e.digest), 2).await;
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want,
            "the page after {}",
            e.digest
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryBlobs;
    use crate::testing::blob_conformance::digest_of;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn memory_blobs_conform_with_the_default_clock() {
        let store = MemoryBlobs::default();
        futures_executor::block_on(inventory_conformance(&store, &|| 0, 0));
    }

    /// A clock that moves at every reading: a commit's time lies strictly inside its
    /// upload's window, so a store that stamps anything else fails with no slack.
    #[test]
    fn memory_blobs_conform_on_a_moving_clock_among_other_blobs() {
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let c = clock.clone();
        let store = MemoryBlobs::with_clock(move || c.fetch_add(1000, Ordering::Relaxed));
        let others: Vec<Digest> = futures_executor::block_on(async {
            let mut out = Vec::new();
            for seed in 0..20 {
                let bytes = data(10 + seed, 9000 + seed as u64);
                let d = digest_of(&bytes);
                let mut up = new_upload(&format!("other-{seed}"), None);
                request(&store, &mut up, &[&bytes]).await;
                store.commit(&up, &d).await.expect("commit");
                out.push(d);
            }
            out
        });
        let now = || clock.load(Ordering::Relaxed);
        futures_executor::block_on(inventory_conformance(&store, &now, 0));
        futures_executor::block_on(inventory_conformance(&store, &now, 0));
        let left = futures_executor::block_on(store.list_blobs(None, 100)).expect("list");
        let mut want = others.clone();
        want.sort();
        assert_eq!(
            left.into_iter().map(|e| e.digest).collect::<Vec<_>>(),
            want,
            "the suite touches only its own blobs"
        );
    }
}

//! The few item operations both of wharf's DynamoDB clients speak — the SDK's
//! (wharf-dynamodb) and [`crate::DynamoRest`] over any transport — and, written once over
//! them, the reads, decisions and conditional writes of the abilities the two share (blob
//! records, link collection, the link and unlink transactions). Each client's port impls
//! hand on to these, so the two cannot drift apart in what they decide.

use crate::Item;
use crate::ledger::lists::{self, IndexPage, IndexQuery};
use crate::ledger::{self, LinkSeen, LinkTouch, Write};
use std::future::Future;
use wharf_core::ports::{BlobRecord, Cleared, LinkCursor, UnreferencedLink};
use wharf_core::{Digest, StoreError};

/// A DynamoDB client as the shared abilities need it.
#[allow(async_fn_in_trait)]
pub trait ItemStore {
    /// One item, read strongly consistent.
    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError>;
    /// The items at `keys`, in the keys' order, read strongly consistent.
    async fn batch_get(&self, keys: &[Item]) -> Result<Vec<Option<Item>>, StoreError>;
    /// One write on its own; a failed condition is `Precondition`.
    async fn write_one(&self, w: &Write) -> Result<(), StoreError>;
    /// All of `writes` or none; a failed condition is `Precondition`. Conflicts with a
    /// concurrent transaction are retried inside (they say nothing about the conditions).
    async fn transact_writes(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// One page of `gsi1`.
    async fn index_page(&self, q: IndexQuery) -> Result<IndexPage, StoreError>;
    /// Waits before attempt `attempt` (from 1) of a write whose reads went stale. None by
    /// default: a runtime without a timer reads again at once.
    async fn pause(&self, _attempt: u32) {}
}

/// One write on its own, conditioned on what it expects; false if the condition failed.
pub async fn conditional<S: ItemStore>(s: &S, w: &Write) -> Result<bool, StoreError> {
    match s.write_one(w).await {
        Ok(()) => Ok(true),
        Err(StoreError::Precondition(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads, decides, writes on condition; again (after [`ItemStore::pause`]) while a
/// concurrent write changes what was read. `decide` gives the writes and the answer they
/// give; no writes: the answer as it is.
pub async fn read_decide_write<S, A, F, Fut>(
    s: &S,
    what: &str,
    mut decide: F,
) -> Result<A, StoreError>
where
    S: ItemStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(Vec<Write>, A), StoreError>>,
{
    let mut last = None;
    for attempt in 0..ledger::ATTEMPTS {
        if attempt > 0 {
            s.pause(attempt).await;
        }
        let (writes, answer) = decide().await?;
        if writes.is_empty() {
            return Ok(answer);
        }
        match s.transact_writes(&writes).await {
            Ok(()) => return Ok(answer),
            Err(StoreError::Precondition(e)) => {
                tracing::debug!(error = %e, attempt, "{what} raced; reading again");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(format!(
        "{what} kept changing: {}",
        last.unwrap_or_default()
    )))
}

/// What a link write decides on ([`ledger::link_reads`]).
pub async fn link_seen<S: ItemStore>(
    s: &S,
    repo: &str,
    digest: &Digest,
) -> Result<LinkSeen, StoreError> {
    LinkSeen::from_found(s.batch_get(&ledger::link_reads(repo, digest)).await?)
}

/// `link_blob` after the catalog entry: the link with its records ([`ledger::link_writes`]).
pub async fn link<S: ItemStore>(
    s: &S,
    repo: &str,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<(), StoreError> {
    read_decide_write(s, "blob link", || async {
        let seen = link_seen(s, repo, digest).await?;
        Ok((
            ledger::link_writes(repo, digest, size, Some(at_ms), &seen)?,
            (),
        ))
    })
    .await
}

/// `unlink_blob`: refused (`Precondition`) while a manifest of `repo` references the blob
/// ([`ledger::unlink_writes`]).
pub async fn unlink<S: ItemStore>(
    s: &S,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<bool, StoreError> {
    read_decide_write(s, "blob unlink", || async {
        let seen = link_seen(s, repo, digest).await?;
        Ok(match ledger::unlink_writes(repo, digest, &seen, at_ms)? {
            Some(w) => (w, true),
            None => (Vec::new(), false),
        })
    })
    .await
}

/// `collect_link`: the unlink's read and transaction, with what makes the link collectable
/// as the condition of its removal ([`ledger::collect_writes`]).
pub async fn collect_link<S: ItemStore>(
    s: &S,
    repo: &str,
    digest: &Digest,
    untouched_since_ms: u64,
    at_ms: u64,
) -> Result<bool, StoreError> {
    read_decide_write(s, "link collection", || async {
        let seen = link_seen(s, repo, digest).await?;
        Ok(
            match ledger::collect_writes(repo, digest, &seen, untouched_since_ms, at_ms)? {
                Some(w) => (w, true),
                None => (Vec::new(), false),
            },
        )
    })
    .await
}

/// `touch_link`: a read, and a conditional write only if the link's time is stale (a `HEAD`
/// of a blob checked in the last minute writes nothing).
pub async fn touch_link<S: ItemStore>(
    s: &S,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let link = s.get_item(ledger::link_key(repo, digest)).await?;
    match ledger::link_touch(repo, digest, link.as_ref(), at_ms) {
        LinkTouch::NoLink => Ok(false),
        LinkTouch::Fresh => Ok(true),
        // Refused: touched later meanwhile (kept), or removed.
        LinkTouch::Write(w) => match conditional(s, &w).await? {
            true => Ok(true),
            false => Ok(s.get_item(ledger::link_key(repo, digest)).await?.is_some()),
        },
    }
}

/// `unreferenced_links`: the `UNREFERENCED#` shards of `gsi1`, merged
/// ([`lists::unreferenced_links`]).
pub async fn unreferenced_links<S: ItemStore>(
    s: &S,
    after: Option<&LinkCursor>,
    limit: usize,
) -> Result<Vec<UnreferencedLink>, StoreError> {
    lists::unreferenced_links(after, limit, |q| s.index_page(q)).await
}

/// `blob_record`.
pub async fn blob_record<S: ItemStore>(
    s: &S,
    digest: &Digest,
) -> Result<Option<BlobRecord>, StoreError> {
    Ok(s.get_item(ledger::record_key(digest))
        .await?
        .map(|i| ledger::record_of(digest, &i)))
}

/// `unlinked_blobs`: the `UNLINKED#` shards of `gsi1` in digest order
/// ([`lists::unlinked_blobs`]).
pub async fn unlinked_blobs<S: ItemStore>(
    s: &S,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<BlobRecord>, StoreError> {
    lists::unlinked_blobs(after, limit, |q| s.index_page(q)).await
}

/// `touch_blob`: the record made or touched ([`ledger::touch_write`]).
pub async fn touch_blob<S: ItemStore>(
    s: &S,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<(), StoreError> {
    read_decide_write(s, "blob touch", || async {
        let record = s.get_item(ledger::record_key(digest)).await?;
        Ok((
            vec![ledger::touch_write(digest, size, at_ms, record.as_ref())?],
            (),
        ))
    })
    .await
}

/// `clear_blob_mark`: a read, and a conditional write only for a marked record.
pub async fn clear_blob_mark<S: ItemStore>(
    s: &S,
    digest: &Digest,
    at_ms: u64,
) -> Result<Cleared, StoreError> {
    for attempt in 0..ledger::ATTEMPTS {
        if attempt > 0 {
            s.pause(attempt).await;
        }
        let record = s.get_item(ledger::record_key(digest)).await?;
        match ledger::clear_mark(digest, record.as_ref(), at_ms) {
            (answer, None) => return Ok(answer),
            (answer, Some(w)) if conditional(s, &w).await? => return Ok(answer),
            _ => {}
        }
    }
    Err(StoreError::Unavailable(format!(
        "blob record {digest} kept changing"
    )))
}

/// The blob-record and link-collection ports of a client that is an [`ItemStore`], handing
/// every call on to this module (a blanket impl over `ItemStore` is not allowed for the
/// core's traits): `shared_abilities!(impl [T: Transport] for DynamoRest<T>)`.
#[macro_export]
macro_rules! shared_abilities {
    (impl [$($g:tt)*] for $ty:ty) => {
        impl<$($g)*> ::wharf_core::ports::BlobRecords for $ty {
            async fn blob_record(&self, digest: &::wharf_core::Digest) -> Result<Option<::wharf_core::ports::BlobRecord>, ::wharf_core::StoreError> {
                $crate::shared::blob_record(self, digest).await
            }

            async fn unlinked_blobs(
                &self,
                after: Option<&::wharf_core::Digest>,
                limit: usize,
            ) -> Result<Vec<::wharf_core::ports::BlobRecord>, ::wharf_core::StoreError> {
                $crate::shared::unlinked_blobs(self, after, limit).await
            }

            async fn touch_blob(&self, digest: &::wharf_core::Digest, size: u64, at_ms: u64) -> Result<(), ::wharf_core::StoreError> {
                $crate::shared::touch_blob(self, digest, size, at_ms).await
            }

            async fn mark_blob(
                &self,
                digest: &::wharf_core::Digest,
                untouched_since_ms: u64,
                at_ms: u64,
            ) -> Result<bool, ::wharf_core::StoreError> {
                $crate::shared::conditional(self, &$crate::ledger::mark_write(digest, untouched_since_ms, at_ms)).await
            }

            async fn clear_blob_mark(&self, digest: &::wharf_core::Digest, at_ms: u64) -> Result<::wharf_core::ports::Cleared, ::wharf_core::StoreError> {
                $crate::shared::clear_blob_mark(self, digest, at_ms).await
            }

            async fn begin_blob_delete(
                &self,
                digest: &::wharf_core::Digest,
                marked_at_ms: u64,
                at_ms: u64,
            ) -> Result<bool, ::wharf_core::StoreError> {
                $crate::shared::conditional(self, &$crate::ledger::begin_delete_write(digest, marked_at_ms, at_ms)).await
            }

            async fn begin_unused_blob_delete(
                &self,
                digest: &::wharf_core::Digest,
                untouched_since_ms: u64,
                at_ms: u64,
            ) -> Result<bool, ::wharf_core::StoreError> {
                let w = $crate::ledger::begin_unused_delete_write(digest, untouched_since_ms, at_ms);
                $crate::shared::conditional(self, &w).await
            }

            async fn forget_blob(&self, digest: &::wharf_core::Digest) -> Result<bool, ::wharf_core::StoreError> {
                $crate::shared::conditional(self, &$crate::ledger::forget_write(digest)).await
            }
        }

        impl<$($g)*> ::wharf_core::ports::LinkCollection for $ty {
            async fn touch_link(
                &self,
                repo: &str,
                digest: &::wharf_core::Digest,
                at_ms: u64,
            ) -> Result<bool, ::wharf_core::StoreError> {
                $crate::shared::touch_link(self, repo, digest, at_ms).await
            }

            async fn unreferenced_links(
                &self,
                after: Option<&::wharf_core::ports::LinkCursor>,
                limit: usize,
            ) -> Result<Vec<::wharf_core::ports::UnreferencedLink>, ::wharf_core::StoreError> {
                $crate::shared::unreferenced_links(self, after, limit).await
            }

            async fn collect_link(
                &self,
                repo: &str,
                digest: &::wharf_core::Digest,
                untouched_since_ms: u64,
                at_ms: u64,
            ) -> Result<bool, ::wharf_core::StoreError> {
                $crate::shared::collect_link(self, repo, digest, untouched_since_ms, at_ms).await
            }
        }
    };
}

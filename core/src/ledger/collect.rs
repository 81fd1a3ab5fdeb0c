//! Garbage collection's part of the ledger: the conditional steps of the blob protocol
//! (touch, mark, clear, begin delete, forget) and of link collection (touch, collectable).

use super::keys::*;
use super::{BlobDoc, Kv, LinkDoc, check_not_deleting, get_json, put_json, save_link};
use crate::error::StoreError;
use crate::model::Digest;
use crate::ports::BlobState;

/// `touch_link`: the link's time moved to `at_ms` (never back) if it is staler than
/// [`crate::ports::LINK_TOUCH_PRECISION_MS`]; false without an entry.
pub fn touch_link(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let Some(mut l) = get_json::<LinkDoc>(kv, &link_key(repo, digest))? else {
        return Ok(false);
    };
    if link_touch_is_news(&l, at_ms) {
        l.linked_ms = Some(at_ms);
        save_link(kv, repo, digest, &l)?;
    }
    Ok(true)
}

/// Whether [`touch_link`] at `at_ms` would write: the link's time is staler than the
/// precision.
fn link_touch_is_news(l: &LinkDoc, at_ms: u64) -> bool {
    l.linked_ms
        .is_none_or(|t| t.saturating_add(crate::ports::LINK_TOUCH_PRECISION_MS) < at_ms)
}

/// What a `HEAD` finds: whether `repo` has an entry for the link, and whether touching it
/// at `at_ms` would write.
pub fn link_touch_needed(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<Option<bool>, StoreError> {
    Ok(get_json::<LinkDoc>(kv, &link_key(repo, digest))?.map(|l| link_touch_is_news(&l, at_ms)))
}

/// Whether `collect_link` may remove the link: no manifest of `repo` references it and it
/// was not linked or touched after `untouched_since_ms`. The store then removes its own
/// link and calls [`on_unlink`], in the same write.
pub fn link_collectable(
    kv: &mut impl Kv,
    repo: &str,
    digest: &Digest,
    untouched_since_ms: u64,
) -> Result<bool, StoreError> {
    Ok(get_json::<LinkDoc>(kv, &link_key(repo, digest))?
        .is_some_and(|l| l.refs == 0 && l.linked_ms.is_none_or(|t| t <= untouched_since_ms)))
}

/// `touch_blob`: a record for freshly committed bytes, or a touch of the one there.
pub fn touch_blob(
    kv: &mut impl Kv,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<(), StoreError> {
    check_not_deleting(kv, digest)?;
    let bkey = blob_key(digest);
    let mut blob: BlobDoc = match get_json(kv, &bkey)? {
        Some(b) => b,
        None => {
            kv.put(&unlinked_key(digest), b"")?;
            BlobDoc {
                size,
                ..BlobDoc::default()
            }
        }
    };
    blob.touched_ms = blob.touched_ms.max(at_ms);
    blob.set_state(BlobState::Live);
    put_json(kv, &bkey, &blob)
}

/// Moves a `Live` record no repository links, untouched after `untouched_since_ms`, to
/// `to`: the one condition of a mark and of a deletion begun without one.
fn move_unused(
    kv: &mut impl Kv,
    digest: &Digest,
    untouched_since_ms: u64,
    to: BlobState,
) -> Result<bool, StoreError> {
    let bkey = blob_key(digest);
    let Some(mut blob) = get_json::<BlobDoc>(kv, &bkey)? else {
        return Ok(false);
    };
    if blob.state() != BlobState::Live || blob.links > 0 || blob.touched_ms > untouched_since_ms {
        return Ok(false);
    }
    blob.set_state(to);
    put_json(kv, &bkey, &blob)?;
    Ok(true)
}

/// `mark_blob`.
pub fn mark_blob(
    kv: &mut impl Kv,
    digest: &Digest,
    untouched_since_ms: u64,
    at_ms: u64,
) -> Result<bool, StoreError> {
    move_unused(kv, digest, untouched_since_ms, BlobState::Marked { at_ms })
}

/// `clear_blob_mark`.
pub fn clear_blob_mark(
    kv: &mut impl Kv,
    digest: &Digest,
    at_ms: u64,
) -> Result<crate::ports::Cleared, StoreError> {
    use crate::ports::Cleared;
    let bkey = blob_key(digest);
    let Some(mut blob) = get_json::<BlobDoc>(kv, &bkey)? else {
        return Ok(Cleared::Live);
    };
    match blob.state() {
        BlobState::Live => Ok(Cleared::Live),
        BlobState::Deleting { .. } => Ok(Cleared::Gone),
        BlobState::Marked { .. } => {
            blob.set_state(BlobState::Live);
            blob.touched_ms = blob.touched_ms.max(at_ms);
            put_json(kv, &bkey, &blob)?;
            Ok(Cleared::Live)
        }
    }
}

/// `begin_blob_delete`.
pub fn begin_blob_delete(
    kv: &mut impl Kv,
    digest: &Digest,
    marked_at_ms: u64,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let bkey = blob_key(digest);
    let Some(mut blob) = get_json::<BlobDoc>(kv, &bkey)? else {
        return Ok(false);
    };
    if blob.state()
        != (BlobState::Marked {
            at_ms: marked_at_ms,
        })
        || blob.links > 0
    {
        return Ok(false);
    }
    blob.set_state(BlobState::Deleting { since_ms: at_ms });
    put_json(kv, &bkey, &blob)?;
    Ok(true)
}

/// `begin_unused_blob_delete`: `mark_blob`'s condition, `begin_blob_delete`'s result.
pub fn begin_unused_blob_delete(
    kv: &mut impl Kv,
    digest: &Digest,
    untouched_since_ms: u64,
    at_ms: u64,
) -> Result<bool, StoreError> {
    move_unused(
        kv,
        digest,
        untouched_since_ms,
        BlobState::Deleting { since_ms: at_ms },
    )
}

/// `forget_blob`.
pub fn forget_blob(kv: &mut impl Kv, digest: &Digest) -> Result<bool, StoreError> {
    let bkey = blob_key(digest);
    let Some(blob) = get_json::<BlobDoc>(kv, &bkey)? else {
        return Ok(false);
    };
    if !matches!(blob.state(), BlobState::Deleting { .. }) {
        return Ok(false);
    }
    kv.delete(&bkey)?;
    kv.delete(&unlinked_key(digest))?;
    Ok(true)
}

/// Checks that `unlink_blob` (the blob `DELETE` API) may remove the link: `Precondition`
/// while a manifest of `repo` references it. Otherwise a link pushed again later would come
/// back with no references counted, and collection would take a blob a manifest needs.
pub fn check_unlinkable(kv: &mut impl Kv, repo: &str, digest: &Digest) -> Result<(), StoreError> {
    match get_json::<LinkDoc>(kv, &link_key(repo, digest))? {
        Some(l) if l.refs > 0 => Err(StoreError::Precondition(format!(
            "blob {digest} is referenced by {} manifest(s) of {repo}; delete them first",
            l.refs
        ))),
        _ => Ok(()),
    }
}

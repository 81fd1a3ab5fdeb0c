//! Garbage collection, online: no lock, no read-only window. It reads only the work lists
//! the stores keep (unreferenced links, unlinked blobs, stale uploads), so its cost grows
//! with the garbage, not with the registry, and it deletes only through the conditional
//! writes of [`crate::ports::LinkCollection`] and [`crate::ports::BlobRecords`]: whichever
//! of a push and a collection writes first, the other sees it.
//!
//! A run goes in phases (links, then uploads, then blobs, since collecting a link may
//! leave a blob unlinked), each page by page from a cursor. [`step`] advances a run until
//! it is done or has made `budget` store calls, and the caller saves the run (its
//! [`GcCheckpoint`]) after each step: a killed invocation loses at most one step, and every
//! action of a step is conditional and idempotent, so doing it again changes nothing.
//!
//! A run with `verify` instead checks the bookkeeping these work lists come from
//! ([`super::verify`]).

use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::model::Digest;
use crate::ports::{
    BlobInventory, BlobState, BlobStore, CollectableMeta, Env, LinkCursor, SCHEMA_VERSION,
};
use crate::runs::{GcItem, GcPhase, GcProgress};

/// Items listed per page of a work list.
const PAGE: usize = 100;

/// Refuses to collect on a store whose backfill has not finished: content from before it
/// has no records yet, so it would look unused.
pub async fn check_ready<M: CollectableMeta>(meta: &M) -> Result<()> {
    let v = meta.schema_version().await?;
    if v < SCHEMA_VERSION {
        return Err(RegistryError::new(
            ErrorCode::Unavailable,
            format!(
                "garbage collection waits for the store's backfill (schema {v} of {SCHEMA_VERSION}); retry when it has finished"
            ),
        ));
    }
    Ok(())
}

fn ago(now: u64, at: Option<u64>) -> String {
    match at {
        Some(t) => format!("{} s ago", now.saturating_sub(t) / 1000),
        None => "before times were kept".to_owned(),
    }
}

/// Advances `run` until it is done or has made about `budget` store calls (it stops
/// between two items, so it may go over by one item's calls).
pub async fn step<B: BlobStore + BlobInventory, M: CollectableMeta, E: Env>(
    blobs: &B,
    meta: &M,
    env: &E,
    run: &mut GcProgress,
    budget: u64,
) -> Result<()> {
    let start = run.totals.metadata_calls + run.totals.blob_calls;
    let spent = |r: &GcProgress| r.totals.metadata_calls + r.totals.blob_calls - start;
    while !run.done() && spent(run) < budget {
        match run.checkpoint.phase {
            GcPhase::Links => links_page(meta, env, run, budget - spent(run)).await?,
            GcPhase::Uploads => uploads_page(blobs, meta, env, run).await?,
            GcPhase::Blobs => blobs_page(blobs, meta, env, run, budget - spent(run)).await?,
            GcPhase::VerifyRepositories | GcPhase::VerifyBlobs => {
                super::verify::page(blobs, meta, run).await?;
            }
            GcPhase::Done => {}
        }
    }
    Ok(())
}

async fn links_page<M: CollectableMeta, E: Env>(
    meta: &M,
    env: &E,
    run: &mut GcProgress,
    budget: u64,
) -> Result<()> {
    let after = run
        .checkpoint
        .link_after
        .clone()
        .map(|(repo, digest)| LinkCursor { repo, digest });
    run.totals.metadata_calls += 1;
    let page = meta
        .unreferenced_links(after.as_ref(), PAGE.min(budget as usize).max(1))
        .await?;
    if page.is_empty() {
        run.checkpoint.phase = GcPhase::Uploads;
        return Ok(());
    }
    for l in page {
        let now = env.now_ms();
        let cutoff = now.saturating_sub(run.options.grace_ms);
        run.checkpoint.link_after = Some((l.repo.clone(), l.digest.clone()));
        if l.linked_ms.is_some_and(|t| t > cutoff) {
            run.totals.kept += 1;
            continue;
        }
        let collected = if run.options.dry_run {
            true
        } else {
            run.totals.metadata_calls += 1;
            meta.collect_link(&l.repo, &l.digest, cutoff, now).await?
        };
        if !collected {
            run.totals.kept += 1;
            continue;
        }
        if run.options.dry_run && run.checkpoint.dry_links.len() < crate::runs::MAX_LISTED {
            run.checkpoint
                .dry_links
                .push((l.repo.clone(), l.digest.clone()));
        }
        run.totals.links += 1;
        run.collected(GcItem {
            kind: "link".into(),
            repository: Some(l.repo.clone()),
            name: l.digest.to_string(),
            bytes: l.size,
            reason: format!(
                "no manifest of {} references it; last linked or checked {}",
                l.repo,
                ago(now, l.linked_ms)
            ),
        });
    }
    Ok(())
}

async fn uploads_page<B: BlobStore, M: CollectableMeta, E: Env>(
    blobs: &B,
    meta: &M,
    env: &E,
    run: &mut GcProgress,
) -> Result<()> {
    let now = env.now_ms();
    let before = now.saturating_sub(run.options.upload_max_age_ms);
    run.totals.metadata_calls += 1;
    let stale = meta.stale_uploads(before, PAGE).await?;
    // A dry run removes nothing, so the same page would come back: one page is its answer.
    let last_page = stale.len() < PAGE || run.options.dry_run;
    for u in &stale {
        if !run.options.dry_run {
            run.totals.blob_calls += 1;
            blobs.abort(u).await?;
            run.totals.metadata_calls += 1;
            meta.delete_upload(&u.id).await?;
        }
        run.totals.uploads += 1;
        run.collected(GcItem {
            kind: "upload".into(),
            repository: Some(u.repo.clone()),
            name: u.id.clone(),
            bytes: u.offset,
            reason: format!("abandoned: last written {}", ago(now, Some(u.updated_ms))),
        });
    }
    if last_page {
        run.checkpoint.phase = GcPhase::Blobs;
    }
    Ok(())
}

async fn blobs_page<B: BlobStore, M: CollectableMeta, E: Env>(
    blobs: &B,
    meta: &M,
    env: &E,
    run: &mut GcProgress,
    budget: u64,
) -> Result<()> {
    if run.options.dry_run && !run.checkpoint.dry_links.is_empty() {
        return dry_unlinked(meta, env, run).await;
    }
    run.totals.metadata_calls += 1;
    let page = meta
        .unlinked_blobs(
            run.checkpoint.blob_after.as_ref(),
            PAGE.min(budget as usize).max(1),
        )
        .await?;
    if page.is_empty() {
        run.checkpoint.phase = GcPhase::Done;
        return Ok(());
    }
    for r in page {
        run.checkpoint.blob_after = Some(r.digest.clone());
        let now = env.now_ms();
        let cutoff = now.saturating_sub(run.options.grace_ms);
        let deleting = match r.state {
            _ if r.links > 0 => None,
            BlobState::Live if r.touched_ms > cutoff => None,
            BlobState::Live => Some(None),
            // A mark or a deletion a killed run left: any use since would have cleared it.
            BlobState::Marked { at_ms } => Some(Some(at_ms)),
            BlobState::Deleting { .. } => Some(None),
        };
        let Some(marked) = deleting else {
            run.totals.kept += 1;
            continue;
        };
        let gone = if run.options.dry_run {
            dry_run_confirms(meta, run, &r.digest).await?
        } else {
            collect_blob(blobs, meta, run, &r.digest, r.state, marked, cutoff, now).await?
        };
        if !gone {
            run.totals.kept += 1;
            continue;
        }
        run.totals.blobs += 1;
        run.totals.bytes += r.size;
        run.collected(GcItem {
            kind: "blob".into(),
            repository: None,
            name: r.digest.to_string(),
            bytes: r.size,
            reason: format!(
                "no repository links it; last used {}",
                ago(now, Some(r.touched_ms))
            ),
        });
    }
    Ok(())
}

/// A dry run's blobs that its links would leave unlinked: those no repository but the ones
/// whose links it would collect holds, untouched since the cutoff. One digest per call, so
/// a killed run repeats none.
async fn dry_unlinked<M: CollectableMeta, E: Env>(
    meta: &M,
    env: &E,
    run: &mut GcProgress,
) -> Result<()> {
    let Some((_, digest)) = run.checkpoint.dry_links.first().cloned() else {
        return Ok(());
    };
    let mine: Vec<String> = run
        .checkpoint
        .dry_links
        .iter()
        .filter(|(_, d)| *d == digest)
        .map(|(r, _)| r.clone())
        .collect();
    run.checkpoint.dry_links.retain(|(_, d)| *d != digest);
    run.totals.metadata_calls += 2;
    let holders = meta.repositories_with(&digest, None, 1000).await?;
    let record = meta.blob_record(&digest).await?;
    let now = env.now_ms();
    let cutoff = now.saturating_sub(run.options.grace_ms);
    match record {
        Some(r) if holders.iter().all(|h| mine.contains(h)) && r.touched_ms <= cutoff => {
            run.totals.blobs += 1;
            run.totals.bytes += r.size;
            run.collected(GcItem {
                kind: "blob".into(),
                repository: None,
                name: digest.to_string(),
                bytes: r.size,
                reason: format!(
                    "no repository would link it; last used {}",
                    ago(now, Some(r.touched_ms))
                ),
            });
        }
        _ => run.totals.kept += 1,
    }
    Ok(())
}

async fn dry_run_confirms<M: CollectableMeta>(
    meta: &M,
    run: &mut GcProgress,
    digest: &Digest,
) -> Result<bool> {
    run.totals.metadata_calls += 1;
    Ok(meta.repositories_with(digest, None, 1).await?.is_empty())
}

/// Deletes one blob by the protocol: confirm no repository holds it, begin its deletion
/// (only if still unlinked and untouched since the cutoff: mark and begin in one write, or
/// begin from a mark a killed run left), delete the bytes, forget the record. False if any condition failed: a push got there first.
#[allow(clippy::too_many_arguments)]
async fn collect_blob<B: BlobStore, M: CollectableMeta>(
    blobs: &B,
    meta: &M,
    run: &mut GcProgress,
    digest: &Digest,
    state: BlobState,
    marked: Option<u64>,
    cutoff: u64,
    now: u64,
) -> Result<bool> {
    match (state, marked) {
        (BlobState::Deleting { .. }, _) => {}
        // A mark a killed run left: any use since would have cleared it.
        (_, Some(mark)) => {
            run.totals.metadata_calls += 1;
            if !meta.begin_blob_delete(digest, mark, now).await? {
                return Ok(false);
            }
        }
        (_, None) => {
            // Never on a counter alone: the index must hold no repository either.
            run.totals.metadata_calls += 1;
            if !meta.repositories_with(digest, None, 1).await?.is_empty() {
                return Ok(false);
            }
            // Marked and begun in one conditional write.
            run.totals.metadata_calls += 1;
            if !meta.begin_unused_blob_delete(digest, cutoff, now).await? {
                return Ok(false);
            }
        }
    }
    run.totals.blob_calls += 1;
    match blobs.delete(digest).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    run.totals.metadata_calls += 1;
    meta.forget_blob(digest).await?;
    Ok(true)
}

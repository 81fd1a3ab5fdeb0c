//! Verification (`wharf gc run --verify`): a full mark-and-sweep that recomputes what the
//! bookkeeping garbage collection trusts, and reports every difference. The safety net,
//! never needed by a normal run: it reads everything (every manifest, link and stored
//! blob), and it writes nothing but its run.
//!
//! Two phases, each resumable from its checkpoint like a collection:
//! - repositories, one per step: each manifest's distinct blobs give every link's count of
//!   references; every link's bytes must be in storage; every index's children must be
//!   manifests of the repository;
//! - the bytes in storage, page by page: each needs a blob record of its size whose count
//!   of linking repositories is the index's.
//!
//! Run beside pushes, a count can differ for a moment (a manifest put between the listing
//! of the manifests and of the links): a difference seen by two runs is real. Bytes with
//! no record are never such a moment, since a push writes the record before the bytes.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::model::{Digest, Reference};
use crate::ports::{BlobInventory, BlobStore, CollectableMeta};
use crate::runs::{Finding, FindingKind, GcPhase, GcProgress};

/// Items listed per page.
const PAGE: usize = 100;

/// One page of the current verification phase.
pub(super) async fn page<B: BlobStore + BlobInventory, M: CollectableMeta>(
    blobs: &B,
    meta: &M,
    run: &mut GcProgress,
) -> Result<()> {
    match run.checkpoint.phase {
        GcPhase::VerifyRepositories => repository(blobs, meta, run).await,
        GcPhase::VerifyBlobs => stored(blobs, meta, run).await,
        _ => Ok(()),
    }
}

/// Verifies the repository after the checkpoint's, whole (its counts need all of its
/// manifests: memory grows with the links of one repository).
async fn repository<B: BlobStore, M: CollectableMeta>(
    blobs: &B,
    meta: &M,
    run: &mut GcProgress,
) -> Result<()> {
    run.totals.metadata_calls += 1;
    let page = meta
        .list_repositories(run.checkpoint.repo_after.as_deref(), 1)
        .await?;
    let Some(repo) = page.items.into_iter().next() else {
        run.checkpoint.phase = GcPhase::VerifyBlobs;
        return Ok(());
    };
    let mut refs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut manifests = BTreeSet::new();
    let mut children = BTreeSet::new();
    let mut after: Option<Digest> = None;
    loop {
        run.totals.metadata_calls += 1;
        let listed = meta.list_manifests(&repo, after.as_ref(), PAGE).await?;
        for m in &listed {
            run.totals.metadata_calls += 1;
            // Gone since it was listed: a delete, whose counts the links already show.
            let Some(stored) = meta
                .manifest(&repo, &Reference::Digest(m.digest.clone()))
                .await?
            else {
                continue;
            };
            manifests.insert(m.digest.clone());
            let distinct: BTreeSet<&Digest> = stored.info.blobs.iter().collect();
            for b in distinct {
                *refs.entry(b.clone()).or_default() += 1;
            }
            children.extend(stored.info.children.iter().cloned());
        }
        after = listed.last().map(|m| m.digest.clone());
        if listed.len() < PAGE {
            break;
        }
    }
    for child in children.difference(&manifests) {
        run.found(Finding {
            kind: FindingKind::MissingChild,
            repository: Some(repo.clone()),
            digest: child.clone(),
            detail: "an index of the repository references it; the repository does not hold it"
                .into(),
        });
    }
    let mut after: Option<Digest> = None;
    loop {
        run.totals.metadata_calls += 1;
        let links = meta.list_links(&repo, after.as_ref(), PAGE).await?;
        for l in &links {
            run.totals.checked += 1;
            let want = refs.remove(&l.digest).unwrap_or(0);
            if l.refs != want {
                run.found(Finding {
                    kind: FindingKind::LinkRefs,
                    repository: Some(repo.clone()),
                    digest: l.digest.clone(),
                    detail: format!(
                        "the link counts {} referencing manifests; the manifests say {want}",
                        l.refs
                    ),
                });
            }
            run.totals.blob_calls += 1;
            if blobs.stat(&l.digest).await?.is_none() {
                run.found(Finding {
                    kind: FindingKind::MissingBytes,
                    repository: Some(repo.clone()),
                    digest: l.digest.clone(),
                    detail: format!(
                        "linked ({} referencing manifests); its bytes are not in storage",
                        l.refs
                    ),
                });
            }
        }
        after = links.last().map(|l| l.digest.clone());
        if links.len() < PAGE {
            break;
        }
    }
    for (digest, n) in refs {
        run.found(Finding {
            kind: FindingKind::MissingLink,
            repository: Some(repo.clone()),
            digest,
            detail: format!("{n} manifests of the repository reference it; it is not linked"),
        });
    }
    run.totals.checked += 1;
    run.checkpoint.repo_after = Some(repo);
    Ok(())
}

/// Verifies a page of the bytes in storage against the blob records.
async fn stored<B: BlobInventory, M: CollectableMeta>(
    blobs: &B,
    meta: &M,
    run: &mut GcProgress,
) -> Result<()> {
    run.totals.blob_calls += 1;
    let page = blobs
        .list_blobs(run.checkpoint.blob_after.as_ref(), PAGE)
        .await?;
    for e in &page {
        run.totals.checked += 1;
        run.totals.metadata_calls += 1;
        let Some(record) = meta.blob_record(&e.digest).await? else {
            run.found(Finding {
                kind: FindingKind::UntrackedBytes,
                repository: None,
                digest: e.digest.clone(),
                detail: format!("{} bytes in storage; no blob record", e.size),
            });
            continue;
        };
        if record.size != e.size {
            run.found(Finding {
                kind: FindingKind::RecordSize,
                repository: None,
                digest: e.digest.clone(),
                detail: format!(
                    "the record says {} bytes; storage holds {}",
                    record.size, e.size
                ),
            });
        }
        let mut holders = Vec::new();
        loop {
            run.totals.metadata_calls += 1;
            let repos = meta
                .repositories_with(&e.digest, holders.last().map(String::as_str), PAGE)
                .await?;
            let short = repos.len() < PAGE;
            holders.extend(repos);
            if short {
                break;
            }
        }
        let mut linking = holders.len() as u64;
        if record.links != linking {
            // The index also lists repositories holding the digest as a manifest: count
            // only those that link it.
            linking = 0;
            for r in &holders {
                run.totals.metadata_calls += 1;
                if meta.blob_link(r, &e.digest).await?.is_some() {
                    linking += 1;
                }
            }
        }
        if record.links != linking {
            run.found(Finding {
                kind: FindingKind::RecordLinks,
                repository: None,
                digest: e.digest.clone(),
                detail: format!(
                    "the record counts {} linking repositories; the index lists {linking}",
                    record.links
                ),
            });
        }
    }
    run.checkpoint.blob_after = page.last().map(|e| e.digest.clone());
    if page.len() < PAGE {
        run.checkpoint.phase = GcPhase::Done;
    }
    Ok(())
}

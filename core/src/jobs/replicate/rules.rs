//! A replication rule's run: the source's repositories and tags the rule selects, copied to
//! the destination (under the rule's namespace), tag by tag from a cursor, and with delete
//! sync the destination's tags the source no longer has deleted.
//!
//! Each tag is copied with [`copy_artifact`] (blobs, then children, then the manifest, then
//! referrers) and set last, so the destination is consistent whenever the run stops. The
//! cursor is saved by the caller after each step; a rerun from it repeats at most the tag
//! it stopped in, and that is idempotent.
//!
//! A failure that may pass (the remote is down: [`retryable`]) stops the step before the
//! tag, which the run's next attempt retries; anything else (a refused manifest, an
//! immutable tag) is the artifact's result and the run goes on.

use super::copy::copy_artifact;
use super::{Catalog, Source, Target, retryable};
use crate::error::{RegistryError, Result};
use crate::policy::replication::Rule;
use crate::runs::replication::{Execution, Item, Outcome, Phase};

/// Listing page size.
const PAGE: usize = 100;

/// Whether a step stopped because it ran out of budget, finished, or must be retried.
#[derive(Debug)]
pub enum Step {
    /// The budget ran out; more to do.
    More,
    /// Every repository is done.
    Done,
    /// A failure that may pass; the cursor is before it.
    Retry(RegistryError),
}

/// Advances `exec` by at most `budget` tags: from `src` (listed through its [`Catalog`])
/// to `dst`, whose tags `dst_catalog` lists (for delete sync).
pub async fn advance<S, T, C>(
    exec: &mut Execution,
    src: &S,
    dst: &T,
    dst_catalog: &C,
    budget: usize,
) -> Result<Step>
where
    S: Source + Catalog,
    T: Target,
    C: Catalog,
{
    let rule = exec.snapshot.clone();
    let mut left = budget;
    while !exec.cursor.done {
        let repo = match exec.cursor.repository.clone() {
            Some(r) => r,
            None => match next_repository(exec, src, None).await {
                Ok(Some(r)) => {
                    exec.cursor.repository = Some(r.clone());
                    r
                }
                Ok(None) => {
                    exec.cursor.done = true;
                    break;
                }
                Err(e) => return stop(e),
            },
        };
        let dst_repo = rule.destination(&repo);
        let page = match exec.cursor.phase {
            Phase::Tags => src.tags(&repo, exec.cursor.after.as_deref(), PAGE).await,
            Phase::Deletes => {
                dst_catalog
                    .tags(&dst_repo, exec.cursor.after.as_deref(), PAGE)
                    .await
            }
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => return stop(e),
        };
        for tag in page.iter().filter(|t| rule.selects_tag(t)) {
            if left == 0 {
                return Ok(Step::More);
            }
            left -= 1;
            let r = match exec.cursor.phase {
                Phase::Tags => copy_tag(&rule, src, dst, &repo, &dst_repo, tag).await,
                Phase::Deletes => delete_missing(src, dst, &repo, &dst_repo, tag).await,
            };
            match r {
                Ok(Some((item, report))) => {
                    if let Some(rep) = report {
                        exec.totals.blobs_copied += rep.blobs_copied;
                        exec.totals.bytes_copied += rep.bytes_copied;
                        exec.totals.manifests_copied += rep.manifests_copied;
                    }
                    exec.record(item);
                }
                Ok(None) => {}
                Err(e) if retryable(&e) => return Ok(Step::Retry(e)),
                Err(e) => exec.record(Item {
                    repository: repo.clone(),
                    tag: tag.clone(),
                    digest: None,
                    destination: dst_repo.clone(),
                    outcome: Outcome::Failed,
                    error: Some(e.message),
                }),
            }
            exec.cursor.after = Some(tag.clone());
        }
        if let Some(last) = page.last() {
            exec.cursor.after = Some(last.clone());
        }
        if page.len() == PAGE {
            continue;
        }
        // This phase of the repository is done.
        exec.cursor.after = None;
        if exec.cursor.phase == Phase::Tags && rule.delete_sync {
            exec.cursor.phase = Phase::Deletes;
            continue;
        }
        exec.cursor.phase = Phase::Tags;
        match next_repository(exec, src, Some(&repo)).await {
            Ok(Some(r)) => exec.cursor.repository = Some(r),
            Ok(None) => exec.cursor.done = true,
            Err(e) => return stop(e),
        }
    }
    Ok(Step::Done)
}

fn stop(e: RegistryError) -> Result<Step> {
    if retryable(&e) {
        Ok(Step::Retry(e))
    } else {
        Err(e)
    }
}

/// The first repository after `after` the run covers.
async fn next_repository<S: Catalog>(
    exec: &Execution,
    src: &S,
    after: Option<&str>,
) -> Result<Option<String>> {
    if let Some(only) = &exec.only {
        let mut only: Vec<&String> = only
            .iter()
            .filter(|r| exec.snapshot.selects_repository(r))
            .collect();
        only.sort();
        return Ok(only
            .into_iter()
            .find(|r| after.is_none_or(|a| r.as_str() > a))
            .cloned());
    }
    let mut after = after.map(str::to_owned);
    loop {
        let page = src.repositories(after.as_deref(), PAGE).await?;
        if let Some(r) = page.iter().find(|r| exec.snapshot.selects_repository(r)) {
            return Ok(Some(r.clone()));
        }
        if page.len() < PAGE {
            return Ok(None);
        }
        after = page.last().cloned();
    }
}

type Done = Option<(Item, Option<super::copy::CopyReport>)>;

/// Copies `repo:tag` to `dst_repo:tag`, or leaves it (present; override off).
async fn copy_tag<S: Source, T: Target>(
    rule: &Rule,
    src: &S,
    dst: &T,
    repo: &str,
    dst_repo: &str,
    tag: &str,
) -> Result<Done> {
    let Some(digest) = src.tag(repo, tag).await? else {
        return Ok(None);
    };
    let item = |outcome, error| Item {
        repository: repo.to_owned(),
        tag: tag.to_owned(),
        digest: Some(digest.to_string()),
        destination: dst_repo.to_owned(),
        outcome,
        error,
    };
    let at_dst = dst.resolve(dst_repo, tag).await?;
    if let Some(other) = &at_dst
        && *other != digest
        && !rule.override_tags
    {
        return Ok(Some((
            item(
                Outcome::Skipped,
                Some(format!(
                    "the destination's tag is at {other} and the rule's override is off"
                )),
            ),
            None,
        )));
    }
    let report = copy_artifact(src, dst, repo, dst_repo, &digest).await?;
    if at_dst.as_ref() != Some(&digest) {
        let m = src.manifest(repo, &digest).await?.ok_or_else(|| {
            RegistryError::new(
                crate::error::ErrorCode::ManifestUnknown,
                format!("{repo}:{tag} was deleted at the source during the copy"),
            )
        })?;
        dst.put_manifest(dst_repo, tag, &m).await?;
    }
    let outcome = if at_dst.as_ref() == Some(&digest) && report.manifests_copied == 0 {
        Outcome::Present
    } else {
        Outcome::Copied
    };
    Ok(Some((item(outcome, None), Some(report))))
}

/// Deletes `dst_repo:tag` if the source has no `repo:tag`.
async fn delete_missing<S: Source, T: Target>(
    src: &S,
    dst: &T,
    repo: &str,
    dst_repo: &str,
    tag: &str,
) -> Result<Done> {
    if src.tag(repo, tag).await?.is_some() {
        return Ok(None);
    }
    let Some(digest) = dst.resolve(dst_repo, tag).await? else {
        return Ok(None);
    };
    if let Err(e) = dst.delete_tag(dst_repo, tag).await {
        // Distribution before v3 deletes manifests by digest only (its tags go with them),
        // which is what Harbor does there too.
        if retryable(&e) || !matches!(e.status.as_u16(), 400 | 405) {
            return Err(e);
        }
        dst.delete_manifest(dst_repo, &digest).await?;
    }
    Ok(Some((
        Item {
            repository: repo.to_owned(),
            tag: tag.to_owned(),
            digest: Some(digest.to_string()),
            destination: dst_repo.to_owned(),
            outcome: Outcome::Deleted,
            error: None,
        },
        None,
    )))
}

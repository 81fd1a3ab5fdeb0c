//! The full walk: every tagged image of the source copied to a target, for what existed
//! before the target was added (the outbox only has what changed since).
//!
//! A target with no state yet starts with a walk; the outbox is read after it from the
//! walk's start minus [`crate::ports::OUTBOX_SKEW_MS`], so a change made while the walk ran (which the
//! walk may or may not have seen) is applied again from the source's current state. The
//! walk goes repository by repository and tag by tag in lexical order, its cursor saved
//! with the state after each step, so a walk of any size finishes in as many steps as it
//! takes. Each tag is copied as an artifact with its children and referrers and set last,
//! as the pass does; a manifest no tag names and no tagged manifest refers to is not
//! walked (registries replicate tagged content; such a manifest is garbage to be).

use super::copy::copy_artifact;
pub use super::state::Walk;
use super::state::{ReplicaState, refuse};
use super::{Source, Target, retryable};
use crate::error::Result;
use crate::ports::MetadataStore;

/// Walks at most `limit` tags; returns the number handled and whether the walk is done
/// (then the state's checkpoint is the walk's start). A retryable failure stops the walk
/// at the tag, recorded in `last_error`; a refusal is recorded and the tag passed over.
pub(super) async fn step<M, S, T>(
    meta: &M,
    src: &S,
    dst: &T,
    state: &mut ReplicaState,
    limit: usize,
) -> Result<(usize, bool)>
where
    M: MetadataStore,
    S: Source,
    T: Target,
{
    let Some(mut walk) = state.walk.take() else {
        return Ok((0, true));
    };
    let mut handled = 0;
    if walk.repository.is_none() {
        walk.repository = next_repository(meta, None).await?;
    }
    while handled < limit {
        let Some(repo) = walk.repository.clone() else {
            // Done: the outbox from the walk's start on.
            let from = format!("{:016}", walk.started_ms);
            if state.after.as_deref().is_none_or(|a| a < from.as_str()) {
                state.after = Some(from);
                state.recent.clear();
            }
            return Ok((handled, true));
        };
        let page = meta
            .list_tags(&repo, walk.tag.as_deref(), (limit - handled).min(100))
            .await?
            .map(|p| p.items)
            .unwrap_or_default();
        if page.is_empty() {
            walk.repository = next_repository(meta, Some(&repo)).await?;
            walk.tag = None;
            continue;
        }
        for tag in page {
            match copy_tag(src, dst, &repo, &tag, state).await {
                Ok(()) => {}
                Err(e) if retryable(&e) => {
                    state.last_error = Some(format!("walk {repo}:{tag}: {}", e.message));
                    state.walk = Some(walk);
                    return Ok((handled, false));
                }
                Err(e) => refuse(state, &format!("walk {repo}:{tag}"), &repo, e),
            }
            walk.tag = Some(tag);
            walk.tags += 1;
            handled += 1;
        }
    }
    state.walk = Some(walk);
    Ok((handled, false))
}

async fn next_repository<M: MetadataStore>(
    meta: &M,
    after: Option<&str>,
) -> Result<Option<String>> {
    Ok(meta
        .list_repositories(after, 1)
        .await?
        .items
        .into_iter()
        .next())
}

async fn copy_tag<S: Source, T: Target>(
    src: &S,
    dst: &T,
    repo: &str,
    tag: &str,
    state: &mut ReplicaState,
) -> Result<()> {
    let Some(digest) = src.tag(repo, tag).await? else {
        return Ok(()); // deleted since the page was read
    };
    let Some(m) = src.manifest(repo, &digest).await? else {
        return Ok(());
    };
    let r = copy_artifact(src, dst, repo, repo, &digest).await?;
    state.copied.add(&r);
    if dst.resolve(repo, tag).await?.as_ref() != Some(&digest) {
        dst.put_manifest(repo, tag, &m).await?;
        state.tags_set += 1;
    }
    Ok(())
}

/// A walk starting now.
pub(super) fn begin(now_ms: u64) -> Walk {
    Walk {
        started_ms: now_ms,
        ..Walk::default()
    }
}

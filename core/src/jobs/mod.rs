//! Scheduled work outside requests: garbage collection ([`gc`]) and the upload cleanup.
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`], [`crate::http`] (the
//! replication target speaks the distribution API) and [`crate::runs`].
//! Runtimes start them (a timer in `wharf serve`, the Worker's cron trigger, the jobs
//! Lambda) through the registry.

pub mod gc;
pub mod replicate;
mod verify;

/// What a scheduler asks for: the input of the jobs Lambda's EventBridge schedules
/// (`{"job":"gc"}`: Scheduler passes a target's input as it is, with no envelope), the
/// Worker's cron, `wharf serve`'s timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "job", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Queue a garbage-collection run with the schedule's grace, and advance runs.
    Gc,
    /// Advance the runs queued through the API (and any left unfinished), and a
    /// retention pass a deadline stopped.
    Advance,
    /// Remove abandoned uploads.
    CleanupUploads,
    /// Apply every project's retention policy (a pass, continued from its checkpoint).
    Retention,
    /// Copy the outbox's changes to the configured replica (another region's stores), from
    /// the replica's checkpoint: [`crate::Registry::replicate_until`]. Only a runtime that
    /// knows the replica runs it.
    Replicate,
    /// One tick of the replication rules' scheduler: schedules and on-push triggers queue
    /// runs, runs due advance ([`crate::Registry::replication_tick`]). Needs a connector to
    /// remote registries, which the runtime gives.
    ReplicationRules,
}

use crate::error::Result;
use crate::ports::{BlobStore, Env, MetadataStore};

/// Removes uploads untouched for `max_age_ms`, stopping after `max` removals: a runtime
/// that limits the calls one invocation may make (Workers: 1,000 subrequests) takes the
/// rest next time. Each removal is independent, so stopping early loses nothing.
pub async fn cleanup_uploads<B: BlobStore, M: MetadataStore, E: Env>(
    blobs: &B,
    meta: &M,
    env: &E,
    max_age_ms: u64,
    max: usize,
) -> Result<usize> {
    let before = env.now_ms().saturating_sub(max_age_ms);
    let mut removed = 0;
    while removed < max {
        let stale = meta.stale_uploads(before, (max - removed).min(100)).await?;
        if stale.is_empty() {
            break;
        }
        for u in &stale {
            blobs.abort(u).await?;
            meta.delete_upload(&u.id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

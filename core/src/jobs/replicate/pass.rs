//! The replication pass: the outbox's changes applied to a target, from a checkpoint.
//!
//! An entry says where to look, not what to write: each is applied from the source's state
//! when it is handled (a tag is set at the target only if the source's tag still points at
//! that manifest; a deletion is copied only if the thing is still gone). So entries may be
//! handled again, late or out of order without moving a tag back, and the pass converges
//! on the source's state whatever it was interrupted by.
//!
//! Entries of concurrent writers can become visible up to [`OUTBOX_SKEW_MS`] out of order,
//! so each step reads again from its checkpoint minus that window and skips the entries it
//! remembers handling in it (`recent`). A retryable failure (the target is down) stops the
//! step before the entry, which the next step retries; a refusal (the target denies an
//! immutable tag, say) is recorded and passed over, so one bad artifact never holds back
//! the others.
//!
//! A target with no state yet first gets everything the source already has ([`walk`]),
//! then the outbox from the walk's start.

use super::copy::copy_artifact;
use super::local::LocalSource;
use super::state::refuse;
pub use super::state::{Refusal, ReplicaState, STATE_KIND};
use super::walk;
use super::{Source, Target, retryable};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::ports::{BlobStore, DocumentStore, MetadataStore};
use crate::ports::{Change, OUTBOX_SKEW_MS, Outbox, OutboxEntry};

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Entries handled.
    pub handled: usize,
    /// Nothing is left to handle (as of this step).
    pub finished: bool,
    /// The state after the step.
    pub state: ReplicaState,
}

/// Options of a pass.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Entries one step handles at most.
    pub limit: usize,
    /// Copy deletions (manifests, tags) to the target.
    pub delete_sync: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        Self {
            limit: 100,
            delete_sync: true,
        }
    }
}

/// Loads a target's state; `None` for a target never replicated to.
pub async fn load<D: DocumentStore>(docs: &D, target: &str) -> Result<Option<ReplicaState>> {
    match docs.get_doc(STATE_KIND, target).await? {
        Some(raw) => serde_json::from_slice(&raw).map(Some).map_err(|e| {
            RegistryError::new(
                ErrorCode::Unknown,
                format!("replication state of {target}: {e}"),
            )
        }),
        None => Ok(None),
    }
}

async fn save<D: DocumentStore>(docs: &D, target: &str, s: &ReplicaState) -> Result<()> {
    let raw = serde_json::to_vec(s)
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("replication state: {e}")))?;
    docs.put_doc(STATE_KIND, target, &raw, false).await?;
    Ok(())
}

fn at_ms(seq: &str) -> u64 {
    seq.get(..16).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Handles the outbox entries after `target`'s checkpoint, at most `opts.limit`, and saves
/// the checkpoint.
pub async fn step<B, M, T>(
    blobs: &B,
    meta: &M,
    target: &T,
    name: &str,
    opts: PassOptions,
    now_ms: u64,
) -> Result<StepReport>
where
    B: BlobStore,
    M: MetadataStore + DocumentStore + Outbox,
    T: Target,
{
    let src = LocalSource { blobs, meta };
    let mut state = match load(meta, name).await? {
        Some(s) => s,
        None => ReplicaState {
            walk: Some(walk::begin(now_ms)),
            ..ReplicaState::default()
        },
    };
    state.last_error = None;
    let mut handled = 0;
    if state.walk.is_some() {
        let (n, done) = walk::step(meta, &src, target, &mut state, opts.limit).await?;
        handled = n;
        if !done {
            state.updated_ms = now_ms;
            save(meta, name, &state).await?;
            return Ok(StepReport {
                handled,
                finished: false,
                state,
            });
        }
    }
    let from = state
        .after
        .as_deref()
        .map(|a| format!("{:016}", at_ms(a).saturating_sub(OUTBOX_SKEW_MS)));
    let mut more = true;
    let mut cursor = from;
    'read: while handled < opts.limit && more {
        let page = meta.outbox_after(cursor.as_deref(), opts.limit).await?;
        more = page.len() == opts.limit;
        for e in page {
            cursor = Some(e.seq.clone());
            let old = state.after.as_deref().is_some_and(|a| e.seq.as_str() <= a);
            if old && state.recent.contains(&e.seq) {
                continue;
            }
            if handled == opts.limit {
                more = true;
                break 'read;
            }
            match apply(&src, target, &e, opts, &mut state).await {
                Ok(()) => {}
                Err(err) if retryable(&err) => {
                    state.last_error = Some(format!("{}: {}", e.seq, err.message));
                    more = true;
                    break 'read;
                }
                Err(err) => refuse(&mut state, &e.seq, repository(&e.change), err),
            }
            handled += 1;
            mark(&mut state, &e.seq);
        }
    }
    state.updated_ms = now_ms;
    save(meta, name, &state).await?;
    Ok(StepReport {
        handled,
        finished: !more && state.last_error.is_none(),
        state,
    })
}

/// Records `seq` as handled: the checkpoint moves forward, and the window of entries
/// handled behind it keeps only what a re-read can still reach.
fn mark(state: &mut ReplicaState, seq: &str) {
    if state.after.as_deref().is_none_or(|a| seq > a) {
        state.after = Some(seq.to_owned());
    }
    state.recent.push(seq.to_owned());
    let horizon = state
        .after
        .as_deref()
        .map_or(0, |a| at_ms(a).saturating_sub(OUTBOX_SKEW_MS));
    state.recent.retain(|s| at_ms(s) >= horizon);
}

fn repository(c: &Change) -> &str {
    match c {
        Change::ManifestPut { repository, .. }
        | Change::ManifestDeleted { repository, .. }
        | Change::TagDeleted { repository, .. }
        | Change::BlobLinked { repository, .. }
        | Change::BlobUnlinked { repository, .. } => repository,
    }
}

/// Applies one entry from the source's current state.
async fn apply<S: Source, T: Target>(
    src: &S,
    dst: &T,
    e: &OutboxEntry,
    opts: PassOptions,
    state: &mut ReplicaState,
) -> Result<()> {
    match &e.change {
        Change::ManifestPut {
            repository,
            digest,
            tags,
        } => {
            let Some(m) = src.manifest(repository, digest).await? else {
                return Ok(()); // deleted since: its deletion's entry follows
            };
            let r = copy_artifact(src, dst, repository, repository, digest).await?;
            state.copied.add(&r);
            for tag in tags {
                if src.tag(repository, tag).await?.as_ref() != Some(digest) {
                    continue; // moved since: a later entry sets it
                }
                if dst.resolve(repository, tag).await?.as_ref() == Some(digest) {
                    continue;
                }
                dst.put_manifest(repository, tag, &m).await?;
                state.tags_set += 1;
            }
        }
        Change::ManifestDeleted { repository, digest } if opts.delete_sync => {
            let gone = src.manifest(repository, digest).await?.is_none();
            if gone
                && dst
                    .resolve(repository, &digest.to_string())
                    .await?
                    .is_some()
            {
                dst.delete_manifest(repository, digest).await?;
                state.deleted += 1;
            }
        }
        Change::TagDeleted { repository, tag } if opts.delete_sync => {
            let gone = src.tag(repository, tag).await?.is_none();
            if gone && dst.resolve(repository, tag).await?.is_some() {
                dst.delete_tag(repository, tag).await?;
                state.deleted += 1;
            }
        }
        // Blobs travel with the manifests that reference them.
        _ => {}
    }
    Ok(())
}

/// How long the outbox keeps entries no target needs: an hour of history to look at.
const KEEP_MS: u64 = 3_600_000;

/// Removes outbox entries every target is past (at most `limit`): up to the oldest
/// checkpoint of any target's state minus [`OUTBOX_SKEW_MS`] (a step re-reads that window),
/// nor any enabled on-push replication rule's position, and never the last [`KEEP_MS`]. A target with no state yet needs none of them (it begins
/// with a walk), and a walking target only what follows its walk's start. A target taken
/// out of the configuration holds the outbox until its state is deleted.
pub async fn trim<M: DocumentStore + Outbox>(meta: &M, now_ms: u64, limit: usize) -> Result<usize> {
    let mut horizon = now_ms.saturating_sub(KEEP_MS);
    let mut after: Option<String> = None;
    loop {
        let page = meta
            .list_docs(STATE_KIND, "", after.as_deref(), 100)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, raw) in &page {
            let s: ReplicaState = serde_json::from_slice(raw).map_err(|e| {
                RegistryError::new(
                    ErrorCode::Unknown,
                    format!("replication state of {id}: {e}"),
                )
            })?;
            let needs = match (&s.walk, &s.after) {
                (Some(w), _) => w.started_ms,
                (None, Some(a)) => at_ms(a),
                (None, None) => 0,
            };
            horizon = horizon.min(needs.saturating_sub(OUTBOX_SKEW_MS));
        }
        if page.len() < 100 {
            break;
        }
    }
    // Enabled on-push rules read the outbox too, from their own positions.
    for rule in crate::policy::replication::rules(meta).await? {
        if rule.enabled && rule.trigger == crate::policy::replication::Trigger::OnPush {
            let st = crate::runs::replication::rule_state(meta, &rule.name).await?;
            if let Some(a) = &st.outbox_after {
                horizon = horizon.min(at_ms(a));
            }
        }
    }
    if horizon == 0 {
        return Ok(0);
    }
    // Entries sort by `<at_ms:016>-<suffix>`, the suffix of digits and letters, which `~`
    // sorts after: this bound takes every entry made before `horizon`.
    let upto = format!("{:016}-~", horizon - 1);
    Ok(meta.outbox_trim(&upto, limit).await?)
}

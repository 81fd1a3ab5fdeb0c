//! A target's replication state, one document per target, and what it records: the
//! outbox checkpoint, a walk's cursor, totals and refusals. The pass and the walk both
//! write it; neither owns the other's part.

use super::copy::CopyReport;
use crate::error::RegistryError;
use serde::{Deserialize, Serialize};

/// Document kind of a target's replication state (id: the target's name).
pub const STATE_KIND: &str = "replication_state";
/// Refusals a state lists, at most (the newest).
pub(super) const MAX_REFUSALS: usize = 100;

/// Where replication to one target is, and what it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// The newest outbox entry handled.
    #[serde(default)]
    pub after: Option<String>,
    /// Entries handled within [`crate::ports::OUTBOX_SKEW_MS`] before `after`.
    #[serde(default)]
    pub recent: Vec<String>,
    /// When a step last saved this.
    #[serde(default)]
    pub updated_ms: u64,
    /// What was copied, in all.
    #[serde(default)]
    pub copied: CopyReport,
    /// Tags set at the target.
    #[serde(default)]
    pub tags_set: u64,
    /// Manifests and tags deleted at the target.
    #[serde(default)]
    pub deleted: u64,
    /// Entries the target refused, newest last.
    #[serde(default)]
    pub refusals: Vec<Refusal>,
    /// Why the last step stopped early, if it did.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The full walk in progress, if any (a target added after content existed).
    #[serde(default)]
    pub walk: Option<Walk>,
}

/// An entry the target refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The entry.
    pub seq: String,
    /// Its repository.
    pub repository: String,
    /// The target's answer.
    pub error: String,
}

/// Where a walk is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// When it began: the outbox is read from here (minus the skew) once it is done.
    pub started_ms: u64,
    /// The repository being walked; `None` before the first.
    #[serde(default)]
    pub repository: Option<String>,
    /// The last tag done in it.
    #[serde(default)]
    pub tag: Option<String>,
    /// Tags copied or found in place so far.
    #[serde(default)]
    pub tags: u64,
}

/// Records an entry (or a walked tag) the target refused, keeping the newest
/// [`MAX_REFUSALS`].
pub(super) fn refuse(state: &mut ReplicaState, seq: &str, repository: &str, err: RegistryError) {
    state.refusals.push(Refusal {
        seq: seq.to_owned(),
        repository: repository.to_owned(),
        error: err.message,
    });
    let over = state.refusals.len().saturating_sub(MAX_REFUSALS);
    state.refusals.drain(..over);
}

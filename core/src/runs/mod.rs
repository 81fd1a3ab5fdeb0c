//! Runs of the scheduled jobs: what a run was asked, where it is, what it did, stored as
//! documents so that a run outlives the invocation that started it (a Lambda stops at 15
//! minutes, a Worker at its subrequest limit). The management API queues runs and reads
//! them; the runtimes' schedulers advance them ([`crate::jobs`]).
//!
//! Documents: `gc_run/<id>` (the run), `gc_active/<id>` (empty; one per unfinished run, so a
//! scheduler finds them without reading the history). Ids sort by start time.
//!
//! Runs of replication rules are in [`replication`].
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`] and [`crate::policy`] (a
//! replication run keeps the rule it was queued with).

pub mod replication;

use crate::error::{Result, StoreError};
use crate::model::{Digest, to_hex};
use crate::ports::{DocumentStore, Env};
use serde::{Deserialize, Serialize};

/// Items a run's record lists, at most (its totals count them all).
pub const MAX_LISTED: usize = 1000;
/// Document kind of runs.
const RUN: &str = "gc_run";
/// Document kind of unfinished runs.
const ACTIVE: &str = "gc_active";

/// What a run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcOptions {
    /// Nothing linked, uploaded, mounted or `HEAD`-checked more recently is collected.
    pub grace_ms: u64,
    /// Uploads not written to for this long are abandoned.
    pub upload_max_age_ms: u64,
    /// Decide and report, write nothing.
    pub dry_run: bool,
    /// Instead of collecting, recompute every count from the manifests and the bytes in
    /// storage and report where the bookkeeping differs ([`crate::jobs::verify`]). Writes
    /// nothing but the run.
    #[serde(default)]
    pub verify: bool,
}

/// Where a run is: the phase and the cursor in its work list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcCheckpoint {
    /// The phase.
    pub phase: GcPhase,
    /// Links: the last one decided.
    #[serde(default)]
    pub link_after: Option<(String, Digest)>,
    /// Blobs: the last one decided.
    #[serde(default)]
    pub blob_after: Option<Digest>,
    /// A dry run's links it would have collected (at most [`MAX_LISTED`]): the blobs they
    /// leave unlinked are what it reports it would delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_links: Vec<(String, Digest)>,
    /// Verification: the last repository checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_after: Option<String>,
}

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcPhase {
    /// Repository links no manifest of their repository references.
    #[default]
    Links,
    /// Abandoned uploads and their staged data.
    Uploads,
    /// Blobs no repository links.
    Blobs,
    /// Verification: each repository's links against its manifests.
    VerifyRepositories,
    /// Verification: the bytes in storage against the blob records.
    VerifyBlobs,
    /// Finished.
    Done,
}

/// What a verification found: a way the bookkeeping differs from what it should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A link's count of references differs from its repository's manifests' (too low, a
    /// collection could take a blob in use; too high, it is never freed).
    LinkRefs,
    /// A manifest references a blob its repository does not link: its pull fails.
    MissingLink,
    /// An index references a manifest its repository does not hold.
    MissingChild,
    /// A repository links a blob whose bytes are not in storage: data lost.
    MissingBytes,
    /// Bytes in storage with no blob record: nothing will ever collect them.
    UntrackedBytes,
    /// A blob record's count of linking repositories differs from the index's.
    RecordLinks,
    /// A blob record's size differs from the bytes in storage.
    RecordSize,
}

/// One difference a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// The repository, for a link's or a manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The blob or manifest.
    pub digest: Digest,
    /// What the bookkeeping says and what it should say.
    pub detail: String,
}

/// What was collected (or, in a dry run, would be), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcItem {
    /// `link`, `upload` or `blob`.
    pub kind: String,
    /// The repository (links, uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The digest (links, blobs) or upload id.
    pub name: String,
    /// Bytes it freed (blobs: in storage; links: counted in the repository).
    pub bytes: u64,
    /// Why it was collected.
    pub reason: String,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcTotals {
    /// Links removed.
    pub links: u64,
    /// Abandoned uploads removed.
    pub uploads: u64,
    /// Blobs deleted from storage.
    pub blobs: u64,
    /// Bytes of the blobs deleted.
    pub bytes: u64,
    /// Candidates kept because they were used within the grace period, or used since they
    /// were listed (a push won the race).
    pub kept: u64,
    /// Metadata store calls made.
    pub metadata_calls: u64,
    /// Blob store calls made.
    pub blob_calls: u64,
    /// Verification: repositories, links and blobs checked.
    #[serde(default)]
    pub checked: u64,
    /// Verification: differences found.
    #[serde(default)]
    pub differences: u64,
}

/// One run's progress, saved between steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcProgress {
    /// What it was asked.
    pub options: GcOptions,
    /// Where it is.
    pub checkpoint: GcCheckpoint,
    /// What it did so far.
    pub totals: GcTotals,
    /// What it collected, the first [`MAX_LISTED`].
    pub items: Vec<GcItem>,
    /// What a verification found, the first [`MAX_LISTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl GcProgress {
    /// A run that has not started.
    pub fn new(options: GcOptions) -> Self {
        let phase = if options.verify {
            GcPhase::VerifyRepositories
        } else {
            GcPhase::Links
        };
        Self {
            options,
            checkpoint: GcCheckpoint {
                phase,
                ..GcCheckpoint::default()
            },
            totals: GcTotals::default(),
            items: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Whether the run has finished.
    pub fn done(&self) -> bool {
        self.checkpoint.phase == GcPhase::Done
    }

    /// Counts in an item it collected, listing it while the list has room.
    pub fn collected(&mut self, item: GcItem) {
        if self.items.len() < MAX_LISTED {
            self.items.push(item);
        }
    }

    /// Counts in a difference a verification found, listing it while the list has room.
    pub fn found(&mut self, finding: Finding) {
        self.totals.differences += 1;
        if self.findings.len() < MAX_LISTED {
            self.findings.push(finding);
        }
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a scheduler.
    Queued,
    /// Started, not finished.
    Running,
    /// Done.
    Finished,
    /// Stopped by an error (`error` says which).
    Failed,
}

/// A garbage-collection run, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRun {
    /// Its id: start time and randomness, so ids sort by start.
    pub id: String,
    /// Who asked (a user, or `scheduler`).
    pub requested_by: String,
    /// Where it is.
    pub status: RunStatus,
    /// When it was queued.
    pub queued_ms: u64,
    /// When it finished or failed.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// What stopped it.
    #[serde(default)]
    pub error: Option<String>,
    /// Its progress.
    pub progress: GcProgress,
}

/// Queues a run of `options` asked by `by`.
pub async fn queue_gc<D: DocumentStore, E: Env>(
    docs: &D,
    env: &E,
    options: GcOptions,
    by: &str,
) -> Result<GcRun> {
    let now = env.now_ms();
    let mut r = [0u8; 6];
    env.fill_random(&mut r);
    let run = GcRun {
        id: format!("{now:013}-{}", to_hex(&r)),
        requested_by: by.to_owned(),
        status: RunStatus::Queued,
        queued_ms: now,
        finished_ms: None,
        error: None,
        progress: GcProgress::new(options),
    };
    save(docs, &run).await?;
    docs.put_doc(ACTIVE, &run.id, b"{}", false).await?;
    Ok(run)
}

/// Saves a run; once it is finished or failed, it is no longer active.
pub async fn save<D: DocumentStore>(docs: &D, run: &GcRun) -> Result<()> {
    let raw = serde_json::to_vec(run).map_err(|e| StoreError::Other(e.to_string()))?;
    docs.put_doc(RUN, &run.id, &raw, false).await?;
    if matches!(run.status, RunStatus::Finished | RunStatus::Failed) {
        docs.delete_doc(ACTIVE, &run.id).await?;
    }
    Ok(())
}

/// The run `id`.
pub async fn load<D: DocumentStore>(docs: &D, id: &str) -> Result<Option<GcRun>> {
    match docs.get_doc(RUN, id).await? {
        Some(raw) => Ok(Some(serde_json::from_slice(&raw).map_err(|_| {
            StoreError::Other(format!("corrupt garbage collection run {id}"))
        })?)),
        None => Ok(None),
    }
}

/// Unfinished runs, oldest first, at most `limit`.
pub async fn active<D: DocumentStore>(docs: &D, limit: usize) -> Result<Vec<GcRun>> {
    let mut out = Vec::new();
    for (id, _) in docs.list_docs(ACTIVE, "", None, limit).await? {
        match load(docs, &id).await? {
            Some(run) => out.push(run),
            // Its record is gone (a failed write in between): nothing to advance.
            None => {
                docs.delete_doc(ACTIVE, &id).await?;
            }
        }
    }
    Ok(out)
}

/// Runs after `after`, oldest first, at most `limit`: the history.
pub async fn history<D: DocumentStore>(
    docs: &D,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<GcRun>> {
    let mut out = Vec::new();
    for (id, raw) in docs.list_docs(RUN, "", after, limit).await? {
        out.push(
            serde_json::from_slice(&raw)
                .map_err(|_| StoreError::Other(format!("corrupt garbage collection run {id}")))?,
        );
    }
    Ok(out)
}

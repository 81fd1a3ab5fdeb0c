//! Runs ("executions", as Harbor calls them) of replication rules, stored so a run outlives
//! the invocation that advances it, with a cursor to resume from, per-artifact results and
//! the failed attempts it was retried after.
//!
//! Documents: `repl_exec/<rule>/<id>` (the run; ids sort by start), `repl_active/<rule>`
//! (the id of the rule's one unfinished run: created only if absent, so two triggers, two
//! schedulers or a double click never start a second run of a rule), and
//! `repl_rule_state/<rule>` (when its schedule last fired, how far its on-push trigger
//! read the outbox).

use super::MAX_LISTED;
use crate::error::{ErrorCode, RegistryError, Result, StoreError};
use crate::model::to_hex;
use crate::policy::replication::Rule;
use crate::ports::{DocumentStore, Env};
use serde::{Deserialize, Serialize};

/// Document kind of runs.
pub const EXEC: &str = "repl_exec";
/// Document kind of the active-run claims.
pub const ACTIVE: &str = "repl_active";
/// Document kind of a rule's trigger state.
pub const RULE_STATE: &str = "repl_rule_state";
/// Failed attempts after which a run gives up.
pub const MAX_ATTEMPTS: u32 = 5;
/// The longest wait between attempts.
pub const MAX_BACKOFF_MS: u64 = 600_000;
/// Finished runs kept per rule.
pub const HISTORY_KEPT: usize = 50;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Started {
    /// Someone asked.
    Manual,
    /// The rule's schedule.
    Scheduled,
    /// Pushes to what the rule selects.
    OnPush,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Waiting for the scheduler.
    Queued,
    /// Started.
    Running,
    /// An attempt failed on something that may pass (the remote was down); waiting for
    /// `next_attempt_ms`.
    Retrying,
    /// Done; every artifact copied, present, skipped or deleted.
    Succeeded,
    /// Done, with artifacts that failed, or gave up after [`MAX_ATTEMPTS`].
    Failed,
}

/// What became of one artifact (a tag, or a tag deleted by delete sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Copied (its manifest, blobs or tag were written).
    Copied,
    /// The destination had it all.
    Present,
    /// Left as it was: the destination's tag points elsewhere and override is off.
    Skipped,
    /// Deleted at the destination (delete sync).
    Deleted,
    /// Refused by the destination or the source (the error says why).
    Failed,
}

/// One artifact's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Source repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The manifest it named at the source, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The destination repository.
    pub destination: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why, for skipped and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTotals {
    /// Artifacts decided.
    pub artifacts: u64,
    /// See [`Outcome`].
    pub copied: u64,
    /// See [`Outcome`].
    pub present: u64,
    /// See [`Outcome`].
    pub skipped: u64,
    /// See [`Outcome`].
    pub deleted: u64,
    /// See [`Outcome`].
    pub failed: u64,
    /// Blobs uploaded.
    pub blobs_copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Manifests stored.
    pub manifests_copied: u64,
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// When it failed.
    pub at_ms: u64,
    /// Why.
    pub error: String,
}

/// Which half of a repository a run is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Copying the source's tags.
    #[default]
    Tags,
    /// Deleting the destination's tags the source lacks (delete sync).
    Deletes,
}

/// Where a run resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The repository in progress (`None`: none started yet).
    #[serde(default)]
    pub repository: Option<String>,
    /// Its phase.
    #[serde(default)]
    pub phase: Phase,
    /// The last tag finished in that phase.
    #[serde(default)]
    pub after: Option<String>,
    /// Every repository is done.
    #[serde(default)]
    pub done: bool,
}

/// A run, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Its id: start time and randomness, so ids sort by start.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    /// What started it.
    pub trigger: Started,
    /// Who asked (a user, or `scheduler`).
    pub requested_by: String,
    /// Where it is.
    pub status: ExecStatus,
    /// When it was queued and when it ended (ms).
    pub started_ms: u64,
    /// See `started_ms`.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not advanced before this (ms).
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// Why it failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Only these source repositories (an on-push run: the ones pushed to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// The rule as it was when the run was queued: an edit does not change a run midway.
    pub snapshot: Rule,
    /// Where it resumes.
    #[serde(default)]
    pub cursor: Cursor,
    /// Counts.
    #[serde(default)]
    pub totals: ExecTotals,
    /// Per-artifact results (the first [`MAX_LISTED`]).
    #[serde(default)]
    pub items: Vec<Item>,
    /// Failed attempts.
    #[serde(default)]
    pub retries: Vec<Retry>,
}

impl Execution {
    /// Whether it has ended.
    pub fn finished(&self) -> bool {
        matches!(self.status, ExecStatus::Succeeded | ExecStatus::Failed)
    }

    /// Records an artifact's result.
    pub fn record(&mut self, item: Item) {
        self.totals.artifacts += 1;
        match item.outcome {
            Outcome::Copied => self.totals.copied += 1,
            Outcome::Present => self.totals.present += 1,
            Outcome::Skipped => self.totals.skipped += 1,
            Outcome::Deleted => self.totals.deleted += 1,
            Outcome::Failed => self.totals.failed += 1,
        }
        if self.items.len() < MAX_LISTED {
            self.items.push(item);
        }
    }

    /// Records a failed attempt that may pass later: retried after a backoff doubling from
    /// `base_ms`, or failed after [`MAX_ATTEMPTS`].
    pub fn retry_later(&mut self, error: String, now_ms: u64, base_ms: u64) {
        self.attempts += 1;
        self.retries.push(Retry {
            at_ms: now_ms,
            error: error.clone(),
        });
        if self.attempts >= MAX_ATTEMPTS {
            self.end(ExecStatus::Failed, Some(error), now_ms);
        } else {
            let wait = base_ms
                .saturating_mul(1 << (self.attempts - 1).min(20))
                .min(MAX_BACKOFF_MS);
            self.status = ExecStatus::Retrying;
            self.error = Some(error);
            self.next_attempt_ms = now_ms + wait;
        }
    }

    /// Ends the run.
    pub fn end(&mut self, status: ExecStatus, error: Option<String>, now_ms: u64) {
        self.status = status;
        self.error = error;
        self.finished_ms = Some(now_ms);
    }

    /// The view the history lists: without the items.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("items");
            o.remove("snapshot");
        }
        v
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, format!("corrupt {what}: {e}"))
}

/// Queues a run of `rule`; a rule with a run unfinished gets 409 (`CONFLICT`) naming it.
pub async fn queue<D: DocumentStore, E: Env>(
    docs: &D,
    env: &E,
    rule: &Rule,
    trigger: Started,
    by: &str,
    only: Option<Vec<String>>,
) -> Result<Execution> {
    let now = env.now_ms();
    let mut r = [0u8; 4];
    env.fill_random(&mut r);
    let exec = Execution {
        id: format!("{now:013}-{}", to_hex(&r)),
        rule: rule.name.clone(),
        trigger,
        requested_by: by.to_owned(),
        status: ExecStatus::Queued,
        started_ms: now,
        finished_ms: None,
        attempts: 0,
        next_attempt_ms: now,
        error: None,
        only,
        snapshot: rule.clone(),
        cursor: Cursor::default(),
        totals: ExecTotals::default(),
        items: Vec::new(),
        retries: Vec::new(),
    };
    match docs
        .put_doc(ACTIVE, &rule.name, exec.id.as_bytes(), true)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Precondition(_)) => {
            let running = docs
                .get_doc(ACTIVE, &rule.name)
                .await?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            return Err(RegistryError::new(
                ErrorCode::Conflict,
                format!(
                    "rule {} has a run that has not finished ({running}); a rule runs once at a time",
                    rule.name
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    save(docs, &exec).await?;
    Ok(exec)
}

/// Writes a run; a finished one releases its rule's claim and prunes old history.
pub async fn save<D: DocumentStore>(docs: &D, exec: &Execution) -> Result<()> {
    let raw = serde_json::to_vec(exec).map_err(|e| corrupt("replication run", e))?;
    docs.put_doc(EXEC, &format!("{}/{}", exec.rule, exec.id), &raw, false)
        .await?;
    if exec.finished() {
        if docs.get_doc(ACTIVE, &exec.rule).await?.as_deref() == Some(exec.id.as_bytes()) {
            docs.delete_doc(ACTIVE, &exec.rule).await?;
        }
        let ids = ids(docs, &exec.rule).await?;
        if ids.len() > HISTORY_KEPT {
            for id in &ids[..ids.len() - HISTORY_KEPT] {
                docs.delete_doc(EXEC, &format!("{}/{id}", exec.rule))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn ids<D: DocumentStore>(docs: &D, rule: &str) -> Result<Vec<String>> {
    let prefix = format!("{rule}/");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = docs.list_docs(EXEC, &prefix, after.as_deref(), 200).await?;
        let n = page.len();
        for (id, _) in page {
            out.push(id[prefix.len()..].to_owned());
            after = Some(id);
        }
        if n < 200 {
            return Ok(out);
        }
    }
}

/// A run of `rule`.
pub async fn load<D: DocumentStore>(docs: &D, rule: &str, id: &str) -> Result<Option<Execution>> {
    match docs.get_doc(EXEC, &format!("{rule}/{id}")).await? {
        Some(raw) => Ok(Some(
            serde_json::from_slice(&raw).map_err(|e| corrupt("replication run", e))?,
        )),
        None => Ok(None),
    }
}

/// The rule's runs, newest first, at most `limit`.
pub async fn history<D: DocumentStore>(
    docs: &D,
    rule: &str,
    limit: usize,
) -> Result<Vec<Execution>> {
    let mut out = Vec::new();
    for id in ids(docs, rule).await?.iter().rev().take(limit) {
        if let Some(e) = load(docs, rule, id).await? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Every unfinished run (one per rule at most). A claim whose run is gone or finished (a
/// crash between the two writes) is released.
pub async fn active<D: DocumentStore>(docs: &D) -> Result<Vec<Execution>> {
    let mut out = Vec::new();
    for (rule, id) in docs.list_docs(ACTIVE, "", None, 1000).await? {
        let id = String::from_utf8_lossy(&id).into_owned();
        match load(docs, &rule, &id).await? {
            Some(e) if !e.finished() => out.push(e),
            _ => {
                docs.delete_doc(ACTIVE, &rule).await?;
            }
        }
    }
    Ok(out)
}

/// Removes a deleted rule's runs, claim and trigger state.
pub async fn forget<D: DocumentStore>(docs: &D, rule: &str) -> Result<()> {
    for id in ids(docs, rule).await? {
        docs.delete_doc(EXEC, &format!("{rule}/{id}")).await?;
    }
    docs.delete_doc(ACTIVE, rule).await?;
    docs.delete_doc(RULE_STATE, rule).await?;
    Ok(())
}

/// What a rule's triggers remember.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// When the schedule last fired (ms).
    #[serde(default)]
    pub last_scheduled_ms: u64,
    /// The last outbox entry the on-push trigger read.
    #[serde(default)]
    pub outbox_after: Option<String>,
}

/// A rule's trigger state.
pub async fn rule_state<D: DocumentStore>(docs: &D, rule: &str) -> Result<RuleState> {
    match docs.get_doc(RULE_STATE, rule).await? {
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt("replication rule state", e)),
        None => Ok(RuleState::default()),
    }
}

/// Writes a rule's trigger state.
pub async fn save_rule_state<D: DocumentStore>(docs: &D, rule: &str, s: &RuleState) -> Result<()> {
    let raw = serde_json::to_vec(s).map_err(|e| corrupt("replication rule state", e))?;
    Ok(docs.put_doc(RULE_STATE, rule, &raw, false).await?)
}

/// Document kind of the leases on a rule's runs.
pub const LEASE: &str = "repl_lease";

/// A scheduler's hold on a rule's run, so two schedulers (overlapping Lambda invocations,
/// a Worker cron and a manual tick) never advance one run at once. Leases are documents
/// `repl_lease/<rule>#<generation>` created only if absent: an expired lease is taken over
/// by creating the next generation, which exactly one contender can do.
#[derive(Debug, Clone)]
pub struct Lease {
    id: String,
    until_ms: u64,
}

/// The lease of the run of `rule` until `until_ms`, or `None` while another holds it.
pub async fn take_lease<D: DocumentStore>(
    docs: &D,
    rule: &str,
    now_ms: u64,
    until_ms: u64,
) -> Result<Option<Lease>> {
    let prefix = format!("{rule}#");
    let held = docs.list_docs(LEASE, &prefix, None, 100).await?;
    let mut generation = 0u64;
    for (id, raw) in &held {
        let g: u64 = id[prefix.len()..].parse().unwrap_or(0);
        generation = generation.max(g);
        let expiry: u64 = String::from_utf8_lossy(raw).parse().unwrap_or(0);
        if expiry > now_ms {
            return Ok(None);
        }
    }
    let id = format!("{prefix}{:010}", generation + 1);
    match docs
        .put_doc(LEASE, &id, until_ms.to_string().as_bytes(), true)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Precondition(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    for (old, _) in held {
        docs.delete_doc(LEASE, &old).await?;
    }
    Ok(Some(Lease { id, until_ms }))
}

impl Lease {
    /// Extends the lease to `until_ms`, if it is still held at `now_ms`: a lease that
    /// expired may have been taken over, so its holder must stop (`Conflict`) rather than
    /// write its document back and hold it beside the new holder.
    pub async fn renew<D: DocumentStore>(
        &mut self,
        docs: &D,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<()> {
        let lost = || {
            RegistryError::new(
                ErrorCode::Conflict,
                format!("the lease {} expired and may be another's", self.id),
            )
        };
        if now_ms >= self.until_ms {
            return Err(lost());
        }
        let stored = docs.get_doc(LEASE, &self.id).await?;
        if stored.as_deref() != Some(self.until_ms.to_string().as_bytes()) {
            return Err(lost());
        }
        docs.put_doc(LEASE, &self.id, until_ms.to_string().as_bytes(), false)
            .await?;
        self.until_ms = until_ms;
        Ok(())
    }

    /// Gives the lease up.
    pub async fn release<D: DocumentStore>(self, docs: &D) -> Result<()> {
        docs.delete_doc(LEASE, &self.id).await?;
        Ok(())
    }
}

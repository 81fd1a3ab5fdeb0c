//! The scheduler of replication rules, one tick at a time (every few seconds in `wharf
//! serve`, each invocation of the jobs function elsewhere): schedules and on-push triggers
//! queue runs, and the runs due are advanced under a lease until the tick's deadline.
//!
//! An on-push rule reads the outbox from the position it last read to: the repositories
//! pushed to that it selects make one run (with any a failed on-push run left undone). A
//! rule with a run unfinished keeps its position, so the pushes meanwhile make the next run.

use super::local::LocalSource;
use super::rules::{Step, advance};
use super::v2::{Transport, V2Target};
use super::{Catalog, Source};
use crate::auth::sealed::SealKey;
use crate::error::{ErrorCode, Result};
use crate::policy::replication::{self, Credentials, Direction, Remote, Trigger};
use crate::ports::{BlobStore, Change, Env, Outbox, ServingMeta};
use crate::runs::replication::{self as runs, ExecStatus, Execution, Started};

/// Connects to remote registries: HTTP in the runtimes, anything in tests.
pub trait Connector {
    /// How requests get there.
    type Transport: Transport;
    /// A transport to `remote` that logs in with `credentials`.
    fn connect(&self, remote: &Remote, credentials: Option<Credentials>)
    -> Result<Self::Transport>;
}

/// What a tick is given.
pub struct Tick<'a, C> {
    /// Remote registries.
    pub connector: &'a C,
    /// Opens remotes' passwords.
    pub key: Option<&'a SealKey>,
    /// No run is advanced past this (ms).
    pub deadline_ms: u64,
    /// The first retry's wait; each next one doubles.
    pub retry_base_ms: u64,
}

/// What a tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    /// Runs queued by schedules and pushes.
    pub queued: usize,
    /// Runs advanced.
    pub advanced: usize,
    /// Runs that ended.
    pub finished: usize,
}

/// How long a lease outlives its last renewal: longer than any one tag's copy.
const LEASE_MS: u64 = 15 * 60_000;
/// Tags one step copies before the run's record is saved.
const STEP: usize = 20;
/// Outbox entries an on-push rule reads per tick, at most.
const OUTBOX_PAGES: usize = 20;

/// One tick over the registry's stores; `local` sends requests to this registry (a pull
/// rule writes through it, so its handlers check and record every write).
pub async fn tick<B, M, E, L, C>(
    blobs: &B,
    meta: &M,
    env: &E,
    local: &L,
    t: Tick<'_, C>,
) -> Result<TickReport>
where
    B: BlobStore,
    M: ServingMeta + Outbox,
    E: Env,
    L: Transport,
    C: Connector,
{
    let mut report = TickReport::default();
    for rule in replication::rules(meta).await? {
        if !rule.enabled {
            continue;
        }
        match rule.trigger {
            Trigger::Manual => {}
            Trigger::Scheduled { every_secs } => {
                let mut st = runs::rule_state(meta, &rule.name).await?;
                let now = env.now_ms();
                if now.saturating_sub(st.last_scheduled_ms) >= every_secs * 1000 {
                    if queue_quietly(meta, env, &rule, Started::Scheduled, None).await? {
                        report.queued += 1;
                    }
                    st.last_scheduled_ms = now;
                    runs::save_rule_state(meta, &rule.name, &st).await?;
                }
            }
            Trigger::OnPush => {
                if on_push(meta, env, &rule).await? {
                    report.queued += 1;
                }
            }
        }
    }
    let src_local = LocalSource { blobs, meta };
    let dst_local = V2Target {
        transport: local,
        base: String::new(),
    };
    for exec in runs::active(meta).await? {
        let now = env.now_ms();
        if exec.next_attempt_ms > now || now >= t.deadline_ms {
            continue;
        }
        let Some(mut lease) = runs::take_lease(meta, &exec.rule, now, now + LEASE_MS).await? else {
            continue;
        };
        report.advanced += 1;
        let r = run(meta, env, &t, exec, &src_local, &dst_local, &mut lease).await;
        lease.release(meta).await?;
        if r? {
            report.finished += 1;
        }
    }
    Ok(report)
}

/// Queues a run; false when the rule has one unfinished.
async fn queue_quietly<M: ServingMeta, E: Env>(
    meta: &M,
    env: &E,
    rule: &replication::Rule,
    trigger: Started,
    only: Option<Vec<String>>,
) -> Result<bool> {
    match runs::queue(meta, env, rule, trigger, "scheduler", only).await {
        Ok(_) => Ok(true),
        Err(e) if e.code == ErrorCode::Conflict => Ok(false),
        Err(e) => Err(e),
    }
}

/// The on-push trigger of `rule`: true if it queued a run.
async fn on_push<M: ServingMeta + Outbox, E: Env>(
    meta: &M,
    env: &E,
    rule: &replication::Rule,
) -> Result<bool> {
    if meta.get_doc(runs::ACTIVE, &rule.name).await?.is_some() {
        return Ok(false);
    }
    let mut st = runs::rule_state(meta, &rule.name).await?;
    // A new rule sees the pushes from when it was written: what existed before is a
    // manual run's to copy. (Outbox positions are `<at_ms:016>-<suffix>`.)
    if st.outbox_after.is_none() {
        st.outbox_after = Some(format!("{:016}-", rule.updated_ms));
    }
    let mut repos: Vec<String> = Vec::new();
    let mut after = st.outbox_after.clone();
    for _ in 0..OUTBOX_PAGES {
        let page = meta.outbox_after(after.as_deref(), 500).await?;
        for e in &page {
            let repo = match &e.change {
                Change::ManifestPut { repository, .. } => repository,
                Change::ManifestDeleted { repository, .. }
                | Change::TagDeleted { repository, .. }
                    if rule.delete_sync =>
                {
                    repository
                }
                _ => continue,
            };
            if rule.selects_repository(repo) && !repos.contains(repo) {
                repos.push(repo.clone());
            }
        }
        match page.last() {
            Some(l) => after = Some(l.seq.clone()),
            None => break,
        }
        if page.len() < 500 {
            break;
        }
    }
    if repos.is_empty() {
        if after != st.outbox_after {
            st.outbox_after = after;
            runs::save_rule_state(meta, &rule.name, &st).await?;
        }
        return Ok(false);
    }
    // What a failed on-push run left undone goes with this one.
    if let Some(last) = runs::history(meta, &rule.name, 1).await?.first()
        && last.trigger == Started::OnPush
        && last.status == ExecStatus::Failed
        && let Some(only) = &last.only
    {
        for r in only {
            if !repos.contains(r) {
                repos.push(r.clone());
            }
        }
    }
    let queued = queue_quietly(meta, env, rule, Started::OnPush, Some(repos)).await?;
    if queued {
        st.outbox_after = after;
        runs::save_rule_state(meta, &rule.name, &st).await?;
    }
    Ok(queued)
}

/// Advances one run until it ends, must wait, or the deadline; true if it ended.
#[allow(clippy::too_many_arguments)]
async fn run<M, E, S, L, C>(
    meta: &M,
    env: &E,
    t: &Tick<'_, C>,
    mut exec: Execution,
    src_local: &S,
    dst_local: &V2Target<&L>,
    lease: &mut runs::Lease,
) -> Result<bool>
where
    M: ServingMeta,
    E: Env,
    S: Source + Catalog,
    L: Transport,
    C: Connector,
{
    let remote = match replication::remote(meta, &exec.snapshot.remote).await? {
        Some(r) => r,
        None => {
            let e = format!("remote {} no longer exists", exec.snapshot.remote);
            exec.end(ExecStatus::Failed, Some(e), env.now_ms());
            runs::save(meta, &exec).await?;
            return Ok(true);
        }
    };
    let connected = remote
        .credentials(t.key)
        .and_then(|c| t.connector.connect(&remote, c));
    let transport = match connected {
        Ok(tr) => tr,
        Err(e) => {
            exec.end(ExecStatus::Failed, Some(e.message), env.now_ms());
            runs::save(meta, &exec).await?;
            return Ok(true);
        }
    };
    let far = V2Target {
        transport,
        base: remote.url.clone(),
    };
    exec.status = ExecStatus::Running;
    runs::save(meta, &exec).await?;
    loop {
        let step = match exec.snapshot.direction {
            Direction::Push => advance(&mut exec, src_local, &far, &far, STEP).await,
            Direction::Pull => advance(&mut exec, &far, dst_local, src_local, STEP).await,
        };
        let now = env.now_ms();
        match step {
            Ok(Step::More) if now < t.deadline_ms => {
                // Renewed before the save: a scheduler that lost its lease writes nothing.
                if let Err(e) = lease.renew(meta, now, now + LEASE_MS).await {
                    tracing::warn!(rule = %exec.rule, error = %e, "replication run's lease lost; stopping");
                    return Ok(false);
                }
                runs::save(meta, &exec).await?;
                continue;
            }
            Ok(Step::More) => {}
            Ok(Step::Done) => {
                let failed = exec.totals.failed;
                if failed == 0 {
                    exec.end(ExecStatus::Succeeded, None, now);
                } else {
                    let e = format!("{failed} artifacts failed (see items)");
                    exec.end(ExecStatus::Failed, Some(e), now);
                }
            }
            Ok(Step::Retry(e)) => exec.retry_later(e.message, now, t.retry_base_ms),
            Err(e) => exec.end(ExecStatus::Failed, Some(e.message), now),
        }
        runs::save(meta, &exec).await?;
        if exec.finished() {
            tracing::info!(
                rule = %exec.rule,
                run = %exec.id,
                status = ?exec.status,
                copied = exec.totals.copied,
                failed = exec.totals.failed,
                "replication run ended"
            );
        }
        return Ok(exec.finished());
    }
}

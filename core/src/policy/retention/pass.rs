//! The scheduled retention job as a pass over every project that has a policy, resumable:
//! a runtime that bounds one invocation (the Worker's subrequests, Lambda's 15 minutes)
//! advances the pass a budget of store calls at a time and saves where it got to, and the
//! next invocation continues from there. Every step re-decides from the store, so a step
//! repeated (a checkpoint lost to a crash, two invocations at once) deletes nothing a
//! single one would keep.

use super::run::{Calls, Scope, apply_repos};
use super::{RetentionPolicy, RetentionReport};
use crate::error::{Result, StoreError};
use crate::events::{Emitter, Event};
use crate::policy::{self, PolicyKind, immutability};
use crate::ports::{ConditionalTags, DocumentStore, ManifestIndex, MetadataStore};
use serde::{Deserialize, Serialize};

/// Where the pass is saved: one document, since passes follow each other.
const KIND: &str = "retention_pass";
const ID: &str = "current";

/// What one project's policy did in a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectTotals {
    /// The project.
    pub project: String,
    /// Repositories decided whole.
    pub repositories: u64,
    /// Artifacts kept.
    pub kept: u64,
    /// Artifacts deleted.
    pub deleted: u64,
    /// Tags deleted.
    pub tags_deleted: u64,
}

/// A retention pass and its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPass {
    /// When it started (ms).
    pub started_ms: u64,
    /// When it finished (ms); none while it runs.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The last project (with a policy) it finished, in name order.
    #[serde(default)]
    pub after_project: Option<String>,
    /// The project it is in, with what it did there so far.
    #[serde(default)]
    pub current: Option<ProjectTotals>,
    /// The last repository of the current project it finished.
    #[serde(default)]
    pub after_repo: Option<String>,
    /// The projects it finished, in order.
    #[serde(default)]
    pub projects: Vec<ProjectTotals>,
    /// Why its last step failed, if it did (the next step tries again).
    #[serde(default)]
    pub error: Option<String>,
}

impl RetentionPass {
    /// Artifacts deleted so far, over every project.
    pub fn deleted(&self) -> u64 {
        self.projects.iter().map(|p| p.deleted).sum::<u64>()
            + self.current.as_ref().map_or(0, |p| p.deleted)
    }
}

/// The saved pass, if any.
pub async fn load<D: DocumentStore>(docs: &D) -> Result<Option<RetentionPass>> {
    match docs.get_doc(KIND, ID).await? {
        // A checkpoint this version cannot read starts over: a pass only re-decides.
        Some(raw) => Ok(serde_json::from_slice(&raw).ok()),
        None => Ok(None),
    }
}

/// Saves the pass.
pub async fn save<D: DocumentStore>(docs: &D, pass: &RetentionPass) -> Result<()> {
    let raw = serde_json::to_vec(pass).map_err(|e| StoreError::Other(e.to_string()))?;
    docs.put_doc(KIND, ID, &raw, false).await?;
    Ok(())
}

/// Advances `pass` by about `budget` store calls, project by project in name order, and
/// emits what an API run would (deletions, and `RetentionRan` per project finished). A
/// registry whose deletes are disabled refuses at the first project with a policy.
pub async fn advance<M>(
    meta: &M,
    pass: &mut RetentionPass,
    now_ms: u64,
    delete_enabled: bool,
    events: &Emitter,
    budget: u64,
) -> Result<()>
where
    M: MetadataStore + ManifestIndex + ConditionalTags + DocumentStore,
{
    let mut calls = Calls::new(budget);
    while pass.finished_ms.is_none() && !calls.exhausted() {
        let project = match &pass.current {
            Some(p) => p.project.clone(),
            None => {
                calls.spend(1);
                let next = meta
                    .list_docs(
                        PolicyKind::Retention.as_str(),
                        "",
                        pass.after_project.as_deref(),
                        1,
                    )
                    .await?;
                let Some((project, _)) = next.into_iter().next() else {
                    pass.finished_ms = Some(now_ms);
                    break;
                };
                pass.current = Some(ProjectTotals {
                    project: project.clone(),
                    ..ProjectTotals::default()
                });
                pass.after_repo = None;
                project
            }
        };
        // The policy (and the project's incarnation), then the immutability rules.
        calls.spend(4);
        let stored =
            policy::load::<RetentionPolicy, _>(meta, PolicyKind::Retention, &project).await?;
        let done = match stored {
            // Set in an incarnation of the project that was deleted: nothing to apply.
            None => {
                pass.current = None;
                pass.after_project = Some(project);
                pass.after_repo = None;
                continue;
            }
            Some(stored) => {
                policy::check_delete(delete_enabled)?;
                let immutable = immutability::project_rules(meta, &project).await?;
                let scope = Scope {
                    project: &project,
                    policy: &stored.policy,
                    immutable: immutable.as_ref(),
                    now_ms,
                    dry_run: false,
                };
                let mut report = RetentionReport::default();
                let done = apply_repos(
                    meta,
                    &scope,
                    events,
                    &mut pass.after_repo,
                    &mut calls,
                    &mut report,
                )
                .await?;
                if let Some(t) = pass.current.as_mut() {
                    t.repositories += report.repositories;
                    t.kept += report.kept;
                    t.deleted += report.deleted;
                    t.tags_deleted += report.tags_deleted;
                }
                done
            }
        };
        if !done {
            break;
        }
        if let Some(t) = pass.current.take() {
            events.emit(Event::RetentionRan {
                project: t.project.clone(),
                dry_run: false,
                kept: t.kept,
                deleted: t.deleted,
            });
            pass.after_project = Some(t.project.clone());
            pass.projects.push(t);
        }
        pass.after_repo = None;
    }
    Ok(())
}

//! Applying a policy: listing a project's repositories and artifacts through the index,
//! deciding, and deleting by conditional tag writes.

use super::{Artifact, ImmutabilityPolicy, RetentionPolicy, decide};
use crate::error::{Result, StoreError};
use crate::events::{Emitter, Event};
use crate::model::name::project_of;
use crate::model::{Digest, Reference};
use crate::policy::{self, PolicyKind, immutability};
use crate::ports::{ConditionalTags, DocumentStore, ManifestIndex, MetadataStore, all_tag_entries};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Repositories the policy covers.
    pub repositories: u64,
    /// Artifacts kept.
    pub kept: u64,
    /// Artifacts deleted (or to delete).
    pub deleted: u64,
    /// Tags deleted (or to delete).
    pub tags_deleted: u64,
    /// Every decision, repository by repository.
    pub decisions: Vec<super::Decision>,
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("index") || media_type.contains("manifest.list")
}

/// Lists one repository's artifacts.
async fn artifacts<M: MetadataStore + ManifestIndex>(
    meta: &M,
    repo: &str,
    calls: &mut Calls,
) -> Result<Vec<Artifact>> {
    let mut tags: BTreeMap<Digest, Vec<(String, u64)>> = BTreeMap::new();
    let entries = all_tag_entries(meta, repo).await?;
    // A call a page of 1,000, and the empty page that ends the listing.
    calls.spend((entries.len() as u64).div_ceil(1000) + 1);
    for t in entries {
        tags.entry(t.digest)
            .or_default()
            .push((t.tag, t.pushed_ms.unwrap_or(0)));
    }
    let mut out = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = meta.list_manifests(repo, after.as_ref(), 1000).await?;
        calls.spend(1);
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for m in page {
            let t = tags.remove(&m.digest).unwrap_or_default();
            let tag_pushed = t.iter().map(|(_, p)| *p).max().unwrap_or(0);
            let children = if is_index(&m.media_type) {
                calls.spend(1);
                meta.manifest(repo, &Reference::Digest(m.digest.clone()))
                    .await?
                    .map(|s| s.info.children)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            out.push(Artifact {
                pushed_ms: m.pushed_ms.unwrap_or(tag_pushed),
                pulled_ms: m.pulled_ms,
                subject: m.subject,
                tags: t.into_iter().map(|(t, _)| t).collect(),
                digest: m.digest,
                children,
            });
        }
    }
    Ok(out)
}

/// Runs `project`'s retention policy under its immutability rules, as the API's run and the
/// scheduled job both do, and emits `RetentionRan`; `None` if the project has no policy.
/// A registry whose deletes are disabled refuses a run of a policy that is not dry
/// (`UNSUPPORTED`); a project without one has nothing to refuse.
pub async fn run_project<M>(
    meta: &M,
    project: &str,
    now_ms: u64,
    dry_run: bool,
    delete_enabled: bool,
    events: &Emitter,
) -> Result<Option<RetentionReport>>
where
    M: MetadataStore + ManifestIndex + ConditionalTags + DocumentStore,
{
    let Some(stored) =
        policy::load::<RetentionPolicy, _>(meta, PolicyKind::Retention, project).await?
    else {
        return Ok(None);
    };
    if !dry_run {
        policy::check_delete(delete_enabled)?;
    }
    let immutable = immutability::project_rules(meta, project).await?;
    let report = apply(
        meta,
        project,
        &stored.policy,
        immutable.as_ref(),
        now_ms,
        dry_run,
        events,
    )
    .await?;
    events.emit(Event::RetentionRan {
        project: project.to_owned(),
        dry_run,
        kept: report.kept,
        deleted: report.deleted,
    });
    Ok(Some(report))
}

/// Store calls a step may make, counted as it goes: a runtime that limits the calls of one
/// invocation (the Worker's subrequests) stops a pass in time and continues it later.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    /// Calls made.
    pub made: u64,
    /// Calls allowed.
    pub budget: u64,
}

impl Calls {
    /// No calls made yet, `budget` allowed.
    pub fn new(budget: u64) -> Self {
        Self { made: 0, budget }
    }
    pub(crate) fn spend(&mut self, n: u64) {
        self.made = self.made.saturating_add(n);
    }
    /// The budget is spent.
    pub fn exhausted(&self) -> bool {
        self.made >= self.budget
    }
}

/// Decides every repository of `project` under `policy` and, unless `dry_run`, deletes
/// what no rule keeps: its tags first, each only if it still points at the artifact (a
/// push that moved one meanwhile keeps it, and the artifact with it), then the manifest.
/// Emits a `TagDeleted`/`ManifestDeleted` per deletion, as an API delete would.
pub async fn apply<M: MetadataStore + ManifestIndex + ConditionalTags>(
    meta: &M,
    project: &str,
    policy: &RetentionPolicy,
    immutable: Option<&ImmutabilityPolicy>,
    now_ms: u64,
    dry_run: bool,
    events: &Emitter,
) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        dry_run,
        ..RetentionReport::default()
    };
    let mut after = None;
    let mut calls = Calls::new(u64::MAX);
    let scope = Scope {
        project,
        policy,
        immutable,
        now_ms,
        dry_run,
    };
    apply_repos(meta, &scope, events, &mut after, &mut calls, &mut report).await?;
    Ok(report)
}

/// What one project's application decides under.
pub(crate) struct Scope<'a> {
    pub project: &'a str,
    pub policy: &'a RetentionPolicy,
    pub immutable: Option<&'a ImmutabilityPolicy>,
    pub now_ms: u64,
    pub dry_run: bool,
}

/// [`apply`] from the repository after `after` on, until every repository is done (`true`)
/// or `calls` is spent (`false`). `after` names the last repository finished: a
/// repository stopped halfway is decided again whole next time, which deletes nothing a
/// finished one would keep (what was deleted is in no rule's keep set, so the sets are
/// the same without it). Each repository stopped halfway has deleted at least one
/// artifact, so a pass advances whatever its budget.
pub(crate) async fn apply_repos<M: MetadataStore + ManifestIndex + ConditionalTags>(
    meta: &M,
    scope: &Scope<'_>,
    events: &Emitter,
    after: &mut Option<String>,
    calls: &mut Calls,
    report: &mut RetentionReport,
) -> Result<bool> {
    let prefix = format!("{}/", scope.project);
    loop {
        let from = after.clone().unwrap_or_else(|| prefix.clone());
        let page = meta.list_repositories(Some(&from), 1000).await?;
        calls.spend(1);
        for repo in &page.items {
            if !repo.starts_with(&prefix) || project_of(repo) != scope.project {
                return Ok(true);
            }
            if !apply_repo(meta, scope, repo, events, calls, report).await? {
                return Ok(false);
            }
            *after = Some(repo.clone());
            if calls.exhausted() {
                return Ok(false);
            }
        }
        if !page.more {
            return Ok(true);
        }
    }
}

/// One repository of [`apply_repos`]: `false` if `calls` ran out before its deletions did.
async fn apply_repo<M: MetadataStore + ManifestIndex + ConditionalTags>(
    meta: &M,
    scope: &Scope<'_>,
    repo: &str,
    events: &Emitter,
    calls: &mut Calls,
    report: &mut RetentionReport,
) -> Result<bool> {
    let all = artifacts(meta, repo, calls).await?;
    let Some(mut decisions) = decide(scope.policy, scope.immutable, repo, &all, scope.now_ms)
    else {
        return Ok(true);
    };
    // Indexes and subjects before what they hold, so nothing is left dangling by a run
    // stopped halfway.
    decisions.sort_by_key(|d| {
        all.iter().find(|a| a.digest == d.digest).map_or(1, |a| {
            u8::from(a.children.is_empty()) + u8::from(a.subject.is_some())
        })
    });
    let mut kept = 0;
    let mut deleted_here = 0;
    for d in &mut decisions {
        if d.keep {
            kept += 1;
            continue;
        }
        if scope.dry_run {
            report.deleted += 1;
            report.tags_deleted += d.tags.len() as u64;
            continue;
        }
        if deleted_here > 0 && calls.exhausted() {
            return Ok(false);
        }
        let mut moved = None;
        for t in &d.tags {
            calls.spend(1);
            match meta
                .delete_tag_expecting(repo, t, &d.digest, scope.now_ms)
                .await
            {
                Ok(true) => {
                    report.tags_deleted += 1;
                    events.emit(Event::TagDeleted {
                        repository: repo.to_owned(),
                        tag: t.clone(),
                    });
                }
                Ok(false) => {}
                Err(StoreError::Precondition(_)) => moved = Some(t.clone()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(t) = moved {
            d.keep = true;
            d.reason = format!(
                "kept: tag {t} was moved by a push after the decision; {}",
                d.reason
            );
            kept += 1;
            continue;
        }
        calls.spend(1);
        if meta.delete_manifest(repo, &d.digest, scope.now_ms).await? {
            events.emit(Event::ManifestDeleted {
                repository: repo.to_owned(),
                digest: d.digest.clone(),
            });
        }
        report.deleted += 1;
        deleted_here += 1;
    }
    report.repositories += 1;
    report.kept += kept;
    report.decisions.extend(decisions);
    Ok(true)
}

//! Retention: per project, which artifacts (manifests with their tags) to keep; the rest
//! of each repository the policy covers is deleted. Two grammars:
//!
//! - **Harbor's rules**, OR'ed "what to keep": repository and tag selectors, untagged
//!   artifacts in or out, and a template (the most recently pushed or pulled N, pushed
//!   or pulled within D days, always). A repository no rule selects is left alone; in one
//!   that is selected, an artifact no rule keeps is deleted.
//! - **An ECR lifecycle policy** (rulePriority, selection, action `expire`) with ECR's
//!   semantics: each image is decided by the highest-priority rule that selects it
//!   (tagStatus, tagPrefixList / tagPatternList), which expires it or not by its count
//!   (imageCountMoreThan, sinceImagePushed, sinceImagePulled); images no rule selects
//!   are kept. It applies to every repository of the project.
//!
//! The unit is the artifact (a digest and all its tags), so a tag is never deleted from
//! under a digest that another tag keeps (Harbor #8717). Never deleted: an artifact with an
//! immutable tag, the children of a kept index, the referrers (signatures, SBOMs) of a kept
//! artifact; referrers and children follow what they belong to. Every decision carries
//! its reason, which is what a dry run prints. [`decide`] is pure; [`apply`] lists,
//! decides and deletes by conditional tag writes, so a tag moved by a push after the
//! decision is not deleted.

use crate::error::{ErrorCode, RegistryError, Result};
use crate::model::Digest;
use crate::policy::immutability::ImmutabilityPolicy;
use crate::policy::patterns::{Selector, within_project};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub mod pass;
mod run;
pub use run::{Calls, RetentionReport, apply, run_project};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// What a Harbor rule keeps of what it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Keep {
    /// The N most recently pushed (Harbor's `latestPushedK`).
    #[serde(alias = "latestPushedK")]
    LatestPushed(u32),
    /// The N most recently pulled (`latestPulledN`); never-pulled ones last.
    #[serde(alias = "latestPulledN")]
    LatestPulled(u32),
    /// Pushed within the last D days (`nDaysSinceLastPush`).
    #[serde(alias = "nDaysSinceLastPush")]
    PushedWithinDays(u32),
    /// Pulled within the last D days (`nDaysSinceLastPull`).
    #[serde(alias = "nDaysSinceLastPull")]
    PulledWithinDays(u32),
    /// Everything selected.
    Always,
}

/// A Harbor retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarborRule {
    /// Repositories (names within the project); all by default.
    #[serde(default)]
    pub repositories: Selector,
    /// Tags; an artifact is selected if any of its tags is. All by default.
    #[serde(default)]
    pub tags: Selector,
    /// Whether untagged artifacts are selected too.
    #[serde(default)]
    pub untagged: bool,
    /// What is kept of the selected.
    pub keep: Keep,
    /// A disabled rule keeps nothing and selects no repository.
    #[serde(default)]
    pub disabled: bool,
}

/// An ECR lifecycle rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcrRule {
    /// Lower first; unique.
    pub rule_priority: u32,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which images, and when they expire.
    pub selection: EcrSelection,
    /// `{"type": "expire"}`.
    pub action: EcrAction,
}

/// An ECR rule's selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcrSelection {
    /// `tagged`, `untagged` or `any`.
    pub tag_status: String,
    /// With `tagged`: each prefix must begin one of the image's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_prefix_list: Vec<String>,
    /// With `tagged`: each pattern (`*` any characters) must match one of its tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_pattern_list: Vec<String>,
    /// `imageCountMoreThan`, `sinceImagePushed` or `sinceImagePulled`.
    pub count_type: String,
    /// `days` for the `since…` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_unit: Option<String>,
    /// The count.
    pub count_number: u32,
}

/// An ECR rule's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcrAction {
    /// Only `expire`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A project's retention policy, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum RetentionPolicy {
    /// Harbor's rules.
    Harbor {
        /// OR'ed.
        rules: Vec<HarborRule>,
    },
    /// An ECR lifecycle policy.
    Ecr {
        /// In priority order once validated.
        rules: Vec<EcrRule>,
    },
}

/// What the API takes: either grammar, told apart by its fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RetentionInput {
    /// `{"rules": [{"rulePriority": …, "selection": …, "action": …}]}`.
    Ecr {
        /// The rules.
        rules: Vec<EcrRule>,
    },
    /// `{"rules": [{"tags": …, "keep": …}]}`.
    Harbor {
        /// The rules.
        rules: Vec<HarborRule>,
    },
}

fn bad(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

impl crate::policy::ProjectPolicy for RetentionPolicy {
    const KIND: crate::policy::PolicyKind = crate::policy::PolicyKind::Retention;
    type Input = RetentionInput;
    fn from_input(input: RetentionInput) -> Result<Self> {
        input.into_policy()
    }
    fn summary(&self) -> String {
        match self {
            Self::Harbor { rules } => format!("{} Harbor rules", rules.len()),
            Self::Ecr { rules } => format!("ECR lifecycle policy of {} rules", rules.len()),
        }
    }
}

impl RetentionInput {
    /// The policy it means, validated (ECR's rules sorted by priority).
    pub fn into_policy(self) -> Result<RetentionPolicy> {
        match self {
            Self::Harbor { rules } => {
                if rules.len() > 15 {
                    return Err(bad("at most 15 retention rules per project (as Harbor)"));
                }
                for r in &rules {
                    r.repositories.validate("repositories")?;
                    r.tags.validate("tags")?;
                }
                Ok(RetentionPolicy::Harbor { rules })
            }
            Self::Ecr { mut rules } => {
                rules.sort_by_key(|r| r.rule_priority);
                let mut seen = BTreeSet::new();
                for (i, r) in rules.iter().enumerate() {
                    let s = &r.selection;
                    let n = r.rule_priority;
                    if !seen.insert(n) {
                        return Err(bad(format!("rulePriority {n} appears twice")));
                    }
                    if r.action.kind != "expire" {
                        return Err(bad(format!("rule {n}: action type must be \"expire\"")));
                    }
                    match s.tag_status.as_str() {
                        "tagged"
                            if s.tag_prefix_list.is_empty() && s.tag_pattern_list.is_empty() =>
                        {
                            return Err(bad(format!(
                                "rule {n}: tagStatus tagged needs a tagPrefixList or a tagPatternList"
                            )));
                        }
                        "tagged" => {}
                        "any" if i + 1 != rules.len() => {
                            return Err(bad(format!(
                                "rule {n}: tagStatus any must be the lowest-priority rule"
                            )));
                        }
                        "untagged" | "any"
                            if s.tag_prefix_list.is_empty() && s.tag_pattern_list.is_empty() => {}
                        other => {
                            return Err(bad(format!(
                                "rule {n}: tagStatus {other:?} (with these lists) is not one of tagged, untagged, any"
                            )));
                        }
                    }
                    match (s.count_type.as_str(), s.count_unit.as_deref()) {
                        ("imageCountMoreThan", None) if s.count_number >= 1 => {}
                        ("sinceImagePushed" | "sinceImagePulled", Some("days"))
                            if s.count_number >= 1 => {}
                        (t, u) => {
                            return Err(bad(format!(
                                "rule {n}: countType {t:?} with countUnit {u:?} and countNumber {} (imageCountMoreThan takes no unit, the since… counts take \"days\"; the number is at least 1)",
                                s.count_number
                            )));
                        }
                    }
                }
                Ok(RetentionPolicy::Ecr { rules })
            }
        }
    }
}

/// An artifact of a repository, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its manifest.
    pub digest: Digest,
    /// Its tags.
    pub tags: Vec<String>,
    /// When pushed (0 if unknown: older than everything).
    pub pushed_ms: u64,
    /// When last pulled, if ever.
    pub pulled_ms: Option<u64>,
    /// The manifest it is a referrer of.
    pub subject: Option<Digest>,
    /// The manifests it lists, if it is an index.
    pub children: Vec<Digest>,
}

/// What becomes of an artifact, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Its repository.
    pub repository: String,
    /// Its manifest.
    pub digest: Digest,
    /// Its tags.
    pub tags: Vec<String>,
    /// Kept or deleted.
    pub keep: bool,
    /// Why, in words.
    pub reason: String,
}

fn ago(now_ms: u64, t: u64) -> String {
    if t == 0 {
        return "at an unknown time".to_owned();
    }
    let days = now_ms.saturating_sub(t) / DAY_MS;
    match days {
        0 => "today".to_owned(),
        1 => "1 day ago".to_owned(),
        d => format!("{d} days ago"),
    }
}

fn pulled(now_ms: u64, a: &Artifact) -> String {
    a.pulled_ms.map_or("never pulled".to_owned(), |t| {
        format!("pulled {}", ago(now_ms, t))
    })
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Newest first by `key`, ties by digest, so a decision never depends on listing order.
fn ranked(mut v: Vec<&Artifact>, key: impl Fn(&Artifact) -> u64) -> Vec<&Artifact> {
    v.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.digest.cmp(&b.digest)));
    v
}

/// Decides one repository's artifacts; `None` if the policy does not cover it.
pub fn decide(
    policy: &RetentionPolicy,
    immutable: Option<&ImmutabilityPolicy>,
    repo: &str,
    artifacts: &[Artifact],
    now_ms: u64,
) -> Option<Vec<Decision>> {
    // Referrers and index children are decided by what they belong to, below.
    let child_of: BTreeSet<&Digest> = artifacts.iter().flat_map(|a| &a.children).collect();
    let own = |a: &&Artifact| {
        a.subject.is_none() && (!child_of.contains(&a.digest) || !a.tags.is_empty())
    };
    let roots: Vec<&Artifact> = artifacts.iter().filter(own).collect();
    // digest → (keep, reason) for the roots.
    let mut fate: BTreeMap<&Digest, (bool, String)> = BTreeMap::new();
    match policy {
        RetentionPolicy::Harbor { rules } => {
            let name = within_project(repo);
            let live: Vec<(usize, &HarborRule)> = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.disabled && r.repositories.selects(name))
                .map(|(i, r)| (i + 1, r))
                .collect();
            if live.is_empty() {
                return None;
            }
            for (n, r) in &live {
                let selected: Vec<&Artifact> = roots
                    .iter()
                    .copied()
                    .filter(|a| {
                        if a.tags.is_empty() {
                            r.untagged
                        } else {
                            a.tags.iter().any(|t| r.tags.selects(t))
                        }
                    })
                    .collect();
                let kept: Vec<(&Artifact, String)> = match r.keep {
                    Keep::LatestPushed(k) => ranked(selected, |a| a.pushed_ms)
                        .into_iter()
                        .take(k as usize)
                        .enumerate()
                        .map(|(i, a)| {
                            (a, format!("kept by rule {n}: the {} most recently pushed of the {k} it keeps", ordinal(i + 1)))
                        })
                        .collect(),
                    Keep::LatestPulled(k) => ranked(selected, |a| a.pulled_ms.unwrap_or(0))
                        .into_iter()
                        .take(k as usize)
                        .enumerate()
                        .map(|(i, a)| {
                            (a, format!("kept by rule {n}: the {} most recently pulled of the {k} it keeps ({})", ordinal(i + 1), pulled(now_ms, a)))
                        })
                        .collect(),
                    Keep::PushedWithinDays(d) => selected
                        .into_iter()
                        .filter(|a| a.pushed_ms > 0 && now_ms.saturating_sub(a.pushed_ms) < u64::from(d) * DAY_MS)
                        .map(|a| (a, format!("kept by rule {n}: pushed {}, within {d} days", ago(now_ms, a.pushed_ms))))
                        .collect(),
                    Keep::PulledWithinDays(d) => selected
                        .into_iter()
                        .filter(|a| a.pulled_ms.is_some_and(|t| now_ms.saturating_sub(t) < u64::from(d) * DAY_MS))
                        .map(|a| (a, format!("kept by rule {n}: {}, within {d} days", pulled(now_ms, a))))
                        .collect(),
                    Keep::Always => selected
                        .into_iter()
                        .map(|a| (a, format!("kept by rule {n}: always")))
                        .collect(),
                };
                for (a, why) in kept {
                    fate.entry(&a.digest).or_insert((true, why));
                }
            }
            for a in &roots {
                fate.entry(&a.digest).or_insert_with(|| {
                    (
                        false,
                        format!(
                            "deleted: pushed {}, {}; no rule keeps it",
                            ago(now_ms, a.pushed_ms),
                            pulled(now_ms, a)
                        ),
                    )
                });
            }
        }
        RetentionPolicy::Ecr { rules } => {
            let wildcard = |p: &str, t: &str| glob_match::glob_match(&p.replace('*', "**"), t);
            let selects = |r: &EcrRule, a: &Artifact| {
                let s = &r.selection;
                match s.tag_status.as_str() {
                    "untagged" => a.tags.is_empty(),
                    "any" => true,
                    _ => {
                        !a.tags.is_empty()
                            && s.tag_prefix_list
                                .iter()
                                .all(|p| a.tags.iter().any(|t| t.starts_with(p.as_str())))
                            && s.tag_pattern_list
                                .iter()
                                .all(|p| a.tags.iter().any(|t| wildcard(p, t)))
                    }
                }
            };
            for r in rules {
                let n = r.rule_priority;
                let mine: Vec<&Artifact> = roots
                    .iter()
                    .copied()
                    .filter(|a| !fate.contains_key(&a.digest) && selects(r, a))
                    .collect();
                let s = &r.selection;
                let limit_ms = u64::from(s.count_number) * DAY_MS;
                match s.count_type.as_str() {
                    "imageCountMoreThan" => {
                        for (i, a) in ranked(mine, |a| a.pushed_ms).into_iter().enumerate() {
                            let keep = i < s.count_number as usize;
                            let why = if keep {
                                format!(
                                    "kept by rule {n}: the {} most recently pushed of the {} it keeps",
                                    ordinal(i + 1),
                                    s.count_number
                                )
                            } else {
                                format!(
                                    "deleted by rule {n}: the {} most recently pushed, beyond its {} (pushed {})",
                                    ordinal(i + 1),
                                    s.count_number,
                                    ago(now_ms, a.pushed_ms)
                                )
                            };
                            fate.insert(&a.digest, (keep, why));
                        }
                    }
                    kind => {
                        for a in mine {
                            let (t, what) = if kind == "sinceImagePulled" {
                                (
                                    a.pulled_ms.unwrap_or(a.pushed_ms),
                                    "last pulled (or pushed, if never pulled)",
                                )
                            } else {
                                (a.pushed_ms, "pushed")
                            };
                            let old = now_ms.saturating_sub(t) > limit_ms;
                            let why = format!(
                                "{} rule {n}: {what} {}, {} {} days",
                                if old { "deleted by" } else { "kept by" },
                                ago(now_ms, t),
                                if old { "more than" } else { "within" },
                                s.count_number
                            );
                            fate.insert(&a.digest, (!old, why));
                        }
                    }
                }
            }
            for a in &roots {
                fate.entry(&a.digest)
                    .or_insert_with(|| (true, "kept: no rule selects it".to_owned()));
            }
        }
    }
    // An immutable tag keeps its artifact whatever a rule said.
    if let Some(imm) = immutable {
        for a in &roots {
            if let Some((t, (k, _))) = a
                .tags
                .iter()
                .find_map(|t| imm.rule_for(repo, t).map(|r| (t, r)))
                && let Some(f) = fate.get_mut(&a.digest)
                && !f.0
            {
                *f = (
                    true,
                    format!(
                        "kept: tag {t} is immutable (immutability rule {k}); {}",
                        f.1
                    ),
                );
            }
        }
    }
    // Children of a kept index are kept; referrers follow their subject. An index's
    // children are listed before a child is decided, so propagate to a fixed point.
    let by_digest: BTreeMap<&Digest, &Artifact> =
        artifacts.iter().map(|a| (&a.digest, a)).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for a in artifacts {
            if fate.contains_key(&a.digest) {
                continue;
            }
            let parents: Vec<&Artifact> = artifacts
                .iter()
                .filter(|p| p.children.contains(&a.digest))
                .collect();
            if let Some(p) = parents
                .iter()
                .find(|p| fate.get(&p.digest).is_some_and(|f| f.0))
            {
                fate.insert(
                    &a.digest,
                    (true, format!("kept: in kept index {}", p.digest)),
                );
                changed = true;
            } else if !parents.is_empty() && parents.iter().all(|p| fate.contains_key(&p.digest)) {
                fate.insert(
                    &a.digest,
                    (false, format!("deleted with index {}", parents[0].digest)),
                );
                changed = true;
            } else if let Some(s) = &a.subject {
                match fate.get(s) {
                    Some((true, _)) => {
                        fate.insert(&a.digest, (true, format!("kept: refers to kept {s}")));
                        changed = true;
                    }
                    Some((false, _)) => {
                        fate.insert(
                            &a.digest,
                            (false, format!("deleted with {s}, which it refers to")),
                        );
                        changed = true;
                    }
                    None if !by_digest.contains_key(s) => {
                        fate.insert(
                            &a.digest,
                            (
                                true,
                                format!("kept: refers to {s}, which is not in the repository"),
                            ),
                        );
                        changed = true;
                    }
                    None => {}
                }
            }
        }
    }
    Some(
        artifacts
            .iter()
            .map(|a| {
                let (keep, reason) = fate
                    .get(&a.digest)
                    .cloned()
                    .unwrap_or((true, "kept: undecided (a cycle of references)".to_owned()));
                Decision {
                    repository: repo.to_owned(),
                    digest: a.digest.clone(),
                    tags: a.tags.clone(),
                    keep,
                    reason,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;

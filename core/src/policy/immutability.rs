//! Tag immutability: per project, rules of repository and tag patterns (Harbor's); a tag a
//! rule selects, once set, is never moved or deleted: by a push, the API or retention.
//! The push enforces it with a conditional tag write ([`crate::ports::ConditionalTags`]),
//! so of two racing pushes of one immutable tag exactly one wins. ECR's
//! `imageTagMutability` (with its exclusion filters) is accepted and stored as a rule.

use crate::error::{ErrorCode, RegistryError, Result};
use crate::model::name::project_of;
use crate::policy::patterns::{Selector, within_project};
use crate::policy::{PolicyKind, load};
use crate::ports::DocumentStore;
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// One rule: the tags it selects, in the repositories it selects, are immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutabilityRule {
    /// Repositories (their names within the project); all by default.
    #[serde(default)]
    pub repositories: Selector,
    /// Tags.
    pub tags: Selector,
    /// A disabled rule is kept but selects nothing.
    #[serde(default)]
    pub disabled: bool,
}

/// A project's immutability rules; a tag is immutable if any enabled rule selects it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutabilityPolicy {
    /// The rules, numbered from 1 in messages.
    pub rules: Vec<ImmutabilityRule>,
}

/// What the API takes: wharf's rules, or an ECR repository's tag mutability settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImmutabilityInput {
    /// `{"rules": [...]}`.
    Rules(ImmutabilityPolicy),
    /// `{"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION", "imageTagMutabilityExclusionFilters": [...]}`.
    #[serde(rename_all = "camelCase")]
    Ecr {
        /// `MUTABLE`, `IMMUTABLE` or `IMMUTABLE_WITH_EXCLUSION`.
        image_tag_mutability: String,
        /// `{"filterType": "WILDCARD", "filter": "latest"}` each.
        #[serde(default)]
        image_tag_mutability_exclusion_filters: Vec<EcrFilter>,
    },
}

/// An ECR exclusion filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcrFilter {
    /// Only `WILDCARD`.
    pub filter_type: String,
    /// The pattern (`*` any characters).
    pub filter: String,
}

fn bad(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

impl ImmutabilityInput {
    /// The rules it means, validated.
    pub fn into_policy(self) -> Result<ImmutabilityPolicy> {
        let policy = match self {
            Self::Rules(p) => p,
            Self::Ecr {
                image_tag_mutability,
                image_tag_mutability_exclusion_filters: filters,
            } => {
                let tags = match image_tag_mutability.as_str() {
                    "MUTABLE" => return Ok(ImmutabilityPolicy::default()),
                    "IMMUTABLE" if filters.is_empty() => Selector::Matches("**".into()),
                    "IMMUTABLE_WITH_EXCLUSION" if !filters.is_empty() => {
                        if let Some(f) = filters.iter().find(|f| f.filter_type != "WILDCARD") {
                            return Err(bad(format!(
                                "filterType {:?}: only WILDCARD is supported",
                                f.filter_type
                            )));
                        }
                        let list: Vec<&str> = filters.iter().map(|f| f.filter.as_str()).collect();
                        Selector::Excludes(format!("{{{}}}", list.join(",")))
                    }
                    other => {
                        return Err(bad(format!(
                            "imageTagMutability {other:?} with {} exclusion filters: use MUTABLE, IMMUTABLE, or IMMUTABLE_WITH_EXCLUSION with filters",
                            filters.len()
                        )));
                    }
                };
                ImmutabilityPolicy {
                    rules: vec![ImmutabilityRule {
                        repositories: Selector::default(),
                        tags,
                        disabled: false,
                    }],
                }
            }
        };
        if policy.rules.len() > 15 {
            return Err(bad("at most 15 immutability rules per project (as Harbor)"));
        }
        for r in &policy.rules {
            r.repositories.validate("repositories")?;
            r.tags.validate("tags")?;
        }
        Ok(policy)
    }
}

impl super::ProjectPolicy for ImmutabilityPolicy {
    const KIND: PolicyKind = PolicyKind::Immutability;
    type Input = ImmutabilityInput;
    fn from_input(input: ImmutabilityInput) -> Result<Self> {
        input.into_policy()
    }
    fn summary(&self) -> String {
        format!("{} rules", self.rules.len())
    }
}

impl ImmutabilityPolicy {
    /// The first enabled rule that makes `tag` of `repo` immutable, with its number.
    pub fn rule_for(&self, repo: &str, tag: &str) -> Option<(usize, &ImmutabilityRule)> {
        let name = within_project(repo);
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| !r.disabled && r.repositories.selects(name) && r.tags.selects(tag))
            .map(|(i, r)| (i + 1, r))
    }
}

/// The immutability rules of `repo`'s project, if it has any enabled.
pub async fn rules<D: DocumentStore>(docs: &D, repo: &str) -> Result<Option<ImmutabilityPolicy>> {
    project_rules(docs, project_of(repo)).await
}

/// The immutability rules of `project`, if it has any enabled.
pub async fn project_rules<D: DocumentStore>(
    docs: &D,
    project: &str,
) -> Result<Option<ImmutabilityPolicy>> {
    Ok(
        load::<ImmutabilityPolicy, _>(docs, PolicyKind::Immutability, project)
            .await?
            .map(|s| s.policy)
            .filter(|p| p.rules.iter().any(|r| !r.disabled)),
    )
}

/// The refusal: `DENIED` (403), naming the tag and the rule, which is what docker prints.
pub fn refused(
    repo: &str,
    tag: &str,
    (n, rule): (usize, &ImmutabilityRule),
    what: &str,
) -> RegistryError {
    RegistryError::new(
        ErrorCode::Denied,
        format!(
            "tag {tag} of {repo} is immutable (immutability rule {n}: repositories {}, tags {}); it cannot be {what}",
            rule.repositories, rule.tags
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_select_tags_in_repositories() {
        let p = ImmutabilityPolicy {
            rules: vec![
                ImmutabilityRule {
                    repositories: Selector::Matches("app".into()),
                    tags: Selector::Matches("v*".into()),
                    disabled: false,
                },
                ImmutabilityRule {
                    repositories: Selector::default(),
                    tags: Selector::Matches("release".into()),
                    disabled: true,
                },
            ],
        };
        assert_eq!(p.rule_for("team/app", "v1").map(|r| r.0), Some(1));
        assert!(p.rule_for("team/app", "latest").is_none());
        assert!(p.rule_for("team/app2", "v1").is_none(), "a name next to it");
        assert!(p.rule_for("team/web", "release").is_none(), "disabled");
        let msg = refused(
            "team/app",
            "v1",
            p.rule_for("team/app", "v1").expect("parses"),
            "moved",
        )
        .message;
        assert!(
            msg.contains("immutability rule 1") && msg.contains("tags matching v*"),
            "{msg}"
        );
    }

    #[test]
    fn ecr_settings_become_rules() {
        let parse = |j: &str| {
            serde_json::from_str::<ImmutabilityInput>(j)
                .expect("parses")
                .into_policy()
        };
        let p = parse(r#"{"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"},{"filterType":"WILDCARD","filter":"dev-*"}]}"#).expect("parses");
        assert!(p.rule_for("t/a", "v1").is_some());
        assert!(p.rule_for("t/a", "latest").is_none());
        assert!(p.rule_for("t/a", "dev-7").is_none());
        let p = parse(r#"{"imageTagMutability":"IMMUTABLE"}"#).expect("parses");
        assert!(p.rule_for("t/a", "latest").is_some());
        assert!(
            parse(r#"{"imageTagMutability":"MUTABLE"}"#)
                .expect("parses")
                .rules
                .is_empty()
        );
        assert!(parse(r#"{"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION"}"#).is_err());
        assert!(parse(r#"{"rules":[{"tags":{"matches":""}}]}"#).is_err());
    }
}

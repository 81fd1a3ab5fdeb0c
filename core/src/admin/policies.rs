//! `/api/v1/projects/<p>/retention`, `/immutability`, `/quota`: a project's policies.
//! Reading them takes any role in the project; retention and immutability rules are set by
//! project admins (and system admins), quotas by system admins only, as in Harbor.
//! `POST …/retention/run` runs retention now (`{"dry_run": true}` decides and explains,
//! deleting nothing); the scheduled job runs it for every project.

use super::{Admin, bad, denied, not_found, ok_json};
use crate::auth::{Action, Principal, Right};
use crate::error::Result;
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::policy::immutability::{self, ImmutabilityInput, ImmutabilityPolicy};
use crate::policy::quota::Quota;
use crate::policy::retention::{self, RetentionInput, RetentionPolicy};
use crate::policy::{self, PolicyKind, Stored};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A request to run retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionRun {
    #[serde(default)]
    dry_run: bool,
}

fn view<T: serde::Serialize>(s: Option<Stored<T>>) -> serde_json::Value {
    match s {
        Some(s) => serde_json::json!({
            "policy": s.policy,
            "updated_ms": s.updated_ms,
            "updated_by": s.updated_by,
        }),
        None => serde_json::json!({ "policy": null }),
    }
}

impl<M: ServingMeta, E: Env> Admin<'_, M, E> {
    /// The project, which must exist in its live incarnation.
    async fn incarnation(&self, project: &str) -> Result<u64> {
        Ok(self
            .dir()
            .project(project)
            .await?
            .ok_or_else(|| not_found("project"))?
            .incarnation)
    }

    async fn read_policy<T: DeserializeOwned + serde::Serialize>(
        &self,
        kind: PolicyKind,
        project: &str,
    ) -> Result<Option<Stored<T>>> {
        policy::load::<T, _>(self.meta, kind, project).await
    }

    async fn write_policy<T: serde::Serialize>(
        &self,
        who: &Principal,
        kind: PolicyKind,
        project: &str,
        value: T,
        summary: String,
    ) -> Result<()> {
        let stored = Stored {
            project_incarnation: self.incarnation(project).await?,
            updated_ms: self.env.now_ms(),
            updated_by: who.name().to_owned(),
            policy: value,
        };
        policy::save(self.meta, kind, project, &stored).await?;
        self.gate.events.emit(Event::PolicySet {
            project: project.to_owned(),
            policy: kind.name().to_owned(),
            summary,
        });
        Ok(())
    }

    async fn clear_policy(&self, kind: PolicyKind, project: &str) -> Result<()> {
        self.incarnation(project).await?;
        self.meta.delete_doc(kind.as_str(), project).await?;
        self.gate.events.emit(Event::PolicySet {
            project: project.to_owned(),
            policy: kind.name().to_owned(),
            summary: "removed".to_owned(),
        });
        Ok(())
    }

    /// Serves `/api/v1/projects/<p>/<policy>[/run]`.
    pub(super) async fn policy_api<B: BlobStore>(
        &self,
        who: &Principal,
        method: &http::Method,
        project: &str,
        rest: &[&str],
        body: &[u8],
    ) -> Result<ApiResponse<B>> {
        use http::Method as M;
        let reader = Right::Repo(Action::Pull);
        match (method.clone(), rest) {
            (M::GET, ["retention"]) => {
                self.may(who, project, reader).await?;
                let s = self
                    .read_policy::<RetentionPolicy>(PolicyKind::Retention, project)
                    .await?;
                Ok(ok_json::<B>(StatusCode::OK, view(s)))
            }
            (M::PUT, ["retention"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                let p = super::parse::<RetentionInput>(body)?.into_policy()?;
                let summary = match &p {
                    RetentionPolicy::Harbor { rules } => format!("{} Harbor rules", rules.len()),
                    RetentionPolicy::Ecr { rules } => {
                        format!("ECR lifecycle policy of {} rules", rules.len())
                    }
                };
                self.write_policy(who, PolicyKind::Retention, project, &p, summary)
                    .await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "policy": p }),
                ))
            }
            (M::DELETE, ["retention"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                self.clear_policy(PolicyKind::Retention, project).await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "policy": null }),
                ))
            }
            (M::POST, ["retention", "run"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                let run: RetentionRun = super::parse(body)?;
                if !run.dry_run {
                    crate::policy::check_delete(self.delete_enabled)?;
                }
                let Some(p) = self
                    .read_policy::<RetentionPolicy>(PolicyKind::Retention, project)
                    .await?
                else {
                    return Err(bad(format!("project {project} has no retention policy")));
                };
                let imm = immutability::rules(self.meta, &format!("{project}/")).await?;
                let report = retention::apply(
                    self.meta,
                    project,
                    &p.policy,
                    imm.as_ref(),
                    self.env.now_ms(),
                    run.dry_run,
                    self.gate.events,
                )
                .await?;
                self.gate.events.emit(Event::RetentionRan {
                    project: project.to_owned(),
                    dry_run: run.dry_run,
                    kept: report.kept,
                    deleted: report.deleted,
                });
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::to_value(&report).unwrap_or_default(),
                ))
            }
            (M::GET, ["immutability"]) => {
                self.may(who, project, reader).await?;
                let s = self
                    .read_policy::<ImmutabilityPolicy>(PolicyKind::Immutability, project)
                    .await?;
                Ok(ok_json::<B>(StatusCode::OK, view(s)))
            }
            (M::PUT, ["immutability"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                let p = super::parse::<ImmutabilityInput>(body)?.into_policy()?;
                let summary = format!("{} rules", p.rules.len());
                self.write_policy(who, PolicyKind::Immutability, project, &p, summary)
                    .await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "policy": p }),
                ))
            }
            (M::DELETE, ["immutability"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                self.clear_policy(PolicyKind::Immutability, project).await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "policy": null }),
                ))
            }
            (M::GET, ["quota"]) => {
                self.may(who, project, reader).await?;
                self.incarnation(project).await?;
                let s = self
                    .read_policy::<Quota>(PolicyKind::Quota, project)
                    .await?;
                let usage = self.meta.project_usage(project).await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({
                        "limit_bytes": s.map(|s| s.policy.limit_bytes),
                        "used_bytes": usage.bytes,
                        "blobs": usage.blobs,
                    }),
                ))
            }
            (M::PUT, ["quota"]) => {
                if !who.is_admin() {
                    return Err(denied());
                }
                let q: Quota = super::parse(body)?;
                let summary = format!("{} bytes", q.limit_bytes);
                self.write_policy(who, PolicyKind::Quota, project, q, summary)
                    .await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "limit_bytes": q.limit_bytes }),
                ))
            }
            (M::DELETE, ["quota"]) => {
                if !who.is_admin() {
                    return Err(denied());
                }
                self.clear_policy(PolicyKind::Quota, project).await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "limit_bytes": null }),
                ))
            }
            _ => Err(super::no_endpoint(
                method,
                &format!("projects/{project}/{}", rest.join("/")),
            )),
        }
    }
}

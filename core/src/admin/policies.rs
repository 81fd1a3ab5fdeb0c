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
use crate::policy::immutability::ImmutabilityPolicy;
use crate::policy::quota::Quota;
use crate::policy::retention::{self, RetentionPolicy};
use crate::policy::{self, PolicyKind, ProjectPolicy, Stored};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::StatusCode;
use serde::Deserialize;

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

    /// Refuses `who` setting or removing `project`'s policy of `kind`: a quota is the
    /// system admins' to set (it bounds what the project may cost), the rules its admins'.
    async fn may_set(&self, who: &Principal, project: &str, kind: PolicyKind) -> Result<()> {
        match kind {
            PolicyKind::Quota if !who.is_admin() => Err(denied()),
            PolicyKind::Quota => Ok(()),
            PolicyKind::Immutability | PolicyKind::Retention => {
                self.may(who, project, Right::ManagePolicies).await
            }
        }
    }

    /// `GET`: the project's policy of kind `T`, to any role in the project.
    async fn show<T: ProjectPolicy>(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<Option<Stored<T>>> {
        self.may(who, project, Right::Repo(Action::Pull)).await?;
        self.incarnation(project).await?;
        policy::load::<T, _>(self.meta, T::KIND, project).await
    }

    /// `PUT`: validates the body and replaces the project's policy with it.
    async fn set<T: ProjectPolicy>(
        &self,
        who: &Principal,
        project: &str,
        body: &[u8],
    ) -> Result<T> {
        self.may_set(who, project, T::KIND).await?;
        let value = T::from_input(super::parse::<T::Input>(body)?)?;
        let stored = Stored {
            project_incarnation: self.incarnation(project).await?,
            updated_ms: self.env.now_ms(),
            updated_by: who.name().to_owned(),
            policy: value,
        };
        policy::save(self.meta, T::KIND, project, &stored).await?;
        self.gate.events.emit(Event::PolicySet {
            project: project.to_owned(),
            policy: T::KIND.name().to_owned(),
            summary: stored.policy.summary(),
        });
        Ok(stored.policy)
    }

    /// `DELETE`: removes the project's policy of `kind`.
    async fn clear(&self, who: &Principal, kind: PolicyKind, project: &str) -> Result<()> {
        self.may_set(who, project, kind).await?;
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
        use serde_json::json;
        let out = match (method.clone(), rest) {
            (M::GET, ["retention"]) => view(self.show::<RetentionPolicy>(who, project).await?),
            (M::PUT, ["retention"]) => {
                json!({ "policy": self.set::<RetentionPolicy>(who, project, body).await? })
            }
            (M::DELETE, ["retention"]) => {
                self.clear(who, PolicyKind::Retention, project).await?;
                json!({ "policy": null })
            }
            (M::POST, ["retention", "run"]) => {
                self.may(who, project, Right::ManagePolicies).await?;
                let run: RetentionRun = super::parse(body)?;
                let report = retention::run_project(
                    self.meta,
                    project,
                    self.env.now_ms(),
                    run.dry_run,
                    self.delete_enabled,
                    self.gate.events,
                )
                .await?
                .ok_or_else(|| bad(format!("project {project} has no retention policy")))?;
                serde_json::to_value(&report).unwrap_or_default()
            }
            (M::GET, ["immutability"]) => {
                view(self.show::<ImmutabilityPolicy>(who, project).await?)
            }
            (M::PUT, ["immutability"]) => {
                json!({ "policy": self.set::<ImmutabilityPolicy>(who, project, body).await? })
            }
            (M::DELETE, ["immutability"]) => {
                self.clear(who, PolicyKind::Immutability, project).await?;
                json!({ "policy": null })
            }
            (M::GET, ["quota"]) => {
                let quota = self.show::<Quota>(who, project).await?;
                let usage = self.meta.project_usage(project).await?;
                json!({
                    "limit_bytes": quota.map(|q| q.policy.limit_bytes),
                    "used_bytes": usage.bytes,
                    "blobs": usage.blobs,
                })
            }
            (M::PUT, ["quota"]) => {
                json!({ "limit_bytes": self.set::<Quota>(who, project, body).await?.limit_bytes })
            }
            (M::DELETE, ["quota"]) => {
                self.clear(who, PolicyKind::Quota, project).await?;
                json!({ "limit_bytes": null })
            }
            _ => {
                return Err(super::no_endpoint(
                    method,
                    &format!("projects/{project}/{}", rest.join("/")),
                ));
            }
        };
        Ok(ok_json::<B>(StatusCode::OK, out))
    }
}

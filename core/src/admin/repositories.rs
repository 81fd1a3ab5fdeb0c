//! Repositories of a project, and their tags.

use crate::admin::{Admin, ok_json};
use crate::auth::{Action, Principal, Right};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::model::name::{validate_name, validate_tag};
use crate::policy::check_delete;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use http::Method;
use http::StatusCode;

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    /// Whether any repository belongs to project `name`: one named exactly `name`, or one
    /// under `name/`. Every name under `name/` sorts after `name/` itself, so the first
    /// repository after it tells (one after `name` could be `name-a/x`, which is not).
    pub(super) async fn has_repositories(&self, name: &str) -> Result<bool> {
        if self.meta.repository_exists(name).await? {
            return Ok(true);
        }
        let prefix = format!("{name}/");
        let page = self.meta.list_repositories(Some(&prefix), 1).await?;
        Ok(page.items.first().is_some_and(|r| r.starts_with(&prefix)))
    }

    pub(super) async fn project_repositories<B: BlobStore>(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::Repo(Action::Pull)).await?;
        let prefix = format!("{project}/");
        let mut out = Vec::new();
        let mut last = Some(project.to_owned());
        loop {
            let page = self.meta.list_repositories(last.as_deref(), 1000).await?;
            let mut done = !page.more;
            for r in page.items {
                if r.starts_with(&prefix) || r == project {
                    last = Some(r.clone());
                    out.push(r);
                } else if r.as_str() > prefix.as_str() {
                    done = true;
                    break;
                } else {
                    last = Some(r);
                }
            }
            if done {
                break;
            }
        }
        Ok(ok_json::<B>(StatusCode::OK, serde_json::json!(out)))
    }

    /// `GET repositories/<name>/tags`, `DELETE repositories/<name>/tags/<tag>`.
    pub(super) async fn repository_api<B: BlobStore>(
        &self,
        who: &Principal,
        m: &Method,
        rest: &str,
    ) -> Result<ApiResponse<B>> {
        let not_found = || {
            RegistryError::new(ErrorCode::Unsupported, "no such endpoint")
                .with_status(StatusCode::NOT_FOUND)
        };
        if let Some(name) = rest.strip_suffix("/tags") {
            if *m != Method::GET {
                return Err(not_found());
            }
            validate_name(name)?;
            self.may(
                who,
                crate::auth::project_of(name),
                Right::Repo(Action::Pull),
            )
            .await?;
            let page = self
                .meta
                .list_tags(name, None, 10_000)
                .await?
                .ok_or_else(|| crate::admin::not_found("repository"))?;
            return Ok(ok_json::<B>(
                StatusCode::OK,
                serde_json::json!({"name": name, "tags": page.items}),
            ));
        }
        if let Some((name, tag)) = rest.rsplit_once("/tags/")
            && *m == Method::DELETE
        {
            check_delete(self.delete_enabled)?;
            validate_name(name)?;
            validate_tag(tag)?;
            self.may(
                who,
                crate::auth::project_of(name),
                Right::Repo(Action::Delete),
            )
            .await?;
            if let Some(rules) = crate::policy::immutability::rules(self.meta, name).await?
                && let Some(rule) = rules.rule_for(name, tag)
            {
                return Err(crate::policy::immutability::refused(
                    name, tag, rule, "deleted",
                ));
            }
            if !self.meta.delete_tag(name, tag, self.env.now_ms()).await? {
                return Err(crate::admin::not_found("tag"));
            }
            self.gate.events.emit(Event::TagDeleted {
                repository: name.to_owned(),
                tag: tag.to_owned(),
            });
            return Ok(ok_json::<B>(
                StatusCode::OK,
                serde_json::json!({"deleted": tag}),
            ));
        }
        Err(not_found())
    }
}

//! `/api/v1/replication/…`: remote registries, replication rules and their runs. System
//! administrators only (a rule reads and writes any project, as Harbor's do). A run is
//! queued here and advanced by the runtime's scheduler (`Registry::replication_tick`).
//!
//! - `registries` (`GET`, `POST`), `registries/<name>` (`GET`, `PUT`, `DELETE`)
//! - `rules` (`GET`, `POST`), `rules/<name>` (`GET`, `PUT`, `DELETE`)
//! - `rules/<name>/executions` (`GET` newest first, `POST` queues a run: 409 while one is
//!   unfinished), `rules/<name>/executions/<id>` (`GET`, with per-artifact results)
//!
//! No answer contains a remote's password, sealed or not.

use super::{Admin, bad, denied, exists, no_endpoint, ok_json, parse, validate_simple};
use crate::auth::Principal;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::{Event, ReplicationAction};
use crate::http::response::ApiResponse;
use crate::policy::replication::{self, NewRemote, Remote, Rule};
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use crate::runs::replication::{self as runs, Started};
use http::{Method, StatusCode};

fn missing(what: &str, name: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, format!("no {what} named {name:?}"))
        .with_status(StatusCode::NOT_FOUND)
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    /// Serves `/api/v1/replication/<rest>`.
    pub(super) async fn replication_api<B: BlobStore>(
        &self,
        who: &Principal,
        m: &Method,
        rest: &[&str],
        body: &[u8],
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        let deleted =
            |name: &str| ok_json::<B>(StatusCode::OK, serde_json::json!({ "deleted": name }));
        match (m.clone(), rest) {
            (Method::GET, ["registries"]) => {
                let list: Vec<_> = replication::remotes(self.meta)
                    .await?
                    .iter()
                    .map(Remote::view)
                    .collect();
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "registries": list }),
                ))
            }
            (Method::POST, ["registries"]) => {
                let input: NewRemote = parse(body)?;
                let r = self.write_remote(input, None).await?;
                Ok(ok_json::<B>(StatusCode::CREATED, r.view()))
            }
            (Method::GET, ["registries", name]) => {
                let r = self.remote(name).await?;
                Ok(ok_json::<B>(StatusCode::OK, r.view()))
            }
            (Method::PUT, ["registries", name]) => {
                let old = self.remote(name).await?;
                let mut input: NewRemote = parse(body)?;
                if !input.name.is_empty() && input.name != *name {
                    return Err(bad("a remote's name is its path's; it cannot be renamed"));
                }
                input.name = (*name).to_owned();
                let r = self.write_remote(input, Some(&old)).await?;
                Ok(ok_json::<B>(StatusCode::OK, r.view()))
            }
            (Method::DELETE, ["registries", name]) => {
                self.remote(name).await?;
                let users: Vec<String> = replication::rules(self.meta)
                    .await?
                    .into_iter()
                    .filter(|r| r.remote == *name)
                    .map(|r| r.name)
                    .collect();
                if !users.is_empty() {
                    return Err(RegistryError::new(
                        ErrorCode::Conflict,
                        format!(
                            "remote {name} is used by rules {}; delete or change them first",
                            users.join(", ")
                        ),
                    ));
                }
                self.meta.delete_doc(replication::REMOTE, name).await?;
                self.audit(ReplicationAction::RemoteDelete, name);
                Ok(deleted(name))
            }
            (Method::GET, ["rules"]) => {
                let list = replication::rules(self.meta).await?;
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "rules": list }),
                ))
            }
            (Method::POST, ["rules"]) => {
                let rule: Rule = parse(body)?;
                let rule = self.write_rule(rule, true).await?;
                Ok(ok_json::<B>(StatusCode::CREATED, json(&rule)))
            }
            (Method::GET, ["rules", name]) => {
                Ok(ok_json::<B>(StatusCode::OK, json(&self.rule(name).await?)))
            }
            (Method::PUT, ["rules", name]) => {
                self.rule(name).await?;
                let mut rule: Rule = parse(body)?;
                if !rule.name.is_empty() && rule.name != *name {
                    return Err(bad("a rule's name is its path's; it cannot be renamed"));
                }
                rule.name = (*name).to_owned();
                let rule = self.write_rule(rule, false).await?;
                Ok(ok_json::<B>(StatusCode::OK, json(&rule)))
            }
            (Method::DELETE, ["rules", name]) => {
                self.rule(name).await?;
                self.meta.delete_doc(replication::RULE, name).await?;
                runs::forget(self.meta, name).await?;
                self.audit(ReplicationAction::RuleDelete, name);
                Ok(deleted(name))
            }
            (Method::POST, ["rules", name, "executions"]) => {
                let rule = self.rule(name).await?;
                let exec = runs::queue(
                    self.meta,
                    self.env,
                    &rule,
                    Started::Manual,
                    who.name(),
                    None,
                )
                .await?;
                self.audit(ReplicationAction::RunQueue, name);
                Ok(ok_json::<B>(StatusCode::ACCEPTED, exec.summary()))
            }
            (Method::GET, ["rules", name, "executions"]) => {
                self.rule(name).await?;
                let list: Vec<_> = runs::history(self.meta, name, 50)
                    .await?
                    .iter()
                    .map(runs::Execution::summary)
                    .collect();
                Ok(ok_json::<B>(
                    StatusCode::OK,
                    serde_json::json!({ "executions": list }),
                ))
            }
            (Method::GET, ["rules", name, "executions", id]) => {
                match runs::load(self.meta, name, id).await? {
                    Some(e) => Ok(ok_json::<B>(StatusCode::OK, json(&e))),
                    None => Err(missing("execution", id)),
                }
            }
            _ => Err(no_endpoint(m, &format!("replication/{}", rest.join("/")))),
        }
    }

    fn audit(&self, action: ReplicationAction, name: &str) {
        self.gate.events.emit(Event::Replication {
            action,
            name: name.to_owned(),
        });
    }

    async fn remote(&self, name: &str) -> Result<Remote> {
        replication::remote(self.meta, name)
            .await?
            .ok_or_else(|| missing("remote registry", name))
    }

    async fn rule(&self, name: &str) -> Result<Rule> {
        replication::rule(self.meta, name)
            .await?
            .ok_or_else(|| missing("replication rule", name))
    }

    async fn write_remote(&self, input: NewRemote, old: Option<&Remote>) -> Result<Remote> {
        validate_simple("remote registry", &input.name)?;
        let name = input.name.clone();
        let r = Remote::from_input(input, old, self.secret_key, self.env)?;
        replication::store_remote(self.meta, &r, old.is_none())
            .await
            .map_err(|e| exists(e, "a remote registry", &name))?;
        self.audit(ReplicationAction::RemoteSet, &name);
        Ok(r)
    }

    async fn write_rule(&self, mut rule: Rule, create: bool) -> Result<Rule> {
        validate_simple("replication rule", &rule.name)?;
        rule.validate()?;
        if replication::remote(self.meta, &rule.remote)
            .await?
            .is_none()
        {
            return Err(missing("remote registry", &rule.remote));
        }
        rule.updated_ms = self.env.now_ms();
        replication::store_rule(self.meta, &rule, create)
            .await
            .map_err(|e| exists(e, "a replication rule", &rule.name))?;
        self.audit(ReplicationAction::RuleSet, &rule.name);
        Ok(rule)
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

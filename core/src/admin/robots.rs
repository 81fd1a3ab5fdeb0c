//! Robot accounts.

use crate::admin::views::{RobotView, json};
use crate::admin::{Admin, bad, exists, not_found, ok_json, validate_simple};
use crate::auth::{
    Action, Principal, Right, Robot, RobotPermission, hash_password_off_thread, new_incarnation,
    random_secret,
};
use crate::error::Result;
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use http::StatusCode;
use serde::Deserialize;

/// A robot's grant as a request states it (the stored [`RobotPermission`] adds what only
/// the server may set).
#[derive(Deserialize)]
pub(super) struct NewPermission {
    project: String,
    actions: Vec<Action>,
}

#[derive(Deserialize)]
pub(super) struct NewRobot {
    name: String,
    permissions: Vec<NewPermission>,
    #[serde(default)]
    expires_in_days: Option<u64>,
    #[serde(default)]
    description: String,
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    pub(super) async fn list_robots<B: BlobStore>(
        &self,
        who: &Principal,
    ) -> Result<ApiResponse<B>> {
        let all: Vec<Robot> = self.dir().list("robot", "").await?;
        let mut out = Vec::new();
        for r in all {
            let mut mine = who.is_admin();
            if !mine {
                mine = true;
                for p in &r.permissions {
                    mine &= self
                        .dir()
                        .allowed(who, &p.project, Right::ManageMembers)
                        .await?;
                }
            }
            if mine {
                out.push(json(RobotView::new(&r, None)));
            }
        }
        Ok(ok_json::<B>(StatusCode::OK, out.into()))
    }

    pub(super) async fn create_robot<B: BlobStore>(
        &self,
        who: &Principal,
        n: NewRobot,
    ) -> Result<ApiResponse<B>> {
        validate_simple("robot", &n.name)?;
        if n.permissions.is_empty() {
            return Err(bad("a robot needs at least one permission"));
        }
        let mut permissions = Vec::with_capacity(n.permissions.len());
        for p in &n.permissions {
            let project = self
                .dir()
                .project(&p.project)
                .await?
                .ok_or_else(|| not_found("project"))?;
            self.may(who, &p.project, Right::ManageMembers).await?;
            permissions.push(RobotPermission {
                project: p.project.clone(),
                actions: p.actions.clone(),
                project_incarnation: project.incarnation,
            });
        }
        let name = match n.permissions.as_slice() {
            [one] => format!("robot${}+{}", one.project, n.name),
            _ => format!("robot${}", n.name),
        };
        let now = self.env.now_ms();
        let expires_ms = match n.expires_in_days {
            None => None,
            Some(d) => Some(
                d.checked_mul(86_400_000)
                    .and_then(|ms| now.checked_add(ms))
                    .filter(|_| d > 0)
                    .ok_or_else(|| {
                        bad(format!(
                            "expires_in_days must be between 1 and {}",
                            (u64::MAX - now) / 86_400_000
                        ))
                    })?,
            ),
        };
        let secret = random_secret(self.env);
        let r = Robot {
            name: name.clone(),
            secret_hash: hash_password_off_thread(self.env, &secret).await?,
            permissions,
            expires_ms,
            description: n.description,
            created_ms: now,
            incarnation: new_incarnation(self.env),
        };
        self.dir()
            .put("robot", &name, &r, true)
            .await
            .map_err(|e| exists(e, "a robot", &name))?;
        self.gate.events.emit(Event::RobotCreated {
            robot: name.clone(),
            project: robot_project(&r).map(str::to_owned),
        });
        Ok(ok_json::<B>(
            StatusCode::CREATED,
            json(RobotView::new(&r, Some(&secret))),
        ))
    }

    pub(super) async fn delete_robot<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<ApiResponse<B>> {
        let r = self
            .dir()
            .robot(name)
            .await?
            .ok_or_else(|| not_found("robot"))?;
        for p in &r.permissions {
            self.may(who, &p.project, Right::ManageMembers).await?;
        }
        self.meta.delete_doc("robot", name).await?;
        self.gate.events.emit(Event::RobotDeleted {
            robot: name.to_owned(),
            project: robot_project(&r).map(str::to_owned),
        });
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }
}

/// The project a robot's events belong to: its only project, if it has one.
fn robot_project(r: &Robot) -> Option<&str> {
    match r.permissions.as_slice() {
        [one] => Some(one.project.as_str()),
        _ => None,
    }
}

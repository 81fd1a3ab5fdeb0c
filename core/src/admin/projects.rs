//! Projects and their members.

use crate::admin::views::{MemberView, ProjectView, json};
use crate::admin::{Admin, bad, denied, exists, not_found, ok_json};
use crate::auth::{Action, Member, Principal, Project, Right, Robot, Role, new_incarnation};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::model::name::validate_name;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
    /// The region that takes its writes (a registry of several regions).
    #[serde(default)]
    home_region: Option<String>,
}

/// What a project update changes; what it leaves out stays.
#[derive(Deserialize)]
pub(super) struct ProjectUpdate {
    #[serde(default)]
    public: Option<bool>,
    /// A region's name; `""` returns the project to the registry's default home.
    #[serde(default)]
    home_region: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NewMember {
    pub(super) username: String,
    pub(super) role: Role,
}

#[derive(Deserialize)]
pub(super) struct RoleUpdate {
    pub(super) role: Role,
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    async fn visible(&self, who: &Principal, p: &Project) -> Result<bool> {
        Ok(p.public
            || self
                .dir()
                .allowed(who, &p.name, Right::Repo(Action::Pull))
                .await?)
    }

    pub(super) async fn list_projects<B: BlobStore>(
        &self,
        who: &Principal,
    ) -> Result<ApiResponse<B>> {
        let all: Vec<Project> = self.dir().list("project", "").await?;
        let mut out = Vec::new();
        for p in all {
            if self.visible(who, &p).await? {
                out.push(json(ProjectView::from(&p)));
            }
        }
        Ok(ok_json::<B>(StatusCode::OK, out.into()))
    }

    pub(super) async fn create_project<B: BlobStore>(
        &self,
        who: &Principal,
        n: NewProject,
    ) -> Result<ApiResponse<B>> {
        let Principal::User(u) = who else {
            return Err(denied());
        };
        validate_name(&n.name)?;
        if n.name.contains('/') {
            return Err(RegistryError::new(
                ErrorCode::NameInvalid,
                "a project name is one path segment",
            ));
        }
        // Repositories left under the name (pushed while a deletion raced, or before auth
        // was on) would otherwise pass to whoever creates the project.
        if self.has_repositories(&n.name).await? {
            return Err(RegistryError::new(
                ErrorCode::Conflict,
                format!(
                    "repositories named {}/… from before still exist; delete them first or choose another name",
                    n.name
                ),
            ));
        }
        let p = Project {
            name: n.name.clone(),
            public: n.public,
            created_ms: self.env.now_ms(),
            incarnation: new_incarnation(self.env),
            home_region: self.home_region(n.home_region)?,
        };
        self.dir()
            .put("project", &p.name, &p, true)
            .await
            .map_err(|e| exists(e, "a project", &p.name))?;
        // The creator administers the project, as in Harbor.
        let m = Member {
            project: p.name.clone(),
            username: u.username.clone(),
            role: Role::ProjectAdmin,
            project_incarnation: p.incarnation,
            user_incarnation: u.incarnation,
        };
        self.dir()
            .put("member", &format!("{}/{}", p.name, u.username), &m, false)
            .await?;
        if let Some(limit_bytes) = self.default_quota_bytes {
            let quota = crate::policy::Stored {
                project_incarnation: p.incarnation,
                updated_ms: p.created_ms,
                updated_by: who.name().to_owned(),
                policy: crate::policy::quota::Quota { limit_bytes },
            };
            crate::policy::save(self.meta, crate::policy::PolicyKind::Quota, &p.name, &quota)
                .await?;
        }
        self.gate.events.emit(Event::ProjectCreated {
            project: p.name.clone(),
        });
        Ok(ok_json::<B>(
            StatusCode::CREATED,
            json(ProjectView::from(&p)),
        ))
    }

    pub(super) async fn get_project<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<ApiResponse<B>> {
        let p = self
            .dir()
            .project(name)
            .await?
            .ok_or_else(|| not_found("project"))?;
        if !self.visible(who, &p).await? {
            return Err(not_found("project"));
        }
        Ok(ok_json::<B>(StatusCode::OK, json(ProjectView::from(&p))))
    }

    pub(super) async fn update_project<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
        u: ProjectUpdate,
    ) -> Result<ApiResponse<B>> {
        self.may(who, name, Right::ManageMembers).await?;
        let mut p = self
            .dir()
            .project(name)
            .await?
            .ok_or_else(|| not_found("project"))?;
        if let Some(public) = u.public {
            p.public = public;
        }
        if let Some(home) = u.home_region {
            p.home_region = self.home_region(Some(home))?;
        }
        self.dir().put("project", name, &p, false).await?;
        Ok(ok_json::<B>(StatusCode::OK, json(ProjectView::from(&p))))
    }

    /// A project's home as asked (`""`: the default), checked against the regions.
    fn home_region(&self, asked: Option<String>) -> Result<Option<String>> {
        let Some(name) = asked.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        match self.regions {
            Some(r) if r.url(&name).is_some() => Ok(Some(name)),
            Some(r) => Err(bad(format!(
                "no region {name}; the regions are {}",
                r.urls
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Err(bad(
                "this registry has one region: a project has no home region to choose",
            )),
        }
    }

    pub(super) async fn delete_project<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<ApiResponse<B>> {
        self.may(who, name, Right::ManageMembers).await?;
        if self.has_repositories(name).await? {
            return Err(RegistryError::new(
                ErrorCode::Denied,
                "the project still has repositories; delete them first",
            ));
        }
        if !self.meta.delete_doc("project", name).await? {
            return Err(not_found("project"));
        }
        // What follows is tidying: the incarnation check already makes every member and
        // robot grant of the deleted project void, so a failure here leaks nothing.
        let members: Vec<Member> = self.dir().list("member", &format!("{name}/")).await?;
        for m in members {
            self.meta
                .delete_doc("member", &format!("{name}/{}", m.username))
                .await?;
        }
        crate::policy::forget(self.meta, name).await?;
        let robots: Vec<Robot> = self.dir().list("robot", "").await?;
        let named_for = format!("robot${name}+");
        for mut r in robots {
            if !r.permissions.iter().any(|p| p.project == name) {
                continue;
            }
            r.permissions.retain(|p| p.project != name);
            if r.name.starts_with(&named_for) || r.permissions.is_empty() {
                self.meta.delete_doc("robot", &r.name).await?;
            } else {
                self.dir().put("robot", &r.name.clone(), &r, false).await?;
            }
        }
        self.gate.events.emit(Event::ProjectDeleted {
            project: name.to_owned(),
        });
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }

    pub(super) async fn list_members<B: BlobStore>(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::ReadAudit).await?;
        let members: Vec<Member> = self.dir().list("member", &format!("{project}/")).await?;
        Ok(ok_json::<B>(
            StatusCode::OK,
            members.iter().map(MemberView::from).map(json).collect(),
        ))
    }

    pub(super) async fn add_member<B: BlobStore>(
        &self,
        who: &Principal,
        project: &str,
        n: NewMember,
    ) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::ManageMembers).await?;
        let p = self
            .dir()
            .project(project)
            .await?
            .ok_or_else(|| not_found("project"))?;
        let u = self
            .dir()
            .user(&n.username)
            .await?
            .ok_or_else(|| not_found("user"))?;
        let m = Member {
            project: project.to_owned(),
            username: n.username.clone(),
            role: n.role,
            project_incarnation: p.incarnation,
            user_incarnation: u.incarnation,
        };
        self.dir()
            .put("member", &format!("{project}/{}", n.username), &m, false)
            .await?;
        self.gate.events.emit(Event::MemberSet {
            project: project.to_owned(),
            user: n.username.clone(),
            role: format!("{:?}", n.role),
        });
        Ok(ok_json::<B>(StatusCode::OK, json(MemberView::from(&m))))
    }

    pub(super) async fn remove_member<B: BlobStore>(
        &self,
        who: &Principal,
        project: &str,
        user: &str,
    ) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::ManageMembers).await?;
        if !self
            .meta
            .delete_doc("member", &format!("{project}/{user}"))
            .await?
        {
            return Err(not_found("member"));
        }
        self.gate.events.emit(Event::MemberRemoved {
            project: project.to_owned(),
            user: user.to_owned(),
        });
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"removed": user}),
        ))
    }
}

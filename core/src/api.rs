//! The management API under `/api/v1` (JSON; Basic auth or a bearer token): users, robots,
//! projects, members, repositories, tags and the audit log. Same rules in every runtime.

use crate::auth::{
    Action, Directory, Member, Principal, Project, Right, Robot, RobotPermission, Role, User,
    hash_password_off_thread, new_incarnation, random_secret, reserved_username,
    verify_password_off_thread,
};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::gate::AuditEvent;
use crate::name::{validate_name, validate_tag};
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use crate::registry::{ApiResponse, Registry, json_response, read_limited};
use http::{Method, Request, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

fn denied() -> RegistryError {
    RegistryError::new(ErrorCode::Denied, "you may not do this")
}

fn not_found(what: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, format!("{what} not found"))
}

fn bad(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

fn ok_json<B: BlobStore>(status: StatusCode, v: serde_json::Value) -> ApiResponse<B> {
    json_response::<B>(status, v.to_string().into_bytes())
}

/// Account and project names: lowercase letters, digits, '.', '_', '-'.
fn validate_simple(kind: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(RegistryError::new(
            ErrorCode::NameInvalid,
            format!("invalid {kind} name {s:?}"),
        ))
    }
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
    /// Required to change one's own password (a stolen session must not lock its owner
    /// out); an admin resetting someone else's needs none.
    #[serde(default)]
    current_password: Option<String>,
}

#[derive(Deserialize)]
struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
struct ProjectUpdate {
    public: bool,
}

#[derive(Deserialize)]
struct NewMember {
    username: String,
    role: Role,
}

#[derive(Deserialize)]
struct RoleUpdate {
    role: Role,
}

/// A robot's grant as a request states it (the stored [`RobotPermission`] adds what only
/// the server may set).
#[derive(Deserialize)]
struct NewPermission {
    project: String,
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct NewRobot {
    name: String,
    permissions: Vec<NewPermission>,
    #[serde(default)]
    expires_in_days: Option<u64>,
    #[serde(default)]
    description: String,
}

fn user_view(u: &User) -> serde_json::Value {
    serde_json::json!({"username": u.username, "email": u.email, "admin": u.admin, "created_ms": u.created_ms})
}

fn robot_view(r: &Robot) -> serde_json::Value {
    let permissions: Vec<_> = r
        .permissions
        .iter()
        .map(|p| serde_json::json!({"project": p.project, "actions": p.actions}))
        .collect();
    serde_json::json!({"name": r.name, "permissions": permissions, "expires_ms": r.expires_ms,
                       "description": r.description, "created_ms": r.created_ms})
}

fn project_view(p: &Project) -> serde_json::Value {
    serde_json::json!({"name": p.name, "public": p.public, "created_ms": p.created_ms})
}

fn member_view(m: &Member) -> serde_json::Value {
    serde_json::json!({"project": m.project, "username": m.username, "role": m.role})
}

impl<B: BlobStore, M: MetadataStore + DocumentStore, E: Env> Registry<B, M, E> {
    /// Serves `/api/v1/…`.
    pub(crate) async fn api<In>(&self, req: Request<In>) -> Result<ApiResponse<B>>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        if self.auth.is_none() {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "the management API needs authentication, which is disabled on this registry",
            )
            .with_status(StatusCode::NOT_FOUND));
        }
        let (parts, body) = req.into_parts();
        // Writes carry JSON: a browser on another origin cannot send that without a CORS
        // preflight, which this API never answers, so a page cannot forge a request with
        // credentials the browser holds.
        if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            && !is_json(&parts.headers)
        {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "management API writes take a JSON body with Content-Type: application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        // No `WWW-Authenticate: Basic` challenge: it would invite a browser to prompt for
        // and then cache credentials that every later cross-site request would carry.
        let who = match self.login(&parts.headers, &parts.extensions, None).await? {
            Some(p) => p,
            None => {
                return Err(RegistryError::new(
                    ErrorCode::Unauthorized,
                    "the management API needs Basic credentials (user name and password)",
                ));
            }
        };
        let body = read_limited(body, 1 << 20).await?;
        let path = parts
            .uri
            .path()
            .trim_start_matches("/api/v1")
            .trim_matches('/')
            .to_owned();
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let q = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let seg: Vec<&str> = path.split('/').collect();
        let m = &parts.method;
        let ext = &parts.extensions;
        match (m.clone(), seg.as_slice()) {
            (Method::GET, ["users"]) => self.list_users(&who).await,
            (Method::POST, ["users"]) => self.create_user(&who, parse(&body)?, ext).await,
            (Method::GET, ["users", name]) => self.get_user(&who, name).await,
            (Method::DELETE, ["users", name]) => self.delete_user(&who, name, ext).await,
            (Method::PUT, ["users", name, "password"]) => {
                self.set_password(&who, name, parse(&body)?, ext).await
            }
            (Method::GET, ["projects"]) => self.list_projects(&who).await,
            (Method::POST, ["projects"]) => self.create_project(&who, parse(&body)?, ext).await,
            (Method::GET, ["projects", p]) => self.get_project(&who, p).await,
            (Method::PUT, ["projects", p]) => self.update_project(&who, p, parse(&body)?).await,
            (Method::DELETE, ["projects", p]) => self.delete_project(&who, p, ext).await,
            (Method::GET, ["projects", p, "members"]) => self.list_members(&who, p).await,
            (Method::POST, ["projects", p, "members"]) => {
                self.add_member(&who, p, parse(&body)?, ext).await
            }
            (Method::PUT, ["projects", p, "members", u]) => {
                let r: RoleUpdate = parse(&body)?;
                self.add_member(
                    &who,
                    p,
                    NewMember {
                        username: (*u).to_owned(),
                        role: r.role,
                    },
                    ext,
                )
                .await
            }
            (Method::DELETE, ["projects", p, "members", u]) => {
                self.remove_member(&who, p, u, ext).await
            }
            (Method::GET, ["projects", p, "repositories"]) => {
                self.project_repositories(&who, p).await
            }
            (Method::GET, ["robots"]) => self.list_robots(&who).await,
            (Method::POST, ["robots"]) => self.create_robot(&who, parse(&body)?, ext).await,
            (Method::DELETE, ["robots", name]) => self.delete_robot(&who, name, ext).await,
            (Method::GET, ["audit"]) => {
                self.read_audit(
                    &who,
                    q("project"),
                    q("actor"),
                    q("action"),
                    q("since_ms"),
                    q("limit"),
                )
                .await
            }
            (_, ["repositories", ..]) => {
                self.repository_api(&who, m, &path["repositories/".len().min(path.len())..], ext)
                    .await
            }
            _ => Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("no such endpoint: {m} /api/v1/{path}"),
            )
            .with_status(StatusCode::NOT_FOUND)),
        }
    }

    fn dir(&self) -> Directory<'_, M> {
        Directory(&self.meta)
    }

    async fn may(&self, who: &Principal, project: &str, right: Right) -> Result<()> {
        if self.dir().allowed(who, project, right).await? {
            Ok(())
        } else {
            Err(denied())
        }
    }

    async fn list_users(&self, who: &Principal) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        let users: Vec<User> = self.dir().list("user", "").await?;
        Ok(ok_json::<B>(
            StatusCode::OK,
            users.iter().map(user_view).collect(),
        ))
    }

    async fn create_user(
        &self,
        who: &Principal,
        n: NewUser,
        ext: &http::Extensions,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        validate_simple("user", &n.username)?;
        if reserved_username(&n.username) {
            return Err(RegistryError::new(
                ErrorCode::NameInvalid,
                format!("the user name {:?} is reserved", n.username),
            ));
        }
        if n.password.len() < 8 {
            return Err(bad("passwords have at least 8 characters"));
        }
        let u = User {
            username: n.username.clone(),
            password_hash: hash_password_off_thread(&self.env, &n.password).await?,
            email: n.email,
            admin: n.admin,
            created_ms: self.env.now_ms(),
            incarnation: new_incarnation(&self.env),
            generation: 0,
        };
        self.dir()
            .put("user", &u.username, &u, true)
            .await
            .map_err(|e| exists(e, "a user", &u.username))?;
        self.audit_global(ext, who.name(), "user_create", &u.username)
            .await;
        Ok(ok_json::<B>(StatusCode::CREATED, user_view(&u)))
    }

    async fn get_user(&self, who: &Principal, name: &str) -> Result<ApiResponse<B>> {
        if !who.is_admin() && who.name() != name {
            return Err(denied());
        }
        let u = self
            .dir()
            .user(name)
            .await?
            .ok_or_else(|| not_found("user"))?;
        Ok(ok_json::<B>(StatusCode::OK, user_view(&u)))
    }

    async fn delete_user(
        &self,
        who: &Principal,
        name: &str,
        ext: &http::Extensions,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        if who.name() == name {
            return Err(bad("you cannot delete yourself"));
        }
        if !self.meta.delete_doc("user", name).await? {
            return Err(not_found("user"));
        }
        let members: Vec<Member> = self.dir().list("member", "").await?;
        for m in members.iter().filter(|m| m.username == name) {
            self.meta
                .delete_doc("member", &format!("{}/{}", m.project, m.username))
                .await?;
        }
        self.audit_global(ext, who.name(), "user_delete", name)
            .await;
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }

    async fn set_password(
        &self,
        who: &Principal,
        name: &str,
        n: NewPassword,
        ext: &http::Extensions,
    ) -> Result<ApiResponse<B>> {
        let own = who.name() == name && matches!(who, Principal::User(_));
        if !who.is_admin() && !own {
            return Err(denied());
        }
        if n.password.len() < 8 {
            return Err(bad("passwords have at least 8 characters"));
        }
        let mut u = self
            .dir()
            .user(name)
            .await?
            .ok_or_else(|| not_found("user"))?;
        if own {
            let current = n.current_password.as_deref().unwrap_or("");
            if !verify_password_off_thread(&self.env, current, &u.password_hash).await {
                return Err(RegistryError::new(
                    ErrorCode::Denied,
                    "changing your own password needs your current one (current_password)",
                ));
            }
        }
        u.password_hash = hash_password_off_thread(&self.env, &n.password).await?;
        // Revokes every refresh token issued before the change.
        u.generation = u.generation.wrapping_add(1);
        self.dir().put("user", name, &u, false).await?;
        self.audit_global(ext, who.name(), "password_change", name)
            .await;
        Ok(ok_json::<B>(StatusCode::OK, user_view(&u)))
    }

    async fn visible(&self, who: &Principal, p: &Project) -> Result<bool> {
        Ok(p.public
            || self
                .dir()
                .allowed(who, &p.name, Right::Repo(Action::Pull))
                .await?)
    }

    async fn list_projects(&self, who: &Principal) -> Result<ApiResponse<B>> {
        let all: Vec<Project> = self.dir().list("project", "").await?;
        let mut out = Vec::new();
        for p in all {
            if self.visible(who, &p).await? {
                out.push(project_view(&p));
            }
        }
        Ok(ok_json::<B>(StatusCode::OK, out.into()))
    }

    async fn create_project(
        &self,
        who: &Principal,
        n: NewProject,
        ext: &http::Extensions,
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
            incarnation: new_incarnation(&self.env),
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
        self.record_event(
            ext,
            Some(&p.name),
            who.name(),
            "project_create",
            &p.name,
            None,
        )
        .await;
        Ok(ok_json::<B>(StatusCode::CREATED, project_view(&p)))
    }

    async fn get_project(&self, who: &Principal, name: &str) -> Result<ApiResponse<B>> {
        let p = self
            .dir()
            .project(name)
            .await?
            .ok_or_else(|| not_found("project"))?;
        if !self.visible(who, &p).await? {
            return Err(not_found("project"));
        }
        Ok(ok_json::<B>(StatusCode::OK, project_view(&p)))
    }

    async fn update_project(
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
        p.public = u.public;
        self.dir().put("project", name, &p, false).await?;
        Ok(ok_json::<B>(StatusCode::OK, project_view(&p)))
    }

    async fn delete_project(
        &self,
        who: &Principal,
        name: &str,
        ext: &http::Extensions,
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
        self.record_event(ext, Some(name), who.name(), "project_delete", name, None)
            .await;
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }

    async fn list_members(&self, who: &Principal, project: &str) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::ReadAudit).await?;
        let members: Vec<Member> = self.dir().list("member", &format!("{project}/")).await?;
        Ok(ok_json::<B>(
            StatusCode::OK,
            members.iter().map(member_view).collect(),
        ))
    }

    async fn add_member(
        &self,
        who: &Principal,
        project: &str,
        n: NewMember,
        ext: &http::Extensions,
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
        self.record_event(
            ext,
            Some(project),
            who.name(),
            "member_set",
            project,
            Some(format!("{}={:?}", n.username, n.role)),
        )
        .await;
        Ok(ok_json::<B>(StatusCode::OK, member_view(&m)))
    }

    async fn remove_member(
        &self,
        who: &Principal,
        project: &str,
        user: &str,
        ext: &http::Extensions,
    ) -> Result<ApiResponse<B>> {
        self.may(who, project, Right::ManageMembers).await?;
        if !self
            .meta
            .delete_doc("member", &format!("{project}/{user}"))
            .await?
        {
            return Err(not_found("member"));
        }
        self.record_event(
            ext,
            Some(project),
            who.name(),
            "member_remove",
            project,
            Some(user.to_owned()),
        )
        .await;
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"removed": user}),
        ))
    }

    /// Whether any repository belongs to project `name`: one named exactly `name`, or one
    /// under `name/`. Every name under `name/` sorts after `name/` itself, so the first
    /// repository after it tells (one after `name` could be `name-a/x`, which is not).
    async fn has_repositories(&self, name: &str) -> Result<bool> {
        if self.meta.repository_exists(name).await? {
            return Ok(true);
        }
        let prefix = format!("{name}/");
        let page = self.meta.list_repositories(Some(&prefix), 1).await?;
        Ok(page.items.first().is_some_and(|r| r.starts_with(&prefix)))
    }

    async fn project_repositories(&self, who: &Principal, project: &str) -> Result<ApiResponse<B>> {
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
    async fn repository_api(
        &self,
        who: &Principal,
        m: &Method,
        rest: &str,
        ext: &http::Extensions,
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
                .ok_or_else(|| crate::api::not_found("repository"))?;
            return Ok(ok_json::<B>(
                StatusCode::OK,
                serde_json::json!({"name": name, "tags": page.items}),
            ));
        }
        if let Some((name, tag)) = rest.rsplit_once("/tags/")
            && *m == Method::DELETE
        {
            if !self.config.delete_enabled {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "deletes are disabled on this registry",
                ));
            }
            validate_name(name)?;
            validate_tag(tag)?;
            self.may(
                who,
                crate::auth::project_of(name),
                Right::Repo(Action::Delete),
            )
            .await?;
            if !self.meta.delete_tag(name, tag).await? {
                return Err(crate::api::not_found("tag"));
            }
            self.audit(ext, who.name(), "delete", name, Some(tag.to_owned()))
                .await;
            return Ok(ok_json::<B>(
                StatusCode::OK,
                serde_json::json!({"deleted": tag}),
            ));
        }
        Err(not_found())
    }

    async fn list_robots(&self, who: &Principal) -> Result<ApiResponse<B>> {
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
                out.push(robot_view(&r));
            }
        }
        Ok(ok_json::<B>(StatusCode::OK, out.into()))
    }

    async fn create_robot(
        &self,
        who: &Principal,
        n: NewRobot,
        ext: &http::Extensions,
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
        let secret = random_secret(&self.env);
        let r = Robot {
            name: name.clone(),
            secret_hash: hash_password_off_thread(&self.env, &secret).await?,
            permissions,
            expires_ms,
            description: n.description,
            created_ms: now,
            incarnation: new_incarnation(&self.env),
        };
        self.dir()
            .put("robot", &name, &r, true)
            .await
            .map_err(|e| exists(e, "a robot", &name))?;
        self.record_event(
            ext,
            robot_project(&r),
            who.name(),
            "robot_create",
            &name,
            None,
        )
        .await;
        let mut v = robot_view(&r);
        v["secret"] = serde_json::json!(secret);
        Ok(ok_json::<B>(StatusCode::CREATED, v))
    }

    async fn delete_robot(
        &self,
        who: &Principal,
        name: &str,
        ext: &http::Extensions,
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
        self.record_event(
            ext,
            robot_project(&r),
            who.name(),
            "robot_delete",
            name,
            None,
        )
        .await;
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }

    async fn read_audit(
        &self,
        who: &Principal,
        project: Option<String>,
        actor: Option<String>,
        action: Option<String>,
        since_ms: Option<String>,
        limit: Option<String>,
    ) -> Result<ApiResponse<B>> {
        match &project {
            Some(p) => self.may(who, p, Right::ReadAudit).await?,
            None if who.is_admin() => {}
            None => return Err(denied()),
        }
        self.meta.flush_events().await?;
        let limit: usize = limit.and_then(|l| l.parse().ok()).unwrap_or(100).min(1000);
        let mut after = since_ms
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| format!("{s:016}"));
        let mut out = Vec::new();
        loop {
            let page = self
                .meta
                .list_docs("audit", "", after.as_deref(), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, raw) in &page {
                let Ok(e) = serde_json::from_slice::<AuditEvent>(raw) else {
                    continue;
                };
                let keep = project
                    .as_ref()
                    .is_none_or(|p| e.project() == Some(p.as_str()))
                    && actor.as_ref().is_none_or(|a| &e.actor == a)
                    && action.as_ref().is_none_or(|a| &e.action == a);
                if keep {
                    out.push(e);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            if out.len() >= limit || page.len() < 1000 {
                break;
            }
        }
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::to_value(&out).unwrap_or_default(),
        ))
    }
}

/// A create-only write that found the record there already: 409 naming what exists.
fn exists(e: RegistryError, what: &str, name: &str) -> RegistryError {
    if e.code == ErrorCode::Conflict {
        RegistryError::new(
            ErrorCode::Conflict,
            format!("{what} named {name:?} already exists"),
        )
    } else {
        e
    }
}

fn is_json(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The project a robot's events belong to: its only project, if it has one.
fn robot_project(r: &Robot) -> Option<&str> {
    match r.permissions.as_slice() {
        [one] => Some(one.project.as_str()),
        _ => None,
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

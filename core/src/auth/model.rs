//! Who is asking and what they may do: actions, rights, Harbor's roles, and the identity
//! records (users, projects, members, robots) with their incarnations.

use crate::ports::Env;
use serde::{Deserialize, Serialize};

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests and blobs.
    Pull,
    /// Write manifests and blobs.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The token-scope word for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
    /// Parses a scope action word.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// A project-level right (registry actions plus management).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// A registry action.
    Repo(Action),
    /// Add, change and remove project members.
    ManageMembers,
    /// Read the project's audit log.
    ReadAudit,
    /// Set the project's retention and immutability rules, and run retention.
    ManagePolicies,
}

/// Harbor's project roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Everything in the project, including members.
    ProjectAdmin,
    /// Pull, push, delete; reads the audit log; cannot manage members.
    Maintainer,
    /// Pull and push.
    Developer,
    /// Pull only.
    Guest,
    /// Pull only, and cannot see the project's audit log or members.
    LimitedGuest,
}

impl Role {
    /// The rights this role grants in its project (the README's table).
    pub fn allows(self, right: Right) -> bool {
        use Role::*;
        match right {
            Right::Repo(Action::Pull) => true,
            Right::Repo(Action::Push) => matches!(self, ProjectAdmin | Maintainer | Developer),
            Right::Repo(Action::Delete) => matches!(self, ProjectAdmin | Maintainer),
            Right::ManageMembers => self == ProjectAdmin,
            Right::ReadAudit => !matches!(self, LimitedGuest),
            Right::ManagePolicies => self == ProjectAdmin,
        }
    }
}

/// A person's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Argon2id PHC string; never leaves the store.
    pub password_hash: String,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// System administrator.
    #[serde(default)]
    pub admin: bool,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation: a user deleted and created again under the same name is
    /// another incarnation, so nothing issued to or granted the old one applies (records
    /// from before incarnations read as 0).
    #[serde(default)]
    pub incarnation: u64,
    /// Bumped by every password change or reset: refresh tokens carry the generation they
    /// were issued under, so a change revokes every one issued before it.
    #[serde(default)]
    pub generation: u64,
}

/// A project: the unit of access control.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    /// Name (the first segment of its repositories' names).
    pub name: String,
    /// Public projects allow anonymous pull.
    pub public: bool,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation; members and robot grants name it, so a project deleted
    /// and created again under the same name inherits none of them (0 before incarnations).
    #[serde(default)]
    pub incarnation: u64,
    /// The region that takes the project's writes, on a registry served from several
    /// (`None`: the registry's default, its identity home).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
}

/// A user's role in a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// Project.
    pub project: String,
    /// User.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The project incarnation this membership was granted in.
    #[serde(default)]
    pub project_incarnation: u64,
    /// The user incarnation it was granted to.
    #[serde(default)]
    pub user_incarnation: u64,
}

/// What a robot may do in one project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobotPermission {
    /// Project.
    pub project: String,
    /// Allowed actions.
    pub actions: Vec<Action>,
    /// The project incarnation the grant was made in (set by the server, never taken from
    /// a request).
    #[serde(default)]
    pub project_incarnation: u64,
}

/// A robot account: a non-person credential with explicit permissions and an expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robot {
    /// Full name, `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    /// Argon2id hash of the secret.
    pub secret_hash: String,
    /// Permissions.
    pub permissions: Vec<RobotPermission>,
    /// Expiry (ms); `None` never expires.
    pub expires_ms: Option<u64>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation (see [`User::incarnation`]).
    #[serde(default)]
    pub incarnation: u64,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A user.
    User(User),
    /// A robot.
    Robot(Robot),
}

impl Principal {
    /// The name recorded in tokens and audit events.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(u) => &u.username,
            Principal::Robot(r) => &r.name,
        }
    }
    /// System administrator?
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User(u) if u.admin)
    }
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(_) => "user",
            Principal::Robot(_) => "robot",
        }
    }
    /// (incarnation, credential generation): what a refresh token is bound to.
    pub fn binding(&self) -> (u64, u64) {
        match self {
            Principal::Anonymous => (0, 0),
            Principal::User(u) => (u.incarnation, u.generation),
            Principal::Robot(r) => (r.incarnation, 0),
        }
    }
}

pub use crate::model::name::{ANONYMOUS, project_of};

/// Whether `name` may be given to a new user: not the anonymous subject, and nothing that
/// reads as a robot's name (`robot$…`; `$` and `+` are refused by the name rules anyway).
pub fn reserved_username(name: &str) -> bool {
    name == ANONYMOUS || name.starts_with("robot$") || name.contains(['$', '+'])
}

/// A fresh incarnation id (never 0, which marks records from before incarnations).
pub fn new_incarnation(env: &impl Env) -> u64 {
    loop {
        let mut b = [0u8; 8];
        env.fill_random(&mut b);
        // Below 2^53, so the id survives JSON readers that use doubles.
        let v = u64::from_le_bytes(b) >> 11;
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        use Action::*;
        let rows = [
            (Role::ProjectAdmin, [true, true, true, true, true]),
            (Role::Maintainer, [true, true, true, false, true]),
            (Role::Developer, [true, true, false, false, true]),
            (Role::Guest, [true, false, false, false, true]),
            (Role::LimitedGuest, [true, false, false, false, false]),
        ];
        for (role, want) in rows {
            let got = [
                role.allows(Right::Repo(Pull)),
                role.allows(Right::Repo(Push)),
                role.allows(Right::Repo(Delete)),
                role.allows(Right::ManageMembers),
                role.allows(Right::ReadAudit),
            ];
            assert_eq!(got, want, "{role:?}");
        }
    }

    #[test]
    fn reserved_names() {
        for n in ["anonymous", "robot$x", "a+b", "a$b"] {
            assert!(reserved_username(n), "{n}");
        }
        for n in ["alice", "anonymous2", "robots"] {
            assert!(!reserved_username(n), "{n}");
        }
    }
}

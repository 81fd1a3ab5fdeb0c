//! What the management API shows: its own serializable views of the stored records, so the
//! storage format can change without changing the API (and the API can grow without a
//! migration). Secrets (password hashes, robot secret hashes, incarnations) never appear.

use crate::auth::{Member, Project, Robot, Role, User};
use crate::events::audit::AuditEvent;
use serde::Serialize;

/// The API's name of a role (the same words the API takes).
fn role_name(r: Role) -> &'static str {
    match r {
        Role::ProjectAdmin => "projectAdmin",
        Role::Maintainer => "maintainer",
        Role::Developer => "developer",
        Role::Guest => "guest",
        Role::LimitedGuest => "limitedGuest",
    }
}

/// A user account.
#[derive(Serialize)]
pub(super) struct UserView<'a> {
    username: &'a str,
    email: Option<&'a str>,
    admin: bool,
    created_ms: u64,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            username: &u.username,
            email: u.email.as_deref(),
            admin: u.admin,
            created_ms: u.created_ms,
        }
    }
}

/// A project.
#[derive(Serialize)]
pub(super) struct ProjectView<'a> {
    name: &'a str,
    public: bool,
    created_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    home_region: Option<&'a str>,
}

impl<'a> From<&'a Project> for ProjectView<'a> {
    fn from(p: &'a Project) -> Self {
        Self {
            name: &p.name,
            public: p.public,
            created_ms: p.created_ms,
            home_region: p.home_region.as_deref(),
        }
    }
}

/// A user's role in a project.
#[derive(Serialize)]
pub(super) struct MemberView<'a> {
    project: &'a str,
    username: &'a str,
    role: &'static str,
}

impl<'a> From<&'a Member> for MemberView<'a> {
    fn from(m: &'a Member) -> Self {
        Self {
            project: &m.project,
            username: &m.username,
            role: role_name(m.role),
        }
    }
}

/// One project grant of a robot.
#[derive(Serialize)]
struct PermissionView<'a> {
    project: &'a str,
    actions: Vec<&'static str>,
}

/// A robot account (its secret only once, at creation).
#[derive(Serialize)]
pub(super) struct RobotView<'a> {
    name: &'a str,
    permissions: Vec<PermissionView<'a>>,
    expires_ms: Option<u64>,
    description: &'a str,
    created_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> RobotView<'a> {
    /// The view of a robot; `secret` only in the answer that created it.
    pub(super) fn new(r: &'a Robot, secret: Option<&'a str>) -> Self {
        Self {
            name: &r.name,
            permissions: r
                .permissions
                .iter()
                .map(|p| PermissionView {
                    project: &p.project,
                    actions: p.actions.iter().map(|a| a.as_str()).collect(),
                })
                .collect(),
            expires_ms: r.expires_ms,
            description: &r.description,
            created_ms: r.created_ms,
            secret,
        }
    }
}

/// An entry of the audit log.
#[derive(Serialize)]
pub(super) struct AuditView<'a> {
    time_ms: u64,
    actor: &'a str,
    action: &'a str,
    resource: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<&'a str>,
}

impl<'a> From<&'a AuditEvent> for AuditView<'a> {
    fn from(e: &'a AuditEvent) -> Self {
        Self {
            time_ms: e.time_ms,
            actor: &e.actor,
            action: &e.action,
            resource: &e.resource,
            reference: e.reference.as_deref(),
            client: &e.client,
            project: e.project.as_deref(),
        }
    }
}

/// Any view as the JSON value the API answers with.
pub(super) fn json(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_the_words_the_api_takes() {
        for r in [
            Role::ProjectAdmin,
            Role::Maintainer,
            Role::Developer,
            Role::Guest,
            Role::LimitedGuest,
        ] {
            let taken: Role =
                serde_json::from_value(serde_json::json!(role_name(r))).expect("the API reads it");
            assert_eq!(taken, r);
        }
    }
}

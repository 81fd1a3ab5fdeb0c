//! The audit trail: events of pushes, pulls, deletes, logins and management actions.

use crate::auth::authorize::Gate;
use crate::auth::model::project_of;
use crate::http::request::ClientAddr;
use crate::model::to_hex;
use crate::ports::{DocumentStore, Env};
use serde::Serialize;

/// An audit event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// Who: user, robot or `anonymous`.
    pub actor: String,
    /// `login`, `login_failed`, `push`, `pull`, `delete`.
    pub action: String,
    /// Repository (or project/user for management actions).
    pub resource: String,
    /// Tag or digest, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Client address.
    pub client: String,
    /// The project the event belongs to, set by whoever records it: `None` for logins and
    /// account changes, which must never show in a project's log (a project named after a
    /// user would otherwise read that user's logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl AuditEvent {
    /// The event's project. Events recorded before events carried one are read as before
    /// only for repository actions, whose resource is a repository name.
    pub fn project(&self) -> Option<&str> {
        match (&self.project, self.action.as_str()) {
            (Some(p), _) => Some(p),
            (None, "push" | "pull" | "delete") => Some(project_of(&self.resource)),
            (None, _) => None,
        }
    }
}

impl<D: DocumentStore, E: Env> Gate<'_, D, E> {
    /// Records an event on repository `repo` (in `repo`'s project).
    pub(crate) async fn audit(
        &self,
        ext: &http::Extensions,
        actor: &str,
        action: &str,
        repo: &str,
        reference: Option<String>,
    ) {
        self.record_event(ext, Some(project_of(repo)), actor, action, repo, reference)
            .await
    }

    /// Records an event that belongs to no project (logins, accounts).
    pub(crate) async fn audit_global(
        &self,
        ext: &http::Extensions,
        actor: &str,
        action: &str,
        resource: &str,
    ) {
        self.record_event(ext, None, actor, action, resource, None)
            .await
    }

    /// Records an audit event; failures are logged, never fail the request.
    pub(crate) async fn record_event(
        &self,
        ext: &http::Extensions,
        project: Option<&str>,
        actor: &str,
        action: &str,
        resource: &str,
        reference: Option<String>,
    ) {
        if self.tokens.is_none() {
            return;
        }
        let now = self.env.now_ms();
        let event = AuditEvent {
            time_ms: now,
            actor: actor.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            reference,
            client: ext
                .get::<ClientAddr>()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            project: project.map(str::to_owned),
        };
        let mut r = [0u8; 4];
        self.env.fill_random(&mut r);
        let id = format!("{now:016}-{}", to_hex(&r));
        let Ok(raw) = serde_json::to_vec(&event) else {
            return;
        };
        if let Err(e) = self.docs.append_event(&id, &raw).await {
            tracing::warn!(error = %e, "could not record audit event");
        }
    }
}

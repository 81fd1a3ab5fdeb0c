//! The audit trail: the consumer of events that keeps one record per event in the
//! document store (kind `audit`, id `<time_ms:016>-<random hex>`, so ids sort by time),
//! for the management API's audit log. A pull's record rides with the manifest's pull
//! time ([`PullTimes`]), so a pull costs one write, not two.

use crate::events::pulls::PullMemo;
use crate::events::{Event, EventSink, Occurrence};
use crate::model::name::project_of;
use crate::model::to_hex;
use crate::ports::{DocumentStore, Env, PULL_TIME_PRECISION_MS, PullTimes};
use serde::{Deserialize, Serialize};

/// The document kind of audit records.
pub const AUDIT_KIND: &str = "audit";

/// An audit record, as stored. Its fields are the stored format (records written by every
/// earlier version are read), so the management API shows them through its own view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// Who: user, robot or `anonymous`.
    pub actor: String,
    /// What, in the audit log's words: `push`, `pull`, `delete`, `tag`, `blob_push`,
    /// `blob_mount`, `login`, `login_failed`, `user_create`, … (see [`AuditEvent::of`]).
    pub action: String,
    /// Repository (or project/user for management actions).
    pub resource: String,
    /// Tag or digest, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Client address.
    pub client: String,
    /// The project the event belongs to: `None` for logins and account changes, which must
    /// never show in a project's log (a project named after a user would otherwise read
    /// that user's logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl AuditEvent {
    /// The event's project. Records written before records carried one are read as before
    /// only for repository actions, whose resource is a repository name.
    pub fn project(&self) -> Option<&str> {
        match (&self.project, self.action.as_str()) {
            (Some(p), _) => Some(p),
            (None, "push" | "pull" | "delete") => Some(project_of(&self.resource)),
            (None, _) => None,
        }
    }

    /// The record of an occurrence; `None` for a `HEAD` of a manifest, which is not logged.
    pub fn of(o: &Occurrence) -> Option<Self> {
        let repo = |r: &str| (r.to_owned(), Some(project_of(r).to_owned()));
        let (action, (resource, project), reference) = match &o.event {
            Event::ManifestPushed {
                repository,
                reference,
                ..
            } => ("push", repo(repository), Some(reference.clone())),
            Event::TagMoved {
                repository,
                tag,
                digest,
            } => ("tag", repo(repository), Some(format!("{tag}={digest}"))),
            Event::ManifestPulled {
                repository,
                reference,
                ..
            } => ("pull", repo(repository), Some(reference.clone())),
            Event::ManifestChecked { .. } => return None,
            Event::ManifestDeleted { repository, digest }
            | Event::BlobUnlinked { repository, digest } => {
                ("delete", repo(repository), Some(digest.to_string()))
            }
            Event::TagDeleted { repository, tag } => {
                ("delete", repo(repository), Some(tag.clone()))
            }
            Event::BlobPushed {
                repository, digest, ..
            } => ("blob_push", repo(repository), Some(digest.to_string())),
            Event::BlobMounted {
                repository, digest, ..
            } => ("blob_mount", repo(repository), Some(digest.to_string())),
            Event::Login { account } => ("login", (account.clone(), None), None),
            Event::LoginFailed { account } => ("login_failed", (account.clone(), None), None),
            Event::UserCreated { user } => ("user_create", (user.clone(), None), None),
            Event::UserDeleted { user } => ("user_delete", (user.clone(), None), None),
            Event::PasswordChanged { user } => ("password_change", (user.clone(), None), None),
            Event::ProjectCreated { project } => (
                "project_create",
                (project.clone(), Some(project.clone())),
                None,
            ),
            Event::ProjectDeleted { project } => (
                "project_delete",
                (project.clone(), Some(project.clone())),
                None,
            ),
            Event::PolicySet {
                project,
                policy,
                summary,
            } => (
                "policy_set",
                (project.clone(), Some(project.clone())),
                Some(format!("{policy}: {summary}")),
            ),
            Event::RetentionRan {
                project,
                dry_run,
                kept,
                deleted,
            } => (
                if *dry_run {
                    "retention_dry_run"
                } else {
                    "retention_run"
                },
                (project.clone(), Some(project.clone())),
                Some(format!("kept {kept}, deleted {deleted}")),
            ),
            Event::MemberSet {
                project,
                user,
                role,
            } => (
                "member_set",
                (project.clone(), Some(project.clone())),
                Some(format!("{user}={role}")),
            ),
            Event::MemberRemoved { project, user } => (
                "member_remove",
                (project.clone(), Some(project.clone())),
                Some(user.clone()),
            ),
            Event::RobotCreated { robot, project } => {
                ("robot_create", (robot.clone(), project.clone()), None)
            }
            Event::RobotDeleted { robot, project } => {
                ("robot_delete", (robot.clone(), project.clone()), None)
            }
            Event::GcQueued {
                run,
                dry_run,
                verify,
            } => (
                "gc_queue",
                (run.clone(), None),
                if *verify {
                    Some("verify".to_owned())
                } else {
                    dry_run.then(|| "dry-run".to_owned())
                },
            ),
            Event::Replication { action, name } => {
                (action.audit_name(), (name.clone(), None), None)
            }
            Event::GcFinished {
                run,
                status,
                links,
                blobs,
                uploads,
                bytes,
                differences,
            } => (
                "gc_finish",
                (run.clone(), None),
                Some(format!(
                    "{status}: {links} links, {uploads} uploads, {blobs} blobs, {bytes} bytes, {differences} differences"
                )),
            ),
        };
        Some(Self {
            time_ms: o.time_ms,
            actor: o.actor.clone(),
            action: action.to_owned(),
            resource,
            reference,
            client: o.client.clone(),
            project,
        })
    }
}

/// The audit trail on a document store, with the pull times it carries.
pub struct AuditTrail<'a, D, E> {
    /// Where records (and pull times) go.
    pub docs: &'a D,
    /// Randomness for record ids.
    pub env: &'a E,
    /// The pulls this process noted this hour.
    pub pulls: &'a PullMemo,
}

impl<D: DocumentStore + PullTimes, E: Env> EventSink for AuditTrail<'_, D, E> {
    async fn deliver(&self, batch: &[Occurrence]) {
        for o in batch {
            let record = AuditEvent::of(o).and_then(|a| serde_json::to_vec(&a).ok());
            let id = record.as_ref().map(|_| {
                let mut r = [0u8; 4];
                self.env.fill_random(&mut r);
                format!("{:016}-{}", o.time_ms, to_hex(&r))
            });
            let event = id.as_deref().zip(record.as_deref());
            let pulled = match &o.event {
                Event::ManifestPulled {
                    repository, digest, ..
                }
                | Event::ManifestChecked { repository, digest } => Some((repository, digest)),
                _ => None,
            };
            let hour = o.time_ms - o.time_ms % PULL_TIME_PRECISION_MS;
            let pulled = pulled.filter(|(repo, digest)| !self.pulls.noted(repo, digest, hour));
            let written = match (pulled, event) {
                (Some((repo, digest)), _) => {
                    let noted = self.docs.note_pull(repo, digest, hour, event).await;
                    if noted.is_ok() {
                        self.pulls.remember(repo, digest, hour);
                    }
                    noted
                }
                (None, Some((id, raw))) => self.docs.append_event(id, raw).await,
                (None, None) => Ok(()),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record audit event or pull time");
            }
        }
    }
}

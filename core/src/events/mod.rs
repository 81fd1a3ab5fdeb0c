//! What happened: the typed events a request causes (pushes, pulls, deletes, tag moves,
//! logins, account and project changes), collected while the request runs and delivered
//! once it is done. Handlers only *emit*; consumers decide what an event means to them.
//! The audit trail ([`audit`]) is the first consumer; webhooks and replication triggers
//! read the same events.
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`] and [`crate::http`].

pub mod audit;
pub mod pulls;

use crate::model::Digest;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One thing that happened. The serialized form (`{"kind": "manifest_pushed", …}`) is
/// stable: events are stored (the audit trail, later an outbox) and read by other versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A manifest was stored (by tag or digest) and `tags` now point at it.
    ManifestPushed {
        /// Repository.
        repository: String,
        /// The reference of the request's path (a tag or the digest).
        reference: String,
        /// The manifest's digest.
        digest: Digest,
    },
    /// A tag was set to a manifest (by a manifest `PUT`, by path or `?tag=`).
    TagMoved {
        /// Repository.
        repository: String,
        /// The tag.
        tag: String,
        /// The manifest it now points at.
        digest: Digest,
    },
    /// A manifest was read (`GET`, by tag or digest).
    ManifestPulled {
        /// Repository.
        repository: String,
        /// The reference of the request's path.
        reference: String,
        /// The manifest served.
        digest: Digest,
    },
    /// A manifest's existence was checked (`HEAD`, by tag or digest): a pull as far as
    /// pull times go (clients `HEAD` before they `GET` by digest, or instead of it when
    /// they have the manifest cached), but no audit record.
    ManifestChecked {
        /// Repository.
        repository: String,
        /// The manifest.
        digest: Digest,
    },
    /// A manifest was deleted, with the tags that pointed at it.
    ManifestDeleted {
        /// Repository.
        repository: String,
        /// The manifest.
        digest: Digest,
    },
    /// A tag was deleted (the manifest stays).
    TagDeleted {
        /// Repository.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// A blob upload was committed and linked into a repository.
    BlobPushed {
        /// Repository.
        repository: String,
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// A blob of another repository was linked into this one (`POST ?mount=&from=`).
    BlobMounted {
        /// Repository.
        repository: String,
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// A blob's link into a repository was removed (`DELETE /v2/<name>/blobs/<digest>`).
    BlobUnlinked {
        /// Repository.
        repository: String,
        /// The blob.
        digest: Digest,
    },
    /// A user or robot logged in (token endpoint, not refreshes).
    Login {
        /// Account name.
        account: String,
    },
    /// A login was refused for a wrong password.
    LoginFailed {
        /// The account name that was tried.
        account: String,
    },
    /// A user account was created.
    UserCreated {
        /// User name.
        user: String,
    },
    /// A user account was deleted.
    UserDeleted {
        /// User name.
        user: String,
    },
    /// A user's password was changed or reset.
    PasswordChanged {
        /// User name.
        user: String,
    },
    /// A project was created.
    ProjectCreated {
        /// Project name.
        project: String,
    },
    /// A project was deleted.
    ProjectDeleted {
        /// Project name.
        project: String,
    },
    /// A garbage-collection run was queued.
    GcQueued {
        /// The run's id.
        run: String,
        /// Whether it only reports.
        dry_run: bool,
        /// Whether it verifies the bookkeeping instead of collecting.
        verify: bool,
    },
    /// A garbage-collection run finished or failed.
    GcFinished {
        /// The run's id.
        run: String,
        /// `finished` or `failed`.
        status: String,
        /// Links removed.
        links: u64,
        /// Blobs deleted.
        blobs: u64,
        /// Uploads removed.
        uploads: u64,
        /// Bytes freed in storage.
        bytes: u64,
        /// Differences a verification found.
        differences: u64,
    },
    /// A replication remote or rule was written or deleted, or a run queued.
    Replication {
        /// What was done.
        action: ReplicationAction,
        /// The remote's or rule's name.
        name: String,
    },
    /// A project's policy (retention, immutability, quota) was set.
    PolicySet {
        /// Project name.
        project: String,
        /// Which policy: `retention`, `immutability` or `quota`.
        policy: String,
        /// What it is now, in a few words.
        summary: String,
    },
    /// Retention ran on a project.
    RetentionRan {
        /// Project name.
        project: String,
        /// Whether it only reported.
        dry_run: bool,
        /// Artifacts kept.
        kept: u64,
        /// Artifacts deleted (or that would be).
        deleted: u64,
    },
    /// A user was given a role in a project.
    MemberSet {
        /// Project name.
        project: String,
        /// User name.
        user: String,
        /// The role, as the management API names it.
        role: String,
    },
    /// A user's membership of a project was removed.
    MemberRemoved {
        /// Project name.
        project: String,
        /// User name.
        user: String,
    },
    /// A robot account was created.
    RobotCreated {
        /// Robot name (`robot$…`).
        robot: String,
        /// Its project, for a project robot.
        project: Option<String>,
    },
    /// A robot account was deleted.
    RobotDeleted {
        /// Robot name.
        robot: String,
        /// Its project, for a project robot.
        project: Option<String>,
    },
}

/// An event with who caused it, from where, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// User, robot, `anonymous` or `upload-capability`.
    pub actor: String,
    /// Client address, as the runtime determined it.
    pub client: String,
    /// What happened.
    pub event: Event,
}

/// The events of one request, collected while it runs. Shared by reference between the
/// request's parts (a `Mutex`, so the handler futures stay `Send` on tokio).
#[derive(Debug, Default)]
pub struct Emitter {
    client: String,
    actor: Mutex<String>,
    pending: Mutex<Vec<(String, Event)>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a list that is still a list.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Emitter {
    /// A collector for a request from `client`; the actor is `anonymous` until
    /// [`Self::act_as`] names it.
    pub fn new(client: impl Into<String>) -> Self {
        Self {
            client: client.into(),
            actor: Mutex::new(crate::model::name::ANONYMOUS.to_owned()),
            pending: Mutex::default(),
        }
    }

    /// Names who the request's later events are by (once authorized).
    pub fn act_as(&self, actor: &str) {
        *locked(&self.actor) = actor.to_owned();
    }

    /// Records an event by the request's actor.
    pub fn emit(&self, event: Event) {
        let actor = locked(&self.actor).clone();
        locked(&self.pending).push((actor, event));
    }

    /// Records an event by `actor` (a login names the account it tried).
    pub fn emit_by(&self, actor: &str, event: Event) {
        locked(&self.pending).push((actor.to_owned(), event));
    }

    /// The events so far, stamped `now_ms`, emptying the collector.
    pub fn take(&self, now_ms: u64) -> Vec<Occurrence> {
        std::mem::take(&mut *locked(&self.pending))
            .into_iter()
            .map(|(actor, event)| Occurrence {
                time_ms: now_ms,
                actor,
                client: self.client.clone(),
                event,
            })
            .collect()
    }
}

/// Delivers a request's events, once it is done. Failing to deliver never fails the
/// request that caused them: a sink logs and goes on.
#[allow(async_fn_in_trait)]
pub trait EventSink {
    /// Hands the events of one request over, in the order they were emitted.
    async fn deliver(&self, batch: &[Occurrence]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serialized_form_is_stable() {
        let d: Digest = format!("sha256:{}", "a".repeat(64))
            .parse()
            .expect("digest");
        let e = Event::TagMoved {
            repository: "team/app".into(),
            tag: "v1".into(),
            digest: d.clone(),
        };
        let text = serde_json::to_string(&e).expect("json");
        assert_eq!(
            text,
            format!(r#"{{"kind":"tag_moved","repository":"team/app","tag":"v1","digest":"{d}"}}"#)
        );
        assert_eq!(serde_json::from_str::<Event>(&text).expect("read"), e);
    }

    #[test]
    fn events_keep_their_order_and_actor() {
        let em = Emitter::new("127.0.0.9");
        em.emit_by(
            "eve",
            Event::LoginFailed {
                account: "eve".into(),
            },
        );
        em.act_as("alice");
        em.emit(Event::Login {
            account: "alice".into(),
        });
        let got = em.take(5);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].actor.as_str(), got[1].actor.as_str()),
            ("eve", "alice")
        );
        assert!(
            got.iter()
                .all(|o| o.time_ms == 5 && o.client == "127.0.0.9")
        );
        assert!(em.take(6).is_empty(), "taking empties the collector");
    }
}

/// What was done to replication's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationAction {
    /// A remote was created or changed.
    RemoteSet,
    /// A remote was deleted.
    RemoteDelete,
    /// A rule was created or changed.
    RuleSet,
    /// A rule was deleted.
    RuleDelete,
    /// A run was queued by hand.
    RunQueue,
}

impl ReplicationAction {
    /// The audit log's action.
    pub fn audit_name(self) -> &'static str {
        match self {
            Self::RemoteSet => "replication_remote_set",
            Self::RemoteDelete => "replication_remote_delete",
            Self::RuleSet => "replication_rule_set",
            Self::RuleDelete => "replication_rule_delete",
            Self::RunQueue => "replication_run_queue",
        }
    }
}

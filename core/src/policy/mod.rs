//! What the operator and the project admins allow, decided in one place for every API and
//! job that could do it: whether deletes are allowed (`--disable-delete`), and each
//! project's rules: tag immutability ([`immutability`]), storage quota ([`quota`]) and
//! retention ([`retention`]).
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`], [`crate::events`] and
//! [`crate::auth`] (a project's rules are documents, and count only in the project
//! incarnation they were set in). The `/v2` handlers, the management API and the jobs ask
//! here; nothing here knows HTTP.

pub mod immutability;
pub mod patterns;
pub mod quota;
pub mod replication;
pub mod retention;

use crate::auth::Directory;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::ports::DocumentStore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Refuses a delete (of a manifest, a tag or a blob link) when deletes are disabled.
pub(crate) fn check_delete(delete_enabled: bool) -> Result<()> {
    if delete_enabled {
        Ok(())
    } else {
        Err(RegistryError::new(
            ErrorCode::Unsupported,
            "deletes are disabled on this registry",
        ))
    }
}

/// The closed set of per-project policies; each is one document of its own kind, id the
/// project's name, so a push reads only the one it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// [`immutability::ImmutabilityPolicy`].
    Immutability,
    /// [`quota::Quota`].
    Quota,
    /// [`retention::RetentionPolicy`].
    Retention,
}

impl PolicyKind {
    /// The document kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Immutability => "policy_immutability",
            Self::Quota => "policy_quota",
            Self::Retention => "policy_retention",
        }
    }
    /// How the API and the audit log name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Immutability => "immutability",
            Self::Quota => "quota",
            Self::Retention => "retention",
        }
    }
}

/// A kind of project policy as the management API takes it: one document per project,
/// set whole by a `PUT`, shown by a `GET`, removed by a `DELETE`.
pub trait ProjectPolicy: Serialize + DeserializeOwned + Sized {
    /// Where it is stored.
    const KIND: PolicyKind;
    /// What a `PUT` accepts (a grammar may have several forms, such as ECR's).
    type Input: DeserializeOwned;
    /// The policy the input means, validated.
    fn from_input(input: Self::Input) -> Result<Self>;
    /// One line for the audit log.
    fn summary(&self) -> String;
}

/// A project's policy as stored: the rules and the project incarnation they were set in,
/// so a project deleted and created again under its name inherits none of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored<T> {
    /// The project incarnation the policy was set in.
    pub project_incarnation: u64,
    /// When it was set (ms).
    pub updated_ms: u64,
    /// Who set it.
    pub updated_by: String,
    /// The policy.
    pub policy: T,
}

/// The project's policy of `kind`, if one was set in the project's live incarnation. A
/// project without one costs one read; with one, a second (the project's incarnation).
pub async fn load<T: DeserializeOwned, D: DocumentStore>(
    docs: &D,
    kind: PolicyKind,
    project: &str,
) -> Result<Option<Stored<T>>> {
    let Some(raw) = docs.get_doc(kind.as_str(), project).await? else {
        return Ok(None);
    };
    let stored: Stored<T> = serde_json::from_slice(&raw).map_err(|e| {
        RegistryError::new(
            ErrorCode::Unknown,
            format!("corrupt {} policy of project {project}: {e}", kind.name()),
        )
    })?;
    match Directory(docs).project(project).await? {
        Some(p) if p.incarnation == stored.project_incarnation => Ok(Some(stored)),
        _ => Ok(None),
    }
}

/// Writes the project's policy of `kind`.
pub async fn save<T: Serialize, D: DocumentStore>(
    docs: &D,
    kind: PolicyKind,
    project: &str,
    stored: &Stored<T>,
) -> Result<()> {
    Directory(docs)
        .put(kind.as_str(), project, stored, false)
        .await
}

/// Removes every policy of a project (tidying after its deletion: the incarnation check
/// already voids them).
pub async fn forget<D: DocumentStore>(docs: &D, project: &str) -> Result<()> {
    for kind in [
        PolicyKind::Immutability,
        PolicyKind::Quota,
        PolicyKind::Retention,
    ] {
        docs.delete_doc(kind.as_str(), project).await?;
    }
    Ok(())
}

//! Storage quotas: per project, in bytes of distinct blobs (a blob linked into several of
//! the project's repositories counts once, as Harbor counts; uploads in progress count
//! nothing), read from the usage counters the links keep ([`crate::ports::UsageCounters`]).
//!
//! A link that would take the project over its limit is refused with `DENIED` (the spec
//! has no quota code; Distribution's `DENIED` is "access to the resource is denied", and
//! docker prints its message) before anything is written, so nothing of a refused push is
//! counted. The check reads, then the link writes: links decided at the same moment may
//! together pass the limit by what they add (at most one blob per upload in flight), never
//! a push begun after usage reached it. Usage is exact after garbage collection, which
//! removes the links no manifest references.

use crate::error::{ErrorCode, RegistryError, Result};
use crate::model::Digest;
use crate::model::name::project_of;
use crate::policy::{PolicyKind, load};
use crate::ports::{DocumentStore, UsageCounters};
use serde::{Deserialize, Serialize};

/// A project's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most bytes the project's distinct blobs may take.
    pub limit_bytes: u64,
}

impl super::ProjectPolicy for Quota {
    const KIND: PolicyKind = PolicyKind::Quota;
    type Input = Quota;
    fn from_input(input: Quota) -> Result<Self> {
        Ok(input)
    }
    fn summary(&self) -> String {
        format!("{} bytes", self.limit_bytes)
    }
}

/// Refuses linking `digest` (`size` bytes) into `repo` if its project has a quota the
/// blob would pass; a blob the project already holds adds nothing and always passes.
pub async fn check_link<M: UsageCounters + DocumentStore>(
    meta: &M,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let project = project_of(repo);
    let Some(q) = load::<Quota, _>(meta, PolicyKind::Quota, project).await? else {
        return Ok(());
    };
    if meta.counts_blob(project, digest).await? {
        return Ok(());
    }
    let used = meta.project_usage(project).await?.bytes;
    let after = used.saturating_add(size);
    if after <= q.policy.limit_bytes {
        return Ok(());
    }
    Err(RegistryError::new(
        ErrorCode::Denied,
        format!(
            "quota exceeded: project {project} uses {used} of its {} bytes; blob {digest} of {size} bytes would take it to {after}",
            q.policy.limit_bytes
        ),
    )
    .with_detail(serde_json::json!({
        "project": project,
        "used_bytes": used,
        "limit_bytes": q.policy.limit_bytes,
        "blob_bytes": size,
    })))
}

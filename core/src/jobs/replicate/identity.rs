//! Identity across regions: users, robots, members, projects, their policies and the
//! token signing key are one set for the whole registry, written in the region that
//! arbitrates them and mirrored to every other by the replication job.
//!
//! A mirror makes the replica's records of these kinds equal the source's: each record
//! that differs is written, each the source no longer has is deleted (a user deleted at
//! home is refused everywhere after the next run). The sets are small (people and
//! projects, not images), so a run compares them whole; nothing depends on the order in
//! which the records changed, and a run stopped anywhere is finished by the next. A
//! replica refuses identity writes of its own (`Config::identity_home`), so the source is
//! the only writer and there is nothing to merge.

use crate::error::Result;
use crate::policy::PolicyKind;
use crate::ports::DocumentStore;
use serde::Serialize;

/// The record kinds that are one set for the whole registry. `config` holds the token
/// signing key (when it is not configured, as it should be, from one secret everywhere).
pub const SHARED_KINDS: [&str; 8] = [
    "user",
    "robot",
    "member",
    "project",
    PolicyKind::Immutability.as_str(),
    PolicyKind::Quota.as_str(),
    PolicyKind::Retention.as_str(),
    "config",
];

/// Records of the `config` kind that are shared (the rest are a region's own).
const SHARED_CONFIG: [&str; 1] = ["token-signing-key"];

/// What a mirror changed at the replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    /// Records written (new or changed).
    pub written: u64,
    /// Records deleted (gone at the source).
    pub deleted: u64,
    /// Records compared.
    pub compared: u64,
}

const PAGE: usize = 500;

async fn all<D: DocumentStore>(docs: &D, kind: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let after = out.last().map(|(id, _)| id.clone());
        let page = docs.list_docs(kind, "", after.as_deref(), PAGE).await?;
        let n = page.len();
        out.extend(page);
        if n < PAGE {
            break;
        }
    }
    if kind == "config" {
        out.retain(|(id, _)| SHARED_CONFIG.contains(&id.as_str()));
    }
    Ok(out)
}

/// Makes `dst`'s shared records equal `src`'s.
pub async fn mirror<S: DocumentStore, D: DocumentStore>(src: &S, dst: &D) -> Result<MirrorReport> {
    let mut r = MirrorReport::default();
    for kind in SHARED_KINDS {
        let want = all(src, kind).await?;
        let have: std::collections::BTreeMap<String, Vec<u8>> =
            all(dst, kind).await?.into_iter().collect();
        for (id, raw) in &want {
            r.compared += 1;
            if have.get(id) != Some(raw) {
                dst.put_doc(kind, id, raw, false).await?;
                r.written += 1;
            }
        }
        let wanted: std::collections::BTreeSet<&str> =
            want.iter().map(|(id, _)| id.as_str()).collect();
        for id in have.keys() {
            if !wanted.contains(id.as_str()) {
                dst.delete_doc(kind, id).await?;
                r.deleted += 1;
            }
        }
    }
    Ok(r)
}

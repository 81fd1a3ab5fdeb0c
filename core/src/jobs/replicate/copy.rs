//! Copying one artifact: its graph in the order that keeps the target consistent.

use super::{Source, Target};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::model::Digest;
use crate::ports::StoredManifest;
use std::collections::{HashMap, HashSet};

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyReport {
    /// Blobs uploaded.
    pub blobs_copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Blobs the target had.
    pub blobs_present: u64,
    /// Manifests stored.
    pub manifests_copied: u64,
    /// Manifests the target had.
    pub manifests_present: u64,
}

impl CopyReport {
    /// Adds another report's counts.
    pub fn add(&mut self, o: &CopyReport) {
        self.blobs_copied += o.blobs_copied;
        self.bytes_copied += o.bytes_copied;
        self.blobs_present += o.blobs_present;
        self.manifests_copied += o.manifests_copied;
        self.manifests_present += o.manifests_present;
    }
}

enum Visit {
    Enter(Digest),
    Leave(Digest),
}

/// Copies manifest `digest` of `src_repo` with everything it references (blobs, child
/// manifests) and everything that refers to it (signatures, SBOMs, recursively), from
/// `src` to `dst_repo` of `dst` (the same name, or one a rule's namespace rewrote). Tags
/// are not touched.
///
/// Order: a manifest is stored only after its blobs and children are, and a referrer only
/// after its subject, so the target holds complete graphs at every moment. A manifest the
/// target already has is not descended into (the target checked its references when it
/// was stored), but its referrers are still visited: they may be new.
pub async fn copy_artifact<S: Source, T: Target>(
    src: &S,
    dst: &T,
    src_repo: &str,
    dst_repo: &str,
    digest: &Digest,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let mut seen = HashSet::new();
    let mut fetched: HashMap<Digest, StoredManifest> = HashMap::new();
    let mut stack = vec![Visit::Enter(digest.clone())];
    while let Some(v) = stack.pop() {
        match v {
            Visit::Enter(d) => {
                if !seen.insert(d.clone()) {
                    continue;
                }
                if dst.resolve(dst_repo, &d.to_string()).await?.as_ref() == Some(&d) {
                    report.manifests_present += 1;
                    push_referrers(src, src_repo, &d, &mut stack).await?;
                    continue;
                }
                let m = src.manifest(src_repo, &d).await?.ok_or_else(|| {
                    RegistryError::new(
                        ErrorCode::ManifestUnknown,
                        format!("{src_repo} has no manifest {d} to copy"),
                    )
                })?;
                stack.push(Visit::Leave(d.clone()));
                for child in m.info.children.iter().rev() {
                    stack.push(Visit::Enter(child.clone()));
                }
                fetched.insert(d, m);
            }
            Visit::Leave(d) => {
                let Some(m) = fetched.remove(&d) else {
                    continue;
                };
                for b in &m.info.blobs {
                    if dst.has_blob(dst_repo, b).await? {
                        report.blobs_present += 1;
                        continue;
                    }
                    let (size, body) = src.blob(src_repo, b).await?;
                    dst.put_blob(dst_repo, b, size, body).await?;
                    report.blobs_copied += 1;
                    report.bytes_copied += size;
                }
                dst.put_manifest(dst_repo, &d.to_string(), &m).await?;
                report.manifests_copied += 1;
                push_referrers(src, src_repo, &d, &mut stack).await?;
            }
        }
    }
    Ok(report)
}

async fn push_referrers<S: Source>(
    src: &S,
    repo: &str,
    d: &Digest,
    stack: &mut Vec<Visit>,
) -> Result<()> {
    for r in src.referrers(repo, d).await? {
        stack.push(Visit::Enter(r));
    }
    Ok(())
}

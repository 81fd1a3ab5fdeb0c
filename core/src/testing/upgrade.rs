//! What an upgrade test compares: the facts the optional abilities hold about some
//! repositories and digests, without times (content from before an upgrade has none).
//! A store upgraded and backfilled must hold the same facts as the memory store that took
//! the same pushes live.

use crate::model::Digest;
use crate::model::name::project_of;
use crate::ports::*;

/// One line per fact, in a fixed order: manifests, tags and links of each of `repos`;
/// the record and the repositories of each of `digests`; the usage of each project; the
/// unreferenced links of `repos` (garbage collection's work list).
pub async fn ledger_facts<M>(m: &M, repos: &[&str], digests: &[Digest]) -> Vec<String>
where
    M: ManifestIndex + BlobRecords + UsageCounters + LinkCollection,
{
    let mut out = Vec::new();
    for l in super::all_unreferenced_links(m, 100).await {
        if repos.contains(&l.repo.as_str()) {
            out.push(format!(
                "{} unreferenced {} size {}",
                l.repo, l.digest, l.size
            ));
        }
    }
    for r in repos {
        for e in m.list_manifests(r, None, 1000).await.expect("manifests") {
            let subject = e.subject.map(|s| s.to_string()).unwrap_or_default();
            out.push(format!(
                "{r} manifest {} {} {} {subject}",
                e.digest, e.media_type, e.size
            ));
        }
        for t in m.list_tag_entries(r, None, 1000).await.expect("tags") {
            out.push(format!("{r} tag {} {}", t.tag, t.digest));
        }
        for l in m.list_links(r, None, 1000).await.expect("links") {
            out.push(format!(
                "{r} link {} size {} refs {}",
                l.digest, l.size, l.refs
            ));
        }
    }
    for d in digests {
        match m.blob_record(d).await.expect("record") {
            Some(b) => out.push(format!(
                "{d} record size {} links {} refs {} {:?}",
                b.size, b.links, b.refs, b.state
            )),
            None => out.push(format!("{d} no record")),
        }
        let with = m.repositories_with(d, None, 100).await.expect("with");
        out.push(format!("{d} in {}", with.join(",")));
    }
    let mut projects: Vec<&str> = repos.iter().map(|r| project_of(r)).collect();
    projects.dedup();
    for p in projects {
        let u = m.project_usage(p).await.expect("usage");
        out.push(format!("{p} usage {} bytes {} blobs", u.bytes, u.blobs));
    }
    out
}

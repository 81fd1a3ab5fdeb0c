//! Reading the ledger: what the optional abilities' read methods answer.

use super::keys::*;
use super::{BlobDoc, Kv, LinkDoc, ManifestDoc, TagDoc, UsageDoc, corrupt, get_json};
use crate::error::StoreError;
use crate::model::Digest;
use crate::ports::{BlobRecord, LinkEntry, ManifestEntry, OutboxEntry, TagEntry, Usage};

/// Entries under `prefix` after the entry named `after` (the part after the prefix).
fn page<T: for<'de> serde::Deserialize<'de>>(
    kv: &mut impl Kv,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, T)>, StoreError> {
    let after = after.map(|a| format!("{prefix}{a}"));
    kv.scan(prefix, after.as_deref(), limit)?
        .into_iter()
        .map(|(k, raw)| {
            let v = serde_json::from_slice(&raw).map_err(|_| corrupt(&k))?;
            Ok((k[prefix.len()..].to_owned(), v))
        })
        .collect()
}

fn digest_of(key: &str, s: &str) -> Result<Digest, StoreError> {
    s.parse().map_err(|_| corrupt(key))
}

fn record(digest: Digest, b: BlobDoc) -> BlobRecord {
    BlobRecord {
        state: b.state(),
        digest,
        size: b.size,
        links: b.links,
        refs: b.refs,
        touched_ms: b.touched_ms,
    }
}

/// `blob_record`.
pub fn blob_record(kv: &mut impl Kv, digest: &Digest) -> Result<Option<BlobRecord>, StoreError> {
    Ok(get_json::<BlobDoc>(kv, &blob_key(digest))?.map(|b| record(digest.clone(), b)))
}

/// `unlinked_blobs`.
pub fn unlinked_blobs(
    kv: &mut impl Kv,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<BlobRecord>, StoreError> {
    let after = after.map(|d| format!("{UNLINKED}{d}"));
    let keys = kv.scan(UNLINKED, after.as_deref(), limit)?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, _) in keys {
        let d = digest_of(&k, &k[UNLINKED.len()..])?;
        if let Some(r) = blob_record(kv, &d)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// `unreferenced_links`.
pub fn unreferenced_links(
    kv: &mut impl Kv,
    after: Option<&crate::ports::LinkCursor>,
    limit: usize,
) -> Result<Vec<crate::ports::UnreferencedLink>, StoreError> {
    let after = after.map(|c| unref_key(&c.repo, &c.digest));
    let keys = kv.scan(UNREF, after.as_deref(), limit)?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, _) in keys {
        let rest = &k[UNREF.len()..];
        let (repo, d) = rest.rsplit_once('|').ok_or_else(|| corrupt(&k))?;
        let digest = digest_of(&k, d)?;
        if let Some(l) = get_json::<LinkDoc>(kv, &link_key(repo, &digest))? {
            out.push(crate::ports::UnreferencedLink {
                repo: repo.to_owned(),
                digest,
                size: l.size,
                linked_ms: l.linked_ms,
            });
        }
    }
    Ok(out)
}

/// `list_manifests`.
pub fn list_manifests(
    kv: &mut impl Kv,
    repo: &str,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<ManifestEntry>, StoreError> {
    let after = after.map(Digest::to_string);
    page::<ManifestDoc>(kv, &manifest_prefix(repo), after.as_deref(), limit)?
        .into_iter()
        .map(|(d, m)| {
            Ok(ManifestEntry {
                digest: digest_of(&d, &d)?,
                media_type: m.media_type,
                size: m.size,
                subject: m.subject,
                pushed_ms: m.pushed_ms,
                pulled_ms: m.pulled_ms,
            })
        })
        .collect()
}

/// `list_tag_entries`.
pub fn list_tag_entries(
    kv: &mut impl Kv,
    repo: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<TagEntry>, StoreError> {
    Ok(page::<TagDoc>(kv, &tag_prefix(repo), after, limit)?
        .into_iter()
        .map(|(tag, t)| TagEntry {
            tag,
            digest: t.digest,
            pushed_ms: t.pushed_ms,
        })
        .collect())
}

/// `list_links`.
pub fn list_links(
    kv: &mut impl Kv,
    repo: &str,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<LinkEntry>, StoreError> {
    let after = after.map(Digest::to_string);
    page::<LinkDoc>(kv, &link_prefix(repo), after.as_deref(), limit)?
        .into_iter()
        .map(|(d, l)| {
            Ok(LinkEntry {
                digest: digest_of(&d, &d)?,
                size: l.size,
                linked_ms: l.linked_ms,
                refs: l.refs,
            })
        })
        .collect()
}

/// `repositories_with`.
pub fn repositories_with(
    kv: &mut impl Kv,
    digest: &Digest,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let prefix = with_prefix(digest);
    let after = after.map(|a| format!("{prefix}{a}"));
    Ok(kv
        .scan(&prefix, after.as_deref(), limit)?
        .into_iter()
        .map(|(k, _)| k[prefix.len()..].to_owned())
        .collect())
}

/// `outbox_after`.
pub fn outbox_after(
    kv: &mut impl Kv,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    Ok(page::<OutboxEntry>(kv, OUTBOX, after, limit)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// `outbox_trim`.
pub fn outbox_trim(kv: &mut impl Kv, upto: &str, limit: usize) -> Result<usize, StoreError> {
    let mut n = 0;
    for (k, _) in kv.scan(OUTBOX, None, limit)? {
        if k[OUTBOX.len()..] > *upto {
            break;
        }
        kv.delete(&k)?;
        n += 1;
    }
    Ok(n)
}

/// `project_usage`.
pub fn project_usage(kv: &mut impl Kv, project: &str) -> Result<Usage, StoreError> {
    let u: UsageDoc = get_json(kv, &usage_key(project))?.unwrap_or_default();
    Ok(Usage {
        bytes: u.bytes,
        blobs: u.blobs,
    })
}

/// Whether a repository of `project` links `digest`.
pub fn counts_blob(kv: &mut impl Kv, project: &str, digest: &Digest) -> Result<bool, StoreError> {
    Ok(kv.get(&project_blob_key(project, digest))?.is_some())
}

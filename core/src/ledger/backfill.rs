//! The backfill's part of the ledger: records for content written before it, and the
//! checkpoint and schema version that say how far it got.

use super::keys::*;
use super::{Kv, TagDoc, count_link, count_manifest, get_json, put_json};
use crate::error::StoreError;
use crate::model::Digest;
use crate::model::manifest::ManifestInfo;

/// The backfill's view of one piece of old content, as the store walks it.
pub enum Old<'a> {
    /// A blob link.
    Link {
        /// Repository.
        repo: &'a str,
        /// Blob.
        digest: &'a Digest,
        /// Size.
        size: u64,
    },
    /// A manifest.
    Manifest {
        /// Repository.
        repo: &'a str,
        /// Its facts.
        info: &'a ManifestInfo,
    },
    /// A tag.
    Tag {
        /// Repository.
        repo: &'a str,
        /// Tag.
        tag: &'a str,
        /// What it points at.
        digest: &'a Digest,
    },
}

/// Gives one piece of content written before the ledger its records, if it has none: the
/// backfill calls it for every link, manifest and tag, links first; idempotent.
pub fn backfill(kv: &mut impl Kv, old: Old<'_>) -> Result<(), StoreError> {
    match old {
        Old::Link { repo, digest, size } => count_link(kv, repo, digest, size, None),
        Old::Manifest { repo, info } => count_manifest(kv, repo, info, None),
        Old::Tag { repo, tag, digest } => {
            let key = tag_key(repo, tag);
            if kv.get(&key)?.is_none() {
                let doc = TagDoc {
                    digest: digest.clone(),
                    pushed_ms: None,
                };
                put_json(kv, &key, &doc)?;
            }
            Ok(())
        }
    }
}

/// The backfill's checkpoint: `None` before it started, `Some("")` once done. A backfill
/// done for an older schema (2: before the work list of unreferenced links) reads as not
/// started, so it runs again from the beginning: it is idempotent, and on the way it gives
/// every record what the newer schema keeps.
pub fn backfill_checkpoint(kv: &mut impl Kv) -> Result<Option<String>, StoreError> {
    let cp: Option<String> = get_json(kv, BACKFILL)?;
    if cp.as_deref() == Some("") && schema_version(kv)? < crate::ports::SCHEMA_VERSION {
        return Ok(None);
    }
    Ok(cp)
}

/// Saves the backfill's checkpoint (`""`: done, and the store is at
/// [`crate::ports::SCHEMA_VERSION`]).
pub fn set_backfill_checkpoint(kv: &mut impl Kv, checkpoint: &str) -> Result<(), StoreError> {
    put_json(kv, BACKFILL, &checkpoint)?;
    if checkpoint.is_empty() {
        put_json(kv, SCHEMA, &crate::ports::SCHEMA_VERSION)?;
    }
    Ok(())
}

/// The store's schema version: 1 until the backfill finished.
pub fn schema_version(kv: &mut impl Kv) -> Result<u32, StoreError> {
    Ok(get_json(kv, SCHEMA)?.unwrap_or(1))
}

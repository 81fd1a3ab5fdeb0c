//! The fs store's blob inventory: a walk of `blobs/<alg>/<2 hex>/<hex>` in name order, which
//! is digest order (algorithm names sort as the algorithms do, and hex as hex).
//!
//! A page reads one directory at a time and skips what sorts before `after` without reading
//! it: algorithm directories before `after`'s, and in its algorithm the two-hex directories
//! before its own. So a page holds at most one two-hex directory's names in memory (1/256
//! of the blobs), however large the store. Only `uploads/` and `tmp/` hold staged bytes, and
//! the walk never enters them. Size and modified time come from each file's metadata.

use crate::{FsBlobStore, io_err};
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;
use wharf_core::ports::{BlobEntry, BlobInventory};
use wharf_core::{Digest, StoreError};

/// The names in `dir`, sorted; none if it does not exist (yet, or any more) or is a file
/// (a stray one where a directory belongs).
async fn sorted_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(io_err(e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = rd.next_entry().await.map_err(io_err)? {
        // Blob file and directory names are ASCII; anything else is not ours.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

impl BlobInventory for FsBlobStore {
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let from = after.map(|d| (d.algorithm().as_str(), d.hex()));
        let blobs = self.root.join("blobs");
        for alg in sorted_names(&blobs).await? {
            let alg = alg.as_str();
            // Within `after`'s own algorithm, the walk starts at its two-hex directory.
            let start = match from {
                Some((a, _)) if alg < a => continue,
                Some((a, hex)) if alg == a => Some(hex),
                _ => None,
            };
            let alg_dir = blobs.join(alg);
            for fan in sorted_names(&alg_dir).await? {
                if fan.len() != 2 || start.is_some_and(|hex| fan.as_str() < &hex[..2]) {
                    continue;
                }
                let dir = alg_dir.join(&fan);
                for name in sorted_names(&dir).await? {
                    if start.is_some_and(|hex| name.as_str() <= hex) || !name.starts_with(&fan) {
                        continue;
                    }
                    let Ok(digest) = format!("{alg}:{name}").parse::<Digest>() else {
                        continue;
                    };
                    let meta = match tokio::fs::symlink_metadata(dir.join(&name)).await {
                        Ok(m) if m.is_file() => m,
                        Ok(_) => continue,
                        // Deleted since the directory was read.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(e)),
                    };
                    let modified_ms = meta
                        .modified()
                        .map_err(io_err)?
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    out.push(BlobEntry {
                        digest,
                        size: meta.len(),
                        modified_ms,
                    });
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

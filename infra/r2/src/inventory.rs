//! The R2 store's blob inventory: the binding's `list` under `<prefix>blobs/`, from the key
//! of the digest a page starts after (`startAfter`, then R2's `cursor`), in key order, which
//! is digest order. Keys map back to digests through [`wharf_chunked::Layout::blob_digest`];
//! a key that is not a blob's is skipped. The modified time is R2's `uploaded`. Staged bytes
//! are never listed: request objects live under `uploads/`, and a declared-digest upload at
//! the blob's key is a multipart upload, which is no object until commit completes it.

use crate::{R2Blobs, call, js_error, js_obj, num};
use wasm_bindgen::{JsCast, JsValue};
use wharf_core::ports::{BlobEntry, BlobInventory};
use wharf_core::{Digest, StoreError};
use worker::worker_sys::R2Objects;

/// The most objects one `list` call returns.
const MAX_LIST: usize = 1000;

impl BlobInventory for R2Blobs {
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError> {
        let prefix = self.layout.blobs_prefix();
        let start_after = after.map(|d| self.blob_key(d));
        let mut cursor: Option<String> = None;
        let mut out = Vec::new();
        while out.len() < limit {
            let want = (limit - out.len()).min(MAX_LIST);
            let mut opts = vec![
                ("prefix", JsValue::from_str(&prefix)),
                ("limit", num(want as u64)),
            ];
            match (&cursor, &start_after) {
                (Some(c), _) => opts.push(("cursor", JsValue::from_str(c))),
                (None, Some(s)) => opts.push(("startAfter", JsValue::from_str(s))),
                (None, None) => {}
            }
            let page: R2Objects = call("list", self.bucket.list(js_obj(&opts)?))
                .await?
                .unchecked_into();
            let err = |e| js_error("list", e);
            for o in page.objects().map_err(err)? {
                let Some(digest) = self.layout.blob_digest(&o.key().map_err(err)?) else {
                    continue;
                };
                let size = o.size().map_err(err)?;
                let uploaded = o.uploaded().map_err(err)?.get_time();
                out.push(BlobEntry {
                    digest,
                    size: size as u64,
                    modified_ms: if uploaded.is_finite() && uploaded > 0.0 {
                        uploaded as u64
                    } else {
                        0
                    },
                });
            }
            let truncated = page.truncated().map_err(err)?;
            match page.cursor().map_err(err)? {
                Some(c) if truncated => cursor = Some(c),
                _ => break,
            }
        }
        // A page of R2's may run past what is left to fill.
        out.truncate(limit);
        Ok(out)
    }
}

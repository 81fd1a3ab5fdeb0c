//! Tag listing.

use super::name_unknown;
use crate::http::query::Query;
use crate::http::query::enc;
use crate::http::response::{json, set_link};
use crate::oci::{Oci, Resp};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::StatusCode;

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    pub(super) async fn tags(&self, name: &str, q: &Query) -> Resp<B> {
        let (n, last) = q.page()?;
        let Some(page) = self.meta.list_tags(name, last, n).await? else {
            return Err(name_unknown(name));
        };
        let body = serde_json::json!({ "name": name, "tags": page.items });
        let mut resp = json::<B>(StatusCode::OK, body.to_string().into_bytes(), false);
        if page.more
            && let Some(l) = page.items.last()
        {
            set_link(
                &mut resp,
                &format!("/v2/{name}/tags/list?n={n}&last={}", enc(l)),
            );
        }
        Ok(resp)
    }
}

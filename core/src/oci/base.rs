//! `/v2/` and the catalog.

use crate::http::query::Query;
use crate::http::query::enc;
use crate::http::response::{json, set_link};
use crate::oci::{Oci, Resp};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::StatusCode;

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    /// `GET /v2/`: the API is here (an empty JSON object).
    pub(super) fn base(&self, head: bool) -> Resp<B> {
        Ok(json::<B>(StatusCode::OK, b"{}".to_vec(), head))
    }

    pub(super) async fn catalog(&self, q: &Query) -> Resp<B> {
        let (n, last) = q.page()?;
        let page = self.meta.list_repositories(last, n).await?;
        let body = serde_json::json!({ "repositories": page.items });
        let mut resp = json::<B>(StatusCode::OK, body.to_string().into_bytes(), false);
        if page.more
            && let Some(l) = page.items.last()
        {
            set_link(&mut resp, &format!("/v2/_catalog?n={n}&last={}", enc(l)));
        }
        Ok(resp)
    }
}

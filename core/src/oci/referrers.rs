//! Referrers of a manifest.

use super::internal;
use crate::http::body::Body;
use crate::http::headers;
use crate::http::headers::*;
use crate::http::query::Query;
use crate::model::Digest;
use crate::model::manifest::{Descriptor, OCI_INDEX};
use crate::oci::{Oci, Resp};
use crate::ports::{BlobStore, Env, ServingMeta};
use http::{Response, StatusCode};

impl<B: BlobStore, M: ServingMeta, E: Env> Oci<'_, B, M, E> {
    pub(super) async fn referrers(&self, name: &str, digest: &str, q: &Query) -> Resp<B> {
        let subject: Digest = digest.parse()?;
        let mut list = self.meta.referrers(name, &subject).await?;
        let filter = q.get("artifactType");
        if let Some(f) = filter {
            list.retain(|d| d.artifact_type.as_deref() == Some(f));
        }
        list.sort_by(|a, b| a.digest.cmp(&b.digest));
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Index<'a> {
            schema_version: u8,
            media_type: &'a str,
            manifests: &'a [Descriptor],
        }
        let body = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: &list,
        })
        .map_err(internal)?;
        let mut resp = Response::builder()
            .status(StatusCode::OK)
            .header(headers::CONTENT_TYPE, OCI_INDEX)
            .header(headers::CONTENT_LENGTH, body.len());
        if filter.is_some() {
            resp = resp.header(OCI_FILTERS_APPLIED, "artifactType");
        }
        resp.body(Body::full(body)).map_err(internal)
    }
}

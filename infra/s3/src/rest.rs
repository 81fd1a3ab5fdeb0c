//! The S3 API as plain signed HTTP requests ([`wharf_sigv4::AwsClient`]) over a runtime's
//! own transport: what the Worker uses as upload front of an AWS deployment, where there is
//! no SDK (it would not fit in a Worker) but `fetch` is there. Same store, same layout, so
//! the Lambda serves what the Worker wrote.
//!
//! Differences from the SDK path, all on purpose: bodies are whole `Bytes` (a request's part
//! is in memory anyway); reads are buffered, which suits what a front reads (an upload's
//! small last object, under 5 MiB), not blob downloads (a front redirects those to presigned
//! URLs or refuses them); upload objects are deleted one DELETE each, since DeleteObjects
//! needs a Content-MD5 (an upload has a handful of objects).

use crate::inventory::parse_list;
use crate::{Listed, MAX_LIST, S3Api, bucket_url, other, range_value};
use bytes::Bytes;
use std::time::{Duration, SystemTime};
use wharf_chunked::Part;
use wharf_core::StoreError;
use wharf_sigv4::{
    AwsClient, Transport, encode_key, error_code, xml_escape, xml_value, xml_values,
};

/// S3 over signed HTTP requests.
pub struct RestApi<T> {
    client: AwsClient<T>,
    /// URL of the bucket, without a trailing slash.
    bucket_url: String,
    bucket: String,
}

impl<T: Transport> RestApi<T> {
    /// The bucket `bucket` at `endpoint` (default: AWS's regional endpoint), path-style or
    /// virtual-hosted like [`crate::S3Options::force_path_style`], signed with `client`'s
    /// credentials and region.
    pub fn new(
        client: AwsClient<T>,
        endpoint: Option<&str>,
        bucket: &str,
        path_style: bool,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            bucket_url: bucket_url(endpoint, bucket, client.region(), path_style)?,
            bucket: bucket.to_owned(),
            client,
        })
    }

    fn url(&self, key: &str, query: &str) -> String {
        let mut u = format!("{}/{}", self.bucket_url, encode_key(key));
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    fn copy_source(&self, key: &str) -> String {
        format!("/{}", encode_key(&format!("{}/{key}", self.bucket)))
    }

    async fn call(
        &self,
        method: http::Method,
        url: String,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Response<Bytes>, StoreError> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body).map_err(other)?;
        self.client.send(req).await
    }

    /// A call whose 200 answer may still carry an `<Error>` (CopyObject, UploadPartCopy,
    /// CompleteMultipartUpload report late failures that way).
    async fn call_xml(
        &self,
        method: http::Method,
        url: String,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<String, StoreError> {
        let resp = self.call(method, url, headers, body).await?;
        let text = String::from_utf8_lossy(resp.body()).into_owned();
        if text.contains("<Error>") {
            let (code, msg) = error_code(resp.body());
            return Err(wharf_sigv4::classify(500, &code, &msg));
        }
        Ok(text)
    }
}

/// A query parameter's value, `/` included, percent-encoded.
fn query_value(v: &str) -> String {
    encode_key(v).replace('/', "%2F")
}

/// The query of a part of multipart upload `id`.
fn part_query(n: u16, id: &str) -> String {
    format!("partNumber={n}&uploadId={}", query_value(id))
}

fn etag_header(resp: &http::Response<Bytes>, op: &str) -> Result<String, StoreError> {
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| other(format!("{op} returned no ETag")))
}

const OCTETS: (&str, &str) = ("content-type", "application/octet-stream");

impl<T: Transport> S3Api for RestApi<T> {
    type Body = futures_util::stream::Once<futures_util::future::Ready<Result<Bytes, StoreError>>>;

    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError> {
        match self
            .call(http::Method::HEAD, self.url(key, ""), &[], Bytes::new())
            .await
        {
            Ok(r) => {
                let len = r
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .ok_or_else(|| other("HeadObject returned no length"))?;
                Ok(Some((len, etag_header(&r, "HeadObject").ok())))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<Self::Body, StoreError> {
        let range = range.map(range_value);
        let mut headers = Vec::new();
        if let Some(r) = &range {
            headers.push(("range", r.as_str()));
        }
        if let Some(e) = if_match {
            headers.push(("if-match", e));
        }
        let resp = self
            .call(http::Method::GET, self.url(key, ""), &headers, Bytes::new())
            .await?;
        Ok(futures_util::stream::once(futures_util::future::ready(Ok(
            resp.into_body(),
        ))))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        let resp = self
            .call(http::Method::PUT, self.url(key, ""), &[OCTETS], body)
            .await?;
        etag_header(&resp, "PutObject")
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        let text = self
            .call_xml(
                http::Method::POST,
                self.url(key, "uploads="),
                &[OCTETS],
                Bytes::new(),
            )
            .await?;
        xml_value(&text, "UploadId").ok_or_else(|| other("no multipart upload id"))
    }

    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let q = part_query(n, id);
        let resp = self
            .call(http::Method::PUT, self.url(key, &q), &[], body)
            .await?;
        etag_header(&resp, "UploadPart")
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: u16,
        source: &str,
        if_match: &str,
        range: Option<(u64, u64)>,
    ) -> Result<String, StoreError> {
        let q = part_query(n, id);
        let src = self.copy_source(source);
        let range = range.map(range_value);
        let mut headers = vec![
            ("x-amz-copy-source", src.as_str()),
            ("x-amz-copy-source-if-match", if_match),
        ];
        if let Some(r) = &range {
            headers.push(("x-amz-copy-source-range", r.as_str()));
        }
        let text = self
            .call_xml(http::Method::PUT, self.url(key, &q), &headers, Bytes::new())
            .await?;
        xml_value(&text, "ETag").ok_or_else(|| other("UploadPartCopy returned no ETag"))
    }

    async fn copy_object(&self, to: &str, source: &str, if_match: &str) -> Result<(), StoreError> {
        let src = self.copy_source(source);
        let headers = [
            ("x-amz-copy-source", src.as_str()),
            ("x-amz-copy-source-if-match", if_match),
            OCTETS,
        ];
        self.call_xml(http::Method::PUT, self.url(to, ""), &headers, Bytes::new())
            .await
            .map(drop)
    }

    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                p.n,
                xml_escape(&p.etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let q = format!("uploadId={}", query_value(id));
        let text = self
            .call_xml(
                http::Method::POST,
                self.url(key, &q),
                &[("content-type", "application/xml")],
                Bytes::from(xml),
            )
            .await?;
        Ok(xml_value(&text, "ETag").unwrap_or_default())
    }

    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        let q = format!("uploadId={}", query_value(id));
        self.call(http::Method::DELETE, self.url(key, &q), &[], Bytes::new())
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(http::Method::DELETE, self.url(key, ""), &[], Bytes::new())
            .await
            .map(drop)
    }

    /// ListObjectsV2, then one DeleteObject per key.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("list-type=2&prefix={}", query_value(prefix));
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", query_value(t)));
            }
            let text = self
                .call_xml(
                    http::Method::GET,
                    format!("{}?{q}", self.bucket_url),
                    &[],
                    Bytes::new(),
                )
                .await?;
            for key in xml_values(&text, "Key") {
                match self.delete(&key).await {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            match xml_value(&text, "NextContinuationToken") {
                Some(t) if xml_value(&text, "IsTruncated").as_deref() == Some("true") => {
                    token = Some(t)
                }
                _ => return Ok(()),
            }
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        let mut q = format!(
            "list-type=2&max-keys={}&prefix={}",
            max.min(MAX_LIST),
            query_value(prefix)
        );
        if let Some(s) = start_after {
            q.push_str(&format!("&start-after={}", query_value(s)));
        }
        let text = self
            .call_xml(
                http::Method::GET,
                format!("{}?{q}", self.bucket_url),
                &[],
                Bytes::new(),
            )
            .await?;
        parse_list(&text)
    }

    async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let q = format!("prefix={}&uploads=", query_value(prefix));
        let text = self
            .call_xml(
                http::Method::GET,
                format!("{}?{q}", self.bucket_url),
                &[],
                Bytes::new(),
            )
            .await?;
        // Each <Upload> has one <Key> and one <UploadId>, in order.
        let uploads: Vec<&str> = text.split("<Upload>").skip(1).collect();
        Ok(uploads
            .iter()
            .filter_map(|u| Some((xml_value(u, "Key")?, xml_value(u, "UploadId")?)))
            .collect())
    }

    fn presign_get(&self, key: &str, now: SystemTime, ttl: Duration) -> Option<String> {
        wharf_sigv4::presign_get(
            &self.url(key, ""),
            self.client.credentials(),
            self.client.region(),
            now,
            ttl,
        )
        .inspect_err(|e| tracing::warn!(error = %e, "could not presign a blob URL"))
        .ok()
    }
}

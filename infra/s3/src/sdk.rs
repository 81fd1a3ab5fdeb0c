//! The S3 API through aws-sdk-s3: what the Lambda and `wharf serve --storage s3` use.

use crate::{Listed, MAX_LIST, MIN_PART, S3Api, S3Blobs, bucket_url, other, range_value};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_types::SdkConfig;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};
use wharf_aws::store_error;
use wharf_chunked::Part;
use wharf_core::StoreError;
use wharf_sigv4::encode_key;

/// How to reach the bucket and shape the uploads.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix for everything this store writes (e.g. `"wharf/"`), or empty.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`): needed by most local stand-ins.
    pub force_path_style: bool,
    /// Base URL for presigned links if clients must reach S3 by another name than the
    /// SDK's endpoint (e.g. a public endpoint); default: the SDK's endpoint, or AWS's.
    pub presign_endpoint: Option<String>,
    /// Bytes per part (at least 5 MiB).
    pub part_size: usize,
    /// Largest object copied with one CopyObject; larger ones use UploadPartCopy.
    pub max_single_copy: u64,
    /// Bytes per UploadPartCopy part.
    pub copy_part_size: u64,
    /// Counts SDK calls per operation, if set.
    pub call_counter: Option<wharf_aws::CallCounter>,
    /// The S3 endpoint, over the SDK config's (and over `AWS_ENDPOINT_URL_S3`, which the
    /// SDK prefers to a config's endpoint): another region's bucket beside this one's.
    pub endpoint_url: Option<String>,
}

impl S3Options {
    /// Defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            force_path_style: false,
            presign_endpoint: None,
            part_size: crate::DEFAULT_PART,
            max_single_copy: crate::MAX_SINGLE_COPY,
            copy_part_size: crate::DEFAULT_COPY_PART,
            call_counter: None,
            endpoint_url: None,
        }
    }
}

/// The S3 blob store on the SDK. Cheap to clone; `Send + Sync`, and so are its futures.
pub type S3BlobStore = S3Blobs<SdkApi>;

/// aws-sdk-s3 as the store's [`S3Api`].
pub struct SdkApi {
    client: Client,
    bucket: String,
    signer: Arc<Signer>,
}

/// What presigning needs, resolved once.
struct Signer {
    /// URL of the bucket, without a trailing slash.
    bucket_url: String,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    creds: RwLock<Option<Credentials>>,
}

impl Signer {
    async fn refresh(&self) -> Result<Option<SystemTime>, StoreError> {
        let Some(p) = &self.provider else {
            return Ok(None);
        };
        let creds = p
            .provide_credentials()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no AWS credentials: {e}")))?;
        let expiry = creds.expiry();
        *self.creds.write().unwrap_or_else(|p| p.into_inner()) = Some(creds);
        Ok(expiry)
    }
}

impl S3Blobs<SdkApi> {
    /// Builds the store from an SDK config (region and credentials) and options, and
    /// resolves the credentials used for presigning.
    pub async fn new(sdk: &SdkConfig, options: S3Options) -> Result<Self, StoreError> {
        let mut conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(options.force_path_style)
            // The core verifies every blob's digest; CRC32 per request would add CPU and,
            // on multipart uploads, per-part checksum bookkeeping for no extra safety.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(c) = &options.call_counter {
            conf = conf.interceptor(c.clone());
        }
        if let Some(e) = &options.endpoint_url {
            conf = conf.endpoint_url(e);
        }
        let region = sdk
            .region()
            .ok_or_else(|| other("no AWS region configured"))?
            .to_string();
        let endpoint = options
            .presign_endpoint
            .as_deref()
            .or(options.endpoint_url.as_deref())
            .or(sdk.endpoint_url());
        let signer = Arc::new(Signer {
            bucket_url: bucket_url(endpoint, &options.bucket, &region, options.force_path_style)?,
            region,
            provider: sdk.credentials_provider(),
            creds: RwLock::new(None),
        });
        if options.part_size < MIN_PART as usize || options.copy_part_size < MIN_PART {
            return Err(other("part sizes must be at least 5 MiB"));
        }
        let api = SdkApi {
            client: Client::from_conf(conf.build()),
            bucket: options.bucket,
            signer: signer.clone(),
        };
        let store = S3Blobs::build(
            api,
            options.prefix,
            options.part_size,
            options.max_single_copy,
            options.copy_part_size,
        );
        let expiry = signer.refresh().await?;
        if expiry.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(refresh_loop(Arc::downgrade(&signer)));
        }
        Ok(store)
    }

    /// Re-reads the credentials used for presigning; returns their expiry, if any.
    /// (The store does this itself in the background when they can expire.)
    pub async fn refresh_credentials(&self) -> Result<Option<SystemTime>, StoreError> {
        self.api().signer.refresh().await
    }

    /// The SDK client (for setup such as creating the bucket).
    pub fn client(&self) -> &Client {
        &self.api().client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.api().bucket
    }
}

/// Refreshes the presigning credentials ahead of their expiry until the store is dropped.
async fn refresh_loop(signer: Weak<Signer>) {
    loop {
        let wait = {
            let Some(s) = signer.upgrade() else { return };
            let expiry = s
                .creds
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(Credentials::expiry);
            match expiry {
                None => return,
                Some(e) => e
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(Duration::from_secs(600))
                    .max(Duration::from_secs(30)),
            }
        };
        tokio::time::sleep(wait).await;
        let Some(s) = signer.upgrade() else { return };
        if let Err(e) = s.refresh().await {
            tracing::warn!(error = %e, "could not refresh S3 presigning credentials");
        }
    }
}

/// A blob's bytes, streamed from GetObject.
pub type S3Reader = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

impl SdkApi {
    fn copy_source(&self, key: &str) -> String {
        encode_key(&format!("{}/{key}", self.bucket))
    }
}

impl S3Api for SdkApi {
    type Body = S3Reader;

    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(store_error)
        {
            Ok(o) => Ok(Some((
                o.content_length().unwrap_or(0).max(0) as u64,
                o.e_tag().map(str::to_owned),
            ))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<S3Reader, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(range_value))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(store_error)?;
        let stream = futures_util::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|r| {
                (
                    r.map_err(|e| StoreError::Unavailable(format!("reading from S3: {e}"))),
                    body,
                )
            })
        });
        Ok(Box::pin(stream))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .e_tag()
            .ok_or_else(|| other("PutObject returned no ETag"))?
            .to_owned())
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .upload_id()
            .ok_or_else(|| other("no multipart upload id"))?
            .to_owned())
    }

    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(i32::from(n))
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .e_tag()
            .ok_or_else(|| other("UploadPart returned no ETag"))?
            .to_owned())
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
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(i32::from(n))
            .copy_source(self.copy_source(source))
            .copy_source_if_match(if_match)
            .set_copy_source_range(range.map(range_value))
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .ok_or_else(|| other("UploadPartCopy returned no ETag"))?
            .to_owned())
    }

    async fn copy_object(&self, to: &str, source: &str, if_match: &str) -> Result<(), StoreError> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(self.copy_source(source))
            .copy_source_if_match(if_match)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::from(p.n))
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await
            .map_err(store_error)
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(store_error)
            .map(drop)
    }

    /// ListObjectsV2 and DeleteObjects, 1,000 keys a round.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let c = &self.client;
        let mut token = None;
        loop {
            let page = c
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(store_error)?;
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !keys.is_empty() {
                let out = c
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(keys))
                            .quiet(true)
                            .build()
                            .map_err(other)?,
                    )
                    .send()
                    .await
                    .map_err(store_error)?;
                if let Some(e) = out.errors().first() {
                    return Err(other(format!(
                        "could not delete {}: {}",
                        e.key().unwrap_or("?"),
                        e.message().unwrap_or("?")
                    )));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
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
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(i32::try_from(max.min(MAX_LIST)).unwrap_or(1000))
            .send()
            .await
            .map_err(store_error)?;
        let objects = page
            .contents()
            .iter()
            .map(|o| {
                let key = o
                    .key()
                    .ok_or_else(|| other("a listed object without a key"))?;
                let modified = o
                    .last_modified()
                    .ok_or_else(|| other(format!("{key}: listed without LastModified")))?
                    .to_millis()
                    .map_err(other)?;
                Ok(Listed {
                    key: key.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified_ms: u64::try_from(modified).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((objects, page.is_truncated() == Some(true)))
    }

    async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .uploads
            .unwrap_or_default()
            .iter()
            .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned())))
            .collect())
    }

    /// From credentials cached when the store was built (refreshed in the background
    /// before they expire); `None` if they would expire before the URL does.
    fn presign_get(&self, key: &str, now: SystemTime, ttl: Duration) -> Option<String> {
        let s = &self.signer;
        let creds = s.creds.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        if creds.expiry().is_some_and(|e| e < now + ttl) {
            return None;
        }
        let url = format!("{}/{}", s.bucket_url, encode_key(key));
        wharf_sigv4::presign_get(&url, &creds, &s.region, now, ttl)
            .inspect_err(|e| tracing::warn!(error = %e, "could not presign a blob URL"))
            .ok()
    }
}

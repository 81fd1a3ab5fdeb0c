//! The metadata store port: repositories, blob links, manifests, tags, referrers, uploads.

use crate::error::StoreError;
use crate::model::manifest::{Descriptor, ManifestInfo};
use crate::model::{Digest, Reference};
use crate::ports::UploadRecord;
use bytes::Bytes;

/// A manifest as stored: what we know of it and its exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Parsed facts.
    pub info: ManifestInfo,
    /// The client's bytes.
    pub bytes: Bytes,
}

impl StoredManifest {
    /// The manifest as one byte string, for stores that keep it in one value (the embedded
    /// database, S3 for manifests too large for a DynamoDB item): the info JSON's length as a
    /// 4-byte big-endian number, the JSON, then the client's bytes.
    pub fn to_record(&self) -> Result<Vec<u8>, StoreError> {
        let info = serde_json::to_vec(&self.info)
            .map_err(|e| StoreError::Other(format!("manifest info: {e}")))?;
        let len = u32::try_from(info.len())
            .map_err(|_| StoreError::Other("manifest info too large".into()))?;
        let mut out = Vec::with_capacity(4 + info.len() + self.bytes.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&info);
        out.extend_from_slice(&self.bytes);
        Ok(out)
    }

    /// Reads a record made by [`Self::to_record`].
    pub fn from_record(raw: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Other("corrupt manifest record".into());
        let len: [u8; 4] = raw
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let end = 4usize
            .checked_add(u32::from_be_bytes(len) as usize)
            .ok_or_else(bad)?;
        let info: ManifestInfo =
            serde_json::from_slice(raw.get(4..end).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok(Self {
            info,
            bytes: Bytes::copy_from_slice(&raw[end..]),
        })
    }
}

/// A page of names (tags or repositories) and whether more follow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Names, in lexical order.
    pub items: Vec<String>,
    /// True if names after the last one exist.
    pub more: bool,
}

/// Registry metadata: repositories, blob links, manifests, tags, referrers, uploads.
/// Every method is one atomic operation. Writes of content take `at_ms`, the time by the
/// core's clock, for the push, link and record times stores with the optional abilities
/// keep (one clock for every runtime's writes, so garbage collection compares like with like).
#[allow(async_fn_in_trait)]
pub trait MetadataStore {
    /// Whether the repository has ever had a blob or manifest.
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError>;
    /// Size of the blob if it is linked into `repo`.
    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError>;
    /// Links a committed blob into `repo`.
    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Removes the link; false if there was none. Stores that keep references
    /// ([`crate::ports::LinkCollection`]) refuse with `Precondition` while a manifest of
    /// `repo` references the blob: delete the manifest first.
    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Of `digests`, those not linked into `repo`.
    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError>;
    /// Of `digests`, those that are not manifests of `repo`.
    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError>;
    /// Looks a manifest up by tag or digest.
    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError>;
    /// Stores a manifest (and its referrer entry) and points every tag of `tags` at it, in
    /// one atomic write: a failure leaves no tag moved. The core passes valid, distinct
    /// tags, at most [`MAX_TAGS_PER_PUT`] (a store may still get a repeated one and must
    /// then behave as if it came once).
    async fn put_manifest(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Deletes a manifest, the tags that point at it and its referrer entry.
    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Deletes a tag only.
    async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError>;
    /// Tags of `repo` after `last`, at most `n`; `None` if the repository is unknown.
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError>;
    /// Repositories after `last`, at most `n`.
    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError>;
    /// Manifests in `repo` whose subject is `subject`.
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError>;
    /// Records a new upload.
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError>;
    /// Reads an upload.
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError>;
    /// Replaces an upload record if its stored offset is still `expected_offset`
    /// (else `Precondition`), so two racing PATCHes cannot both advance it.
    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError>;
    /// Forgets an upload.
    async fn delete_upload(&self, id: &str) -> Result<(), StoreError>;
    /// Forgets an upload only if it still exists at `expected_offset` (`NotFound` if it
    /// does not, `Precondition` if its offset moved): the closing `PUT` claims the upload
    /// with it, so of racing `PUT`s exactly one links the blob and the others get 404.
    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError>;
    /// Uploads last updated before `before_ms` (for the cleanup job).
    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError>;
}

/// Most tags one manifest `PUT` may set (`?tag=` query parameters, the spec asks for at
/// least 10): DynamoDB's TransactWriteItems takes 100 items, and the manifest and its
/// referrer entry take two.
pub const MAX_TAGS_PER_PUT: usize = 64;

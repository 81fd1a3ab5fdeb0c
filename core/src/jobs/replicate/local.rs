//! The source side over this registry's own stores.

use super::{Catalog, Source};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::model::{Digest, Reference};
use crate::ports::{BlobStore, MetadataStore, StoredManifest};

/// Reads images from a blob store and a metadata store (the registry's own).
pub struct LocalSource<'a, B, M> {
    /// Blobs.
    pub blobs: &'a B,
    /// Metadata.
    pub meta: &'a M,
}

impl<B: BlobStore, M: MetadataStore> Source for LocalSource<'_, B, M> {
    type Blob = B::Reader;

    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<StoredManifest>> {
        Ok(self
            .meta
            .manifest(repo, &Reference::Digest(digest.clone()))
            .await?)
    }

    async fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let Ok(r @ Reference::Tag(_)) = Reference::parse(tag) else {
            return Ok(None);
        };
        Ok(self.meta.manifest(repo, &r).await?.map(|m| m.info.digest))
    }

    async fn blob(&self, repo: &str, digest: &Digest) -> Result<(u64, Self::Blob)> {
        let unknown = || {
            RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("{repo} has no blob {digest}"),
            )
        };
        self.meta
            .blob_link(repo, digest)
            .await?
            .ok_or_else(unknown)?;
        let size = self.blobs.stat(digest).await?.ok_or_else(unknown)?;
        Ok((size, self.blobs.get(digest, None).await?))
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>> {
        Ok(self
            .meta
            .referrers(repo, digest)
            .await?
            .into_iter()
            .map(|d| d.digest)
            .collect())
    }
}

impl<B, M: MetadataStore> Catalog for LocalSource<'_, B, M> {
    async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        Ok(self.meta.list_repositories(after, limit).await?.items)
    }

    async fn tags(&self, repo: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .meta
            .list_tags(repo, after, limit)
            .await?
            .map(|p| p.items)
            .unwrap_or_default())
    }
}

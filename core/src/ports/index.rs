//! The manifest index, an optional ability of a metadata store: what a repository holds,
//! with push and pull times, and where a digest is used — what retention, quotas and
//! garbage collection read. Every listing is by key range (no table scan on DynamoDB).

use crate::error::StoreError;
use crate::model::Digest;

/// A manifest of a repository, as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The manifest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The manifest it refers to (a referrer: signature, SBOM…).
    pub subject: Option<Digest>,
    /// When it was (last) pushed; `None` for manifests pushed before push times were kept.
    pub pushed_ms: Option<u64>,
    /// When it was last pulled (to the hour); `None` if never since pull times were kept.
    pub pulled_ms: Option<u64>,
}

/// A tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    /// The tag.
    pub tag: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// When it was last set; `None` for tags set before push times were kept.
    pub pushed_ms: Option<u64>,
}

/// A blob linked into a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last linked (upload, mount, or a link of a blob already there);
    /// `None` for links made before link times were kept.
    pub linked_ms: Option<u64>,
    /// How many manifests of the repository reference it.
    pub refs: u64,
}

/// How far from the hour a pull time is kept: pull times are for retention rules counted
/// in days, so a manifest pulled all day costs one write an hour, not one per pull.
pub const PULL_TIME_PRECISION_MS: u64 = 3_600_000;

/// Lists what repositories hold.
#[allow(async_fn_in_trait)]
pub trait ManifestIndex {
    /// Manifests of `repo` after `after` (by digest string), at most `limit`.
    async fn list_manifests(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError>;
    /// Tags of `repo` after `after`, at most `limit`, with what they point at.
    async fn list_tag_entries(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError>;
    /// Blob links of `repo` after `after` (by digest string), at most `limit`.
    async fn list_links(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError>;
    /// Repositories after `after` that link `digest` as a blob or hold it as a manifest,
    /// at most `limit`, in name order.
    async fn repositories_with(
        &self,
        digest: &Digest,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
}

/// Every tag of `repo` with what it points at, in tag order, read a page at a time.
pub async fn all_tag_entries<M: ManifestIndex>(
    meta: &M,
    repo: &str,
) -> Result<Vec<TagEntry>, StoreError> {
    let mut all: Vec<TagEntry> = Vec::new();
    loop {
        let after = all.last().map(|t| t.tag.clone());
        let page = meta.list_tag_entries(repo, after.as_deref(), 1000).await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Keeps manifests' last-pull times: the one write a manifest `GET` makes, which carries
/// the pull's audit record with it. Apart from [`ManifestIndex`] because every store that
/// serves a pull has it, while listings are for jobs.
#[allow(async_fn_in_trait)]
pub trait PullTimes {
    /// Records that manifest `digest` of `repo` was pulled at `at_ms` (truncated to
    /// [`PULL_TIME_PRECISION_MS`] by the caller); never moves a pull time back, and does
    /// nothing for a manifest that is not there. With `event` (an audit record's id and
    /// bytes, as [`crate::ports::DocumentStore::append_event`] takes them), writes it in the
    /// same write, so a pull costs at most one write.
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError>;
}

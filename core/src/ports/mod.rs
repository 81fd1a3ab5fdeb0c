//! The ports: the only ways the core touches the world. Each runtime supplies adapters.
//!
//! Futures returned here carry no `Send` bound, so a single-threaded wasm Worker can
//! implement them; the core is generic over the adapters (no `dyn`), so with `Send`
//! adapters (tokio, AWS) the handler futures are `Send` too, by auto-trait inference.
//!
//! May use: [`crate::error`] and [`crate::model`] only. One file per port; the records
//! they pass ([`UploadRecord`], [`StoredManifest`], [`Page`]) stand with them.
//!
//! Optional abilities are separate traits (as `object_store` keeps `MultipartStore` apart
//! from `ObjectStore`), so each backend adopts them in turn and code that needs one says so
//! in its bounds: [`BlobInventory`] for blob stores; [`ManifestIndex`], [`BlobRecords`],
//! [`LinkCollection`], [`Outbox`], [`ConditionalTags`], [`UsageCounters`] and [`Backfill`] for metadata stores.

mod blob;
mod documents;
mod env;
mod index;
mod inventory;
mod links;
mod metadata;
mod outbox;
mod records;
mod schema;
mod tags;
mod upload;
mod usage;

pub use blob::{BlobStore, BlobWriter, ByteRange};
pub use documents::DocumentStore;
pub use env::Env;
pub use index::{
    LinkEntry, ManifestEntry, ManifestIndex, PULL_TIME_PRECISION_MS, PullTimes, TagEntry,
    all_tag_entries,
};
pub use inventory::{BlobEntry, BlobInventory};
pub use links::{LINK_TOUCH_PRECISION_MS, LinkCollection, LinkCursor, UnreferencedLink};
pub use metadata::{MAX_TAGS_PER_PUT, MetadataStore, Page, StoredManifest};
pub use outbox::{Change, OUTBOX_SKEW_MS, Outbox, OutboxEntry};
pub use records::{BlobRecord, BlobRecords, BlobState, Cleared};
pub use schema::{Backfill, BackfillProgress, SCHEMA_VERSION};
pub use tags::{ConditionalTags, TagExpect};
pub use upload::{DEFAULT_ALGORITHM, UploadRecord};
pub use usage::{Usage, UsageCounters};

/// What the registry's request handlers need of a metadata store: the port, documents, pull
/// times, the two abilities that keep a push safe from garbage collection (blob records,
/// touched before a blob is committed or mounted; link collection, touched by a `HEAD`),
/// usage (the quota check before a link), conditional tags (immutable tags) and the
/// manifest index (retention run through the API).
pub trait ServingMeta:
    MetadataStore
    + DocumentStore
    + PullTimes
    + BlobRecords
    + LinkCollection
    + UsageCounters
    + ConditionalTags
    + ManifestIndex
{
}
impl<T> ServingMeta for T where
    T: MetadataStore
        + DocumentStore
        + PullTimes
        + BlobRecords
        + LinkCollection
        + UsageCounters
        + ConditionalTags
        + ManifestIndex
{
}

/// What garbage collection needs of a metadata store besides: listings to confirm a blob is
/// unused, and the backfill, which must have finished before anything is collected.
pub trait CollectableMeta: ServingMeta + Backfill + Outbox {}
impl<T> CollectableMeta for T where T: ServingMeta + Backfill + Outbox {}

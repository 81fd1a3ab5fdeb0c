//! The ports: the only ways the core touches the world. Each runtime supplies adapters.
//!
//! Futures returned here carry no `Send` bound, so a single-threaded wasm Worker can
//! implement them; the core is generic over the adapters (no `dyn`), so with `Send`
//! adapters (tokio, AWS) the handler futures are `Send` too, by auto-trait inference.
//!
//! May use: [`crate::error`] and [`crate::model`] only. One file per port; the records
//! they pass ([`UploadRecord`], [`StoredManifest`], [`Page`]) stand with them.

mod blob;
mod documents;
mod env;
mod metadata;
mod upload;

pub use blob::{BlobStore, BlobWriter, ByteRange};
pub use documents::DocumentStore;
pub use env::Env;
pub use metadata::{MAX_TAGS_PER_PUT, MetadataStore, Page, StoredManifest};
pub use upload::{DEFAULT_ALGORITHM, UploadRecord};

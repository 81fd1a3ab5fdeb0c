//! In-memory adapters and the metadata conformance suite.
//!
//! The memory adapters exist for unit tests of the core; they are never a runtime.
//! [`metadata_conformance`] is the one suite every [`MetadataStore`] backend must pass
//! (embedded, DynamoDB, D1): each backend's tests call it.
//!
//! May use: [`crate::error`], [`crate::model`] and [`crate::ports`] only (it is the ports'
//! reference implementation, so the unit tests of every module above may use it).

mod conformance;
mod memory;

pub use conformance::{document_conformance, metadata_conformance, test_manifest};
pub use memory::{MemoryBlobs, MemoryDocs, MemoryMetadata, MemoryWriter, TestEnv};

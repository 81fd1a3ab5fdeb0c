//! In-memory adapters and the conformance suites.
//!
//! The memory adapters exist for unit tests of the core; they are never a runtime.
//! [`metadata_conformance`] is the one suite every [`MetadataStore`] backend must pass
//! (embedded, DynamoDB, D1), [`blob_conformance`] the one every [`BlobStore`] backend must
//! pass (memory, fs, S3, R2), [`inventory_conformance`] the one every [`BlobInventory`]
//! must pass (the same four): each backend's tests call them.
//!
//! May use: [`crate::error`], [`crate::model`] and [`crate::ports`] only (it is the ports'
//! reference implementation, so the unit tests of every module above may use it).

mod blob_conformance;
mod capabilities;
mod conformance;
mod flaws;
mod inventory_conformance;
mod links_conformance;
mod memory;
mod memory_ledger;
mod upgrade;

pub use blob_conformance::blob_conformance;
pub use capabilities::{
    all_capabilities_conformance, index_conformance, outbox_conformance, records_conformance,
    tags_conformance, usage_conformance,
};
pub use conformance::{document_conformance, link, metadata_conformance, test_manifest};
pub use flaws::{assert_every_flaw_caught, failure_of};
pub use inventory_conformance::inventory_conformance;
pub use links_conformance::{all_unreferenced_links, links_conformance, test_index};
pub use memory::{MemoryBlobs, MemoryDocs, MemoryMetadata, MemoryWriter, TestEnv};
pub use upgrade::ledger_facts;

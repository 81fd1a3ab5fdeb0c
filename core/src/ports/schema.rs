//! Schema versions and the backfill, an optional ability of a metadata store: which format
//! the store's records are in, and the resumable pass that gives content written before the
//! upgrade what later versions keep for it (blob records, counters, reverse links). Garbage
//! collection refuses to run until the backfill has finished, so nothing old looks unused.

use crate::error::StoreError;

/// The schema version of stores that keep blob records, outbox, usage and push times.
/// Version 1 is the format of 727e058 and before (no version marker); 2 added those
/// records; 3 (after 06c548e) the work list of unreferenced links. A store at an older
/// version runs the backfill again, which gives its records what the newer one keeps.
pub const SCHEMA_VERSION: u32 = 3;

/// How far the backfill is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillProgress {
    /// Not finished; `checkpoint` is where the next step resumes.
    Running {
        /// Opaque resume point, kept by the store.
        checkpoint: String,
    },
    /// Everything written before the upgrade has its records.
    Done,
}

/// The store's format and its backfill.
#[allow(async_fn_in_trait)]
pub trait Backfill {
    /// The version of the records the store holds (1 for a store made before versions).
    async fn schema_version(&self) -> Result<u32, StoreError>;
    /// Runs the backfill for at most `budget` records from its checkpoint (kept in the
    /// store, so a killed run resumes), and says how far it is. Idempotent: running it
    /// again, or beside the writes of live traffic, counts nothing twice.
    async fn backfill_step(&self, budget: usize) -> Result<BackfillProgress, StoreError>;
}

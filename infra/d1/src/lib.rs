//! Registry metadata and documents in Cloudflare D1, for the Worker runtime.
//!
//! # Schema
//!
//! [`MIGRATIONS`] (`functions/worker/migrations/`). `0001_init.sql`: tables `repos`,
//! `links`, `manifests` (+ `manifest_parts`), `tags`, `referrers`, `uploads`, `docs`, all
//! TEXT but the sizes, offsets and times the queries compare. `0002_ledger.sql` (schema
//! version 2, the optional abilities): tables `blobs` (per-digest records, a partial index
//! on the unlinked ones), `holds` (the reverse index, `(digest, repo)`), `project_blobs` and
//! `usage`, `outbox`, `meta` (schema version, backfill checkpoint, outbox counter), `guards`
//! (always empty: refusals), and columns for link, push and pull times, link references and
//! the manifest index on `links`, `manifests` and `tags`. `0003_link_collection.sql` (schema
//! version 3): the partial index `links_unreferenced` (`WHERE refs = 0`), link collection's
//! work list, which SQLite keeps itself, and two more refusals in `guards`.
//!
//! # One D1 call per method
//!
//! Every method is one statement, or one `batch` (D1 runs a batch as one transaction),
//! which is how "one atomic metadata operation per change" holds without modelling items:
//! `put_manifest` writes catalog entry, manifest, tags and referrer entry in one batch;
//! `delete_manifest` deletes tags, referrer entry, parts and manifest in one; `update_upload` is
//! `UPDATE … WHERE off = expected` with a read of the offset in the same batch (no change
//! and a row: `Precondition`; no row: `NotFound`). A manifest GET by tag is one join, so a
//! pull stays one read. Pages are `WHERE k > last ORDER BY k LIMIT n + 1`.
//!
//! The content writes (`link_blob`, `unlink_blob`, `collect_link`, `put_manifest`,
//! `delete_manifest`, `delete_tag`) keep the abilities' bookkeeping in the same batch, done
//! by the statements themselves since nothing is read between them: conditions (`WHERE
//! EXISTS …`) decide what the reference (`wharf_core::ledger`) decides from its entries, and
//! a refusal (a link of a blob without a record or being deleted, an unlink of a blob a
//! manifest of the repository references, a manifest over what its repository does not
//! hold, a tag not as expected) is a guard statement whose constraint fails the batch, so
//! it leaves nothing (see `ledger.rs`). The backfill walks old rows by primary key
//! from a checkpoint in `meta`, a few rows a step, with the same counting statements as
//! live writes.
//!
//! # Limits and choices
//!
//! - D1 takes at most 100 bound parameters a statement: `missing_blobs` and
//!   `missing_manifests` query 99 digests a statement (all in one batch).
//! - Integers are bound as JS numbers, exact below 2^53; larger ones are refused. SQLite
//!   keeps them as 64-bit signed integers, so sums (usage bytes) stay exact in SQL; a sum
//!   read back above 2^53 (8 PiB) is refused rather than rounded.
//! - Manifests are stored as text (the worker crate binds bytes as a JS array of numbers).
//!   The core only accepts manifests that parse as JSON, hence UTF-8; non-UTF-8 bytes (and
//!   non-UTF-8 documents) are refused with `StoreError::Other` instead of being stored in a
//!   second encoding.
//! - D1 rows stop at 2 MB and the core takes manifests up to 4 MiB (whose annotations are
//!   in the info as well): a record (info + bytes) over [`sql::MAX_MANIFEST_ROW`] (1.9 MB)
//!   is written in pieces to `manifest_parts` in the same batch, and reading it costs a
//!   second query. Everything stays in D1, in one transaction; no R2 object to orphan.
//! - Read replication must stay off for this database (or be used with a `first-primary`
//!   session): a pull right after a push must see it.
//! - Audit events ([`DocumentStore::append_event`]) are queued in memory, not written:
//!   the entry point takes them with [`D1Meta::take_events`] after each response and writes
//!   them in `wait_until` ([`PendingEvents::write`], one batch of multi-row inserts), so a
//!   pull costs one D1 read and no write. `flush_events` writes the queue at once.
//!
//! D1 errors map by meaning ([`d1::store_error`]): transient ones (connection lost, object
//! reset, overloaded, busy, timeouts) are `Unavailable`, everything else `Other`.
//!
//! The store is generic over where statements run ([`Db`]): [`D1Sql`] in the Worker, SQLite
//! in the host tests, which run the core's conformance suites on the same statements.
#![deny(missing_docs)]

mod abilities;
pub mod d1;
mod ledger;
pub mod sql;

pub use d1::D1Sql;

use std::cell::RefCell;
use std::rc::Rc;
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::{
    DocumentStore, MetadataStore, Page, StoredManifest, TagExpect, UploadRecord,
};
use wharf_core::{Digest, Reference, StoreError};

/// The D1 schema: the Worker's migrations (`functions/worker/migrations/`), by name, in the
/// order D1 applies them. Never edit one that was applied: add the next.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../../functions/worker/migrations/0001_init.sql"),
    ),
    (
        "0002_ledger.sql",
        include_str!("../../../functions/worker/migrations/0002_ledger.sql"),
    ),
    (
        "0003_link_collection.sql",
        include_str!("../../../functions/worker/migrations/0003_link_collection.sql"),
    ),
];

/// Audit events queued at most; past this `append_event` writes the queue itself, so an
/// isolate whose events nobody takes still has bounded memory.
const MAX_QUEUED_EVENTS: usize = 1_000;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// TEXT.
    Text(String),
    /// INTEGER (within ±2^53: bound as a JS number).
    Int(i64),
    /// NULL.
    Null,
}

/// One SQL statement with its parameters (`?1`, `?2`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// The SQL text.
    pub sql: String,
    /// Values for `?1…?n`.
    pub params: Vec<Param>,
}

/// A result row: column name → value (TEXT as strings, INTEGER as numbers, NULL).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// What one statement returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Rows (empty for writes).
    pub rows: Vec<Row>,
    /// Rows changed by a write.
    pub changes: u64,
}

/// Where statements run: D1 in the Worker ([`D1Sql`]), SQLite in the host tests.
#[allow(async_fn_in_trait)]
pub trait Db: Clone + 'static {
    /// Runs `stmts` in one round trip, several as one transaction, and returns one
    /// outcome per statement.
    async fn run(&self, stmts: Vec<Stmt>) -> Result<Vec<Outcome>, StoreError>;
}

/// Registry metadata and documents in D1. Cheap to clone (clones share the database
/// handle and the audit queue); not `Send`, as nothing in a Worker is.
#[derive(Clone)]
pub struct D1Meta<S: Db = D1Sql> {
    db: S,
    events: Rc<RefCell<Vec<(String, String)>>>,
}

/// Audit events taken from a [`D1Meta`], to be written after the response.
#[must_use = "queued events are lost unless written"]
pub struct PendingEvents<S: Db = D1Sql> {
    db: S,
    events: Vec<(String, String)>,
}

impl D1Meta {
    /// The store on the Worker's D1 binding ([`MIGRATIONS`] applied).
    pub fn new(db: worker::D1Database) -> Self {
        Self::on(D1Sql::new(db))
    }
}

impl<S: Db> D1Meta<S> {
    /// The store on any [`Db`].
    pub fn on(db: S) -> Self {
        Self {
            db,
            events: Rc::default(),
        }
    }

    /// Audit events appended so far (`append_event` queues them in memory, no D1 call),
    /// to be written after the response.
    pub fn take_events(&self) -> PendingEvents<S> {
        PendingEvents {
            db: self.db.clone(),
            events: std::mem::take(&mut *self.events.borrow_mut()),
        }
    }

    async fn one(&self, stmt: Stmt) -> Result<Outcome, StoreError> {
        sql::single(self.db.run(vec![stmt]).await?)
    }
}

impl<S: Db> PendingEvents<S> {
    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes the events in one batch (nothing when there are none). On failure they are
    /// lost: the caller logs it (an audit gap, not a failed request).
    pub async fn write(self) -> Result<(), StoreError> {
        if self.events.is_empty() {
            return Ok(());
        }
        self.db.run(sql::insert_events(&self.events)).await?;
        Ok(())
    }
}

impl<S: Db> MetadataStore for D1Meta<S> {
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError> {
        Ok(!self
            .one(sql::repository_exists(repo))
            .await?
            .rows
            .is_empty())
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.one(sql::blob_link(repo, digest)).await?.rows.first() {
            Some(row) => sql::get_int(row, "size").map(Some),
            None => Ok(None),
        }
    }

    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let stmts = ledger::link_blob(repo, digest, size, at_ms)?;
        self.db.run(stmts).await.map_err(ledger::refused)?;
        Ok(())
    }

    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .db
            .run(ledger::remove_link(
                repo,
                digest,
                ledger::Removal::Unlink,
                at_ms,
            )?)
            .await
            .map_err(|e| ledger::refused_unlink(e, repo, digest))?;
        Ok(out.last().is_some_and(|o| o.changes > 0))
    }

    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(sql::Linked::Blobs, repo, digests).await
    }

    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(sql::Linked::Manifests, repo, digests).await
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let stmt = match reference {
            Reference::Digest(d) => sql::manifest_by_digest(repo, d),
            Reference::Tag(t) => sql::manifest_by_tag(repo, t),
        };
        let found = match self.one(stmt).await?.rows.first() {
            Some(row) => sql::decode_manifest_row(row)?,
            None => return Ok(None),
        };
        match found {
            sql::ManifestRow::Inline(m) => Ok(Some(m)),
            // Over 1.9 MB: a second read for its parts.
            sql::ManifestRow::Parts { digest, parts } => {
                sql::decode_parts(&self.one(sql::manifest_parts(repo, &digest)).await?, parts)
            }
        }
    }

    async fn put_manifest(
        &self,
        repo: &str,
        manifest: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let tags: Vec<(&str, TagExpect)> = tags.iter().map(|t| (*t, TagExpect::Any)).collect();
        let stmts = ledger::put_manifest(repo, manifest, &tags, at_ms)?;
        self.db.run(stmts).await.map_err(ledger::refused)?;
        Ok(())
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let out = self
            .db
            .run(ledger::delete_manifest(repo, digest, at_ms)?)
            .await?;
        Ok(out.last().is_some_and(|o| o.changes > 0))
    }

    async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError> {
        let out = self
            .db
            .run(ledger::delete_tag(repo, tag, None, at_ms)?)
            .await?;
        Ok(out.last().is_some_and(|o| o.changes > 0))
    }

    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError> {
        let out = self
            .db
            .run(vec![
                sql::repository_exists(repo),
                sql::list_tags(repo, last, n),
            ])
            .await?;
        if sql::nth(&out, 0)?.rows.is_empty() {
            return Ok(None);
        }
        sql::page(sql::nth(&out, 1)?, "tag", n).map(Some)
    }

    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        sql::page(&self.one(sql::list_repositories(last, n)).await?, "name", n)
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        sql::decode_descriptors(&self.one(sql::referrers(repo, subject)).await?)
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        if self.one(sql::create_upload(upload)?).await?.changes == 0 {
            return Err(StoreError::Precondition(format!(
                "upload {} exists",
                upload.id
            )));
        }
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        match self.one(sql::upload(id)).await?.rows.first() {
            Some(row) => sql::decode_upload(row).map(Some),
            None => Ok(None),
        }
    }

    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError> {
        let out = self
            .db
            .run(sql::update_upload(upload, expected_offset)?)
            .await?;
        sql::update_outcome(&upload.id, expected_offset, &out)
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.one(sql::delete_upload(id)).await?;
        Ok(())
    }

    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError> {
        let out = self.db.run(sql::claim_upload(id, expected_offset)?).await?;
        sql::update_outcome(id, expected_offset, &out)
    }

    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.one(sql::stale_uploads(before_ms, limit)?)
            .await?
            .rows
            .iter()
            .map(sql::decode_upload)
            .collect()
    }
}

impl<S: Db> D1Meta<S> {
    /// Of `digests`, those not in `table` for `repo`: one batch of `IN` queries.
    async fn missing(
        &self,
        table: sql::Linked,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        let stmts = sql::existing(table, repo, digests);
        if stmts.is_empty() {
            return Ok(Vec::new());
        }
        sql::missing(digests, &self.db.run(stmts).await?)
    }
}

impl<S: Db> DocumentStore for D1Meta<S> {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.one(sql::get_doc(kind, id)).await?.rows.first() {
            Some(row) => sql::get_text(row, "value").map(|v| Some(v.into_bytes())),
            None => Ok(None),
        }
    }

    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let changes = self
            .one(sql::put_doc(kind, id, value, if_absent)?)
            .await?
            .changes;
        if if_absent && changes == 0 {
            return Err(StoreError::Precondition(format!("{kind}/{id} exists")));
        }
        Ok(())
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.one(sql::delete_doc(kind, id)).await?.changes > 0)
    }

    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        sql::decode_docs(&self.one(sql::list_docs(kind, prefix, after, limit)).await?)
    }

    /// Queues the event (no D1 call); see [`D1Meta::take_events`].
    async fn append_event(&self, id: &str, value: &[u8]) -> Result<(), StoreError> {
        let value = sql::utf8("audit events", value)?;
        let full = {
            let mut q = self.events.borrow_mut();
            q.push((id.to_owned(), value));
            q.len() >= MAX_QUEUED_EVENTS
        };
        if full {
            self.take_events().write().await?;
        }
        Ok(())
    }

    async fn flush_events(&self) -> Result<(), StoreError> {
        self.take_events().write().await
    }
}

#[cfg(test)]
mod tests;

-- wharf on D1, schema version 3: link collection (LinkCollection; wharf-d1,
-- infra/d1/src/ledger.rs), the first step of garbage collection.
-- The same rules as 0001: one statement per `;`, comments on lines of their own.

-- The work list of unreferenced links: the links no manifest of their repository
-- references (`refs` = 0), in (repo, digest) order. SQLite keeps a partial index with every
-- write of `refs`, and builds it here over the rows already there, so this schema needs no
-- backfill of its own.
CREATE INDEX links_unreferenced ON links (repo, digest) WHERE refs = 0;

-- Refusals of the new rules (see `guards` in 0002): a link of a blob that has no record
-- (blob_has_no_record); a manifest over a blob not linked into its repository, or over a
-- child manifest not in it (reference_not_in_repository).
ALTER TABLE guards ADD COLUMN blob_recorded INTEGER CONSTRAINT blob_has_no_record CHECK (blob_recorded);

ALTER TABLE guards ADD COLUMN reference_present INTEGER CONSTRAINT reference_not_in_repository CHECK (reference_present);

-- A database whose backfill was done at version 2 is done at 3: the index above is all
-- that 3 adds (`links.refs` has been kept since 2), and it already covers every row.
UPDATE meta SET n = 3 WHERE k = 'schema' AND n = 2;

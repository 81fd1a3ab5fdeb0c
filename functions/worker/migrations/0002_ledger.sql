-- wharf on D1, schema version 2: what the optional metadata abilities keep (wharf-d1,
-- infra/d1/src/ledger.rs): blob records, the reverse index, per-project usage, the
-- outbox, push, pull and link times, and the backfill's state. Every content write keeps
-- them in its own batch (one transaction), with the bookkeeping done by the statements
-- themselves (D1 has no interactive transaction: nothing is read between statements).
-- The same rules as 0001: one statement per `;`, comments on lines of their own.

-- One record per blob digest (BlobRecords): `links` counts repositories that link it,
-- `refs` manifests that reference it; `state` is live, marked or deleting, `state_ms` when
-- it was marked or deletion began (0 while live).
CREATE TABLE blobs (
  digest TEXT PRIMARY KEY NOT NULL,
  size INTEGER NOT NULL,
  links INTEGER NOT NULL,
  refs INTEGER NOT NULL,
  touched_ms INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('live', 'marked', 'deleting')),
  state_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Garbage collection's work list: the records no repository links, and only those.
CREATE INDEX blobs_unlinked ON blobs (digest) WHERE links = 0;

-- The reverse index: repositories that hold a digest, linked as a blob (`linked`) or as a
-- manifest (`manifest`); a row goes when both are 0. The flags are also what the counters
-- were told: a link or manifest is counted only when its flag goes from 0 to 1, so the
-- backfill and live writes never count one twice.
CREATE TABLE holds (
  digest TEXT NOT NULL,
  repo TEXT NOT NULL,
  linked INTEGER NOT NULL,
  manifest INTEGER NOT NULL,
  PRIMARY KEY (digest, repo)
) WITHOUT ROWID;

-- How many repositories of a project link a digest: usage counts a blob once per project.
CREATE TABLE project_blobs (
  project TEXT NOT NULL,
  digest TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (project, digest)
) WITHOUT ROWID;

-- Bytes and number of distinct blobs linked into each project's repositories.
CREATE TABLE usage (
  project TEXT PRIMARY KEY NOT NULL,
  bytes INTEGER NOT NULL,
  blobs INTEGER NOT NULL
) WITHOUT ROWID;

-- The outbox: one entry per content change, `seq` = `<at_ms:016>-<n:012>` with n from
-- the `outbox` counter in meta; `change` is the core's Change as JSON.
CREATE TABLE outbox (
  seq TEXT PRIMARY KEY NOT NULL,
  at_ms INTEGER NOT NULL,
  change TEXT NOT NULL
);

-- Counters and markers: `schema` (n: the schema version, 2 once the backfill is done),
-- `backfill` (v: its checkpoint), `outbox` (n: the last outbox number).
CREATE TABLE meta (
  k TEXT PRIMARY KEY NOT NULL,
  n INTEGER,
  v TEXT
) WITHOUT ROWID;

-- Always empty. A write that must not happen inserts a 0 here first, and the constraint
-- fails the whole batch, so a refused write leaves nothing: a link of, or a manifest over, a
-- blob being deleted (blob_is_being_deleted); a conditional tag write whose tag is not as
-- expected (tag_is_not_as_expected).
CREATE TABLE guards (
  blob_live INTEGER CONSTRAINT blob_is_being_deleted CHECK (blob_live),
  tag_expected INTEGER CONSTRAINT tag_is_not_as_expected CHECK (tag_expected)
);

-- Link times (NULL: linked before they were kept) and how many manifests of the
-- repository reference the blob.
ALTER TABLE links ADD COLUMN linked_ms INTEGER;

ALTER TABLE links ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;

-- The manifest index: media type and size, the distinct blobs it references as a JSON
-- array (NULL: not counted yet, a manifest from before this schema the backfill has not
-- reached), push and pull times (NULL: from before they were kept, or never pulled).
ALTER TABLE manifests ADD COLUMN media_type TEXT;

ALTER TABLE manifests ADD COLUMN size INTEGER;

ALTER TABLE manifests ADD COLUMN blobs TEXT;

ALTER TABLE manifests ADD COLUMN pushed_ms INTEGER;

ALTER TABLE manifests ADD COLUMN pulled_ms INTEGER;

-- When a tag was last set (NULL: before push times were kept).
ALTER TABLE tags ADD COLUMN pushed_ms INTEGER;

-- A database with no content yet has nothing to backfill: it starts at version 2.
INSERT INTO meta (k, n) SELECT 'schema', 2 WHERE NOT EXISTS (SELECT 1 FROM links) AND NOT EXISTS (SELECT 1 FROM manifests);

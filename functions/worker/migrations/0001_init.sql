-- wharf on D1: registry metadata and documents (wharf-d1, infra/d1/src/lib.rs).
-- Applied with `wrangler d1 migrations apply DB`; the tests' Miniflare runner applies it
-- statement by statement, so: one statement per `;`, comments on lines of their own.
-- Everything is TEXT (the worker crate binds bytes as a JS number array) except the
-- integers the queries compare: blob sizes, upload offsets and update times.
-- Small-row tables are WITHOUT ROWID: the primary key is the table (one b-tree, no
-- second index to read or write).

-- Repositories ever written to (the catalog).
CREATE TABLE repos (
  name TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;

-- A committed blob linked into a repository.
CREATE TABLE links (
  repo TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  PRIMARY KEY (repo, digest)
) WITHOUT ROWID;

-- Manifests: `record` is ManifestInfo as JSON (compact: no newline), a newline, and the
-- client's exact bytes (manifests are UTF-8 JSON). A record over 1.9 MB (D1 rows stop at
-- 2 MB; the core takes manifests up to 4 MiB, and their annotations are in the info too)
-- is kept in `parts` rows of manifest_parts instead, and `record` is empty. `subject`
-- lets delete_manifest find the referrer entry in the same transaction.
CREATE TABLE manifests (
  repo TEXT NOT NULL,
  digest TEXT NOT NULL,
  subject TEXT,
  record TEXT NOT NULL,
  parts INTEGER NOT NULL,
  PRIMARY KEY (repo, digest)
);

-- Pieces of large manifest records, in order of n (0, 1, …), each at most 1.9 MB.
CREATE TABLE manifest_parts (
  repo TEXT NOT NULL,
  digest TEXT NOT NULL,
  n INTEGER NOT NULL,
  chunk TEXT NOT NULL,
  PRIMARY KEY (repo, digest, n)
);

-- Tags point at manifests of the same repository.
CREATE TABLE tags (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;

-- delete_manifest removes every tag that points at the manifest.
CREATE INDEX tags_by_digest ON tags (repo, digest);

-- Referrers API: the descriptor (JSON) of each manifest whose subject is `subject`.
CREATE TABLE referrers (
  repo TEXT NOT NULL,
  subject TEXT NOT NULL,
  digest TEXT NOT NULL,
  descriptor TEXT NOT NULL,
  PRIMARY KEY (repo, subject, digest)
) WITHOUT ROWID;

-- Uploads in progress: the record as JSON; `off` is the compare-and-set key of
-- update_upload and `updated_ms` the cleanup job's index.
CREATE TABLE uploads (
  id TEXT PRIMARY KEY NOT NULL,
  off INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  record TEXT NOT NULL
);

CREATE INDEX uploads_by_age ON uploads (updated_ms);

-- Documents by kind and id: users, robots, projects, members, audit events, throttles,
-- the generated token key. Values are JSON or PEM text.
CREATE TABLE docs (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (kind, id)
) WITHOUT ROWID;

//! The statements, built without touching JavaScript so the host can test them, and the
//! conversions between the core's records and rows.

use crate::{Outcome, Param, Row, Stmt};
use bytes::Bytes;
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::{StoredManifest, UploadRecord};
use wharf_core::{Digest, StoreError};

/// Bound parameters per statement, at most (D1's limit).
pub const MAX_PARAMS: usize = 100;
/// Digests per `IN (…)` list: the repository takes the hundredth parameter.
pub const IN_CHUNK: usize = MAX_PARAMS - 1;
/// Audit events per multi-row INSERT (two parameters each).
pub const EVENTS_PER_INSERT: usize = MAX_PARAMS / 2;
/// Largest manifest record (info JSON + bytes) kept in its row, and largest part of a
/// larger one. D1 refuses rows over 2,000,000 bytes; the rest of the row (repository,
/// digests) fits in what is left.
pub const MAX_MANIFEST_ROW: usize = 1_900_000;
/// Largest integer a JS number carries exactly (D1 binds numbers as JS numbers).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

pub(crate) fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// A number to bind; refused above 2^53, where a JS number would round it.
pub(crate) fn int(n: u64) -> Result<Param, StoreError> {
    if n > MAX_SAFE_INTEGER {
        return Err(other(format!("{n} is too large for a D1 integer")));
    }
    Ok(Param::Int(n as i64))
}

/// A `LIMIT`: `n` (saturating at the largest safe number, as good as no limit).
pub(crate) fn limit(n: usize) -> Param {
    Param::Int(n.min(MAX_SAFE_INTEGER as usize) as i64)
}

pub(crate) fn text(s: impl Into<String>) -> Param {
    Param::Text(s.into())
}

/// Bytes as TEXT. Everything the core stores is UTF-8 (manifests are JSON, which
/// `serde_json` accepts only as UTF-8; documents are JSON or PEM); anything else is
/// refused rather than stored in a second encoding every reader would have to know.
pub(crate) fn utf8(what: &str, bytes: &[u8]) -> Result<String, StoreError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(other(format!(
            "D1 stores {what} as text and these bytes are not UTF-8 ({e})"
        ))),
    }
}

fn stmt(sql: impl Into<String>, params: Vec<Param>) -> Stmt {
    Stmt {
        sql: sql.into(),
        params,
    }
}

// ---- reading rows ----------------------------------------------------------------------

fn col<'a>(row: &'a Row, name: &str) -> Result<&'a serde_json::Value, StoreError> {
    row.get(name)
        .ok_or_else(|| other(format!("D1 row lacks column {name}")))
}

/// A TEXT column.
pub(crate) fn get_text(row: &Row, name: &str) -> Result<String, StoreError> {
    opt_text(row, name)?.ok_or_else(|| other(format!("D1 column {name} is NULL")))
}

/// A TEXT column that may be NULL.
pub(crate) fn opt_text(row: &Row, name: &str) -> Result<Option<String>, StoreError> {
    match col(row, name)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        v => Err(other(format!("D1 column {name} is not text: {v}"))),
    }
}

/// A non-negative INTEGER column.
pub(crate) fn get_int(row: &Row, name: &str) -> Result<u64, StoreError> {
    let v = col(row, name)?;
    v.as_u64()
        // JS numbers may arrive as floats; integral ones are exact below 2^53.
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_SAFE_INTEGER as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| other(format!("D1 column {name} is not a count: {v}")))
}

/// The only outcome of a one-statement call.
pub(crate) fn single(mut out: Vec<Outcome>) -> Result<Outcome, StoreError> {
    match out.pop() {
        Some(o) if out.is_empty() => Ok(o),
        _ => Err(other("D1 returned an unexpected number of results")),
    }
}

/// The outcome of statement `i` of a batch.
pub(crate) fn nth(out: &[Outcome], i: usize) -> Result<&Outcome, StoreError> {
    out.get(i)
        .ok_or_else(|| other("D1 returned fewer results than statements"))
}

// ---- repositories and blob links -------------------------------------------------------

pub(crate) fn repository_exists(repo: &str) -> Stmt {
    stmt("SELECT 1 AS x FROM repos WHERE name = ?1", vec![text(repo)])
}

pub(crate) fn touch_repo(repo: &str) -> Stmt {
    stmt(
        "INSERT INTO repos (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        vec![text(repo)],
    )
}

pub(crate) fn blob_link(repo: &str, digest: &Digest) -> Stmt {
    stmt(
        "SELECT size FROM links WHERE repo = ?1 AND digest = ?2",
        vec![text(repo), text(digest.to_string())],
    )
}

/// The link, made or updated, linked at `at_ms`; `refs` (kept by manifest writes) stays.
pub(crate) fn link_blob(
    repo: &str,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<Stmt, StoreError> {
    Ok(stmt(
        "INSERT INTO links (repo, digest, size, linked_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (repo, digest) DO UPDATE SET \
         size = excluded.size, linked_ms = excluded.linked_ms",
        vec![
            text(repo),
            text(digest.to_string()),
            int(size)?,
            int(at_ms)?,
        ],
    ))
}

/// Where [`existing`] looks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Linked {
    /// Blob links.
    Blobs,
    /// Manifests.
    Manifests,
}

/// `SELECT digest … IN (…)` over `digests` (deduplicated), [`IN_CHUNK`] a statement, so
/// each statement stays within [`MAX_PARAMS`]. Empty when `digests` is.
pub(crate) fn existing(table: Linked, repo: &str, digests: &[Digest]) -> Vec<Stmt> {
    let table = match table {
        Linked::Blobs => "links",
        Linked::Manifests => "manifests",
    };
    let mut unique: Vec<String> = digests.iter().map(Digest::to_string).collect();
    unique.sort_unstable();
    unique.dedup();
    unique
        .chunks(IN_CHUNK)
        .map(|chunk| {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("?{i}")).collect();
            let mut params = Vec::with_capacity(chunk.len() + 1);
            params.push(text(repo));
            params.extend(chunk.iter().map(|d| text(d.as_str())));
            stmt(
                format!(
                    "SELECT digest FROM {table} WHERE repo = ?1 AND digest IN ({})",
                    marks.join(", ")
                ),
                params,
            )
        })
        .collect()
}

/// Of `digests`, those no row of `found` names, in their order.
pub(crate) fn missing(digests: &[Digest], found: &[Outcome]) -> Result<Vec<Digest>, StoreError> {
    let mut have = std::collections::HashSet::new();
    for o in found {
        for row in &o.rows {
            have.insert(get_text(row, "digest")?);
        }
    }
    Ok(digests
        .iter()
        .filter(|d| !have.contains(&d.to_string()))
        .cloned()
        .collect())
}

// ---- manifests, tags, referrers --------------------------------------------------------

pub(crate) fn manifest_by_digest(repo: &str, digest: &Digest) -> Stmt {
    stmt(
        "SELECT digest, record, parts FROM manifests WHERE repo = ?1 AND digest = ?2",
        vec![text(repo), text(digest.to_string())],
    )
}

/// One query through the tag: a manifest GET by tag stays one D1 read.
pub(crate) fn manifest_by_tag(repo: &str, tag: &str) -> Stmt {
    stmt(
        "SELECT m.digest, m.record, m.parts FROM tags AS t \
         JOIN manifests AS m ON m.repo = t.repo AND m.digest = t.digest \
         WHERE t.repo = ?1 AND t.tag = ?2",
        vec![text(repo), text(tag)],
    )
}

/// A manifest row: the manifest itself, or where its record is.
pub(crate) enum ManifestRow {
    /// The record was in the row.
    Inline(StoredManifest),
    /// The record is in `parts` rows of `manifest_parts`.
    Parts {
        /// Its digest (the row may have been found by tag).
        digest: String,
        /// How many.
        parts: u64,
    },
}

pub(crate) fn decode_manifest_row(row: &Row) -> Result<ManifestRow, StoreError> {
    match get_int(row, "parts")? {
        0 => decode_record(get_text(row, "record")?).map(ManifestRow::Inline),
        parts => Ok(ManifestRow::Parts {
            digest: get_text(row, "digest")?,
            parts,
        }),
    }
}

pub(crate) fn manifest_parts(repo: &str, digest: &str) -> Stmt {
    stmt(
        "SELECT chunk FROM manifest_parts WHERE repo = ?1 AND digest = ?2 ORDER BY n",
        vec![text(repo), text(digest)],
    )
}

/// The manifest from its parts; `None` if they are gone (deleted since the row was read).
pub(crate) fn decode_parts(o: &Outcome, parts: u64) -> Result<Option<StoredManifest>, StoreError> {
    if o.rows.is_empty() {
        return Ok(None);
    }
    if o.rows.len() as u64 != parts {
        return Err(other(format!(
            "manifest record has {} of its {parts} parts",
            o.rows.len()
        )));
    }
    let mut record = String::new();
    for row in &o.rows {
        record.push_str(&get_text(row, "chunk")?);
    }
    decode_record(record).map(Some)
}

/// A manifest record: the info as compact JSON (which has no newline: strings escape
/// theirs), a newline, the bytes.
fn encode_record(m: &StoredManifest) -> Result<String, StoreError> {
    let info = serde_json::to_string(&m.info).map_err(other)?;
    if info.contains('\n') {
        return Err(other("manifest info JSON contains a newline"));
    }
    let body = utf8("manifests", &m.bytes)?;
    let mut record = String::with_capacity(info.len() + 1 + body.len());
    record.push_str(&info);
    record.push('\n');
    record.push_str(&body);
    Ok(record)
}

fn decode_record(record: String) -> Result<StoredManifest, StoreError> {
    let split = record
        .find('\n')
        .ok_or_else(|| other("corrupt manifest record"))?;
    let info = serde_json::from_str(&record[..split]).map_err(other)?;
    // The bytes share the record's buffer: no copy of a large manifest.
    let bytes = Bytes::from(record.into_bytes()).slice(split + 1..);
    Ok(StoredManifest { info, bytes })
}

/// `s` in pieces of at most `max` bytes, cut at character boundaries.
pub(crate) fn split_text(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut end = rest.len().min(max.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        out.push(head);
        rest = tail;
    }
    out
}

/// The content statements of `put_manifest`: the catalog entry, the manifest (pushed at
/// `at_ms`; a new row is not counted yet, `blobs` NULL, and an existing one keeps its
/// `blobs` and pull time), its tags and its referrer entry. A record over
/// [`MAX_MANIFEST_ROW`] goes to `manifest_parts` (replacing any parts of an earlier put),
/// one statement a part. Bytes that are not UTF-8 are refused.
pub(crate) fn put_manifest(
    repo: &str,
    m: &StoredManifest,
    tags: &[&str],
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let record = encode_record(m)?;
    let digest = m.info.digest.to_string();
    let subject = m.info.subject.as_ref().map(Digest::to_string);
    let pieces = if record.len() > MAX_MANIFEST_ROW {
        split_text(&record, MAX_MANIFEST_ROW)
    } else {
        Vec::new()
    };
    let inline = if pieces.is_empty() {
        record.as_str()
    } else {
        ""
    };
    let mut out = vec![
        touch_repo(repo),
        stmt(
            "INSERT INTO manifests \
             (repo, digest, subject, record, parts, media_type, size, pushed_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (repo, digest) DO UPDATE SET \
             subject = excluded.subject, record = excluded.record, parts = excluded.parts, \
             media_type = excluded.media_type, size = excluded.size, \
             pushed_ms = excluded.pushed_ms",
            vec![
                text(repo),
                text(digest.as_str()),
                subject.clone().map_or(Param::Null, Param::Text),
                text(inline),
                int(pieces.len() as u64)?,
                text(m.info.media_type.as_str()),
                int(m.info.size)?,
                int(at_ms)?,
            ],
        ),
    ];
    if !pieces.is_empty() {
        out.push(stmt(
            "DELETE FROM manifest_parts WHERE repo = ?1 AND digest = ?2",
            vec![text(repo), text(digest.as_str())],
        ));
        for (n, piece) in pieces.iter().enumerate() {
            out.push(stmt(
                "INSERT INTO manifest_parts (repo, digest, n, chunk) VALUES (?1, ?2, ?3, ?4)",
                vec![
                    text(repo),
                    text(digest.as_str()),
                    int(n as u64)?,
                    text(*piece),
                ],
            ));
        }
    }
    if !tags.is_empty() {
        // One statement for every tag (a JSON array read with json_each), so a push with
        // many tags is as many statements as one with one.
        out.push(stmt(
            "INSERT INTO tags (repo, tag, digest, pushed_ms) \
             SELECT ?1, value, ?2, ?3 FROM json_each(?4) WHERE true \
             ON CONFLICT (repo, tag) DO UPDATE SET \
             digest = excluded.digest, pushed_ms = excluded.pushed_ms",
            vec![
                text(repo),
                text(digest.as_str()),
                int(at_ms)?,
                text(serde_json::to_string(tags).map_err(other)?),
            ],
        ));
    }
    if let Some(subject) = subject {
        let desc = serde_json::to_string(&m.info.referrer_descriptor()).map_err(other)?;
        out.push(stmt(
            "INSERT INTO referrers (repo, subject, digest, descriptor) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (repo, subject, digest) DO UPDATE SET descriptor = excluded.descriptor",
            vec![text(repo), text(subject), text(digest), text(desc)],
        ));
    }
    Ok(out)
}

/// The statements of `delete_manifest`, one transaction: its tags, its referrer entry (found
/// through the manifest's `subject` before the manifest goes), its parts, the manifest. The
/// last statement's change count says whether there was one.
pub(crate) fn delete_manifest(repo: &str, digest: &Digest) -> Vec<Stmt> {
    let p = || vec![text(repo), text(digest.to_string())];
    vec![
        stmt("DELETE FROM tags WHERE repo = ?1 AND digest = ?2", p()),
        stmt(
            "DELETE FROM referrers WHERE repo = ?1 AND digest = ?2 AND subject = \
             (SELECT subject FROM manifests WHERE repo = ?1 AND digest = ?2)",
            p(),
        ),
        stmt(
            "DELETE FROM manifest_parts WHERE repo = ?1 AND digest = ?2",
            p(),
        ),
        stmt("DELETE FROM manifests WHERE repo = ?1 AND digest = ?2", p()),
    ]
}

pub(crate) fn delete_tag(repo: &str, tag: &str) -> Stmt {
    stmt(
        "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
        vec![text(repo), text(tag)],
    )
}

/// Tags of `repo` after `last`: `n + 1` rows, so the extra one tells whether more follow.
pub(crate) fn list_tags(repo: &str, last: Option<&str>, n: usize) -> Stmt {
    let lim = limit(n.saturating_add(1));
    match last {
        Some(l) => stmt(
            "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
            vec![text(repo), text(l), lim],
        ),
        None => stmt(
            "SELECT tag FROM tags WHERE repo = ?1 ORDER BY tag LIMIT ?2",
            vec![text(repo), lim],
        ),
    }
}

pub(crate) fn list_repositories(last: Option<&str>, n: usize) -> Stmt {
    let lim = limit(n.saturating_add(1));
    match last {
        Some(l) => stmt(
            "SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2",
            vec![text(l), lim],
        ),
        None => stmt("SELECT name FROM repos ORDER BY name LIMIT ?1", vec![lim]),
    }
}

/// A page from `n + 1` rows of column `name`.
pub(crate) fn page(
    o: &Outcome,
    name: &str,
    n: usize,
) -> Result<wharf_core::ports::Page, StoreError> {
    let mut items = o
        .rows
        .iter()
        .map(|r| get_text(r, name))
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > n;
    items.truncate(n);
    Ok(wharf_core::ports::Page { items, more })
}

pub(crate) fn referrers(repo: &str, subject: &Digest) -> Stmt {
    stmt(
        "SELECT descriptor FROM referrers WHERE repo = ?1 AND subject = ?2 ORDER BY digest",
        vec![text(repo), text(subject.to_string())],
    )
}

pub(crate) fn decode_descriptors(o: &Outcome) -> Result<Vec<Descriptor>, StoreError> {
    o.rows
        .iter()
        .map(|r| serde_json::from_str(&get_text(r, "descriptor")?).map_err(other))
        .collect()
}

// ---- uploads ---------------------------------------------------------------------------

/// `?1` id, `?2` offset, `?3` updated, `?4` the record.
fn upload_params(u: &UploadRecord) -> Result<Vec<Param>, StoreError> {
    Ok(vec![
        text(u.id.as_str()),
        int(u.offset)?,
        int(u.updated_ms)?,
        text(serde_json::to_string(u).map_err(other)?),
    ])
}

/// Inserts only if the id is new: no change means it exists.
pub(crate) fn create_upload(u: &UploadRecord) -> Result<Stmt, StoreError> {
    Ok(stmt(
        "INSERT INTO uploads (id, off, updated_ms, record) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO NOTHING",
        upload_params(u)?,
    ))
}

pub(crate) fn upload(id: &str) -> Stmt {
    stmt("SELECT record FROM uploads WHERE id = ?1", vec![text(id)])
}

/// The compare-and-set of `update_upload`, and a read of the offset in the same
/// transaction: when nothing changed, it tells a moved offset from a missing upload.
pub(crate) fn update_upload(u: &UploadRecord, expected: u64) -> Result<Vec<Stmt>, StoreError> {
    let mut params = upload_params(u)?;
    params.push(int(expected)?);
    Ok(vec![
        stmt(
            "UPDATE uploads SET off = ?2, updated_ms = ?3, record = ?4 WHERE id = ?1 AND off = ?5",
            params,
        ),
        stmt(
            "SELECT off FROM uploads WHERE id = ?1",
            vec![text(u.id.as_str())],
        ),
    ])
}

/// What the two statements of [`update_upload`] say.
pub(crate) fn update_outcome(id: &str, expected: u64, out: &[Outcome]) -> Result<(), StoreError> {
    if nth(out, 0)?.changes > 0 {
        return Ok(());
    }
    match nth(out, 1)?.rows.first() {
        Some(row) => Err(StoreError::Precondition(format!(
            "upload {id} is at {}, not {expected}",
            get_int(row, "off")?
        ))),
        None => Err(StoreError::NotFound),
    }
}

pub(crate) fn delete_upload(id: &str) -> Stmt {
    stmt("DELETE FROM uploads WHERE id = ?1", vec![text(id)])
}

/// The conditional delete of `claim_upload`, and a read of the offset in the same
/// transaction ([`update_outcome`] tells the three outcomes apart).
pub(crate) fn claim_upload(id: &str, expected: u64) -> Result<Vec<Stmt>, StoreError> {
    Ok(vec![
        stmt(
            "DELETE FROM uploads WHERE id = ?1 AND off = ?2",
            vec![text(id), int(expected)?],
        ),
        stmt("SELECT off FROM uploads WHERE id = ?1", vec![text(id)]),
    ])
}

pub(crate) fn stale_uploads(before_ms: u64, n: usize) -> Result<Stmt, StoreError> {
    Ok(stmt(
        "SELECT record FROM uploads WHERE updated_ms < ?1 ORDER BY updated_ms LIMIT ?2",
        vec![int(before_ms)?, limit(n)],
    ))
}

pub(crate) fn decode_upload(row: &Row) -> Result<UploadRecord, StoreError> {
    serde_json::from_str(&get_text(row, "record")?).map_err(other)
}

// ---- documents -------------------------------------------------------------------------

pub(crate) fn get_doc(kind: &str, id: &str) -> Stmt {
    stmt(
        "SELECT value FROM docs WHERE kind = ?1 AND id = ?2",
        vec![text(kind), text(id)],
    )
}

/// With `if_absent`, inserts only if new (no change: it exists); else overwrites.
pub(crate) fn put_doc(
    kind: &str,
    id: &str,
    value: &[u8],
    if_absent: bool,
) -> Result<Stmt, StoreError> {
    let conflict = if if_absent {
        "DO NOTHING"
    } else {
        "DO UPDATE SET value = excluded.value"
    };
    Ok(stmt(
        format!(
            "INSERT INTO docs (kind, id, value) VALUES (?1, ?2, ?3) ON CONFLICT (kind, id) {conflict}"
        ),
        vec![text(kind), text(id), text(utf8("documents", value)?)],
    ))
}

pub(crate) fn delete_doc(kind: &str, id: &str) -> Stmt {
    stmt(
        "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
        vec![text(kind), text(id)],
    )
}

/// The smallest string above every string that starts with `prefix`: the prefix with its
/// last character incremented (byte order of UTF-8, which SQLite compares, is code point
/// order). `None` when there is none (empty, or only U+10FFFF at the end).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Documents of `kind` with ids starting with `prefix`, after `after`, in id order. The
/// prefix is a range on the primary key (`id >= prefix AND id < prefix_end`), so the
/// query reads only matching rows; `substr` states the prefix exactly on top (LIKE would
/// treat `%` and `_` as patterns and D1 caps LIKE patterns at 50 bytes).
pub(crate) fn list_docs(kind: &str, prefix: &str, after: Option<&str>, n: usize) -> Stmt {
    let mut params = vec![text(kind)];
    let mut sql = String::from("SELECT id, value FROM docs WHERE kind = ?1");
    let mut bind = |sql: &mut String, cond: &str, p: Param| {
        params.push(p);
        sql.push_str(&format!(" AND {cond}?{}", params.len()));
    };
    match after {
        Some(a) if a >= prefix => bind(&mut sql, "id > ", text(a)),
        _ if !prefix.is_empty() => bind(&mut sql, "id >= ", text(prefix)),
        _ => {}
    }
    if !prefix.is_empty() {
        if let Some(end) = prefix_end(prefix) {
            bind(&mut sql, "id < ", text(end));
        }
        params.push(text(prefix));
        let i = params.len();
        sql.push_str(&format!(" AND substr(id, 1, length(?{i})) = ?{i}"));
    }
    params.push(limit(n));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
    stmt(sql, params)
}

pub(crate) fn decode_docs(o: &Outcome) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    o.rows
        .iter()
        .map(|r| Ok((get_text(r, "id")?, get_text(r, "value")?.into_bytes())))
        .collect()
}

/// Queued audit events as multi-row upserts, [`EVENTS_PER_INSERT`] rows a statement.
pub(crate) fn insert_events(events: &[(String, String)]) -> Vec<Stmt> {
    events
        .chunks(EVENTS_PER_INSERT)
        .map(|chunk| {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("('audit', ?{}, ?{})", 2 * i + 1, 2 * i + 2))
                .collect();
            let params = chunk
                .iter()
                .flat_map(|(id, v)| [text(id.as_str()), text(v.as_str())])
                .collect();
            stmt(
                format!(
                    "INSERT INTO docs (kind, id, value) VALUES {} \
                     ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value",
                    rows.join(", ")
                ),
                params,
            )
        })
        .collect()
}

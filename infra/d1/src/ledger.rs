//! The bookkeeping of the optional abilities (schema `0002_ledger.sql`) as statements: what
//! `wharf_core::ledger` does over a key-value map, done here by SQL inside each content
//! write's batch. D1 reads nothing between a batch's statements, so every decision the
//! reference makes from its own entries ("is this link new?", "was this the project's last
//! copy?") is a condition of the statements that act on it (`WHERE EXISTS …`), evaluated in
//! batch order; refusals are guard statements that fail the batch (table `guards`).
//!
//! The counted marks are the flags of `holds` (links) and a non-NULL `manifests.blobs`
//! (manifests): live writes and the backfill run the same [`count_link`] and
//! [`count_manifest`], which count only what is not marked, so nothing is counted twice.
//!
//! Link collection's work list (schema `0003_link_collection.sql`) is the partial index
//! `links_unreferenced` on the links whose `refs` is 0: SQLite keeps it with every write of
//! `refs`, so no statement here writes it.

use crate::sql::{get_int, get_text, int, limit, opt_text, other, text};
use crate::{Param, Row, Stmt};
use wharf_core::model::manifest::ManifestInfo;
use wharf_core::model::name::project_of;
use wharf_core::ports::{
    BlobRecord, BlobState, Change, LINK_TOUCH_PRECISION_MS, LinkCursor, LinkEntry, ManifestEntry,
    OutboxEntry, TagEntry, TagExpect, UnreferencedLink,
};
use wharf_core::{Digest, StoreError};

/// The constraint a link of (or a manifest over) a blob being deleted violates.
pub(crate) const BLOB_GUARD: &str = "blob_is_being_deleted";
/// The constraint a conditional tag write whose tag is not as expected violates.
pub(crate) const TAG_GUARD: &str = "tag_is_not_as_expected";
/// The constraint a link of a blob without a record violates.
pub(crate) const RECORD_GUARD: &str = "blob_has_no_record";
/// The constraint a manifest over a blob or child its repository lacks violates, and (the
/// same column, so no schema of its own) an `unlink_blob` of a link a manifest references:
/// that batch has no other guard, so there the constraint means only that.
pub(crate) const REFERENCE_GUARD: &str = "reference_not_in_repository";

/// A statement from SQL with named placeholders (`:name`, lowercase), numbered `?1, ?2, …`
/// in order of first use, binding only the names the text uses (D1 takes numbered
/// parameters only, and exactly as many as the statement has). Quoted literals are skipped.
pub(crate) fn named(sql: &str, params: &[(&str, &Param)]) -> Result<Stmt, StoreError> {
    let mut out = String::with_capacity(sql.len());
    let mut used: Vec<&str> = Vec::new();
    let mut bound = Vec::new();
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        let starts_name = chars
            .peek()
            .is_some_and(|(_, n)| n.is_ascii_lowercase() || *n == '_');
        if c != ':' || quoted || !starts_name {
            out.push(c);
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some((j, n)) = chars.peek() {
            if n.is_ascii_lowercase() || n.is_ascii_digit() || *n == '_' {
                end = j + n.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let name = &sql[start..end];
        let k = match used.iter().position(|u| *u == name) {
            Some(k) => k,
            None => {
                let p = params
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| other(format!("no parameter :{name} for {sql}")))?;
                used.push(name);
                bound.push(p.1.clone());
                used.len() - 1
            }
        };
        out.push_str(&format!("?{}", k + 1));
    }
    Ok(Stmt {
        sql: out,
        params: bound,
    })
}

/// Distinct digests, in string order, as a JSON array (bound as one parameter and read with
/// `json_each`, so a manifest of any number of blobs is a fixed number of statements).
pub(crate) fn digest_list(digests: &[Digest]) -> Result<String, StoreError> {
    let mut v: Vec<String> = digests.iter().map(Digest::to_string).collect();
    v.sort_unstable();
    v.dedup();
    serde_json::to_string(&v).map_err(other)
}

/// What a refused write's error means: a guard's constraint is `Precondition`, anything
/// else stays as it was.
pub(crate) fn refused(e: StoreError) -> StoreError {
    let msg = match &e {
        StoreError::Other(m) | StoreError::Unavailable(m) => m,
        _ => return e,
    };
    if msg.contains(BLOB_GUARD) {
        StoreError::Precondition("a blob is being garbage-collected; upload it again".into())
    } else if msg.contains(RECORD_GUARD) {
        StoreError::Precondition(
            "the blob has no record (it may have been garbage-collected); upload it again".into(),
        )
    } else if msg.contains(REFERENCE_GUARD) {
        StoreError::Precondition(
            "a blob or manifest the manifest references is not in the repository".into(),
        )
    } else if msg.contains(TAG_GUARD) {
        StoreError::Precondition("a tag is not as expected".into())
    } else {
        e
    }
}

/// Fails the batch if any of `list` (a [`digest_list`]) is being deleted.
pub(crate) fn guard_blobs(list: &str) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO guards (blob_live) SELECT 0 FROM blobs \
         WHERE digest IN (SELECT value FROM json_each(:b)) AND state = 'deleting' LIMIT 1",
        &[("b", &text(list))],
    )
}

/// Fails the batch if `digest` has no record: garbage collection may have deleted its
/// bytes, and `touch_blob` (which the core calls before it commits or mounts a blob) makes
/// one, so a link is never made over bytes that may be gone.
pub(crate) fn guard_recorded(digest: &Digest) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO guards (blob_recorded) SELECT 0 \
         WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = :d)",
        &[("d", &text(digest.to_string()))],
    )
}

/// Fails the batch unless `repo` links every blob of `blobs` and holds every manifest of
/// `children` (both [`digest_list`]s): checked in the manifest's own batch, so a link
/// collected after the core's check fails the push instead of leaving it over nothing.
pub(crate) fn guard_in_repository(
    repo: &str,
    blobs: &str,
    children: &str,
) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO guards (reference_present) SELECT 0 WHERE EXISTS \
         (SELECT 1 FROM json_each(:b) AS j WHERE NOT EXISTS \
         (SELECT 1 FROM links WHERE repo = :r AND digest = j.value)) \
         OR EXISTS (SELECT 1 FROM json_each(:c) AS j WHERE NOT EXISTS \
         (SELECT 1 FROM manifests WHERE repo = :r AND digest = j.value))",
        &[
            ("r", &text(repo)),
            ("b", &text(blobs)),
            ("c", &text(children)),
        ],
    )
}

/// Fails the batch if a manifest of `repo` references `digest` (its link's `refs` > 0): the
/// blob DELETE API may not take such a link, which pushed again would come back with no
/// references counted (`wharf_core::ledger::check_unlinkable`).
pub(crate) fn guard_unreferenced(repo: &str, digest: &Digest) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO guards (reference_present) SELECT 0 FROM links \
         WHERE repo = :r AND digest = :d AND refs > 0",
        &[("r", &text(repo)), ("d", &text(digest.to_string()))],
    )
}

/// What a refused `unlink_blob` means: its one guard is [`guard_unreferenced`]'s.
pub(crate) fn refused_unlink(e: StoreError, repo: &str, digest: &Digest) -> StoreError {
    match &e {
        StoreError::Other(m) | StoreError::Unavailable(m) if m.contains(REFERENCE_GUARD) => {
            StoreError::Precondition(format!(
                "blob {digest} is referenced by a manifest of {repo}; delete it first"
            ))
        }
        _ => e,
    }
}

/// Fails the batch unless every tag of `tags` (of `repo`) is as expected: one statement
/// over a JSON array of `{"t": tag, "d": digest it must point at, null: must be absent}`;
/// none when every tag may be anything.
pub(crate) fn guard_tags(repo: &str, tags: &[(&str, TagExpect)]) -> Result<Vec<Stmt>, StoreError> {
    let expected: Vec<serde_json::Value> = tags
        .iter()
        .filter_map(|(t, expect)| match expect {
            TagExpect::Any => None,
            TagExpect::Absent => Some(serde_json::json!({ "t": t, "d": null })),
            TagExpect::At(d) => Some(serde_json::json!({ "t": t, "d": d.to_string() })),
        })
        .collect();
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    let e = text(serde_json::to_string(&expected).map_err(other)?);
    Ok(vec![named(
        "INSERT INTO guards (tag_expected) SELECT 0 FROM json_each(:e) AS e \
         WHERE (SELECT digest FROM tags WHERE repo = :r AND tag = json_extract(e.value, '$.t')) \
         IS NOT json_extract(e.value, '$.d') LIMIT 1",
        &[("r", &text(repo)), ("e", &e)],
    )?])
}

/// Fails the batch if `tag` of `repo` exists and points elsewhere than `digest`.
pub(crate) fn guard_tag_not_elsewhere(
    repo: &str,
    tag: &str,
    digest: &Digest,
) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO guards (tag_expected) SELECT 0 FROM tags \
         WHERE repo = :r AND tag = :t AND digest <> :d",
        &[
            ("r", &text(repo)),
            ("t", &text(tag)),
            ("d", &text(digest.to_string())),
        ],
    )
}

/// A record for freshly committed or linked bytes, or a touch of the one there (made live,
/// `touched_ms` never moved back).
pub(crate) fn touch_blob(digest: &Digest, size: u64, at_ms: u64) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO blobs (digest, size, links, refs, touched_ms, state, state_ms) \
         VALUES (:d, :s, 0, 0, :at, 'live', 0) ON CONFLICT (digest) DO UPDATE SET \
         touched_ms = max(touched_ms, excluded.touched_ms), state = 'live', state_ms = 0",
        &[
            ("d", &text(digest.to_string())),
            ("s", &int(size)?),
            ("at", &int(at_ms)?),
        ],
    )
}

/// `repo`'s link of `digest`, if its row is there and not counted yet: into the blob record
/// (made if missing, with `size`), the project's usage (its first repository linking the
/// digest adds the record's size) and the reverse index, whose flag marks it counted.
pub(crate) fn count_link(repo: &str, digest: &Digest, size: u64) -> Result<Vec<Stmt>, StoreError> {
    let (r, d, p, s) = (
        text(repo),
        text(digest.to_string()),
        text(project_of(repo)),
        int(size)?,
    );
    let ps: [(&str, &Param); 4] = [("r", &r), ("d", &d), ("p", &p), ("s", &s)];
    let there = "EXISTS (SELECT 1 FROM links WHERE repo = :r AND digest = :d)";
    let new = "NOT EXISTS (SELECT 1 FROM holds WHERE digest = :d AND repo = :r AND linked = 1)";
    [
        format!(
            "INSERT INTO blobs (digest, size, links, refs, touched_ms, state, state_ms) \
             SELECT :d, :s, 0, 0, 0, 'live', 0 WHERE {there} ON CONFLICT (digest) DO NOTHING"
        ),
        format!(
            "INSERT INTO project_blobs (project, digest, n) SELECT :p, :d, 1 \
             WHERE {there} AND {new} ON CONFLICT (project, digest) DO UPDATE SET n = n + 1"
        ),
        format!(
            "INSERT INTO usage (project, bytes, blobs) SELECT :p, b.size, 1 FROM blobs AS b \
             WHERE b.digest = :d AND {there} AND {new} \
             AND (SELECT n FROM project_blobs WHERE project = :p AND digest = :d) = 1 \
             ON CONFLICT (project) DO UPDATE SET \
             bytes = bytes + excluded.bytes, blobs = blobs + 1"
        ),
        format!("UPDATE blobs SET links = links + 1 WHERE digest = :d AND {there} AND {new}"),
        format!(
            "INSERT INTO holds (digest, repo, linked, manifest) SELECT :d, :r, 1, 0 \
             WHERE {there} ON CONFLICT (digest, repo) DO UPDATE SET linked = 1"
        ),
    ]
    .iter()
    .map(|sql| named(sql, &ps))
    .collect()
}

/// Which link [`remove_link`] removes: any (`unlink_blob`), or one `collect_link` may
/// remove, unreferenced and not linked or touched after `since` (no time counts as older).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Removal {
    /// `unlink_blob`.
    Unlink,
    /// `collect_link`.
    Collect {
        /// Its `untouched_since_ms`.
        since: u64,
    },
}

impl Removal {
    /// What the link row (`repo = :r AND digest = :d`) must be besides there, over `:since`.
    fn row_filter(self) -> &'static str {
        match self {
            Removal::Unlink => "",
            Removal::Collect { .. } => " AND refs = 0 AND coalesce(linked_ms, 0) <= :since",
        }
    }

    /// The condition every statement of the removal is conditioned on: the link row is
    /// there as [`Removal::row_filter`] wants it. The row is deleted last, so it holds
    /// through the batch.
    fn link_there(self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM links WHERE repo = :r AND digest = :d{})",
            self.row_filter()
        )
    }

    fn since(self) -> Result<Param, StoreError> {
        match self {
            Removal::Unlink => Ok(Param::Null),
            Removal::Collect { since } => int(since),
        }
    }
}

/// Before `repo`'s link row of `digest` is deleted (if `how` removes it): takes a counted
/// link out of the blob record, the project's usage (its last repository linking the
/// digest removes the size) and the reverse index.
pub(crate) fn uncount_link(
    repo: &str,
    digest: &Digest,
    how: Removal,
) -> Result<Vec<Stmt>, StoreError> {
    let (r, d, p, since) = (
        text(repo),
        text(digest.to_string()),
        text(project_of(repo)),
        how.since()?,
    );
    let ps: [(&str, &Param); 4] = [("r", &r), ("d", &d), ("p", &p), ("since", &since)];
    let there = how.link_there();
    let counted = format!(
        "{there} AND EXISTS (SELECT 1 FROM holds WHERE digest = :d AND repo = :r AND linked = 1)"
    );
    let record = "EXISTS (SELECT 1 FROM blobs WHERE digest = :d)";
    [
        format!(
            "UPDATE usage SET bytes = max(bytes - (SELECT size FROM blobs WHERE digest = :d), 0), \
             blobs = max(blobs - 1, 0) WHERE project = :p AND {counted} AND {record} \
             AND coalesce((SELECT n FROM project_blobs WHERE project = :p AND digest = :d), 0) <= 1"
        ),
        format!(
            "DELETE FROM project_blobs WHERE project = :p AND digest = :d AND n <= 1 \
             AND {counted} AND {record}"
        ),
        format!(
            "UPDATE project_blobs SET n = n - 1 WHERE project = :p AND digest = :d AND n > 1 \
             AND {counted} AND {record}"
        ),
        format!("UPDATE blobs SET links = max(links - 1, 0) WHERE digest = :d AND {counted}"),
        format!("UPDATE holds SET linked = 0 WHERE digest = :d AND repo = :r AND {there}"),
        "DELETE FROM holds WHERE digest = :d AND repo = :r AND linked = 0 AND manifest = 0"
            .to_owned(),
    ]
    .iter()
    .map(|sql| named(sql, &ps))
    .collect()
}

/// Manifest `info` of `repo`, if its row is there and not counted yet (`blobs` NULL): one
/// reference more on each distinct blob's link in `repo` and record, the reverse index,
/// and its index columns, whose `blobs` marks it counted.
pub(crate) fn count_manifest(repo: &str, info: &ManifestInfo) -> Result<Vec<Stmt>, StoreError> {
    let (r, m, b, t, z) = (
        text(repo),
        text(info.digest.to_string()),
        text(digest_list(&info.blobs)?),
        text(info.media_type.as_str()),
        int(info.size)?,
    );
    let ps: [(&str, &Param); 5] = [("r", &r), ("m", &m), ("b", &b), ("t", &t), ("z", &z)];
    let uncounted =
        "EXISTS (SELECT 1 FROM manifests WHERE repo = :r AND digest = :m AND blobs IS NULL)";
    [
        format!(
            "UPDATE links SET refs = refs + 1 WHERE repo = :r \
             AND digest IN (SELECT value FROM json_each(:b)) AND {uncounted}"
        ),
        format!(
            "UPDATE blobs SET refs = refs + 1 \
             WHERE digest IN (SELECT value FROM json_each(:b)) AND {uncounted}"
        ),
        format!(
            "INSERT INTO holds (digest, repo, linked, manifest) SELECT :m, :r, 0, 1 \
             WHERE {uncounted} ON CONFLICT (digest, repo) DO UPDATE SET manifest = 1"
        ),
        "UPDATE manifests SET media_type = :t, size = :z, blobs = :b \
         WHERE repo = :r AND digest = :m AND blobs IS NULL"
            .to_owned(),
    ]
    .iter()
    .map(|sql| named(sql, &ps))
    .collect()
}

/// Before manifest `digest` of `repo` is deleted: one reference less on the blobs it was
/// counted with (none if it never was), and out of the reverse index.
pub(crate) fn uncount_manifest(repo: &str, digest: &Digest) -> Result<Vec<Stmt>, StoreError> {
    let (r, m) = (text(repo), text(digest.to_string()));
    let ps: [(&str, &Param); 2] = [("r", &r), ("m", &m)];
    let blobs = "SELECT value FROM json_each(\
         (SELECT blobs FROM manifests WHERE repo = :r AND digest = :m))";
    [
        format!("UPDATE links SET refs = max(refs - 1, 0) WHERE repo = :r AND digest IN ({blobs})"),
        format!("UPDATE blobs SET refs = max(refs - 1, 0) WHERE digest IN ({blobs})"),
        "UPDATE holds SET manifest = 0 WHERE digest = :m AND repo = :r".to_owned(),
        "DELETE FROM holds WHERE digest = :m AND repo = :r AND linked = 0 AND manifest = 0"
            .to_owned(),
    ]
    .iter()
    .map(|sql| named(sql, &ps))
    .collect()
}

/// An outbox entry for `change` at `at_ms`, numbered by the `outbox` counter in `meta`:
/// two statements, both only `when` (an SQL condition over `:r`, `:d`, `:t`) holds.
pub(crate) fn outbox(
    at_ms: u64,
    change: &Change,
    when: &str,
    ps: &[(&str, &Param)],
) -> Result<Vec<Stmt>, StoreError> {
    let at = int(at_ms)?;
    let c = text(serde_json::to_string(change).map_err(other)?);
    let mut all: Vec<(&str, &Param)> = vec![("at", &at), ("c", &c)];
    all.extend_from_slice(ps);
    Ok(vec![
        named(
            &format!(
                "INSERT INTO meta (k, n) SELECT 'outbox', 1 WHERE {when} \
                 ON CONFLICT (k) DO UPDATE SET n = n + 1"
            ),
            &all,
        )?,
        named(
            &format!(
                "INSERT INTO outbox (seq, at_ms, change) \
                 SELECT printf('%016d-%012d', :at, n), :at, :c FROM meta \
                 WHERE k = 'outbox' AND {when}"
            ),
            &all,
        )?,
    ])
}

/// Tags of `tags` once each, in their order (a store may get a repeated one).
pub(crate) fn distinct_tags<'a>(tags: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t);
        }
    }
    out
}

// ---- the batches of content writes -----------------------------------------------------

/// `link_blob`: refused if the blob has no record or is being deleted; the catalog entry,
/// the link (linked at `at_ms`), the record touched, the link counted if new, an outbox
/// entry.
pub(crate) fn link_blob(
    repo: &str,
    digest: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = vec![
        guard_recorded(digest)?,
        guard_blobs(&digest_list(std::slice::from_ref(digest))?)?,
        crate::sql::touch_repo(repo),
        crate::sql::link_blob(repo, digest, size, at_ms)?,
        touch_blob(digest, size, at_ms)?,
    ];
    out.extend(count_link(repo, digest, size)?);
    let change = Change::BlobLinked {
        repository: repo.to_owned(),
        digest: digest.clone(),
        size,
    };
    out.extend(outbox(at_ms, &change, "1", &[])?);
    Ok(out)
}

/// `unlink_blob` and `collect_link`: to unlink, refused if a manifest of `repo` references
/// the blob (collecting requires `refs` = 0 instead); the counters and the outbox entry
/// only if the link is there (and, to collect, collectable), then the link, last (its
/// change count says whether it was removed).
pub(crate) fn remove_link(
    repo: &str,
    digest: &Digest,
    how: Removal,
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = match how {
        Removal::Unlink => vec![guard_unreferenced(repo, digest)?],
        Removal::Collect { .. } => Vec::new(),
    };
    out.extend(uncount_link(repo, digest, how)?);
    let change = Change::BlobUnlinked {
        repository: repo.to_owned(),
        digest: digest.clone(),
    };
    let (r, d, since) = (text(repo), text(digest.to_string()), how.since()?);
    let ps: [(&str, &Param); 3] = [("r", &r), ("d", &d), ("since", &since)];
    out.extend(outbox(at_ms, &change, &how.link_there(), &ps)?);
    out.push(named(
        &format!(
            "DELETE FROM links WHERE repo = :r AND digest = :d{}",
            how.row_filter()
        ),
        &ps,
    )?);
    Ok(out)
}

/// `put_manifest` (and its conditional form, with `expect`ed tags): refused if a tag is not
/// as expected, a blob it references is being deleted or not linked into `repo`, or a child
/// manifest is not in `repo`; the content, the manifest counted if new (so every blob it
/// counts has its link row), an outbox entry naming each tag once.
pub(crate) fn put_manifest(
    repo: &str,
    m: &wharf_core::ports::StoredManifest,
    tags: &[(&str, TagExpect)],
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = guard_tags(repo, tags)?;
    if !m.info.blobs.is_empty() || !m.info.children.is_empty() {
        out.push(guard_in_repository(
            repo,
            &digest_list(&m.info.blobs)?,
            &digest_list(&m.info.children)?,
        )?);
    }
    if !m.info.blobs.is_empty() {
        out.push(guard_blobs(&digest_list(&m.info.blobs)?)?);
    }
    let names = distinct_tags(&tags.iter().map(|(t, _)| *t).collect::<Vec<_>>());
    out.extend(crate::sql::put_manifest(repo, m, &names, at_ms)?);
    out.extend(count_manifest(repo, &m.info)?);
    let change = Change::ManifestPut {
        repository: repo.to_owned(),
        digest: m.info.digest.clone(),
        tags: names.iter().map(|t| (*t).to_owned()).collect(),
    };
    out.extend(outbox(at_ms, &change, "1", &[])?);
    Ok(out)
}

/// `delete_manifest`: the references it was counted with and an outbox entry, only if it is
/// there, then the content statements (the manifest last: its change count says whether
/// there was one).
pub(crate) fn delete_manifest(
    repo: &str,
    digest: &Digest,
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = uncount_manifest(repo, digest)?;
    let change = Change::ManifestDeleted {
        repository: repo.to_owned(),
        digest: digest.clone(),
    };
    let (r, d) = (text(repo), text(digest.to_string()));
    out.extend(outbox(
        at_ms,
        &change,
        "EXISTS (SELECT 1 FROM manifests WHERE repo = :r AND digest = :d)",
        &[("r", &r), ("d", &d)],
    )?);
    out.extend(crate::sql::delete_manifest(repo, digest));
    Ok(out)
}

/// `delete_tag` (with `expect`: only if it points at that digest, refused if elsewhere): an
/// outbox entry if it is there, then the tag (its change count says whether it was).
pub(crate) fn delete_tag(
    repo: &str,
    tag: &str,
    expect: Option<&Digest>,
    at_ms: u64,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = Vec::new();
    if let Some(d) = expect {
        out.push(guard_tag_not_elsewhere(repo, tag, d)?);
    }
    let change = Change::TagDeleted {
        repository: repo.to_owned(),
        tag: tag.to_owned(),
    };
    let (r, t) = (text(repo), text(tag));
    out.extend(outbox(
        at_ms,
        &change,
        "EXISTS (SELECT 1 FROM tags WHERE repo = :r AND tag = :t)",
        &[("r", &r), ("t", &t)],
    )?);
    out.push(crate::sql::delete_tag(repo, tag));
    Ok(out)
}

// ---- blob records ----------------------------------------------------------------------

const RECORD_COLUMNS: &str = "digest, size, links, refs, touched_ms, state, state_ms";

pub(crate) fn blob_record(digest: &Digest) -> Result<Stmt, StoreError> {
    named(
        &format!("SELECT {RECORD_COLUMNS} FROM blobs WHERE digest = :d"),
        &[("d", &text(digest.to_string()))],
    )
}

/// Records with no links after `after`: a range of the partial index `blobs_unlinked`.
pub(crate) fn unlinked_blobs(after: Option<&Digest>, n: usize) -> Result<Stmt, StoreError> {
    let (a, lim) = (
        text(after.map(Digest::to_string).unwrap_or_default()),
        limit(n),
    );
    named(
        &format!(
            "SELECT {RECORD_COLUMNS} FROM blobs WHERE links = 0 AND digest > :a \
             ORDER BY digest LIMIT :n"
        ),
        &[("a", &a), ("n", &lim)],
    )
}

pub(crate) fn decode_record(row: &Row) -> Result<BlobRecord, StoreError> {
    let at = get_int(row, "state_ms")?;
    let state = match get_text(row, "state")?.as_str() {
        "live" => BlobState::Live,
        "marked" => BlobState::Marked { at_ms: at },
        "deleting" => BlobState::Deleting { since_ms: at },
        s => return Err(other(format!("unknown blob state {s}"))),
    };
    Ok(BlobRecord {
        digest: parse_digest(&get_text(row, "digest")?)?,
        size: get_int(row, "size")?,
        links: get_int(row, "links")?,
        refs: get_int(row, "refs")?,
        touched_ms: get_int(row, "touched_ms")?,
        state,
    })
}

pub(crate) fn mark_blob(
    digest: &Digest,
    untouched_since_ms: u64,
    at_ms: u64,
) -> Result<Stmt, StoreError> {
    named(
        "UPDATE blobs SET state = 'marked', state_ms = :at WHERE digest = :d \
         AND state = 'live' AND links = 0 AND touched_ms <= :since",
        &[
            ("d", &text(digest.to_string())),
            ("at", &int(at_ms)?),
            ("since", &int(untouched_since_ms)?),
        ],
    )
}

/// A marked record made live (touched at `at_ms`), and its state read after.
pub(crate) fn clear_blob_mark(digest: &Digest, at_ms: u64) -> Result<Vec<Stmt>, StoreError> {
    let (d, at) = (text(digest.to_string()), int(at_ms)?);
    Ok(vec![
        named(
            "UPDATE blobs SET state = 'live', state_ms = 0, \
             touched_ms = max(touched_ms, :at) WHERE digest = :d AND state = 'marked'",
            &[("d", &d), ("at", &at)],
        )?,
        named("SELECT state FROM blobs WHERE digest = :d", &[("d", &d)])?,
    ])
}

pub(crate) fn begin_blob_delete(
    digest: &Digest,
    marked_at_ms: u64,
    at_ms: u64,
) -> Result<Stmt, StoreError> {
    named(
        "UPDATE blobs SET state = 'deleting', state_ms = :at WHERE digest = :d \
         AND state = 'marked' AND state_ms = :marked AND links = 0",
        &[
            ("d", &text(digest.to_string())),
            ("at", &int(at_ms)?),
            ("marked", &int(marked_at_ms)?),
        ],
    )
}

pub(crate) fn forget_blob(digest: &Digest) -> Result<Stmt, StoreError> {
    named(
        "DELETE FROM blobs WHERE digest = :d AND state = 'deleting'",
        &[("d", &text(digest.to_string()))],
    )
}

// ---- link collection -------------------------------------------------------------------

/// `touch_link`: the link's time moved to `at_ms` if it is staler than
/// [`LINK_TOUCH_PRECISION_MS`] (so never back), and whether the link is there, in one
/// batch: a `HEAD` costs one D1 call, and writes no row when the time is fresh.
pub(crate) fn touch_link(repo: &str, digest: &Digest, at_ms: u64) -> Result<Vec<Stmt>, StoreError> {
    let (r, d, at, p) = (
        text(repo),
        text(digest.to_string()),
        int(at_ms)?,
        int(LINK_TOUCH_PRECISION_MS)?,
    );
    let ps: [(&str, &Param); 4] = [("r", &r), ("d", &d), ("at", &at), ("p", &p)];
    Ok(vec![
        named(
            "UPDATE links SET linked_ms = :at WHERE repo = :r AND digest = :d \
             AND (linked_ms IS NULL OR linked_ms + :p < :at)",
            &ps,
        )?,
        named(
            "SELECT 1 AS x FROM links WHERE repo = :r AND digest = :d",
            &ps,
        )?,
    ])
}

/// Unreferenced links after `after`: a range of the partial index `links_unreferenced`
/// (no cursor starts after `('', '')`, which every key is above), so a listing reads the
/// garbage, not the registry.
pub(crate) fn unreferenced_links(after: Option<&LinkCursor>, n: usize) -> Result<Stmt, StoreError> {
    let (r, d) = match after {
        Some(c) => (text(c.repo.as_str()), text(c.digest.to_string())),
        None => (text(""), text("")),
    };
    named(
        "SELECT repo, digest, size, linked_ms FROM links \
         WHERE refs = 0 AND (repo, digest) > (:r, :d) ORDER BY repo, digest LIMIT :n",
        &[("r", &r), ("d", &d), ("n", &limit(n))],
    )
}

pub(crate) fn decode_unreferenced(row: &Row) -> Result<UnreferencedLink, StoreError> {
    Ok(UnreferencedLink {
        repo: get_text(row, "repo")?,
        digest: parse_digest(&get_text(row, "digest")?)?,
        size: get_int(row, "size")?,
        linked_ms: opt_int(row, "linked_ms")?,
    })
}

// ---- the manifest index, the outbox, usage ---------------------------------------------

/// Counted manifests of `repo` after `after` (a range of the primary key).
pub(crate) fn list_manifests(
    repo: &str,
    after: Option<&Digest>,
    n: usize,
) -> Result<Stmt, StoreError> {
    named(
        "SELECT digest, media_type, size, subject, pushed_ms, pulled_ms FROM manifests \
         WHERE repo = :r AND digest > :a AND blobs IS NOT NULL ORDER BY digest LIMIT :n",
        &[
            ("r", &text(repo)),
            ("a", &text(after.map(Digest::to_string).unwrap_or_default())),
            ("n", &limit(n)),
        ],
    )
}

pub(crate) fn decode_manifest_entry(row: &Row) -> Result<ManifestEntry, StoreError> {
    Ok(ManifestEntry {
        digest: parse_digest(&get_text(row, "digest")?)?,
        media_type: get_text(row, "media_type")?,
        size: get_int(row, "size")?,
        subject: opt_text(row, "subject")?
            .map(|s| parse_digest(&s))
            .transpose()?,
        pushed_ms: opt_int(row, "pushed_ms")?,
        pulled_ms: opt_int(row, "pulled_ms")?,
    })
}

pub(crate) fn list_tag_entries(
    repo: &str,
    after: Option<&str>,
    n: usize,
) -> Result<Stmt, StoreError> {
    named(
        "SELECT tag, digest, pushed_ms FROM tags WHERE repo = :r AND tag > :a \
         ORDER BY tag LIMIT :n",
        &[
            ("r", &text(repo)),
            ("a", &text(after.unwrap_or_default())),
            ("n", &limit(n)),
        ],
    )
}

pub(crate) fn decode_tag_entry(row: &Row) -> Result<TagEntry, StoreError> {
    Ok(TagEntry {
        tag: get_text(row, "tag")?,
        digest: parse_digest(&get_text(row, "digest")?)?,
        pushed_ms: opt_int(row, "pushed_ms")?,
    })
}

/// Links of `repo` after `after`, every one (those from before link times have none).
pub(crate) fn list_links(repo: &str, after: Option<&Digest>, n: usize) -> Result<Stmt, StoreError> {
    named(
        "SELECT digest, size, linked_ms, refs FROM links WHERE repo = :r AND digest > :a \
         ORDER BY digest LIMIT :n",
        &[
            ("r", &text(repo)),
            ("a", &text(after.map(Digest::to_string).unwrap_or_default())),
            ("n", &limit(n)),
        ],
    )
}

pub(crate) fn decode_link_entry(row: &Row) -> Result<LinkEntry, StoreError> {
    Ok(LinkEntry {
        digest: parse_digest(&get_text(row, "digest")?)?,
        size: get_int(row, "size")?,
        linked_ms: opt_int(row, "linked_ms")?,
        refs: get_int(row, "refs")?,
    })
}

/// Repositories holding `digest` after `after`: a range of `holds`' primary key.
pub(crate) fn repositories_with(
    digest: &Digest,
    after: Option<&str>,
    n: usize,
) -> Result<Stmt, StoreError> {
    named(
        "SELECT repo FROM holds WHERE digest = :d AND repo > :a ORDER BY repo LIMIT :n",
        &[
            ("d", &text(digest.to_string())),
            ("a", &text(after.unwrap_or_default())),
            ("n", &limit(n)),
        ],
    )
}

/// The pull time moved forward only, on a manifest that is there.
pub(crate) fn note_pull(repo: &str, digest: &Digest, at_ms: u64) -> Result<Stmt, StoreError> {
    named(
        "UPDATE manifests SET pulled_ms = :at WHERE repo = :r AND digest = :m \
         AND (pulled_ms IS NULL OR pulled_ms < :at)",
        &[
            ("r", &text(repo)),
            ("m", &text(digest.to_string())),
            ("at", &int(at_ms)?),
        ],
    )
}

pub(crate) fn outbox_after(after: Option<&str>, n: usize) -> Result<Stmt, StoreError> {
    named(
        "SELECT seq, at_ms, change FROM outbox WHERE seq > :a ORDER BY seq LIMIT :n",
        &[("a", &text(after.unwrap_or_default())), ("n", &limit(n))],
    )
}

pub(crate) fn decode_outbox_entry(row: &Row) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        seq: get_text(row, "seq")?,
        at_ms: get_int(row, "at_ms")?,
        change: serde_json::from_str(&get_text(row, "change")?).map_err(other)?,
    })
}

/// The first `n` entries up to and including `upto`.
pub(crate) fn outbox_trim(upto: &str, n: usize) -> Result<Stmt, StoreError> {
    named(
        "DELETE FROM outbox WHERE seq IN \
         (SELECT seq FROM outbox WHERE seq <= :u ORDER BY seq LIMIT :n)",
        &[("u", &text(upto)), ("n", &limit(n))],
    )
}

pub(crate) fn project_usage(project: &str) -> Result<Stmt, StoreError> {
    named(
        "SELECT bytes, blobs FROM usage WHERE project = :p",
        &[("p", &text(project))],
    )
}

pub(crate) fn counts_blob(project: &str, d: &Digest) -> Result<Stmt, StoreError> {
    named(
        "SELECT n FROM project_blobs WHERE project = :p AND digest = :d AND n > 0",
        &[("p", &text(project)), ("d", &text(d.to_string()))],
    )
}

fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|_| other(format!("D1 holds an invalid digest {s:?}")))
}

fn opt_int(row: &Row, name: &str) -> Result<Option<u64>, StoreError> {
    match row.get(name) {
        Some(serde_json::Value::Null) => Ok(None),
        _ => get_int(row, name).map(Some),
    }
}

// ---- the backfill ----------------------------------------------------------------------

/// Where the backfill resumes: links first (the manifests' references need the blob
/// records the links make), then manifests, each after a `(repo, digest)` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Old links after the key.
    Links(Option<(String, String)>),
    /// Old manifests after the key.
    Manifests(Option<(String, String)>),
}

impl Phase {
    /// The checkpoint as kept in `meta` (`links|<repo>|<digest>`, `manifests|…`; `|` is in
    /// no repository name or digest).
    pub(crate) fn checkpoint(&self) -> String {
        let (name, key) = match self {
            Phase::Links(k) => ("links", k),
            Phase::Manifests(k) => ("manifests", k),
        };
        match key {
            Some((r, d)) => format!("{name}|{r}|{d}"),
            None => format!("{name}|"),
        }
    }

    /// A kept checkpoint; none yet is the start.
    pub(crate) fn parse(checkpoint: Option<&str>) -> Result<Self, StoreError> {
        let Some(c) = checkpoint else {
            return Ok(Phase::Links(None));
        };
        let bad = || other(format!("corrupt backfill checkpoint {c:?}"));
        let mut parts = c.splitn(3, '|');
        let name = parts.next().ok_or_else(bad)?;
        let key = match (parts.next(), parts.next()) {
            (Some(""), None) => None,
            (Some(r), Some(d)) => Some((r.to_owned(), d.to_owned())),
            _ => return Err(bad()),
        };
        match name {
            "links" => Ok(Phase::Links(key)),
            "manifests" => Ok(Phase::Manifests(key)),
            _ => Err(bad()),
        }
    }
}

/// The schema version and the checkpoint, one read.
pub(crate) fn backfill_state() -> Stmt {
    Stmt {
        sql: "SELECT k, n, v FROM meta WHERE k IN ('schema', 'backfill')".into(),
        params: Vec::new(),
    }
}

fn after_key(key: &Option<(String, String)>) -> (Param, Param) {
    match key {
        Some((r, d)) => (text(r.as_str()), text(d.as_str())),
        None => (text(""), text("")),
    }
}

/// Up to `n` links after `key`, by primary key.
pub(crate) fn old_links(key: &Option<(String, String)>, n: usize) -> Result<Stmt, StoreError> {
    let (r, d) = after_key(key);
    named(
        "SELECT repo, digest, size FROM links WHERE (repo, digest) > (:r, :d) \
         ORDER BY repo, digest LIMIT :n",
        &[("r", &r), ("d", &d), ("n", &limit(n))],
    )
}

/// Up to `n` uncounted manifests after `key`, by primary key, with the info part of an
/// inline record (the client's bytes stay in D1); a record in parts is read apart.
pub(crate) fn old_manifests(key: &Option<(String, String)>, n: usize) -> Result<Stmt, StoreError> {
    let (r, d) = after_key(key);
    named(
        "SELECT repo, digest, parts, \
         CASE WHEN parts = 0 THEN substr(record, 1, instr(record, char(10)) - 1) END AS info \
         FROM manifests WHERE (repo, digest) > (:r, :d) AND blobs IS NULL \
         ORDER BY repo, digest LIMIT :n",
        &[("r", &r), ("d", &d), ("n", &limit(n))],
    )
}

/// Keeps the checkpoint.
pub(crate) fn set_checkpoint(phase: &Phase) -> Result<Stmt, StoreError> {
    named(
        "INSERT INTO meta (k, v) VALUES ('backfill', :v) \
         ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        &[("v", &text(phase.checkpoint()))],
    )
}

/// The oldest schema version whose finished backfill left a database complete for today's:
/// version 3 added only the partial index `links_unreferenced`, which SQLite builds over
/// the rows there when `0003_link_collection.sql` creates it (`links.refs` is kept since
/// 2). That migration marks such a database 3 itself; this covers one the previous code
/// marked 2 after it (a backfill that finished between the migration and the deploy).
pub(crate) const DONE_SINCE: u32 = 2;

/// The backfill is done: the store is at [`wharf_core::ports::SCHEMA_VERSION`].
pub(crate) fn finish_backfill() -> Result<Vec<Stmt>, StoreError> {
    let v = int(u64::from(wharf_core::ports::SCHEMA_VERSION))?;
    Ok(vec![
        named(
            "INSERT INTO meta (k, v) VALUES ('backfill', '') \
             ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            &[],
        )?,
        named(
            "INSERT INTO meta (k, n) VALUES ('schema', :v) \
             ON CONFLICT (k) DO UPDATE SET n = excluded.n",
            &[("v", &v)],
        )?,
    ])
}

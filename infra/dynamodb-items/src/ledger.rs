//! The records the optional metadata abilities keep in the table (blob records, the reverse
//! index, per-project usage, the outbox, link/manifest/tag times), as SDK-free [`Write`]s,
//! so that wharf-dynamodb (the SDK) and [`crate::DynamoRest`] (the Worker upload front, over
//! JSON) put the same items in the same transaction.
//!
//! Every decision the reference bookkeeping (`wharf_core::ledger`) makes from its own entries
//! ("is this link new?", "was this the project's last copy?") is made here from items the
//! caller read just before, and each write carries a condition on what was read: if anything
//! changed in between, the transaction is cancelled (`ConditionalCheckFailed`) and the caller
//! reads again and retries.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | blob record | `BLOB#<digest>` | `BLOB` | `size`, `links`, `refs`, `touched`, `state` (`live`/`marked`/`deleting`), `at`; while `links` = 0: `gsi1pk` = `UNLINKED#<alg>:<first hex char>`, `gsi1sk` = `<digest>` |
//! | reverse index | `BLOB#<digest>` | `REPO#<repo>` | `l` (linked as a blob), `m` (held as a manifest): present or absent |
//! | project's count of a digest | `PROJECT#<project>` | `PBLOB#<digest>` | `n`: repositories of the project linking it |
//! | project usage, 16 shards | `PROJECT#<project>` | `USAGE#<first hex char of the digest>` | `bytes`, `blobs` |
//! | pull time | `REPO#<repo>` | `PULL#<digest>` | `pulled` |
//! | outbox entry, 4 shards | `OUTBOX#<0-3>` | `<at_ms:016>-<16 random hex>` | `v` (the entry, JSON) |
//! | schema version, backfill checkpoint | `META` | `SCHEMA`, `BACKFILL` | `version`; `cp` |
//!
//! Link items gain `linked` and `refs`, manifest items `mt`, `size`, `pushed` and `counted`
//! (its references are in the counters), tag items `pushed`.

use crate::{Attr, Item, get_n, get_s, key, repo_pk};
use std::collections::BTreeMap;
use wharf_core::model::name::project_of;
use wharf_core::ports::{BlobRecord, BlobState, Change, OutboxEntry};
use wharf_core::{Digest, StoreError};

/// Reads-then-writes a content write tries before giving up: each attempt reads what it
/// decides on and writes on condition that it is unchanged.
pub const ATTEMPTS: u32 = 6;

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// The kind of one write in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put a whole item.
    Put(Item),
    /// Update the item with this key by an update expression.
    Update {
        /// The item's key.
        key: Item,
        /// `SET … REMOVE …`.
        expr: String,
    },
    /// Delete the item with this key.
    Delete(Item),
    /// Only check the condition on the item with this key.
    Check(Item),
}

/// One write of a `TransactWriteItems`, without an SDK. Attribute names are written `#name`
/// in expressions and conditions; [`Write::names`] maps each to itself (so reserved words
/// such as `size` and `state` need no care). Values are `:name`, added with
/// [`Write::value`]; only those the expressions use are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// What it does.
    pub op: Op,
    /// Its condition, if any.
    pub cond: Option<String>,
    values: Item,
}

impl Write {
    /// Puts `item`.
    pub fn put(item: Item) -> Self {
        Self::of(Op::Put(item))
    }
    /// Updates the item at `key` by `expr`.
    pub fn update(key: Item, expr: impl Into<String>) -> Self {
        Self::of(Op::Update {
            key,
            expr: expr.into(),
        })
    }
    /// Deletes the item at `key`.
    pub fn delete(key: Item) -> Self {
        Self::of(Op::Delete(key))
    }
    /// Checks `cond` on the item at `key` (which need not exist).
    pub fn check(key: Item, cond: impl Into<String>) -> Self {
        Self::of(Op::Check(key)).when(cond)
    }
    fn of(op: Op) -> Self {
        Self {
            op,
            cond: None,
            values: Item::new(),
        }
    }
    /// Adds a condition (`AND` with one already there).
    pub fn when(mut self, cond: impl Into<String>) -> Self {
        let c = cond.into();
        self.cond = Some(match self.cond.take() {
            Some(old) => format!("({old}) AND ({c})"),
            None => c,
        });
        self
    }
    /// Binds value `:name`.
    pub fn value(mut self, name: &str, v: Attr) -> Self {
        self.values.insert(format!(":{name}"), v);
        self
    }
    /// The key of the item written.
    pub fn key(&self) -> Item {
        match &self.op {
            Op::Put(item) => item
                .iter()
                .filter(|(k, _)| *k == "pk" || *k == "sk")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Op::Update { key, .. } | Op::Delete(key) | Op::Check(key) => key.clone(),
        }
    }
    fn texts(&self) -> impl Iterator<Item = &str> {
        let expr = match &self.op {
            Op::Update { expr, .. } => Some(expr.as_str()),
            _ => None,
        };
        expr.into_iter().chain(self.cond.as_deref())
    }
    /// `#name` → `name` for every name the expressions use.
    pub fn names(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for text in self.texts() {
            let mut rest = text;
            while let Some(i) = rest.find('#') {
                let tail = &rest[i + 1..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end > 0 {
                    out.insert(format!("#{}", &tail[..end]), tail[..end].to_owned());
                }
                rest = &tail[end..];
            }
        }
        out
    }
    /// The values the expressions use.
    pub fn values(&self) -> Item {
        self.values
            .iter()
            .filter(|(k, _)| {
                self.texts().any(|t| {
                    t.match_indices(k.as_str()).any(|(i, _)| {
                        !t[i + k.len()..]
                            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    })
                })
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One transaction item in DynamoDB's JSON form (`{"Put": {…}}` …) for table `table`.
pub fn write_json(w: &Write, table: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    let (kind, mut body) = match &w.op {
        Op::Put(item) => ("Put", json!({ "Item": crate::to_json(item) })),
        Op::Update { key, expr } => (
            "Update",
            json!({ "Key": crate::to_json(key), "UpdateExpression": expr }),
        ),
        Op::Delete(key) => ("Delete", json!({ "Key": crate::to_json(key) })),
        Op::Check(key) => ("ConditionCheck", json!({ "Key": crate::to_json(key) })),
    };
    body["TableName"] = json!(table);
    if let Some(c) = &w.cond {
        body["ConditionExpression"] = json!(c);
    }
    let names = w.names();
    if !names.is_empty() {
        body["ExpressionAttributeNames"] = json!(names);
    }
    let values = w.values();
    if !values.is_empty() {
        body["ExpressionAttributeValues"] = crate::to_json(&values);
    }
    let mut out = serde_json::Map::new();
    out.insert(kind.to_owned(), body);
    Value::Object(out)
}

fn n(v: u64) -> Attr {
    Attr::N(v)
}

fn s(v: impl Into<String>) -> Attr {
    Attr::S(v.into())
}

fn has(item: Option<&Item>, name: &str) -> bool {
    item.is_some_and(|i| i.contains_key(name))
}

// ---- keys ----

/// Partition of a blob digest: its record and its reverse index.
pub fn blob_pk(d: &Digest) -> String {
    format!("BLOB#{d}")
}

/// Key of the blob record of `d`.
pub fn record_key(d: &Digest) -> Item {
    key(blob_pk(d), "BLOB")
}

/// Key of the reverse-index item: which ways `repo` holds `d`.
pub fn reverse_key(d: &Digest, repo: &str) -> Item {
    key(blob_pk(d), format!("REPO#{repo}"))
}

/// Partition of a project's usage.
pub fn project_pk(project: &str) -> String {
    format!("PROJECT#{project}")
}

/// Key of the count of `project`'s repositories linking `d`.
pub fn pblob_key(project: &str, d: &Digest) -> Item {
    key(project_pk(project), format!("PBLOB#{d}"))
}

/// Shards of a project's usage counter: a busy project's parallel layer pushes update
/// sixteen items, not one (an item takes one transaction at a time).
pub const USAGE_SHARDS: u32 = 16;

/// Which usage shard `d` is counted in (its first hex digit), so its add and its removal
/// meet in the same item.
pub fn usage_shard(d: &Digest) -> String {
    d.hex()[..1].to_owned()
}

/// Key of `project`'s usage shard for `d`.
pub fn usage_key(project: &str, d: &Digest) -> Item {
    key(project_pk(project), format!("USAGE#{}", usage_shard(d)))
}

/// The unlinked-blob index partition of `d` (`gsi1`): by algorithm and first hex digit, so
/// reading the shards in name order reads the work list in digest order.
pub fn unlinked_index_pk(d: &Digest) -> String {
    format!("UNLINKED#{}:{}", d.algorithm().as_str(), &d.hex()[..1])
}

/// Every unlinked-index partition, in digest order.
pub fn unlinked_shards() -> Vec<String> {
    let mut out = Vec::new();
    for alg in ["sha256", "sha512"] {
        for h in "0123456789abcdef".chars() {
            out.push(format!("UNLINKED#{alg}:{h}"));
        }
    }
    out
}

/// Key of the link item of `d` in `repo`.
pub fn link_key(repo: &str, d: &Digest) -> Item {
    crate::link_key(repo, d)
}

/// Key of the manifest item `d` of `repo`.
pub fn manifest_key(repo: &str, d: &Digest) -> Item {
    key(repo_pk(repo), format!("MANIFEST#{d}"))
}

/// Key of the pull-time item of manifest `d` of `repo`.
pub fn pull_key(repo: &str, d: &Digest) -> Item {
    key(repo_pk(repo), format!("PULL#{d}"))
}

/// The one transaction a pull writes: the manifest still there (a check), its pull-time
/// item (never moved back), and the pull's audit record. A pull within the hour already
/// recorded rewrites the same time, so the event is never refused with it; a pull older
/// than the one recorded (a late request) or of a manifest deleted meanwhile fails the
/// condition, and the caller then puts the event alone: the only case of a second write.
/// Without an event, a pull already recorded fails the condition and writes nothing.
pub fn pull_writes(
    repo: &str,
    digest: &Digest,
    at_ms: u64,
    event: Option<(&str, &[u8])>,
) -> Vec<Write> {
    let newer = if event.is_some() {
        "attribute_not_exists(#pulled) OR #pulled <= :at"
    } else {
        "attribute_not_exists(#pulled) OR #pulled < :at"
    };
    let mut writes = vec![
        Write::check(manifest_key(repo, digest), "attribute_exists(pk)"),
        Write::update(pull_key(repo, digest), "SET #pulled = :at")
            .when(newer)
            .value("at", Attr::N(at_ms)),
    ];
    if let Some((id, raw)) = event {
        writes.push(Write::put(crate::doc_item("audit", id, raw)));
    }
    writes
}

/// Key of a store-wide marker (`SCHEMA`, `BACKFILL`).
pub fn meta_key(name: &str) -> Item {
    key("META", name)
}

// ---- blob records ----

/// Where the record `item` says its blob is.
pub fn state_of(item: &Item) -> BlobState {
    let at = get_n(item, "at").unwrap_or(0);
    match get_s(item, "state") {
        Some("marked") => BlobState::Marked { at_ms: at },
        Some("deleting") => BlobState::Deleting { since_ms: at },
        _ => BlobState::Live,
    }
}

/// The record an item holds.
pub fn record_of(d: &Digest, item: &Item) -> BlobRecord {
    BlobRecord {
        digest: d.clone(),
        size: get_n(item, "size").unwrap_or(0),
        links: get_n(item, "links").unwrap_or(0),
        refs: get_n(item, "refs").unwrap_or(0),
        touched_ms: get_n(item, "touched").unwrap_or(0),
        state: state_of(item),
    }
}

/// `Precondition` if the record says the blob is being deleted: nothing may start to rely
/// on it (a link, a manifest referencing it).
pub fn check_linkable(d: &Digest, record: Option<&Item>) -> Result<(), StoreError> {
    match record.map(state_of) {
        Some(BlobState::Deleting { .. }) => Err(StoreError::Precondition(format!(
            "blob {d} is being garbage-collected; upload it again"
        ))),
        _ => Ok(()),
    }
}

fn new_record(d: &Digest, size: u64, links: u64, touched: u64) -> Item {
    let mut item = record_key(d);
    item.insert("size".into(), n(size));
    item.insert("links".into(), n(links));
    item.insert("refs".into(), n(0));
    item.insert("touched".into(), n(touched));
    item.insert("state".into(), s("live"));
    if links == 0 {
        item.insert("gsi1pk".into(), s(unlinked_index_pk(d)));
        item.insert("gsi1sk".into(), s(d.to_string()));
    }
    item
}

/// A use of an existing record at `at`: touched (never back), made live again (a mark
/// cleared), conditioned on it not being deleted meanwhile and on no later touch having
/// landed. `extra_set`/`extra_remove` are added to the update.
fn use_record(
    d: &Digest,
    record: &Item,
    at: u64,
    extra_set: &[&str],
    extra_remove: &[&str],
) -> Write {
    let touched = get_n(record, "touched").unwrap_or(0);
    let mut sets: Vec<&str> = vec!["#state = :live"];
    sets.extend_from_slice(extra_set);
    let mut w_cond = vec!["attribute_exists(pk)", "#state <> :deleting"];
    if at > touched {
        sets.push("#touched = :at");
        w_cond.push("(attribute_not_exists(#touched) OR #touched <= :at)");
    }
    let mut removes = vec!["#at"];
    removes.extend_from_slice(extra_remove);
    Write::update(
        record_key(d),
        format!("SET {} REMOVE {}", sets.join(", "), removes.join(", ")),
    )
    .when(w_cond.join(" AND "))
    .value("live", s("live"))
    .value("deleting", s("deleting"))
    .value("at", n(at))
}

/// What `link_blob` reads before it writes: the reverse-index item of (digest, repo), the
/// blob record, the project's count item. Their keys, in that order.
pub fn link_reads(repo: &str, d: &Digest) -> [Item; 3] {
    [
        reverse_key(d, repo),
        record_key(d),
        pblob_key(project_of(repo), d),
    ]
}

/// The items `link_reads` found.
#[derive(Clone, Debug, Default)]
pub struct LinkSeen {
    /// The reverse-index item.
    pub reverse: Option<Item>,
    /// The blob record.
    pub record: Option<Item>,
    /// The project's count item.
    pub pblob: Option<Item>,
}

/// The writes of `repo` linking `d` (`size` bytes), given what [`link_reads`] found, in one
/// transaction with the link item itself. With `at` (a live link): the record touched and
/// made live, the link time, an outbox entry. Without (the backfill counting an old link):
/// only what the link is not counted in yet. The link is new, and counted (record `links`,
/// reverse `l`, the project's count and, for its first copy, usage), only if the reverse
/// item has no `l`; so live writes and the backfill never count one twice. `Precondition`
/// if the blob is being deleted (a live link only: the backfill counts what is there).
pub fn link_writes(
    repo: &str,
    d: &Digest,
    size: u64,
    at: Option<u64>,
    seen: &LinkSeen,
) -> Result<Vec<Write>, StoreError> {
    if at.is_some() {
        check_linkable(d, seen.record.as_ref())?;
    }
    let is_new = !has(seen.reverse.as_ref(), "l");
    let size_of_record = seen
        .record
        .as_ref()
        .and_then(|r| get_n(r, "size").ok())
        .unwrap_or(size);
    let mut out = Vec::new();
    // The blob record.
    match (&seen.record, at) {
        (None, _) => {
            let item = new_record(d, size, u64::from(is_new), at.unwrap_or(0));
            // Counted by another link meanwhile (new) or not: either way the record must
            // not have appeared since the read.
            let mut item = item;
            if !is_new {
                item.remove("gsi1pk");
                item.remove("gsi1sk");
            }
            out.push(Write::put(item).when("attribute_not_exists(pk)"));
        }
        (Some(r), Some(at)) => {
            let sets: &[&str] = if is_new {
                &["#links = #links + :one"]
            } else {
                &[]
            };
            out.push(use_record(d, r, at, sets, &["#gsi1pk", "#gsi1sk"]).value("one", n(1)));
        }
        (Some(_), None) if is_new => out.push(
            Write::update(
                record_key(d),
                "SET #links = #links + :one REMOVE #gsi1pk, #gsi1sk",
            )
            .when("attribute_exists(pk)")
            .value("one", n(1)),
        ),
        (Some(_), None) => {}
    }
    // The reverse index: the decision's own entry.
    let rkey = reverse_key(d, repo);
    match (is_new, &seen.reverse) {
        (true, None) => {
            let mut item = rkey;
            item.insert("l".into(), n(1));
            out.push(Write::put(item).when("attribute_not_exists(pk)"));
        }
        (true, Some(_)) => out.push(
            Write::update(rkey, "SET #l = :one")
                .when("attribute_exists(pk) AND attribute_not_exists(#l)")
                .value("one", n(1)),
        ),
        (false, _) => out.push(Write::check(rkey, "attribute_exists(#l)")),
    }
    // The link item: size and link time, keeping its reference count.
    if let Some(at) = at {
        out.push(
            Write::update(link_key(repo, d), "SET #size = :size, #linked = :at")
                .value("size", n(size))
                .value("at", n(at)),
        );
    }
    // The project's count, and usage for its first copy.
    if is_new {
        let project = project_of(repo);
        match &seen.pblob {
            None => {
                let mut item = pblob_key(project, d);
                item.insert("n".into(), n(1));
                out.push(Write::put(item).when("attribute_not_exists(pk)"));
                out.push(
                    Write::update(
                        usage_key(project, d),
                        "SET #bytes = if_not_exists(#bytes, :zero) + :size, \
                         #blobs = if_not_exists(#blobs, :zero) + :one",
                    )
                    .value("zero", n(0))
                    .value("size", n(size_of_record))
                    .value("one", n(1)),
                );
            }
            Some(_) => out.push(
                Write::update(pblob_key(project, d), "SET #n = #n + :one")
                    .when("attribute_exists(pk)")
                    .value("one", n(1)),
            ),
        }
    }
    if let Some(at) = at {
        out.push(outbox_write(
            at,
            Change::BlobLinked {
                repository: repo.to_owned(),
                digest: d.clone(),
                size,
            },
        )?);
    }
    Ok(out)
}

/// What `unlink_blob` reads: the link item, then [`link_reads`]'s three.
pub fn unlink_reads(repo: &str, d: &Digest) -> [Item; 4] {
    let [r, b, p] = link_reads(repo, d);
    [link_key(repo, d), r, b, p]
}

/// The writes of removing `repo`'s link of `d`, given the link item and what
/// [`link_reads`] found; `None` if there is no link. Uncounts what the link was counted in
/// (if it was: the reverse item's `l`), puts the record on the unlinked work list when its
/// last link goes, and the project's usage loses the blob with its last copy.
pub fn unlink_writes(
    repo: &str,
    d: &Digest,
    link: Option<&Item>,
    seen: &LinkSeen,
    at: u64,
) -> Result<Option<Vec<Write>>, StoreError> {
    if link.is_none() {
        return Ok(None);
    }
    let mut out = vec![Write::delete(link_key(repo, d)).when("attribute_exists(pk)")];
    let rkey = reverse_key(d, repo);
    if has(seen.reverse.as_ref(), "l") {
        if has(seen.reverse.as_ref(), "m") {
            out.push(
                Write::update(rkey, "REMOVE #l")
                    .when("attribute_exists(#l) AND attribute_exists(#m)"),
            );
        } else {
            out.push(Write::delete(rkey).when("attribute_exists(#l) AND attribute_not_exists(#m)"));
        }
        if let Some(r) = &seen.record {
            let links = get_n(r, "links").unwrap_or(0);
            let left = links.saturating_sub(1);
            let expr = if left == 0 {
                "SET #links = :left, #gsi1pk = :gpk, #gsi1sk = :gsk"
            } else {
                "SET #links = :left"
            };
            out.push(
                Write::update(record_key(d), expr)
                    .when("#links = :links")
                    .value("left", n(left))
                    .value("links", n(links))
                    .value("gpk", s(unlinked_index_pk(d)))
                    .value("gsk", s(d.to_string())),
            );
            let project = project_of(repo);
            let count = seen
                .pblob
                .as_ref()
                .and_then(|p| get_n(p, "n").ok())
                .unwrap_or(0);
            let pkey = pblob_key(project, d);
            if count <= 1 {
                out.push(match &seen.pblob {
                    Some(_) => Write::delete(pkey).when("#n = :n").value("n", n(count)),
                    None => Write::check(pkey, "attribute_not_exists(pk)"),
                });
                let size = get_n(r, "size").unwrap_or(0);
                out.push(
                    Write::update(
                        usage_key(project, d),
                        "SET #bytes = if_not_exists(#bytes, :zero) - :size, \
                         #blobs = if_not_exists(#blobs, :zero) - :one",
                    )
                    .value("zero", n(0))
                    .value("size", n(size))
                    .value("one", n(1)),
                );
            } else {
                out.push(
                    Write::update(pkey, "SET #n = :left")
                        .when("#n = :n")
                        .value("n", n(count))
                        .value("left", n(count - 1)),
                );
            }
        }
    } else {
        out.push(Write::check(rkey, "attribute_not_exists(#l)"));
    }
    out.push(outbox_write(
        at,
        Change::BlobUnlinked {
            repository: repo.to_owned(),
            digest: d.clone(),
        },
    )?);
    Ok(Some(out))
}

/// `touch_blob`: a record for freshly committed bytes (on the unlinked work list until a
/// link), or a touch of the one there; `Precondition` if it is being deleted.
pub fn touch_write(
    d: &Digest,
    size: u64,
    at: u64,
    record: Option<&Item>,
) -> Result<Write, StoreError> {
    check_linkable(d, record)?;
    Ok(match record {
        None => Write::put(new_record(d, size, 0, at)).when("attribute_not_exists(pk)"),
        Some(r) => use_record(d, r, at, &[], &[]),
    })
}

/// A manifest's (new or uncounted) reference to blob `d` in `repo` (`add`), or its
/// removal, given the link item and the blob record as read: +1 on `refs` of each that
/// exists (conditioned on its still being there, and on the record not being deleted); a
/// removal only decrements what is above zero. Nothing for one that does not exist, as in
/// the ledger (the core links every blob before a manifest may reference it; a link made
/// between the read and the write goes uncounted in `refs`, which collection never deletes
/// by: it confirms with the reverse index).
pub fn ref_writes(
    repo: &str,
    d: &Digest,
    link: Option<&Item>,
    record: Option<&Item>,
    add: bool,
) -> Vec<Write> {
    let mut out = Vec::new();
    for (k, it, is_record) in [
        (link_key(repo, d), link, false),
        (record_key(d), record, true),
    ] {
        match (it, add) {
            (Some(_), true) => {
                let mut w = Write::update(k, "SET #refs = if_not_exists(#refs, :zero) + :one")
                    .when("attribute_exists(pk)")
                    .value("zero", n(0))
                    .value("one", n(1));
                if is_record {
                    w = w
                        .when("#state <> :deleting")
                        .value("deleting", s("deleting"));
                }
                out.push(w);
            }
            (Some(i), false) if get_n(i, "refs").unwrap_or(0) > 0 => out.push(
                Write::update(k, "SET #refs = #refs - :one")
                    .when("attribute_exists(pk) AND #refs >= :one")
                    .value("one", n(1)),
            ),
            _ => {}
        }
    }
    out
}

/// What takes back a reference-count increment of [`ref_writes`] (for a manifest write that
/// failed after its counts were written); `None` for a check.
pub fn undo_ref(w: &Write) -> Option<Write> {
    match &w.op {
        Op::Update { key, .. } => Some(
            Write::update(key.clone(), "SET #refs = #refs - :one")
                .when("attribute_exists(pk) AND #refs >= :one")
                .value("one", n(1)),
        ),
        _ => None,
    }
}

/// The distinct digests of `blobs`, in digest order (a manifest counts once per blob).
pub fn distinct(blobs: &[Digest]) -> Vec<Digest> {
    let mut v = blobs.to_vec();
    v.sort_by_key(Digest::to_string);
    v.dedup();
    v
}

// ---- the outbox ----

/// Partitions of the outbox, so content writes do not all land in one partition; a reader
/// merges them by `seq`.
pub const OUTBOX_SHARDS: u32 = 4;

/// Partition key of outbox shard `shard`.
pub fn outbox_pk(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}

fn random_u64() -> Result<u64, StoreError> {
    let mut b = [0u8; 8];
    getrandom02::getrandom(&mut b).map_err(|e| other(format!("no randomness: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// The outbox entry of `change` made at `at_ms`, as a put that cannot replace another's
/// (`seq` = `<at_ms:016>-<16 random hex digits>`).
pub fn outbox_write(at_ms: u64, change: Change) -> Result<Write, StoreError> {
    let r = random_u64()?;
    let seq = format!("{at_ms:016}-{r:016x}");
    let shard = (r % u64::from(OUTBOX_SHARDS)) as u32;
    let entry = OutboxEntry {
        seq: seq.clone(),
        at_ms,
        change,
    };
    let mut item = key(outbox_pk(shard), seq);
    item.insert("v".into(), s(serde_json::to_string(&entry).map_err(other)?));
    Ok(Write::put(item).when("attribute_not_exists(pk)"))
}

/// The entry an outbox item holds.
pub fn outbox_from(item: &Item) -> Result<OutboxEntry, StoreError> {
    serde_json::from_str(get_s(item, "v").ok_or_else(|| other("outbox item lacks v"))?)
        .map_err(other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: &[u8]) -> Digest {
        Digest::sha256_of(x)
    }

    #[test]
    fn names_and_values_are_those_the_expressions_use() {
        let w = Write::update(key("a", "b"), "SET #size = :size, #n = #n + :one")
            .when("#state <> :deleting")
            .value("size", n(1))
            .value("one", n(1))
            .value("unused", n(2))
            .value("deleting", s("deleting"))
            .value("s", n(9));
        let names: Vec<String> = w.names().into_keys().collect();
        assert_eq!(names, ["#n", "#size", "#state"]);
        let values: Vec<String> = w.values().into_keys().collect();
        assert_eq!(
            values,
            [":deleting", ":one", ":size"],
            "not :s, not :unused"
        );
        let j = write_json(&w, "t");
        assert_eq!(j["Update"]["TableName"], "t");
        assert_eq!(j["Update"]["ExpressionAttributeNames"]["#state"], "state");
    }

    #[test]
    fn a_link_is_new_only_without_the_reverse_flag() {
        let a = d(b"a");
        let fresh = link_writes("p/r", &a, 5, Some(10), &LinkSeen::default()).expect("w");
        // Record, reverse, link item, project count, usage, outbox.
        assert_eq!(fresh.len(), 6, "{fresh:#?}");
        let mut rev = reverse_key(&a, "p/r");
        rev.insert("l".into(), n(1));
        let mut rec = new_record(&a, 5, 1, 10);
        rec.remove("gsi1pk");
        let seen = LinkSeen {
            reverse: Some(rev),
            record: Some(rec.clone()),
            pblob: None,
        };
        let again = link_writes("p/r", &a, 5, Some(11), &seen).expect("w");
        // Record touched, reverse checked, link item, outbox: nothing counted.
        assert_eq!(again.len(), 4, "{again:#?}");
        assert!(matches!(again[1].op, Op::Check(_)));
        assert!(
            link_writes("p/r", &a, 5, None, &seen)
                .expect("w")
                .iter()
                .all(|w| matches!(w.op, Op::Check(_))),
            "the backfill finds it counted"
        );
        rec.insert("state".into(), s("deleting"));
        let deleting = LinkSeen {
            record: Some(rec),
            ..LinkSeen::default()
        };
        assert!(matches!(
            link_writes("p/r", &a, 5, Some(12), &deleting),
            Err(StoreError::Precondition(_))
        ));
    }

    #[test]
    fn shards_keep_digest_order() {
        let shards = unlinked_shards();
        let mut sorted = shards.clone();
        sorted.sort();
        assert_eq!(shards, sorted);
        assert_eq!(shards.len(), 32);
        let a = d(b"x");
        assert!(shards.contains(&unlinked_index_pk(&a)));
        assert_eq!(usage_shard(&a).len(), 1);
    }
}

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
//! Link items gain `linked` and `refs`, and while `refs` = 0 (no manifest of the repository
//! references them) the unreferenced-link work list: `gsi1pk` = `UNREFERENCED#<first hex
//! char of the digest>`, `gsi1sk` = `<repo>#<digest>` ([`lists`] reads it). Manifest items
//! gain `mt`, `size`, `pushed` and `counted` (its references are in the counters), tag items
//! `pushed`.

pub mod lists;

use crate::{Attr, Item, get_n, get_s, key, repo_pk};
use std::collections::BTreeMap;
use wharf_core::model::name::project_of;
use wharf_core::ports::{BlobRecord, BlobState, Change, Cleared, OutboxEntry, Usage};
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

/// The request body of `w` alone (table, key or item, expressions), without its kind.
fn body_json(w: &Write, table: &str) -> serde_json::Value {
    use serde_json::json;
    let mut body = match &w.op {
        Op::Put(item) => json!({ "Item": crate::to_json(item) }),
        Op::Update { key, expr } => json!({ "Key": crate::to_json(key), "UpdateExpression": expr }),
        Op::Delete(key) | Op::Check(key) => json!({ "Key": crate::to_json(key) }),
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
    body
}

/// One transaction item in DynamoDB's JSON form (`{"Put": {…}}` …) for table `table`.
pub fn write_json(w: &Write, table: &str) -> serde_json::Value {
    let kind = match &w.op {
        Op::Put(_) => "Put",
        Op::Update { .. } => "Update",
        Op::Delete(_) => "Delete",
        Op::Check(_) => "ConditionCheck",
    };
    let mut out = serde_json::Map::new();
    out.insert(kind.to_owned(), body_json(w, table));
    serde_json::Value::Object(out)
}

/// `w` as a request of its own (half a transaction's cost, for a write that stands alone):
/// the operation (`PutItem`, `UpdateItem`, `DeleteItem`) and its body; `None` for a check,
/// which only a transaction has.
pub fn single_json(w: &Write, table: &str) -> Option<(&'static str, serde_json::Value)> {
    let op = match &w.op {
        Op::Put(_) => "PutItem",
        Op::Update { .. } => "UpdateItem",
        Op::Delete(_) => "DeleteItem",
        Op::Check(_) => return None,
    };
    Some((op, body_json(w, table)))
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

/// Sort-key prefix of a project's usage shards.
pub const USAGE_PREFIX: &str = "USAGE#";

/// Key of `project`'s usage shard for `d`.
pub fn usage_key(project: &str, d: &Digest) -> Item {
    key(
        project_pk(project),
        format!("{USAGE_PREFIX}{}", usage_shard(d)),
    )
}

/// A project's usage from its shards' `bytes` and `blobs`, as DynamoDB's number strings
/// (either store's item type gives them). Summed as signed numbers: each shard's adds and
/// removals are of the same digests, so only the sum is ever read.
pub fn usage_sum<'a>(shards: impl IntoIterator<Item = [Option<&'a str>; 2]>) -> Usage {
    let n = |v: Option<&str>| v.and_then(|v| v.parse::<i128>().ok()).unwrap_or(0);
    let (bytes, blobs) = shards
        .into_iter()
        .fold((0i128, 0i128), |(b, c), [bytes, blobs]| {
            (b + n(bytes), c + n(blobs))
        });
    Usage {
        bytes: u64::try_from(bytes.max(0)).unwrap_or(u64::MAX),
        blobs: u64::try_from(blobs.max(0)).unwrap_or(u64::MAX),
    }
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

/// Shards of the unreferenced-link work list (`gsi1`), by the digest's first hex digit:
/// every link and every manifest write updates it, and an index partition takes about 1,000
/// writes a second (a listing merges the shards, see [`lists::unreferenced_links`]).
pub const UNREFERENCED_SHARDS: u32 = 16;

/// The unreferenced-link index partition of a link of `d`.
pub fn unreferenced_index_pk(d: &Digest) -> String {
    format!("UNREFERENCED#{}", &d.hex()[..1])
}

/// The unreferenced-link index sort key: `#` sorts before every character a repository name
/// may hold, so these keys sort as the (repository, digest) pairs do.
pub fn unreferenced_index_sk(repo: &str, d: &Digest) -> String {
    format!("{repo}#{d}")
}

/// Every unreferenced-link index partition.
pub fn unreferenced_shards() -> Vec<String> {
    "0123456789abcdef"
        .chars()
        .map(|h| format!("UNREFERENCED#{h}"))
        .collect()
}

/// Key of the link item of `d` in `repo`.
pub fn link_key(repo: &str, d: &Digest) -> Item {
    crate::link_key(repo, d)
}

/// The repository and digest a link item's key names; `None` for any other key.
pub fn link_of(key: &Item) -> Option<(String, Digest)> {
    let repo = get_s(key, "pk")?.strip_prefix("REPO#")?;
    let d = get_s(key, "sk")?.strip_prefix("BLOB#")?.parse().ok()?;
    Some((repo.to_owned(), d))
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
/// on it (a manifest referencing it, a touch of its record).
pub fn check_not_deleting(d: &Digest, record: Option<&Item>) -> Result<(), StoreError> {
    match record.map(state_of) {
        Some(BlobState::Deleting { .. }) => Err(StoreError::Precondition(format!(
            "blob {d} is being garbage-collected; upload it again"
        ))),
        _ => Ok(()),
    }
}

/// `Precondition` unless `d` may be linked: it needs a record that is not being deleted.
/// Without one, collection may have deleted its bytes; `touch_blob`, which the core calls
/// before it commits or mounts a blob, makes one.
pub fn check_linkable(d: &Digest, record: Option<&Item>) -> Result<(), StoreError> {
    if record.is_none() {
        return Err(StoreError::Precondition(format!(
            "blob {d} has no record (it may have been garbage-collected); upload it again"
        )));
    }
    check_not_deleting(d, record)
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

/// What a link write (`link_blob`, `unlink_blob`, `collect_link`, the backfill's count)
/// reads before it writes: the link item, the reverse-index item of (digest, repo), the
/// blob record, the project's count item. Their keys, in that order.
pub fn link_reads(repo: &str, d: &Digest) -> [Item; 4] {
    [
        link_key(repo, d),
        reverse_key(d, repo),
        record_key(d),
        pblob_key(project_of(repo), d),
    ]
}

/// The items `link_reads` found.
#[derive(Clone, Debug, Default)]
pub struct LinkSeen {
    /// The link item.
    pub link: Option<Item>,
    /// The reverse-index item.
    pub reverse: Option<Item>,
    /// The blob record.
    pub record: Option<Item>,
    /// The project's count item.
    pub pblob: Option<Item>,
}

impl LinkSeen {
    /// What a read of [`link_reads`]' keys found, in their order.
    pub fn from_found(found: Vec<Option<Item>>) -> Result<Self, StoreError> {
        let [link, reverse, record, pblob]: [Option<Item>; 4] = found
            .try_into()
            .map_err(|_| other("BatchGetItem answered badly"))?;
        Ok(Self {
            link,
            reverse,
            record,
            pblob,
        })
    }
}

/// A link item's count of references (none kept yet: 0).
fn refs_of(link: &Item) -> u64 {
    get_n(link, "refs").unwrap_or(0)
}

/// An update of the link item of `d` in `repo` setting `sets` and leaving its `refs` as read
/// (`refs`), with the unreferenced-link list kept by it: index keys while `refs` is 0, none
/// otherwise. Conditioned on `refs` being still so, since the keys depend on it.
fn link_update(repo: &str, d: &Digest, sets: &[&str], refs: u64) -> Write {
    let mut sets = sets.to_vec();
    let (expr, cond) = if refs == 0 {
        sets.extend([
            "#refs = if_not_exists(#refs, :zero)",
            "#gsi1pk = :upk",
            "#gsi1sk = :usk",
        ]);
        (
            format!("SET {}", sets.join(", ")),
            "attribute_not_exists(#refs) OR #refs = :zero",
        )
    } else if sets.is_empty() {
        ("REMOVE #gsi1pk, #gsi1sk".to_owned(), "#refs > :zero")
    } else {
        (
            format!("SET {} REMOVE #gsi1pk, #gsi1sk", sets.join(", ")),
            "#refs > :zero",
        )
    };
    Write::update(link_key(repo, d), expr)
        .when(cond)
        .value("zero", n(0))
        .value("upk", s(unreferenced_index_pk(d)))
        .value("usk", s(unreferenced_index_sk(repo, d)))
}

/// The writes of `repo` linking `d` (`size` bytes), given what [`link_reads`] found, in one
/// transaction. With `at` (a live link): the link item (size, time, and on the
/// unreferenced-link list while no manifest references it), the record touched and made
/// live, an outbox entry; `Precondition` without a record or while it is being deleted.
/// Without (the backfill counting a link that is there): only what it is not counted in
/// yet, and its place on the unreferenced-link list; nothing if the link went meanwhile.
/// The link is new, and counted (record `links`, reverse `l`, the project's count and, for
/// its first copy, usage), only if the reverse item has no `l`; so live writes and the
/// backfill never count one twice.
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
    let mut out = Vec::new();
    // The link item: size and link time, keeping its reference count; the work list.
    match (at, &seen.link) {
        (Some(at), link) => {
            let refs = link.as_ref().map_or(0, refs_of);
            out.push(
                link_update(repo, d, &["#size = :size", "#linked = :at"], refs)
                    .value("size", n(size))
                    .value("at", n(at)),
            );
        }
        // Unlinked since the backfill read it: the unlink decided.
        (None, None) => return Ok(Vec::new()),
        (None, Some(l)) => {
            let refs = refs_of(l);
            let listed = l.contains_key("gsi1pk");
            let right = l.contains_key("refs") && (refs == 0) == listed;
            out.push(if right {
                Write::check(link_key(repo, d), "attribute_exists(pk)")
            } else {
                link_update(repo, d, &[], refs).when("attribute_exists(pk)")
            });
        }
    }
    let is_new = !has(seen.reverse.as_ref(), "l");
    let size_of_record = seen
        .record
        .as_ref()
        .and_then(|r| get_n(r, "size").ok())
        .unwrap_or(size);
    // The blob record.
    match (&seen.record, at) {
        (None, _) => {
            // The backfill only (a live link needs a record). Counted by another link
            // meanwhile (new) or not: either way the record must not have appeared since.
            let mut item = new_record(d, size, u64::from(is_new), at.unwrap_or(0));
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

/// The writes of removing `repo`'s link of `d`, given what [`link_reads`] found; `None` if
/// there is no link. Uncounts what the link was counted in (if it was: the reverse item's
/// `l`), puts the record on the unlinked work list when its last link goes, and the
/// project's usage loses the blob with its last copy. The link's index keys go with it.
///
/// `Precondition` while a manifest of `repo` references the blob (the link's `refs` > 0,
/// as read, and as the removal's condition): pushed again, the link would come back with no
/// references counted and collection would take a blob that manifest needs
/// (`wharf_core::ledger::check_unlinkable`).
pub fn unlink_writes(
    repo: &str,
    d: &Digest,
    seen: &LinkSeen,
    at: u64,
) -> Result<Option<Vec<Write>>, StoreError> {
    let Some(l) = &seen.link else {
        return Ok(None);
    };
    if refs_of(l) > 0 {
        return Err(StoreError::Precondition(format!(
            "blob {d} is referenced by a manifest of {repo}; delete it first"
        )));
    }
    let delete = Write::delete(link_key(repo, d))
        .when("attribute_exists(pk) AND (attribute_not_exists(#refs) OR #refs = :zero)")
        .value("zero", n(0));
    unlink_with(repo, d, seen, at, delete).map(Some)
}

/// What `collect_link` writes: [`unlink_writes`]' with the link's removal conditioned on
/// what makes it collectable, in the same transaction (no manifest references it, and it
/// was not linked or touched after `since`; a link without a time is older). `None` if the
/// link as read is not there or not collectable.
pub fn collect_writes(
    repo: &str,
    d: &Digest,
    seen: &LinkSeen,
    since: u64,
    at: u64,
) -> Result<Option<Vec<Write>>, StoreError> {
    let Some(l) = &seen.link else {
        return Ok(None);
    };
    if refs_of(l) > 0 || get_n(l, "linked").is_ok_and(|t| t > since) {
        return Ok(None);
    }
    let delete = Write::delete(link_key(repo, d))
        .when(
            "attribute_exists(pk) AND (attribute_not_exists(#refs) OR #refs = :zero) \
             AND (attribute_not_exists(#linked) OR #linked <= :since)",
        )
        .value("zero", n(0))
        .value("since", n(since));
    unlink_with(repo, d, seen, at, delete).map(Some)
}

/// `delete` (the link's removal) and what it uncounts, given what [`link_reads`] found.
fn unlink_with(
    repo: &str,
    d: &Digest,
    seen: &LinkSeen,
    at: u64,
    delete: Write,
) -> Result<Vec<Write>, StoreError> {
    let mut out = vec![delete];
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
    Ok(out)
}

/// What `touch_link` does, given the link item as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkTouch {
    /// There is no link.
    NoLink,
    /// Its time is within [`LINK_TOUCH_PRECISION_MS`] of the touch: nothing to write.
    ///
    /// [`LINK_TOUCH_PRECISION_MS`]: wharf_core::ports::LINK_TOUCH_PRECISION_MS
    Fresh,
    /// This write moves its time (never back; it fails on a link removed meanwhile).
    Write(Write),
}

/// `touch_link` of `d` in `repo` at `at`, given the link item as read.
pub fn link_touch(repo: &str, d: &Digest, link: Option<&Item>, at: u64) -> LinkTouch {
    let Some(l) = link else {
        return LinkTouch::NoLink;
    };
    let stale = get_n(l, "linked")
        .ok()
        .is_none_or(|t| t.saturating_add(wharf_core::ports::LINK_TOUCH_PRECISION_MS) < at);
    if !stale {
        return LinkTouch::Fresh;
    }
    LinkTouch::Write(
        Write::update(link_key(repo, d), "SET #linked = :at")
            .when("attribute_exists(pk) AND (attribute_not_exists(#linked) OR #linked < :at)")
            .value("at", n(at)),
    )
}

/// `touch_blob`: a record for freshly committed bytes (on the unlinked work list until a
/// link), or a touch of the one there; `Precondition` if it is being deleted.
pub fn touch_write(
    d: &Digest,
    size: u64,
    at: u64,
    record: Option<&Item>,
) -> Result<Write, StoreError> {
    check_not_deleting(d, record)?;
    Ok(match record {
        None => Write::put(new_record(d, size, 0, at)).when("attribute_not_exists(pk)"),
        Some(r) => use_record(d, r, at, &[], &[]),
    })
}

/// `mark_blob`: marked only if live, unlinked and untouched since `untouched_since`.
pub fn mark_write(d: &Digest, untouched_since: u64, at: u64) -> Write {
    unused_write(d, untouched_since, at, "marked")
}

/// Moves a `live` record no repository links, untouched after `untouched_since`, to
/// `state` at `at`: the one condition of a mark and of a deletion begun without one.
fn unused_write(d: &Digest, untouched_since: u64, at: u64, state: &str) -> Write {
    Write::update(record_key(d), "SET #state = :to, #at = :at")
        .when(
            "attribute_exists(pk) AND #state = :live AND #links = :zero \
             AND #touched <= :since",
        )
        .value("to", s(state))
        .value("live", s("live"))
        .value("zero", n(0))
        .value("since", n(untouched_since))
        .value("at", n(at))
}

/// `clear_blob_mark`, given the record as read: the answer, and the write that makes a
/// marked record live again (conditioned on the mark read; then the answer holds only if
/// the write does).
pub fn clear_mark(d: &Digest, record: Option<&Item>, at: u64) -> (Cleared, Option<Write>) {
    let Some(r) = record else {
        return (Cleared::Live, None);
    };
    let marked_at = match state_of(r) {
        BlobState::Live => return (Cleared::Live, None),
        BlobState::Deleting { .. } => return (Cleared::Gone, None),
        BlobState::Marked { at_ms } => at_ms,
    };
    let touched = get_n(r, "touched").unwrap_or(0).max(at);
    let w = Write::update(
        record_key(d),
        "SET #state = :live, #touched = :t REMOVE #at",
    )
    .when("#state = :marked AND #at = :was")
    .value("live", s("live"))
    .value("marked", s("marked"))
    .value("t", n(touched))
    .value("was", n(marked_at));
    (Cleared::Live, Some(w))
}

/// `begin_blob_delete`: only of the mark made at `marked_at`, and while still unlinked.
pub fn begin_delete_write(d: &Digest, marked_at: u64, at: u64) -> Write {
    Write::update(record_key(d), "SET #state = :deleting, #at = :at")
        .when("#state = :marked AND #at = :was AND #links = :zero")
        .value("deleting", s("deleting"))
        .value("marked", s("marked"))
        .value("was", n(marked_at))
        .value("zero", n(0))
        .value("at", n(at))
}

/// `begin_unused_blob_delete`: `mark_write`'s condition, `begin_delete_write`'s result.
pub fn begin_unused_delete_write(d: &Digest, untouched_since: u64, at: u64) -> Write {
    unused_write(d, untouched_since, at, "deleting")
}

/// `forget_blob`: only a record being deleted (its index keys go with it).
pub fn forget_write(d: &Digest) -> Write {
    Write::delete(record_key(d))
        .when("#state = :deleting")
        .value("deleting", s("deleting"))
}

/// A manifest's (new or uncounted) reference to blob `d` in `repo` (`add`), or its
/// removal, given the link item and the blob record as read: a change of `refs` on each
/// that exists ([`link_ref_write`]; on the record, +1 conditioned on its not being deleted,
/// −1 only from above zero). Nothing for one that does not exist (a manifest put checks the
/// links itself; the backfill counts what is there).
pub fn ref_writes(
    repo: &str,
    d: &Digest,
    link: Option<&Item>,
    record: Option<&Item>,
    add: bool,
) -> Vec<Write> {
    let mut out: Vec<Write> = link
        .and_then(|l| link_ref_write(repo, d, l, add))
        .into_iter()
        .collect();
    match (record, add) {
        (Some(_), true) => out.push(
            Write::update(
                record_key(d),
                "SET #refs = if_not_exists(#refs, :zero) + :one",
            )
            .when("attribute_exists(pk) AND #state <> :deleting")
            .value("zero", n(0))
            .value("one", n(1))
            .value("deleting", s("deleting")),
        ),
        (Some(r), false) if get_n(r, "refs").unwrap_or(0) > 0 => out.push(
            Write::update(record_key(d), "SET #refs = #refs - :one")
                .when("attribute_exists(pk) AND #refs >= :one")
                .value("one", n(1)),
        ),
        _ => {}
    }
    out
}

/// A reference more (`add`: off the unreferenced-link list, conditioned on the link still
/// being there) or one less on the link item as read. One less is written as the value it
/// leaves, conditioned on `refs` being unchanged, since at 0 the link goes back on the
/// list; `None` if it has none to lose.
pub fn link_ref_write(repo: &str, d: &Digest, link: &Item, add: bool) -> Option<Write> {
    let k = link_key(repo, d);
    if add {
        return Some(
            Write::update(
                k,
                "SET #refs = if_not_exists(#refs, :zero) + :one REMOVE #gsi1pk, #gsi1sk",
            )
            .when("attribute_exists(pk)")
            .value("zero", n(0))
            .value("one", n(1)),
        );
    }
    let refs = refs_of(link);
    if refs == 0 {
        return None;
    }
    let expr = if refs == 1 {
        "SET #refs = :left, #gsi1pk = :upk, #gsi1sk = :usk"
    } else {
        "SET #refs = :left"
    };
    Some(
        Write::update(k, expr)
            .when("#refs = :refs")
            .value("refs", n(refs))
            .value("left", n(refs - 1))
            .value("upk", s(unreferenced_index_pk(d)))
            .value("usk", s(unreferenced_index_sk(repo, d))),
    )
}

/// What takes back a blob record's reference-count increment of [`ref_writes`] (for a
/// manifest write that failed after its counts were written); `None` for a check and for a
/// link's count, which is taken back from a fresh read ([`link_ref_write`]) because its
/// place on the work list depends on the value.
pub fn undo_ref(w: &Write) -> Option<Write> {
    match &w.op {
        Op::Update { key, .. } if link_of(key).is_none() => Some(
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

// ---- manifest puts ----

/// Items one `TransactWriteItems` takes.
pub const TRANSACT_ITEMS: usize = 100;

/// `NotSupported` unless a manifest put fits DynamoDB's transaction: its item, reverse-index
/// item, outbox entry, referrer entry (with a subject), one item per tag and a check per
/// distinct child manifest (a manifest has no count that would keep it, so each child must be
/// checked in the put's own transaction): `children + tags + 3` (`+ 4` with a subject) ≤
/// [`TRANSACT_ITEMS`], such as 96 children with one tag or 33 with 64. Blobs set no limit
/// (see [`manifest_plan`]).
pub fn check_manifest_fits(tags: usize, subject: bool, children: usize) -> Result<(), StoreError> {
    let fixed = 3 + usize::from(subject) + tags;
    if fixed + children <= TRANSACT_ITEMS {
        return Ok(());
    }
    Err(StoreError::NotSupported(format!(
        "a manifest with {tags} tags and {children} child manifests: one DynamoDB \
         transaction takes {TRANSACT_ITEMS} items, {fixed} of them for the manifest and its \
         tags and one for each child; push it with fewer tags, then tag it again"
    )))
}

/// What a manifest put reads: the manifest item, each distinct blob's link and record, each
/// distinct child's manifest item; [`ManifestSeen::from_found`] takes what was found.
pub fn manifest_reads(repo: &str, d: &Digest, blobs: &[Digest], children: &[Digest]) -> Vec<Item> {
    let mut keys = vec![manifest_key(repo, d)];
    for b in blobs {
        keys.push(link_key(repo, b));
        keys.push(record_key(b));
    }
    keys.extend(children.iter().map(|c| manifest_key(repo, c)));
    keys
}

/// The items [`manifest_reads`]' keys found.
#[derive(Clone, Debug, Default)]
pub struct ManifestSeen {
    /// The manifest item.
    pub manifest: Option<Item>,
    /// Each blob's link item and record.
    pub blobs: Vec<(Option<Item>, Option<Item>)>,
    /// Whether each child manifest is there.
    pub children: Vec<bool>,
}

impl ManifestSeen {
    /// What a read of [`manifest_reads`]' keys (`blobs` and `children` of them) found.
    pub fn from_found(
        blobs: usize,
        children: usize,
        found: Vec<Option<Item>>,
    ) -> Result<Self, StoreError> {
        if found.len() != 1 + 2 * blobs + children {
            return Err(other("BatchGetItem answered badly"));
        }
        let mut it = found.into_iter();
        let manifest = it.next().flatten();
        let mut pairs = Vec::with_capacity(blobs);
        for _ in 0..blobs {
            pairs.push((it.next().flatten(), it.next().flatten()));
        }
        Ok(Self {
            manifest,
            blobs: pairs,
            children: it.map(|c| c.is_some()).collect(),
        })
    }

    /// Whether the manifest's references are still to be counted (it is new, or was stored
    /// before they were kept and not backfilled yet).
    pub fn is_new(&self) -> bool {
        !has(self.manifest.as_ref(), "counted")
    }
}

/// How a manifest put is written ([`manifest_plan`]).
#[derive(Clone, Debug, Default)]
pub struct ManifestPlan {
    /// Reference counts written first, in transactions of their own; taken back if a later
    /// step fails.
    pub before: Vec<Write>,
    /// The manifest's own transaction.
    pub atomic: Vec<Write>,
    /// Holds among `before`, taken back once the manifest's transaction is done.
    pub release: Vec<Write>,
}

/// How a manifest put of `repo` over distinct `blobs` and `children` is written, given what
/// [`manifest_reads`] found and `main` (the manifest item, tags, referrer, reverse item,
/// outbox entry): `Precondition` if a blob is not linked or is being deleted, or a child is
/// not there.
///
/// Nothing may collect a blob between the put's check and its write. Each blob's link is
/// kept by one of: its +1 reference (a new manifest) or a check that it is there (a counted
/// one) in the manifest's transaction; when those do not all fit, a +1 written first in a
/// transaction of its own, since a link with `refs` > 0 is never collected nor unlinked (a
/// crash before the manifest's transaction leaves a count too high: a leak the
/// verification reports, never a loss). A counted manifest already holds a reference on each
/// link it counted, so links read with `refs` > 0 need no check; those at 0 (linked after
/// the manifest was counted) are checked first, or held by a +1 taken back after. The blob
/// records' counts (hints) fill the rest of the room, and go first otherwise. Children need
/// their checks in the transaction ([`check_manifest_fits`]).
pub fn manifest_plan(
    repo: &str,
    blobs: &[Digest],
    children: &[Digest],
    seen: &ManifestSeen,
    main: Vec<Write>,
) -> Result<ManifestPlan, StoreError> {
    if seen.blobs.len() != blobs.len() || seen.children.len() != children.len() {
        return Err(other("manifest reads do not match its references"));
    }
    let mut links = Vec::with_capacity(blobs.len());
    for (b, (link, record)) in blobs.iter().zip(&seen.blobs) {
        let Some(link) = link else {
            return Err(StoreError::Precondition(format!(
                "blob {b} is not in repository {repo}"
            )));
        };
        check_not_deleting(b, record.as_ref())?;
        links.push((b, link, record.as_ref()));
    }
    let mut atomic = main;
    for (c, there) in children.iter().zip(&seen.children) {
        if !there {
            return Err(StoreError::Precondition(format!(
                "manifest {c} is not in repository {repo}"
            )));
        }
        atomic.push(Write::check(manifest_key(repo, c), "attribute_exists(pk)"));
    }
    if atomic.len() > TRANSACT_ITEMS {
        return Err(StoreError::NotSupported(format!(
            "a manifest put of {} items with {} children: over one DynamoDB transaction",
            atomic.len(),
            children.len()
        )));
    }
    let mut plan = ManifestPlan {
        atomic,
        ..ManifestPlan::default()
    };
    let room = |p: &ManifestPlan| p.atomic.len() < TRANSACT_ITEMS;
    if seen.is_new() {
        let mut records = Vec::new();
        for (b, link, record) in links {
            let add = link_ref_write(repo, b, link, true);
            if room(&plan) {
                plan.atomic.extend(add);
            } else {
                plan.before.extend(add);
            }
            records.extend(ref_writes(repo, b, None, record, true));
        }
        for w in records {
            if room(&plan) {
                plan.atomic.push(w);
            } else {
                plan.before.push(w);
            }
        }
    } else {
        // Those no count keeps first.
        links.sort_by_key(|(_, l, _)| refs_of(l) > 0);
        for (b, link, _) in links {
            if room(&plan) {
                plan.atomic
                    .push(Write::check(link_key(repo, b), "attribute_exists(pk)"));
            } else if refs_of(link) == 0 {
                let hold = link_ref_write(repo, b, link, true);
                plan.before.extend(hold.clone());
                plan.release.extend(hold);
            }
        }
    }
    Ok(plan)
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
    use crate::link_item;

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
        // A link needs the blob's record.
        assert!(matches!(
            link_writes("p/r", &a, 5, Some(10), &LinkSeen::default()),
            Err(StoreError::Precondition(_))
        ));
        let touched = LinkSeen {
            record: Some(new_record(&a, 5, 0, 9)),
            ..LinkSeen::default()
        };
        let fresh = link_writes("p/r", &a, 5, Some(10), &touched).expect("w");
        // Link item, record, reverse, project count, usage, outbox.
        assert_eq!(fresh.len(), 6, "{fresh:#?}");
        let Op::Update { expr, .. } = &fresh[0].op else {
            panic!("{fresh:#?}")
        };
        assert!(
            expr.contains("#gsi1pk = :upk"),
            "listed as unreferenced: {expr}"
        );
        let mut rev = reverse_key(&a, "p/r");
        rev.insert("l".into(), n(1));
        let mut rec = new_record(&a, 5, 1, 10);
        rec.remove("gsi1pk");
        let mut link = link_item("p/r", &a, 5);
        link.insert("refs".into(), n(0));
        link.insert("gsi1pk".into(), s(unreferenced_index_pk(&a)));
        let seen = LinkSeen {
            link: Some(link.clone()),
            reverse: Some(rev),
            record: Some(rec.clone()),
            pblob: None,
        };
        let again = link_writes("p/r", &a, 5, Some(11), &seen).expect("w");
        // Link item, record touched, reverse checked, outbox: nothing counted.
        assert_eq!(again.len(), 4, "{again:#?}");
        assert!(matches!(again[2].op, Op::Check(_)));
        assert!(
            link_writes("p/r", &a, 5, None, &seen)
                .expect("w")
                .iter()
                .all(|w| matches!(w.op, Op::Check(_))),
            "the backfill finds it counted and listed"
        );
        // Counted under schema 2, not listed yet: the backfill lists it, counting nothing.
        link.remove("gsi1pk");
        let unlisted = LinkSeen {
            link: Some(link),
            ..seen.clone()
        };
        let w = link_writes("p/r", &a, 5, None, &unlisted).expect("w");
        assert_eq!(
            w.iter().filter(|w| !matches!(w.op, Op::Check(_))).count(),
            1,
            "{w:#?}"
        );
        // Gone since the backfill's query: nothing.
        let gone = LinkSeen {
            link: None,
            ..seen.clone()
        };
        assert!(
            link_writes("p/r", &a, 5, None, &gone)
                .expect("w")
                .is_empty()
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
    fn only_an_unreferenced_untouched_link_is_collected() {
        let a = d(b"a");
        let mut link = link_item("p/r", &a, 5);
        link.insert("linked".into(), n(100));
        let seen = |refs: u64| LinkSeen {
            link: Some({
                let mut l = link.clone();
                l.insert("refs".into(), n(refs));
                l
            }),
            ..LinkSeen::default()
        };
        assert!(
            collect_writes("p/r", &a, &seen(1), 200, 300)
                .expect("w")
                .is_none()
        );
        assert!(
            collect_writes("p/r", &a, &seen(0), 99, 300)
                .expect("w")
                .is_none()
        );
        let w = collect_writes("p/r", &a, &seen(0), 100, 300)
            .expect("w")
            .expect("collectable");
        let cond = w[0].cond.clone().unwrap_or_default();
        assert!(
            cond.contains("#linked <= :since") && cond.contains("#refs = :zero"),
            "{cond}"
        );
        assert!(
            collect_writes("p/r", &a, &LinkSeen::default(), 100, 300)
                .expect("w")
                .is_none()
        );
        // One reference less: back on the list at zero, written as the value it leaves.
        let one = seen(1).link.expect("link");
        let w = link_ref_write("p/r", &a, &one, false).expect("a write");
        assert!(matches!(&w.op, Op::Update { expr, .. } if expr.contains("#gsi1pk")));
        assert_eq!(w.values().get(":left"), Some(&n(0)));
        assert!(link_ref_write("p/r", &a, &seen(0).link.expect("link"), false).is_none());
        assert_eq!(
            undo_ref(&w),
            None,
            "a link's count is taken back from a read"
        );
        assert_eq!(
            link_of(&link_key("p/r", &a)),
            Some(("p/r".to_owned(), a.clone()))
        );
        assert_eq!(link_of(&record_key(&a)), None);
    }

    #[test]
    fn a_touch_writes_only_a_stale_time() {
        use wharf_core::ports::LINK_TOUCH_PRECISION_MS as P;
        let a = d(b"a");
        assert_eq!(link_touch("p/r", &a, None, 5), LinkTouch::NoLink);
        let mut l = link_item("p/r", &a, 5);
        assert!(
            matches!(link_touch("p/r", &a, Some(&l), 5), LinkTouch::Write(_)),
            "no time"
        );
        l.insert("linked".into(), n(1000));
        assert_eq!(link_touch("p/r", &a, Some(&l), 1000 + P), LinkTouch::Fresh);
        assert!(matches!(
            link_touch("p/r", &a, Some(&l), 1001 + P),
            LinkTouch::Write(_)
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
        let links = unreferenced_shards();
        assert_eq!(links.len(), UNREFERENCED_SHARDS as usize);
        assert!(links.contains(&unreferenced_index_pk(&a)));
        // (repository, digest) order, whatever the names: "a" before "a-b" before "a/b".
        assert!(unreferenced_index_sk("a", &a) < unreferenced_index_sk("a-b", &a));
        assert!(unreferenced_index_sk("a-b", &a) < unreferenced_index_sk("a/b", &a));
        assert_eq!(usage_shard(&a).len(), 1);
    }

    #[test]
    fn a_referenced_link_is_not_unlinked() {
        let a = d(b"a");
        let seen = |refs: u64| LinkSeen {
            link: Some({
                let mut l = link_item("p/r", &a, 5);
                l.insert("refs".into(), n(refs));
                l
            }),
            ..LinkSeen::default()
        };
        match unlink_writes("p/r", &a, &seen(1), 10) {
            Err(StoreError::Precondition(m)) => {
                assert!(m.contains(&a.to_string()) && m.contains("p/r"), "{m}")
            }
            other => panic!("want Precondition, got {other:?}"),
        }
        let w = unlink_writes("p/r", &a, &seen(0), 10)
            .expect("w")
            .expect("a link");
        let cond = w[0].cond.clone().unwrap_or_default();
        assert!(
            cond.contains("#refs = :zero"),
            "raced by a manifest: {cond}"
        );
        assert_eq!(w[0].values().get(":zero"), Some(&n(0)));
        assert!(
            unlink_writes("p/r", &a, &LinkSeen::default(), 10)
                .expect("w")
                .is_none()
        );
    }

    /// What a put over `blobs` read: each linked with `refs` (as `refs(i)`), with a record.
    fn manifest_seen(
        blobs: &[Digest],
        counted: bool,
        refs: impl Fn(usize) -> u64,
        children: usize,
    ) -> ManifestSeen {
        let mut m = manifest_key("p/r", &d(b"m"));
        if counted {
            m.insert("counted".into(), n(1));
        }
        ManifestSeen {
            manifest: Some(m),
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mut l = link_item("p/r", b, 1);
                    l.insert("refs".into(), n(refs(i)));
                    (Some(l), Some(new_record(b, 1, 1, 0)))
                })
                .collect(),
            children: vec![true; children],
        }
    }

    fn main_writes(k: usize) -> Vec<Write> {
        (0..k)
            .map(|i| Write::put(key("REPO#p/r", format!("TAG#{i}"))))
            .collect()
    }

    fn links_in(ws: &[Write]) -> usize {
        ws.iter().filter(|w| link_of(&w.key()).is_some()).count()
    }

    #[test]
    fn a_small_manifest_is_one_transaction() {
        let blobs: Vec<Digest> = (0..3u8).map(|i| d(&[i])).collect();
        let children = [d(b"c")];
        let plan = manifest_plan(
            "p/r",
            &blobs,
            &children,
            &manifest_seen(&blobs, false, |_| 0, 1),
            main_writes(4),
        )
        .expect("plan");
        // The main writes, a child check, a +1 on each link and on each record.
        assert_eq!(plan.atomic.len(), 4 + 1 + 3 + 3);
        assert!(plan.before.is_empty() && plan.release.is_empty());
        let again = manifest_plan(
            "p/r",
            &blobs,
            &children,
            &manifest_seen(&blobs, true, |_| 1, 1),
            main_writes(4),
        )
        .expect("plan");
        assert_eq!(again.atomic.len(), 4 + 1 + 3, "a re-put checks its links");
        assert!(
            again.atomic[5..]
                .iter()
                .all(|w| matches!(w.op, Op::Check(_)))
        );
    }

    #[test]
    fn a_large_manifest_adds_its_references_first() {
        // 130 layers, 64 tags: 67 main writes, room for 33 more.
        let blobs: Vec<Digest> = (0..130u32).map(|i| d(&i.to_be_bytes())).collect();
        let plan = manifest_plan(
            "p/r",
            &blobs,
            &[],
            &manifest_seen(&blobs, false, |_| 0, 0),
            main_writes(67),
        )
        .expect("plan");
        assert_eq!(plan.atomic.len(), TRANSACT_ITEMS);
        assert_eq!(links_in(&plan.atomic), 33);
        assert_eq!(links_in(&plan.before), 97);
        assert_eq!(plan.before.len(), 97 + 130, "and every record's count");
        assert!(plan.release.is_empty());
        for w in plan.before.iter().filter(|w| link_of(&w.key()).is_some()) {
            let Op::Update { expr, .. } = &w.op else {
                panic!("{w:?}")
            };
            assert!(expr.contains("REMOVE #gsi1pk, #gsi1sk"), "{expr}");
            assert_eq!(w.cond.as_deref(), Some("attribute_exists(pk)"));
        }
        // Counted, 40 links at 0 (linked after it was counted): 34 checked, 6 held.
        let plan = manifest_plan(
            "p/r",
            &blobs,
            &[],
            &manifest_seen(&blobs, true, |i| u64::from(i >= 40), 0),
            main_writes(66),
        )
        .expect("plan");
        assert_eq!(plan.atomic.len(), TRANSACT_ITEMS);
        assert_eq!(plan.before.len(), 6);
        assert_eq!(plan.release, plan.before, "held only until the put is done");
        let zero: Vec<Item> = blobs[..40].iter().map(|b| link_key("p/r", b)).collect();
        assert!(plan.atomic[66..].iter().all(|w| zero.contains(&w.key())));
        assert!(plan.before.iter().all(|w| zero.contains(&w.key())));
        // 4000 distinct blobs with one tag: no limit but the 400 KB item (its payload then
        // goes to S3) and the 4 MB transaction.
        let blobs: Vec<Digest> = (0..4000u32).map(|i| d(&i.to_be_bytes())).collect();
        let plan = manifest_plan(
            "p/r",
            &blobs,
            &[],
            &manifest_seen(&blobs, false, |_| 0, 0),
            main_writes(4),
        )
        .expect("plan");
        assert_eq!(links_in(&plan.atomic), 96);
        assert_eq!(links_in(&plan.before), 3904);
        assert_eq!(plan.before.len(), 3904 + 4000);
    }

    #[test]
    fn a_put_is_refused_without_its_links_children_or_room() {
        let blobs = [d(b"a")];
        let mut seen = manifest_seen(&blobs, false, |_| 0, 1);
        let plan = |seen: &ManifestSeen| {
            manifest_plan("p/r", &blobs, &[d(b"c")], seen, main_writes(4)).map(drop)
        };
        assert!(plan(&seen).is_ok());
        seen.children[0] = false;
        assert!(matches!(plan(&seen), Err(StoreError::Precondition(_))));
        seen.children[0] = true;
        if let Some(r) = seen.blobs[0].1.as_mut() {
            r.insert("state".into(), s("deleting"));
        }
        assert!(matches!(plan(&seen), Err(StoreError::Precondition(_))));
        seen.blobs[0] = (None, None);
        assert!(matches!(plan(&seen), Err(StoreError::Precondition(_))));
        // Children: each checked in the transaction.
        assert!(check_manifest_fits(64, false, 33).is_ok());
        assert!(check_manifest_fits(1, false, 96).is_ok());
        for (tags, subject, children) in [(64, false, 34), (1, false, 97), (1, true, 96)] {
            assert!(matches!(
                check_manifest_fits(tags, subject, children),
                Err(StoreError::NotSupported(_))
            ));
        }
        let many: Vec<Digest> = (0..97u32).map(|i| d(&i.to_be_bytes())).collect();
        assert!(matches!(
            manifest_plan(
                "p/r",
                &[],
                &many,
                &manifest_seen(&[], false, |_| 0, 97),
                main_writes(4)
            ),
            Err(StoreError::NotSupported(_))
        ));
    }
}

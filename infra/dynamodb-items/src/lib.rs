//! The items an upload reads and writes in wharf's DynamoDB table, with no AWS SDK, so that
//! wharf-dynamodb (the SDK, native runtimes) and a client over `fetch` (the Worker as upload
//! front of a Lambda deployment) write identical items to one table. Attributes are the
//! three kinds wharf uses ([`Attr`]); [`to_json`] and [`from_json`] give DynamoDB's JSON
//! wire form, and wharf-dynamodb converts them to and from the SDK's `AttributeValue`.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | upload | `UPLOAD#<id>` | `UPLOAD` | `repo`, `off`, `hash`, `state`, `digest`, `created`, `updated`, `gsi1pk` = `UPLOADS#<shard>`, `gsi1sk` = `<updated, 15 digits>#<id>` |
//! | blob link | `REPO#<name>` | `BLOB#<digest>` | `size`, `linked`, `refs`; the unreferenced-link keys `gsi1pk`, `gsi1sk` while `refs` = 0 |
//! | catalog entry | `CATALOG` | `<name>` | |
//! | document | `DOC#<kind>` | `<id>` | `v` (bytes): users, robots, projects, audit events… |
//!
//! [`ledger`] builds the records every content write keeps with it (blob records, the
//! reverse index, usage, the outbox) as SDK-free transaction writes. [`DynamoRest`] reads
//! and writes them over DynamoDB's JSON API without an SDK.
#![deny(missing_docs)]

pub mod ledger;
mod rest;
pub mod shared;

pub use rest::DynamoRest;
pub use shared::ItemStore;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use wharf_core::ports::UploadRecord;
use wharf_core::{Digest, StoreError};

/// Partitions of the upload index (`gsi1`), so the sweep for stale uploads reads them all
/// without a hot partition.
pub const UPLOAD_SHARDS: u32 = 16;

/// An attribute value, of the kinds wharf's items use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    /// A string.
    S(String),
    /// A number (wharf's are all unsigned integers).
    N(u64),
    /// Bytes.
    B(Vec<u8>),
}

/// An item: attribute name → value.
pub type Item = BTreeMap<String, Attr>;

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn s(v: impl Into<String>) -> Attr {
    Attr::S(v.into())
}

/// The string attribute `name`, if the item has one.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(Attr::S(v)) => Some(v),
        _ => None,
    }
}

/// The number attribute `name`.
pub fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(Attr::N(v)) => Ok(*v),
        _ => Err(other(format!("item lacks number {name}"))),
    }
}

fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    match item.get(name) {
        Some(Attr::B(v)) => Some(v),
        _ => None,
    }
}

/// The key of an item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Partition key of a repository's items.
pub fn repo_pk(repo: &str) -> String {
    format!("REPO#{repo}")
}

/// Partition key of an upload.
pub fn upload_pk(id: &str) -> String {
    format!("UPLOAD#{id}")
}

/// Key of an upload's item.
pub fn upload_key(id: &str) -> Item {
    key(upload_pk(id), "UPLOAD")
}

/// Which upload-index partition an upload goes to (FNV-1a of its id).
pub fn upload_shard(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    h % UPLOAD_SHARDS
}

/// The upload index's partition key for `shard`.
pub fn upload_index_pk(shard: u32) -> String {
    format!("UPLOADS#{shard:x}")
}

/// The upload index's sort key: last update, then id, so a range query finds the stale.
pub fn upload_index_sk(updated_ms: u64, id: &str) -> String {
    format!("{updated_ms:015}#{id}")
}

/// An upload's item.
pub fn upload_item(u: &UploadRecord) -> Item {
    let mut item = upload_key(&u.id);
    item.insert("repo".into(), s(&u.repo));
    item.insert("off".into(), Attr::N(u.offset));
    item.insert("hash".into(), Attr::B(u.hash_state.clone()));
    // DynamoDB refuses empty strings only in keys; keep the item small anyway.
    if !u.store_state.is_empty() {
        item.insert("state".into(), s(&u.store_state));
    }
    if let Some(d) = &u.digest {
        item.insert("digest".into(), s(d.to_string()));
    }
    item.insert("created".into(), Attr::N(u.created_ms));
    item.insert("updated".into(), Attr::N(u.updated_ms));
    item.insert("gsi1pk".into(), s(upload_index_pk(upload_shard(&u.id))));
    item.insert("gsi1sk".into(), s(upload_index_sk(u.updated_ms, &u.id)));
    item
}

/// The upload an item records.
pub fn upload_from(item: &Item) -> Result<UploadRecord, StoreError> {
    let digest = match get_s(item, "digest") {
        Some(d) => Some(d.parse::<Digest>().map_err(|e| other(e.message))?),
        None => None,
    };
    Ok(UploadRecord {
        id: get_s(item, "pk")
            .and_then(|pk| pk.strip_prefix("UPLOAD#"))
            .ok_or_else(|| other("upload item lacks its id"))?
            .to_owned(),
        repo: get_s(item, "repo").unwrap_or_default().to_owned(),
        offset: get_n(item, "off")?,
        hash_state: get_b(item, "hash").unwrap_or_default().to_vec(),
        store_state: get_s(item, "state").unwrap_or_default().to_owned(),
        digest,
        created_ms: get_n(item, "created")?,
        updated_ms: get_n(item, "updated")?,
    })
}

/// Key of the link that makes blob `digest` part of `repo`.
pub fn link_key(repo: &str, digest: &Digest) -> Item {
    key(repo_pk(repo), format!("BLOB#{digest}"))
}

/// The link item: `digest` is in `repo`, `size` bytes.
pub fn link_item(repo: &str, digest: &Digest, size: u64) -> Item {
    let mut item = link_key(repo, digest);
    item.insert("size".into(), Attr::N(size));
    item
}

/// `repo`'s catalog entry.
pub fn catalog_item(repo: &str) -> Item {
    key("CATALOG", repo)
}

/// Partition key of the documents of `kind`.
pub fn doc_pk(kind: &str) -> String {
    format!("DOC#{kind}")
}

/// Key of a document.
pub fn doc_key(kind: &str, id: &str) -> Item {
    key(doc_pk(kind), id)
}

/// A document's item.
pub fn doc_item(kind: &str, id: &str, value: &[u8]) -> Item {
    let mut item = doc_key(kind, id);
    item.insert("v".into(), Attr::B(value.to_vec()));
    item
}

/// A document item's id and value.
pub fn doc_from(item: &Item) -> Option<(&str, &[u8])> {
    Some((get_s(item, "sk")?, get_b(item, "v")?))
}

/// An item in DynamoDB's JSON form (`{"pk": {"S": "…"}, "off": {"N": "5"}, …}`).
pub fn to_json(item: &Item) -> Value {
    let map: Map<String, Value> = item
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::S(x) => json!({ "S": x }),
                Attr::N(x) => json!({ "N": x.to_string() }),
                Attr::B(x) => json!({ "B": STANDARD.encode(x) }),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(map)
}

/// An item from DynamoDB's JSON form; attributes of other kinds are left out.
pub fn from_json(v: &Value) -> Result<Item, StoreError> {
    let obj = v
        .as_object()
        .ok_or_else(|| other("DynamoDB item is not an object"))?;
    let mut item = Item::new();
    for (k, v) in obj {
        let attr = if let Some(x) = v.get("S").and_then(Value::as_str) {
            s(x)
        } else if let Some(x) = v.get("N").and_then(Value::as_str) {
            Attr::N(
                x.parse()
                    .map_err(|_| other(format!("attribute {k} is not a whole number: {x}")))?,
            )
        } else if let Some(x) = v.get("B").and_then(Value::as_str) {
            Attr::B(
                STANDARD
                    .decode(x)
                    .map_err(|e| other(format!("attribute {k}: {e}")))?,
            )
        } else {
            continue;
        };
        item.insert(k.clone(), attr);
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> UploadRecord {
        UploadRecord {
            id: "0123abcd".into(),
            repo: "team/app".into(),
            offset: 5_242_880,
            hash_state: vec![0, 1, 2, 255],
            store_state: r#"{"objects":[]}"#.into(),
            digest: Some(Digest::sha256_of(b"x")),
            created_ms: 1_800_000_000_000,
            updated_ms: 1_800_000_000_500,
        }
    }

    #[test]
    fn shards_and_index_keys() {
        assert!(upload_shard("abc") < UPLOAD_SHARDS);
        let spread: std::collections::HashSet<u32> = (0..1000)
            .map(|i| upload_shard(&format!("{i:032x}")))
            .collect();
        assert_eq!(spread.len(), UPLOAD_SHARDS as usize);
        let bound = format!("{:015}", 1500);
        assert!(upload_index_sk(1499, "u") < bound);
        assert!(upload_index_sk(1500, "u") > bound);
        assert!(upload_index_sk(99, "u") < upload_index_sk(100, "u"));
    }

    #[test]
    fn upload_items_round_trip_through_dynamodb_json() {
        let u = upload();
        let item = upload_item(&u);
        assert_eq!(upload_from(&item).expect("decode"), u);
        let wire = to_json(&item);
        assert_eq!(wire["pk"], json!({ "S": "UPLOAD#0123abcd" }));
        assert_eq!(wire["off"], json!({ "N": "5242880" }));
        assert_eq!(wire["hash"], json!({ "B": "AAEC/w==" }));
        assert_eq!(wire["gsi1sk"], json!({ "S": "001800000000500#0123abcd" }));
        assert_eq!(from_json(&wire).expect("parse"), item);
        // A bare upload: no state, no digest.
        let bare = UploadRecord {
            store_state: String::new(),
            digest: None,
            ..upload()
        };
        let item = upload_item(&bare);
        assert!(!item.contains_key("state") && !item.contains_key("digest"));
        assert_eq!(upload_from(&item).expect("decode"), bare);
    }

    #[test]
    fn bad_items_are_refused() {
        let mut item = upload_item(&upload());
        item.remove("off");
        assert!(upload_from(&item).is_err());
        assert!(upload_from(&key("REPO#x", "UPLOAD")).is_err());
        assert!(from_json(&json!({ "off": { "N": "1.5" } })).is_err());
        assert!(from_json(&json!({ "hash": { "B": "!!" } })).is_err());
        assert!(from_json(&json!([])).is_err());
        // Kinds wharf does not write are skipped, not misread.
        let skipped = from_json(&json!({ "l": { "L": [] }, "pk": { "S": "x" } })).expect("ok");
        assert_eq!(skipped, Item::from([("pk".to_owned(), s("x"))]));
    }

    #[test]
    fn links_catalog_and_documents() {
        let d = Digest::sha256_of(b"y");
        let l = link_item("team/app", &d, 42);
        assert_eq!(get_s(&l, "pk"), Some("REPO#team/app"));
        assert_eq!(get_s(&l, "sk"), Some(format!("BLOB#{d}").as_str()));
        assert_eq!(get_n(&l, "size").expect("size"), 42);
        assert_eq!(get_s(&catalog_item("a/b"), "sk"), Some("a/b"));
        let doc = doc_item("audit", "e1", b"{}");
        assert_eq!(get_s(&doc, "pk"), Some("DOC#audit"));
        assert_eq!(doc_from(&doc), Some(("e1", &b"{}"[..])));
        assert_eq!(from_json(&to_json(&doc)).expect("json"), doc);
        assert_eq!(
            doc_from(&doc_key("audit", "e1")),
            None,
            "a key alone has no value"
        );
    }
}

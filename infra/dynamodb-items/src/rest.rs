//! [`DynamoRest`]: the part of the metadata store an upload front needs, as DynamoDB's JSON
//! API over a runtime's own HTTP ([`wharf_sigv4::AwsClient`]; `fetch` in a Worker), writing
//! the same items as wharf-dynamodb.

use crate::ledger::lists::{IndexPage, IndexQuery};
use crate::ledger::{self, Write};
use crate::shared::{self, ItemStore};
use crate::{Item, from_json, get_n, get_s, to_json};
use bytes::Bytes;
use serde_json::{Value, json};
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::{
    ConditionalTags, DocumentStore, LinkEntry, ManifestEntry, ManifestIndex, MetadataStore, Page,
    PullTimes, StoredManifest, TagEntry, TagExpect, UploadRecord, Usage, UsageCounters,
};
use wharf_core::{Digest, Reference, StoreError};
use wharf_sigv4::{AwsClient, Transport};

/// DynamoDB over signed HTTP: uploads (create, read, compare-and-set on the offset,
/// delete), blob links and the catalog entry a finished upload adds, blob records and link
/// collection (the registry touches a blob's record before it commits or mounts it, and a
/// link on a blob `HEAD`; the rest of both abilities is the same few items, so it is all
/// here), and documents (the audit events a request appends).
///
/// Everything else (manifests, tags, their listings, the cleanup sweep) returns
/// [`StoreError::NotSupported`]: a front serves only upload requests that carry an upload
/// capability (`Config::capability_only`), which never reach them; the API (the Lambda) has
/// the full store. Reads are strongly consistent: the POST that created an upload ran
/// elsewhere moments before.
pub struct DynamoRest<T> {
    client: AwsClient<T>,
    url: String,
    table: String,
}

fn unsupported<X>(what: &str) -> Result<X, StoreError> {
    Err(StoreError::NotSupported(format!(
        "{what} is not served by an upload front"
    )))
}

impl<T: Transport> DynamoRest<T> {
    /// The table `table` at `endpoint` (default: AWS's regional endpoint), signed with
    /// `client`'s credentials and region.
    pub fn new(client: AwsClient<T>, endpoint: Option<&str>, table: &str) -> Self {
        let url = match endpoint {
            Some(e) => format!("{}/", e.trim_end_matches('/')),
            None => format!("https://dynamodb.{}.amazonaws.com/", client.region()),
        };
        Self {
            client,
            url,
            table: table.to_owned(),
        }
    }

    /// Calls operation `op` with `body` (the table name added); returns the answer.
    async fn call(&self, op: &str, mut body: Value) -> Result<Value, StoreError> {
        body["TableName"] = json!(self.table);
        self.call_raw(op, body).await
    }

    /// Calls operation `op` with `body` as it is (operations on several items name the
    /// table in each).
    async fn call_raw(&self, op: &str, body: Value) -> Result<Value, StoreError> {
        let req = http::Request::post(&self.url)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
            .body(Bytes::from(body.to_string()))
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let resp = self.client.send(req).await?;
        serde_json::from_slice(resp.body())
            .map_err(|e| StoreError::Other(format!("DynamoDB {op}: bad answer: {e}")))
    }

    /// PutItem of `item`, with the condition's fields (`ConditionExpression` …) if any.
    async fn put(&self, item: Item, condition: Option<Value>) -> Result<(), StoreError> {
        let mut body = condition.unwrap_or_else(|| json!({}));
        body["Item"] = to_json(&item);
        self.call("PutItem", body).await.map(drop)
    }

    /// Operation `op` on an upload, conditional on its offset being `expected`. When the
    /// condition fails the service does not say why: the upload moved on (`Precondition`,
    /// naming where it is) or is gone, closed or cancelled meanwhile (`NotFound`).
    async fn offset_conditional(
        &self,
        op: &str,
        body: Value,
        id: &str,
        expected: u64,
    ) -> Result<(), StoreError> {
        match self.call(op, body).await {
            Ok(_) => Ok(()),
            Err(StoreError::Precondition(_)) => match self.upload(id).await? {
                Some(u) => Err(StoreError::Precondition(format!(
                    "upload {id} is at {}, not {expected}",
                    u.offset
                ))),
                None => Err(StoreError::NotFound),
            },
            Err(e) => Err(e),
        }
    }
}

/// DynamoDB's JSON API as the abilities shared with wharf-dynamodb need it ([`shared`]).
impl<T: Transport> ItemStore for DynamoRest<T> {
    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .call(
                "GetItem",
                json!({"Key": to_json(&key), "ConsistentRead": true}),
            )
            .await?;
        match out.get("Item") {
            Some(i) => from_json(i).map(Some),
            None => Ok(None),
        }
    }

    /// The items at `keys` (one BatchGetItem, strongly consistent), in the keys' order.
    async fn batch_get(&self, keys: &[Item]) -> Result<Vec<Option<Item>>, StoreError> {
        let mut found: Vec<Item> = Vec::new();
        let mut request = json!({ &self.table: {
            "Keys": keys.iter().map(to_json).collect::<Vec<_>>(),
            "ConsistentRead": true,
        }});
        for _ in 0..8 {
            let out = self
                .call_raw("BatchGetItem", json!({ "RequestItems": request }))
                .await?;
            if let Some(items) = out["Responses"][&self.table].as_array() {
                for i in items {
                    found.push(from_json(i)?);
                }
            }
            match out.get("UnprocessedKeys") {
                Some(u) if u.get(&self.table).is_some() => request = u.clone(),
                _ => {
                    let same = |a: &Item, k: &Item| {
                        get_s(a, "pk") == get_s(k, "pk") && get_s(a, "sk") == get_s(k, "sk")
                    };
                    return Ok(keys
                        .iter()
                        .map(|k| found.iter().find(|a| same(a, k)).cloned())
                        .collect());
                }
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB kept keys unprocessed".into(),
        ))
    }

    /// One TransactWriteItems, again while it conflicts with a concurrent one. A cancelled
    /// transaction is `Precondition` when a condition failed (the caller reads again).
    async fn transact_writes(&self, writes: &[Write]) -> Result<(), StoreError> {
        let items: Vec<Value> = writes
            .iter()
            .map(|w| ledger::write_json(w, &self.table))
            .collect();
        let body = json!({ "TransactItems": items });
        let mut conflict = String::new();
        for _ in 0..ledger::ATTEMPTS {
            match self.call_raw("TransactWriteItems", body.clone()).await {
                Ok(_) => return Ok(()),
                // The reasons are in the message: "… [None, ConditionalCheckFailed]".
                Err(StoreError::Other(m)) if m.contains("TransactionCanceled") => {
                    if m.contains("ConditionalCheckFailed") {
                        return Err(StoreError::Precondition(m));
                    }
                    conflict = m;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(conflict))
    }

    /// One write on its own (`PutItem`, `UpdateItem`, `DeleteItem`); a failed condition is
    /// `Precondition`. A check alone writes nothing.
    async fn write_one(&self, w: &Write) -> Result<(), StoreError> {
        match ledger::single_json(w, &self.table) {
            Some((op, body)) => self.call_raw(op, body).await.map(drop),
            None => Ok(()),
        }
    }

    /// One page of `gsi1` (strongly consistent reads are not offered on a global index).
    async fn index_page(&self, q: IndexQuery) -> Result<IndexPage, StoreError> {
        let mut body = json!({
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": {"S": q.pk}},
            "Limit": q.limit.clamp(1, 1000),
        });
        if let Some(a) = q.after {
            body["KeyConditionExpression"] = json!("gsi1pk = :p AND gsi1sk > :a");
            body["ExpressionAttributeValues"][":a"] = json!({ "S": a });
        }
        if let Some(k) = &q.start {
            body["ExclusiveStartKey"] = to_json(k);
        }
        let out = self.call("Query", body).await?;
        let items = match out["Items"].as_array() {
            Some(v) => v.iter().map(from_json).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let next = match out.get("LastEvaluatedKey") {
            Some(k) => Some(from_json(k)?),
            None => None,
        };
        Ok(IndexPage { items, next })
    }
}

/// The condition that an upload item is still at offset `expected`.
fn at_offset(expected: u64) -> Value {
    json!({
        "ConditionExpression": "#off = :expected",
        "ExpressionAttributeNames": {"#off": "off"},
        "ExpressionAttributeValues": {":expected": {"N": expected.to_string()}},
    })
}

impl<T: Transport> MetadataStore for DynamoRest<T> {
    async fn repository_exists(&self, _repo: &str) -> Result<bool, StoreError> {
        unsupported("repository_exists")
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.get_item(crate::link_key(repo, digest)).await? {
            Some(item) => get_n(&item, "size").map(Some),
            None => Ok(None),
        }
    }

    /// The catalog entry is put every time (the SDK store caches which it wrote; an
    /// isolate is short-lived): one more write unit per pushed blob. Then the same read and
    /// transaction as wharf-dynamodb's (the link, its blob record, reverse-index item,
    /// project count and usage, outbox entry: [`ledger::link_writes`]), read again and
    /// retried while a concurrent write changes what it read.
    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.put(crate::catalog_item(repo), None).await?;
        shared::link(self, repo, digest, size, at_ms).await
    }

    /// The same read and transaction as wharf-dynamodb's ([`ledger::unlink_writes`]): what
    /// `collect_link` does, without its condition on the link's time; `Precondition` while
    /// a manifest references the blob.
    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        shared::unlink(self, repo, digest, at_ms).await
    }

    async fn missing_blobs(&self, _repo: &str, _d: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        unsupported("missing_blobs")
    }

    async fn missing_manifests(
        &self,
        _repo: &str,
        _d: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        unsupported("missing_manifests")
    }

    async fn manifest(
        &self,
        _repo: &str,
        _reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        unsupported("manifest")
    }

    async fn put_manifest(
        &self,
        _repo: &str,
        _manifest: &StoredManifest,
        _tags: &[&str],
        _at_ms: u64,
    ) -> Result<(), StoreError> {
        unsupported("put_manifest")
    }

    async fn delete_manifest(
        &self,
        _repo: &str,
        _digest: &Digest,
        _at_ms: u64,
    ) -> Result<bool, StoreError> {
        unsupported("delete_manifest")
    }

    async fn delete_tag(&self, _repo: &str, _tag: &str, _at_ms: u64) -> Result<bool, StoreError> {
        unsupported("delete_tag")
    }

    async fn list_tags(
        &self,
        _repo: &str,
        _last: Option<&str>,
        _n: usize,
    ) -> Result<Option<Page>, StoreError> {
        unsupported("list_tags")
    }

    async fn list_repositories(&self, _last: Option<&str>, _n: usize) -> Result<Page, StoreError> {
        unsupported("list_repositories")
    }

    async fn referrers(
        &self,
        _repo: &str,
        _subject: &Digest,
    ) -> Result<Vec<Descriptor>, StoreError> {
        unsupported("referrers")
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        let cond = json!({"ConditionExpression": "attribute_not_exists(pk)"});
        self.put(crate::upload_item(upload), Some(cond))
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => {
                    StoreError::Precondition(format!("upload {} exists", upload.id))
                }
                e => e,
            })
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        match self.get_item(crate::upload_key(id)).await? {
            Some(item) => crate::upload_from(&item).map(Some),
            None => Ok(None),
        }
    }

    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError> {
        let mut body = at_offset(expected_offset);
        body["Item"] = to_json(&crate::upload_item(upload));
        self.offset_conditional("PutItem", body, &upload.id, expected_offset)
            .await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.call(
            "DeleteItem",
            json!({"Key": to_json(&crate::upload_key(id))}),
        )
        .await
        .map(drop)
    }

    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError> {
        let mut body = at_offset(expected_offset);
        body["Key"] = to_json(&crate::upload_key(id));
        self.offset_conditional("DeleteItem", body, id, expected_offset)
            .await
    }

    async fn stale_uploads(
        &self,
        _before_ms: u64,
        _limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        unsupported("stale_uploads")
    }
}

/// As `DynamoMetadata` records pulls (an upload front serves none, but holds the port).
impl<T: Transport> PullTimes for DynamoRest<T> {
    async fn note_pull(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
        event: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        match self
            .transact_writes(&ledger::pull_writes(repo, digest, at_ms, event))
            .await
        {
            Err(StoreError::Precondition(_)) => match event {
                Some((id, raw)) => self.append_event(id, raw).await,
                None => Ok(()),
            },
            other => other,
        }
    }
}

/// What a quota check reads before the front links a blob: the same items as
/// `DynamoMetadata`'s.
impl<T: Transport> UsageCounters for DynamoRest<T> {
    /// One `Query` over the project's usage shards, summed as signed numbers (a shard's
    /// removals may pass its adds; only the sum is meaningful).
    async fn project_usage(&self, project: &str) -> Result<Usage, StoreError> {
        let out = self
            .call(
                "Query",
                json!({
                    "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                    "ExpressionAttributeValues": {
                        ":p": {"S": ledger::project_pk(project)},
                        ":s": {"S": ledger::USAGE_PREFIX},
                    },
                    "ConsistentRead": true,
                }),
            )
            .await?;
        let items = out["Items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(ledger::usage_sum(items.iter().map(|i| {
            [i["bytes"]["N"].as_str(), i["blobs"]["N"].as_str()]
        })))
    }
    async fn counts_blob(&self, project: &str, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .get_item(ledger::pblob_key(project, digest))
            .await?
            .is_some_and(|i| get_n(&i, "n").unwrap_or(0) > 0))
    }
}

/// Listings are the jobs' and the API's (the Lambda's): a front never lists.
impl<T: Transport> ManifestIndex for DynamoRest<T> {
    async fn list_manifests(
        &self,
        _repo: &str,
        _after: Option<&Digest>,
        _limit: usize,
    ) -> Result<Vec<ManifestEntry>, StoreError> {
        unsupported("listing manifests")
    }
    async fn list_tag_entries(
        &self,
        _repo: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<TagEntry>, StoreError> {
        unsupported("listing tags")
    }
    async fn list_links(
        &self,
        _repo: &str,
        _after: Option<&Digest>,
        _limit: usize,
    ) -> Result<Vec<LinkEntry>, StoreError> {
        unsupported("listing links")
    }
    async fn repositories_with(
        &self,
        _digest: &Digest,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        unsupported("listing repositories")
    }
}

/// Manifests are the API's (the Lambda's): a front never writes one.
impl<T: Transport> ConditionalTags for DynamoRest<T> {
    async fn put_manifest_expecting(
        &self,
        _repo: &str,
        _manifest: &StoredManifest,
        _tags: &[(&str, TagExpect)],
        _at_ms: u64,
    ) -> Result<(), StoreError> {
        unsupported("a manifest push")
    }
    async fn delete_tag_expecting(
        &self,
        _repo: &str,
        _tag: &str,
        _digest: &Digest,
        _at_ms: u64,
    ) -> Result<bool, StoreError> {
        unsupported("a tag delete")
    }
}

// Blob records and link collection: the same items, decisions and conditions as
// `DynamoMetadata`'s, from one definition.
crate::shared_abilities!(impl [T: Transport] for DynamoRest<T>);

impl<T: Transport> DocumentStore for DynamoRest<T> {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .get_item(crate::doc_key(kind, id))
            .await?
            .as_ref()
            .and_then(crate::doc_from)
            .map(|(_, v)| v.to_vec()))
    }

    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let cond = if_absent.then(|| json!({"ConditionExpression": "attribute_not_exists(pk)"}));
        self.put(crate::doc_item(kind, id, value), cond)
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => {
                    StoreError::Precondition(format!("{kind}/{id} exists"))
                }
                e => e,
            })
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let body = json!({
            "Key": to_json(&crate::doc_key(kind, id)),
            "ConditionExpression": "attribute_exists(pk)",
        });
        match self.call("DeleteItem", body).await {
            Ok(_) => Ok(true),
            Err(StoreError::Precondition(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_docs(
        &self,
        _kind: &str,
        _prefix: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        unsupported("list_docs")
    }
}

//! Registry metadata in one DynamoDB table, for stateless runtimes (Lambda).
//!
//! # Key design
//!
//! One table, string keys `pk` (partition) and `sk` (sort), on-demand capacity, and one
//! sparse global secondary index `gsi1` (`gsi1pk`, `gsi1sk`) that only upload items,
//! unlinked blob records and unreferenced links carry.
//! [`DynamoMetadata::create_table`] makes it (tests, local setups); Terraform makes the
//! same in production.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | repository (catalog entry) | `CATALOG` | `<name>` | — |
//! | blob link | `REPO#<name>` | `BLOB#<digest>` | `size`, `linked`, `refs`; while `refs` = 0, `gsi1pk` = `UNREFERENCED#<first hex digit>`, `gsi1sk` = `<name>#<digest>` |
//! | manifest | `REPO#<name>` | `MANIFEST#<digest>` | `info` (JSON), `body` (bytes) *or* `s3` (key), `subject`, `rev`, `mt`, `size`, `pushed`, `counted` |
//! | tag | `REPO#<name>` | `TAG#<tag>` | `digest`, and a copy of the manifest's `info` + `body`/`s3`, `pushed` |
//! | pull time | `REPO#<name>` | `PULL#<digest>` | `pulled` |
//! | referrer | `REPO#<name>` | `REFERRER#<subject>#<digest>` | `desc` (the descriptor, JSON) |
//! | upload | `UPLOAD#<id>` | `UPLOAD` | `repo`, `off`, `hash`, `state`, `digest`, `created`, `updated`, `gsi1pk` = `UPLOADS#<0-f>`, `gsi1sk` = `<updated, 15 digits>#<id>` |
//! | document | `DOC#<kind>` | `<id>` | `v` (bytes): users, robots, projects, members, audit events, throttles |
//!
//!
//! The records of the optional abilities (blob record and reverse index under
//! `BLOB#<digest>`, usage under `PROJECT#<project>`, the outbox under `OUTBOX#<0-3>`, the
//! schema markers under `META`) are listed, with why they are keyed so, in
//! [`wharf_dynamodb_items::ledger`] and ARCHITECTURE.md.
//!
//! Prefixes reserved for later: `USER#`, `POLICY#`, `AUDIT#`, `REPL#` (replication).
//!
//! # Costs and choices
//!
//! - **A manifest GET is one read**, by digest or by tag: a tag item carries a copy of its
//!   manifest (manifests are immutable, so the copy never goes stale). Tags and manifests
//!   are written together in one `TransactWriteItems` (with the referrer entry), so a tag
//!   never points at a manifest that is not there. The price: a tag write costs the
//!   manifest's size again, and `list_tags` reads whole tag items (a page of 100 tags of
//!   4 KB manifests is ~50 read units).
//! - **Large manifests** (info + bytes over [`DynamoOptions::inline_limit`], 350 KB by
//!   default; items stop at 400 KB, manifests may be 4 MiB) go to S3 at
//!   `manifests/<name>/<alg>/<hex>` with their key in the item; reading one is then one
//!   DynamoDB read and one S3 GET.
//! - **Blob links and the catalog:** a repository is listed once (a `CATALOG` item); the
//!   store remembers in memory which repositories it has listed, so a warm function writes
//!   one item per blob link. The catalog is one partition, read by `Query` with
//!   `ExclusiveStartKey = last`: `_catalog` paging never scans. (One partition takes ~1,000
//!   writes/s, and it is written only when a repository is first seen.)
//! - **Conditional writes:** `create_upload` puts only if absent; `update_upload` puts only
//!   if `off` still equals the expected offset (else `Precondition`, or `NotFound` if the
//!   upload is gone); `delete_tag` and document writes are conditional; `delete_manifest`
//!   deletes the manifest, every tag pointing at it and its referrer entry in one
//!   transaction, conditioned on the manifest's revision (bumped by every `put_manifest`)
//!   and on each tag still pointing at it, and retries if a concurrent write won.
//! - **Content writes keep their records in the same transaction** (`content.rs`): a link
//!   is a `BatchGetItem` (link, reverse item, blob record, project count) and a
//!   `TransactWriteItems` of 4–6 items (link, record, reverse item, count and usage on a
//!   first link, outbox entry); an unlink (conditioned on the link's `refs` being 0, and
//!   `collect_link`, also on its time) the same with 3–7; a manifest put reads its item, its blobs' links and
//!   records and its child manifests (one `BatchGetItem` per 100 keys) and writes manifest,
//!   tags, referrer, reverse item, outbox entry and a check of each child in one transaction
//!   (refused above 100 items: 96 children with one tag), with each blob's link (+1
//!   reference, or a check) and the records' counts while there is room; the links' +1s that
//!   do not fit go first, in transactions of their own (a link with references is never
//!   collected), taken back if the manifest's fails; a tag delete is 2 items. Each is
//!   conditioned on what was read and read again on a failed condition.
//! - **Reads are strongly consistent** by default ([`DynamoOptions::consistent_reads`]):
//!   a client that pushes and then pulls must see its push.
//! - **No `Scan` anywhere.** `stale_uploads` (the scheduled cleanup job only) queries the
//!   sparse index `gsi1`, spread over 16 partitions `UPLOADS#0`…`UPLOADS#f` so every
//!   PATCH does not write one hot index partition; the index is eventually consistent,
//!   which a job looking for uploads idle for hours does not notice.
//! - Audit events are documents of kind `audit` in one partition (`DOC#audit`): fine for
//!   moderate pull rates; a busy registry should batch them or shard by time (later).
#![deny(missing_docs)]

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_types::SdkConfig;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wharf_aws::store_error;
use wharf_core::model::manifest::{Descriptor, ManifestInfo};
use wharf_core::ports::{
    DocumentStore, MetadataStore, Page, StoredManifest, TagExpect, UploadRecord,
};
use wharf_core::{Digest, Reference, StoreError};
use wharf_dynamodb_items::ledger::lists::{IndexPage, IndexQuery};
use wharf_dynamodb_items::ledger::{self, Op, Write};
use wharf_dynamodb_items::shared::{self, ItemStore};
use wharf_dynamodb_items::{self as items, Attr, repo_pk};

mod abilities;
mod backfill;
mod content;

/// Item attributes larger than this (manifest info + bytes) go to S3.
pub const DEFAULT_INLINE_LIMIT: usize = 350_000;
/// Bytes of manifest payload (the manifest item and every tag's copy) one `put_manifest`
/// transaction may carry inline: DynamoDB refuses transactions over 4 MB.
const TRANSACT_PAYLOAD_BUDGET: usize = 3_000_000;
/// Repositories remembered as listed in the catalog, at most (then forgotten and relearnt).
const KNOWN_REPOS: usize = 10_000;
/// Items per `TransactWriteItems`.
const TX_MAX: usize = ledger::TRANSACT_ITEMS;
/// Attempts for a write that lost a race (transaction conflict, moved tag).
const ATTEMPTS: u32 = 5;
/// Reference-count writes per transaction of their own, when a manifest's do not fit in its
/// own transaction (room left for a retry's bookkeeping under the 100-item limit).
const REF_CHUNK: usize = 90;

/// The table, and where large manifests go.
#[derive(Clone, Debug)]
pub struct DynamoOptions {
    /// Table name.
    pub table: String,
    /// Strongly consistent reads (twice the read cost; read-after-write for clients).
    pub consistent_reads: bool,
    /// Bucket for manifests too large for an item; without one they are refused.
    pub manifest_bucket: Option<String>,
    /// Key prefix in that bucket.
    pub manifest_prefix: String,
    /// Path-style S3 URLs (local stand-ins).
    pub s3_force_path_style: bool,
    /// Largest manifest (info JSON + bytes) kept inline.
    pub inline_limit: usize,
    /// Counts SDK calls per operation, if set.
    pub call_counter: Option<wharf_aws::CallCounter>,
    /// Longest wait for one attempt of a call (the SDK retries after it). DynamoDB answers
    /// in milliseconds; without a limit, a table endpoint that accepts connections but
    /// never answers would hold the request until the function itself times out.
    pub attempt_timeout: Option<std::time::Duration>,
    /// The DynamoDB endpoint, over the SDK config's and `AWS_ENDPOINT_URL_DYNAMODB`
    /// (another region's table beside this one's).
    pub endpoint_url: Option<String>,
    /// The S3 endpoint of the manifest bucket, likewise.
    pub s3_endpoint_url: Option<String>,
}

impl DynamoOptions {
    /// Defaults for `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            consistent_reads: true,
            manifest_bucket: None,
            manifest_prefix: String::new(),
            s3_force_path_style: false,
            inline_limit: DEFAULT_INLINE_LIMIT,
            call_counter: None,
            attempt_timeout: Some(std::time::Duration::from_secs(5)),
            endpoint_url: None,
            s3_endpoint_url: None,
        }
    }
}

/// The DynamoDB metadata store. Cheap to clone; `Send + Sync`, and so are its futures.
#[derive(Clone)]
pub struct DynamoMetadata(Arc<Inner>);

struct Inner {
    client: Client,
    table: String,
    consistent: bool,
    s3: Option<(aws_sdk_s3::Client, String, String)>,
    inline_limit: usize,
    known_repos: Mutex<HashSet<String>>,
}

type Item = HashMap<String, AttributeValue>;

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(aws_smithy_types::Blob::new(v))
}

/// An item of wharf-dynamodb-items in the SDK's terms.
fn sdk(item: items::Item) -> Item {
    item.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::S(x) => AttributeValue::S(x),
                Attr::N(x) => n(x),
                Attr::B(x) => b(x),
            };
            (k, v)
        })
        .collect()
}

/// An SDK item in wharf-dynamodb-items' terms (attributes of other kinds left out). Takes
/// the item, so strings and bytes move rather than copy.
fn from_sdk(item: Item) -> Result<items::Item, StoreError> {
    let mut out = items::Item::new();
    for (k, v) in item {
        let attr = match v {
            AttributeValue::S(x) => Attr::S(x),
            AttributeValue::N(x) => Attr::N(
                x.parse()
                    .map_err(|_| other(format!("attribute {k} is not a whole number: {x}")))?,
            ),
            AttributeValue::B(x) => Attr::B(x.into_inner()),
            _ => continue,
        };
        out.insert(k, attr);
    }
    Ok(out)
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| other(format!("item lacks number {name}")))
}

fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    item.get(name)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref())
}

/// Maps a failed transaction: a failed condition is `Precondition`, a conflict with a
/// concurrent transaction `Unavailable` (retried by the callers).
fn tx_error(e: SdkError<TransactWriteItemsError, HttpResponse>) -> StoreError {
    if let SdkError::ServiceError(se) = &e
        && let TransactWriteItemsError::TransactionCanceledException(c) = se.err()
    {
        let codes: Vec<&str> = c
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .collect();
        if codes.contains(&"ConditionalCheckFailed") {
            return StoreError::Precondition(format!("transaction condition failed: {codes:?}"));
        }
        if codes
            .iter()
            .any(|c| *c == "TransactionConflict" || *c == "ThrottlingError")
        {
            return StoreError::Unavailable(format!("transaction conflict: {codes:?}"));
        }
        return StoreError::Other(format!("transaction cancelled: {codes:?}"));
    }
    store_error(e)
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
}

impl DynamoMetadata {
    /// Why a write conditional on an upload's offset failed: `Precondition` naming where
    /// the upload is (from the item the service returned, or a read when it returned none),
    /// or `NotFound` when the upload is gone (closed or cancelled meanwhile).
    async fn offset_conflict(
        &self,
        id: &str,
        expected: u64,
        returned: Option<&Item>,
    ) -> StoreError {
        let at = match returned.map(|i| get_n(i, "off")) {
            Some(Ok(at)) => Some(at),
            _ => match self.upload(id).await {
                Ok(u) => u.map(|u| u.offset),
                Err(e) => return e,
            },
        };
        match at {
            Some(at) => StoreError::Precondition(format!("upload {id} is at {at}, not {expected}")),
            None => StoreError::NotFound,
        }
    }

    /// Builds the store from an SDK config (region, credentials) and options.
    pub fn new(sdk: &SdkConfig, options: DynamoOptions) -> Self {
        let mut conf = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(t) = options.attempt_timeout {
            let mut timeouts = sdk
                .timeout_config()
                .map(|c| c.to_builder())
                .unwrap_or_else(aws_smithy_types::timeout::TimeoutConfig::builder);
            timeouts.set_operation_attempt_timeout(Some(t));
            conf = conf.timeout_config(timeouts.build());
        }
        if let Some(c) = &options.call_counter {
            conf = conf.interceptor(c.clone());
        }
        if let Some(e) = &options.endpoint_url {
            conf = conf.endpoint_url(e);
        }
        let s3 = options.manifest_bucket.map(|bucket| {
            let mut conf = aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(options.s3_force_path_style)
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                );
            if let Some(c) = &options.call_counter {
                conf = conf.interceptor(c.clone());
            }
            if let Some(e) = &options.s3_endpoint_url {
                conf = conf.endpoint_url(e);
            }
            (
                aws_sdk_s3::Client::from_conf(conf.build()),
                bucket,
                options.manifest_prefix,
            )
        });
        Self(Arc::new(Inner {
            client: Client::from_conf(conf.build()),
            table: options.table,
            consistent: options.consistent_reads,
            s3,
            inline_limit: options.inline_limit,
            known_repos: Mutex::new(HashSet::new()),
        }))
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.0.client
    }

    /// Creates the table and its index `gsi1` (on-demand capacity), if it does not exist;
    /// a table it creates is marked as being at the current schema version.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(other)
        };
        let key_el = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(other)
        };
        let out = self
            .0
            .client
            .create_table()
            .table_name(&self.0.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .key_schema(key_el("pk", KeyType::Hash)?)
            .key_schema(key_el("sk", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("gsi1")
                    .key_schema(key_el("gsi1pk", KeyType::Hash)?)
                    .key_schema(key_el("gsi1sk", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(other)?,
            )
            .send()
            .await;
        match out {
            // A new table holds nothing from before the records: it starts at the current
            // schema, its backfill done.
            Ok(_) => {
                self.wait_active().await?;
                self.mark_backfill_done().await
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Waits (up to two minutes) for a table just created to accept writes.
    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..240 {
            let out = self
                .0
                .client
                .describe_table()
                .table_name(&self.0.table)
                .send()
                .await
                .map_err(store_error)?;
            if out.table().and_then(|t| t.table_status())
                == Some(&aws_sdk_dynamodb::types::TableStatus::Active)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become active",
            self.0.table
        )))
    }

    async fn get(
        &self,
        item_key: Item,
        projection: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .0
            .client
            .get_item()
            .table_name(&self.0.table)
            .set_key(Some(item_key))
            .consistent_read(self.0.consistent)
            .set_projection_expression(projection.map(str::to_owned))
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }

    /// Lists `repo` in the catalog unless this process already did.
    async fn touch_repo(&self, repo: &str) -> Result<(), StoreError> {
        let known = |r: &str| {
            self.0
                .known_repos
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(r)
        };
        if known(repo) {
            return Ok(());
        }
        self.0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(sdk(items::catalog_item(repo))))
            .send()
            .await
            .map_err(store_error)?;
        let mut set = self.0.known_repos.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= KNOWN_REPOS {
            set.clear();
        }
        set.insert(repo.to_owned());
        Ok(())
    }

    /// Of `digests`, those with no `<kind>#<digest>` item in the repository's partition.
    async fn missing(
        &self,
        repo: &str,
        kind: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        let sks: Vec<String> = digests.iter().map(|d| format!("{kind}#{d}")).collect();
        let found = self.existing(&repo_pk(repo), &sks).await?;
        Ok(digests
            .iter()
            .zip(&sks)
            .filter(|(_, sk)| !found.contains(*sk))
            .map(|(d, _)| d.clone())
            .collect())
    }

    /// Which of `sks` exist in `pk`.
    async fn existing(&self, pk: &str, sks: &[String]) -> Result<HashSet<String>, StoreError> {
        let unique: HashSet<&String> = sks.iter().collect();
        let keys = unique.into_iter().map(|sk| key(pk, sk)).collect();
        Ok(self
            .batch_get_sdk(keys, Some("sk"))
            .await?
            .iter()
            .filter_map(|item| get_s(item, "sk").map(str::to_owned))
            .collect())
    }

    /// The items at `keys` (BatchGetItem, 100 keys a call, the keys it leaves unprocessed
    /// asked again), in no particular order; `projection` names the attributes returned.
    async fn batch_get_sdk(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        projection: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .set_projection_expression(projection.map(str::to_owned))
                    .consistent_read(self.0.consistent)
                    .build()
                    .map_err(other)?,
            );
            let mut attempt = 0;
            while let Some(req) = request.take() {
                let out = self
                    .0
                    .client
                    .batch_get_item()
                    .request_items(&self.0.table, req)
                    .send()
                    .await
                    .map_err(store_error)?;
                found.extend(
                    out.responses
                        .unwrap_or_default()
                        .remove(&self.0.table)
                        .unwrap_or_default(),
                );
                request = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.0.table))
                    .filter(|k| !k.keys().is_empty());
                if request.is_some() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(StoreError::Unavailable(
                            "DynamoDB kept keys unprocessed".into(),
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// Queries `pk` for sort keys in `[lo, hi)`-style conditions; returns items after
    /// `start` (exclusive), up to `limit`.
    async fn query(
        &self,
        pk: &str,
        cond: SortCond<'_>,
        start: Option<String>,
        limit: usize,
        projection: Option<&str>,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut items = Vec::new();
        let mut next = start.map(|sk| key(pk, sk));
        loop {
            let mut q = self
                .0
                .client
                .query()
                .table_name(&self.0.table)
                .consistent_read(self.0.consistent)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(next.take())
                .set_projection_expression(projection.map(str::to_owned))
                .limit((limit - items.len()).clamp(1, 1000) as i32);
            q = match cond {
                SortCond::Between(lo, hi) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo))
                    .expression_attribute_values(":hi", s(hi)),
                SortCond::Prefix("") => q.key_condition_expression("pk = :pk"),
                SortCond::Prefix(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                SortCond::All => q.key_condition_expression("pk = :pk"),
                SortCond::UpTo(hi) => q
                    .key_condition_expression("pk = :pk AND sk <= :hi")
                    .expression_attribute_values(":hi", s(hi)),
            };
            let out = q.send().await.map_err(store_error)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if items.len() < limit => next = Some(k),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    fn manifest_object_key(&self, prefix: &str, repo: &str, d: &Digest) -> String {
        format!(
            "{prefix}manifests/{repo}/{}/{}",
            d.algorithm().as_str(),
            d.hex()
        )
    }

    /// Reads a manifest from its item (inline) or from S3 (pointer).
    async fn decode_manifest(&self, item: &Item) -> Result<StoredManifest, StoreError> {
        if let Some(k) = get_s(item, "s3") {
            let (client, bucket, _) = self
                .0
                .s3
                .as_ref()
                .ok_or_else(|| other("manifest is in S3 but no bucket is configured"))?;
            let out = client
                .get_object()
                .bucket(bucket)
                .key(k)
                .send()
                .await
                .map_err(|e| match store_error(e) {
                    StoreError::NotFound => other(format!("manifest object {k} is missing")),
                    e => e,
                })?;
            let raw = out
                .body
                .collect()
                .await
                .map_err(|e| StoreError::Unavailable(format!("reading from S3: {e}")))?
                .into_bytes();
            return StoredManifest::from_record(&raw);
        }
        let info: ManifestInfo = serde_json::from_str(
            get_s(item, "info").ok_or_else(|| other("manifest item lacks info"))?,
        )
        .map_err(other)?;
        let bytes = get_b(item, "body").ok_or_else(|| other("manifest item lacks body"))?;
        Ok(StoredManifest {
            info,
            bytes: Bytes::copy_from_slice(bytes),
        })
    }

    /// Runs a transaction (or a single write), retrying conflicts with concurrent ones.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            let out = self
                .0
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
                .map_err(tx_error);
            match out {
                Err(StoreError::Unavailable(e)) if attempt + 1 < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "retrying a DynamoDB transaction");
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => return other.map(drop),
            }
        }
    }

    /// Reference-count writes in transactions of their own, then `main`: for a manifest
    /// whose counts do not fit in its transaction. If a step fails, what earlier steps
    /// added is taken back; what a crash leaves behind is an over-count, so a blob looks used
    /// when it is not (a leak the backfill's recount can find), never unused when it is.
    async fn refs_then(&self, refs: &[Write], main: &[Write]) -> Result<(), StoreError> {
        let mut applied = 0;
        let mut result = Ok(());
        for chunk in refs.chunks(REF_CHUNK) {
            if let Err(e) = self.transact_writes(chunk).await {
                result = Err(e);
                break;
            }
            applied += chunk.len();
        }
        if result.is_ok() {
            result = self.transact_writes(main).await;
        }
        if result.is_err() {
            for w in &refs[..applied] {
                self.take_back(w).await;
            }
        }
        result
    }

    /// Takes back a reference-count increment that [`Self::refs_then`] wrote; failures are
    /// logged (an over-count).
    async fn take_back(&self, w: &Write) {
        let done = match (ledger::undo_ref(w), ledger::link_of(&w.key())) {
            (Some(undo), _) => self.write_one(&undo).await,
            (None, Some((repo, d))) => self.link_ref_again(&repo, &d, false).await,
            (None, None) => Ok(()),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, key = ?w.key(), "could not take back a reference count");
        }
    }

    /// Writes `refs` (reference counts taken back after a manifest went) in transactions of
    /// their own, falling back to single writes (a link's read again, since its decrement is
    /// written as the value it leaves); failures are logged (an over-count).
    async fn refs_after(&self, refs: &[Write]) {
        for chunk in refs.chunks(REF_CHUNK) {
            if self.transact_writes(chunk).await.is_ok() {
                continue;
            }
            for w in chunk {
                let done = match ledger::link_of(&w.key()) {
                    Some((repo, d)) => match self.write_one(w).await {
                        Err(StoreError::Precondition(_)) => {
                            self.link_ref_again(&repo, &d, false).await
                        }
                        other => other,
                    },
                    None => self.write_one(w).await,
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, key = ?w.key(), "could not take back a reference count");
                }
            }
        }
    }

    /// One reference more or less on a link, read afresh each attempt (a link gone has no
    /// count to change).
    async fn link_ref_again(&self, repo: &str, d: &Digest, add: bool) -> Result<(), StoreError> {
        shared::read_decide_write(self, "link reference count", || async {
            let link = self.get_item(ledger::link_key(repo, d)).await?;
            let w = link.and_then(|l| ledger::link_ref_write(repo, d, &l, add));
            Ok((w.into_iter().collect(), ()))
        })
        .await
    }
}

/// The SDK's calls as the abilities shared with the REST client need them ([`shared`]).
impl ItemStore for DynamoMetadata {
    /// The items at `keys` (BatchGetItem, 100 keys a call, strongly consistent by
    /// default), in the keys' order.
    async fn batch_get(
        &self,
        keys: &[items::Item],
    ) -> Result<Vec<Option<items::Item>>, StoreError> {
        let id = |i: &items::Item| {
            (
                items::get_s(i, "pk").unwrap_or_default().to_owned(),
                items::get_s(i, "sk").unwrap_or_default().to_owned(),
            )
        };
        let mut unique: Vec<&items::Item> = Vec::new();
        for k in keys {
            if !unique.iter().any(|u| id(u) == id(k)) {
                unique.push(k);
            }
        }
        let keys_sdk = unique.into_iter().map(|k| sdk(k.clone())).collect();
        let mut found: HashMap<(String, String), items::Item> = HashMap::new();
        for item in self.batch_get_sdk(keys_sdk, None).await? {
            let item = from_sdk(item)?;
            found.insert(id(&item), item);
        }
        Ok(keys.iter().map(|k| found.get(&id(k)).cloned()).collect())
    }

    /// One item by key, as wharf-dynamodb-items reads it.
    async fn get_item(&self, k: items::Item) -> Result<Option<items::Item>, StoreError> {
        self.get(sdk(k), None).await?.map(from_sdk).transpose()
    }

    /// Runs `writes` as one transaction (conflicts retried; a failed condition is
    /// `Precondition`).
    async fn transact_writes(&self, writes: &[Write]) -> Result<(), StoreError> {
        let items = writes
            .iter()
            .map(|w| sdk_write(w, &self.0.table))
            .collect::<Result<Vec<_>, _>>()?;
        self.transact(items).await
    }

    /// One write outside a transaction (half the cost), for writes that stand alone.
    async fn write_one(&self, w: &Write) -> Result<(), StoreError> {
        let names = non_empty(w.names().into_iter().collect());
        let values = non_empty(sdk(w.values()));
        let c = &self.0.client;
        let t = &self.0.table;
        match &w.op {
            Op::Put(item) => c
                .put_item()
                .table_name(t)
                .set_item(Some(sdk(item.clone())))
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(drop)
                .map_err(store_error),
            Op::Update { key: k, expr } => c
                .update_item()
                .table_name(t)
                .set_key(Some(sdk(k.clone())))
                .update_expression(expr)
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(drop)
                .map_err(store_error),
            Op::Delete(k) => c
                .delete_item()
                .table_name(t)
                .set_key(Some(sdk(k.clone())))
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(drop)
                .map_err(store_error),
            Op::Check(_) => Ok(()),
        }
    }

    /// One page of `gsi1` (an index is never read strongly consistent).
    async fn index_page(&self, q: IndexQuery) -> Result<IndexPage, StoreError> {
        let (cond, after) = match q.after {
            Some(a) => ("gsi1pk = :p AND gsi1sk > :a", Some(s(a))),
            None => ("gsi1pk = :p", None),
        };
        let mut req = self
            .0
            .client
            .query()
            .table_name(&self.0.table)
            .index_name("gsi1")
            .key_condition_expression(cond)
            .expression_attribute_values(":p", s(q.pk))
            .set_exclusive_start_key(q.start.map(sdk))
            .limit(q.limit.clamp(1, 1000) as i32);
        if let Some(a) = after {
            req = req.expression_attribute_values(":a", a);
        }
        let out = req.send().await.map_err(store_error)?;
        Ok(IndexPage {
            items: out
                .items
                .unwrap_or_default()
                .into_iter()
                .map(from_sdk)
                .collect::<Result<_, _>>()?,
            next: out.last_evaluated_key.map(from_sdk).transpose()?,
        })
    }

    async fn pause(&self, attempt: u32) {
        backoff(attempt).await
    }
}

fn non_empty<K, V>(m: HashMap<K, V>) -> Option<HashMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

/// A write of wharf-dynamodb-items in the SDK's terms.
fn sdk_write(w: &Write, table: &str) -> Result<TransactWriteItem, StoreError> {
    let names = non_empty(w.names().into_iter().collect());
    let values = non_empty(sdk(w.values()));
    let b = TransactWriteItem::builder();
    Ok(match &w.op {
        Op::Put(item) => b.put(
            Put::builder()
                .table_name(table)
                .set_item(Some(sdk(item.clone())))
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(other)?,
        ),
        Op::Update { key: k, expr } => b.update(
            Update::builder()
                .table_name(table)
                .set_key(Some(sdk(k.clone())))
                .update_expression(expr)
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(other)?,
        ),
        Op::Delete(k) => b.delete(
            Delete::builder()
                .table_name(table)
                .set_key(Some(sdk(k.clone())))
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(other)?,
        ),
        Op::Check(k) => b.condition_check(
            ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(sdk(k.clone())))
                .set_condition_expression(w.cond.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(other)?,
        ),
    }
    .build())
}

/// A condition on the sort key of a query.
#[derive(Clone, Copy)]
enum SortCond<'a> {
    /// `sk BETWEEN lo AND hi`.
    Between(&'a str, &'a str),
    /// `begins_with(sk, p)` (everything if empty).
    Prefix(&'a str),
    /// Every item of the partition.
    All,
    /// `sk <= hi`.
    UpTo(&'a str),
}

impl MetadataStore for DynamoMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError> {
        Ok(self
            .get(sdk(items::catalog_item(repo)), Some("pk"))
            .await?
            .is_some())
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.get(sdk(items::link_key(repo, digest)), None).await? {
            Some(item) => get_n(&item, "size").map(Some),
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
        self.link(repo, digest, size, at_ms).await
    }

    async fn unlink_blob(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.unlink(repo, digest, at_ms).await
    }

    async fn missing_blobs(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(repo, "BLOB", digests).await
    }

    async fn missing_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, StoreError> {
        self.missing(repo, "MANIFEST", digests).await
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let sk = match reference {
            Reference::Digest(d) => format!("MANIFEST#{d}"),
            Reference::Tag(t) => format!("TAG#{t}"),
        };
        match self.get(key(repo_pk(repo), sk), None).await? {
            Some(item) => self.decode_manifest(&item).await.map(Some),
            None => Ok(None),
        }
    }

    async fn put_manifest(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: &[&str],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let tags: Vec<(&str, TagExpect)> = tags.iter().map(|t| (*t, TagExpect::Any)).collect();
        self.put_manifest_with(repo, m, &tags, at_ms).await
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let t = &self.0.table;
        let pk = repo_pk(repo);
        let mkey = key(&pk, format!("MANIFEST#{digest}"));
        let deleted = wharf_core::ports::Change::ManifestDeleted {
            repository: repo.to_owned(),
            digest: digest.clone(),
        };
        let d = digest.to_string();
        let tag_delete = |sk: &str| {
            Delete::builder()
                .table_name(t)
                .set_key(Some(key(&pk, sk)))
                .condition_expression("#d = :d")
                .expression_attribute_names("#d", "digest")
                .expression_attribute_values(":d", s(&d))
                .build()
                .map_err(other)
        };
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(item) = self.get(mkey.clone(), None).await? else {
                return Ok(false);
            };
            let s3_key = get_s(&item, "s3").map(str::to_owned);
            let mut doomed = vec![{
                let b = Delete::builder()
                    .table_name(t)
                    .set_key(Some(mkey.clone()))
                    .expression_attribute_names("#rev", "rev");
                // Only the revision we read: a concurrent put may have added a tag.
                let b = match item.get("rev") {
                    Some(rev) => b
                        .condition_expression("#rev = :rev")
                        .expression_attribute_values(":rev", rev.clone()),
                    None => b.condition_expression("attribute_not_exists(#rev)"),
                };
                TransactWriteItem::builder()
                    .delete(b.build().map_err(other)?)
                    .build()
            }];
            if let Some(subject) = get_s(&item, "subject") {
                doomed.push(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(t)
                                .set_key(Some(key(&pk, format!("REFERRER#{subject}#{d}"))))
                                .build()
                                .map_err(other)?,
                        )
                        .build(),
                );
            }
            // Its pull time, its outbox entry and, if its references are counted, its
            // reverse-index flag; the counts themselves if there is room.
            doomed.push(sdk_write(
                &Write::delete(ledger::pull_key(repo, digest)),
                t,
            )?);
            doomed.push(sdk_write(
                &ledger::outbox_write(at_ms, deleted.clone())?,
                t,
            )?);
            let mut refs = Vec::new();
            if item.contains_key("counted") {
                let info = self.manifest_info(&item).await?;
                let (reverse, r) = self.uncount_manifest(repo, &info).await?;
                doomed.push(sdk_write(&reverse, t)?);
                refs = r;
            }
            // The tags pointing at it.
            let mut tags = Vec::new();
            let mut next = None;
            loop {
                let page = self
                    .0
                    .client
                    .query()
                    .table_name(t)
                    .consistent_read(self.0.consistent)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .filter_expression("#d = :d")
                    .expression_attribute_names("#d", "digest")
                    .expression_attribute_values(":pk", s(&pk))
                    .expression_attribute_values(":lo", s("TAG#"))
                    .expression_attribute_values(":hi", s("TAG$"))
                    .expression_attribute_values(":d", s(&d))
                    .projection_expression("sk")
                    .set_exclusive_start_key(next.take())
                    .send()
                    .await
                    .map_err(store_error)?;
                tags.extend(
                    page.items()
                        .iter()
                        .filter_map(|i| get_s(i, "sk").map(str::to_owned)),
                );
                match page.last_evaluated_key {
                    Some(k) => next = Some(k),
                    None => break,
                }
            }
            // Tags beyond one transaction's room go first, one by one (each still only if it
            // points at this manifest).
            let room = TX_MAX - doomed.len();
            let extra = tags.len().saturating_sub(room);
            for sk in tags.drain(..extra) {
                let out = self
                    .0
                    .client
                    .delete_item()
                    .table_name(t)
                    .set_key(Some(key(&pk, sk)))
                    .condition_expression("#d = :d")
                    .expression_attribute_names("#d", "digest")
                    .expression_attribute_values(":d", s(&d))
                    .send()
                    .await
                    .map_err(store_error);
                match out {
                    Ok(_) | Err(StoreError::Precondition(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            for sk in &tags {
                doomed.push(TransactWriteItem::builder().delete(tag_delete(sk)?).build());
            }
            // Reference counts in the same transaction while there is room, the rest after it
            // (a crash in between leaves an over-count: a leak, never a loss).
            let room = TX_MAX - doomed.len();
            let later = refs.split_off(refs.len().min(room));
            for w in &refs {
                doomed.push(sdk_write(w, t)?);
            }
            match self.transact(doomed).await {
                Ok(()) => {
                    self.refs_after(&later).await;
                    if let (Some(k), Some((client, bucket, _))) = (s3_key, &self.0.s3)
                        && let Err(e) = client
                            .delete_object()
                            .bucket(bucket)
                            .key(&k)
                            .send()
                            .await
                            .map_err(store_error)
                    {
                        tracing::warn!(key = %k, error = %e, "could not delete a manifest object");
                    }
                    return Ok(true);
                }
                // A concurrent write moved a tag or re-put the manifest: look again.
                Err(StoreError::Precondition(e)) => {
                    tracing::debug!(error = %e, attempt, "manifest delete raced; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Precondition(format!(
            "manifest {d} kept changing while being deleted"
        )))
    }

    async fn delete_tag(&self, repo: &str, tag: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.delete_tag_with(repo, tag, at_ms, None).await
    }

    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError> {
        if !self.repository_exists(repo).await? {
            return Ok(None);
        }
        let (items, _) = self
            .query(
                &repo_pk(repo),
                SortCond::Between("TAG#", "TAG$"),
                last.map(|l| format!("TAG#{l}")),
                n.saturating_add(1),
                Some("sk"),
            )
            .await?;
        let mut tags: Vec<String> = items
            .iter()
            .filter_map(|i| get_s(i, "sk")?.strip_prefix("TAG#").map(str::to_owned))
            .collect();
        let more = tags.len() > n;
        tags.truncate(n);
        Ok(Some(Page { items: tags, more }))
    }

    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let (items, _) = self
            .query(
                "CATALOG",
                SortCond::All,
                last.map(str::to_owned),
                n.saturating_add(1),
                Some("sk"),
            )
            .await?;
        let mut names: Vec<String> = items
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect();
        let more = names.len() > n;
        names.truncate(n);
        Ok(Page { items: names, more })
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        let prefix = format!("REFERRER#{subject}#");
        let (items, _) = self
            .query(
                &repo_pk(repo),
                SortCond::Prefix(&prefix),
                None,
                usize::MAX,
                None,
            )
            .await?;
        items
            .iter()
            .map(|i| {
                serde_json::from_str(get_s(i, "desc").ok_or_else(|| other("referrer lacks desc"))?)
                    .map_err(other)
            })
            .collect()
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        self.0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(sdk(items::upload_item(upload))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| match store_error(e) {
                StoreError::Precondition(_) => {
                    StoreError::Precondition(format!("upload {} exists", upload.id))
                }
                e => e,
            })?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        match self.get(sdk(items::upload_key(id)), None).await? {
            Some(item) => items::upload_from(&from_sdk(item)?).map(Some),
            None => Ok(None),
        }
    }

    async fn update_upload(
        &self,
        upload: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), StoreError> {
        let out = self
            .0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(sdk(items::upload_item(upload))))
            .condition_expression("#off = :expected")
            .expression_attribute_names("#off", "off")
            .expression_attribute_values(":expected", n(expected_offset))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Err(self
                    .offset_conflict(&upload.id, expected_offset, c.item())
                    .await),
                _ => Err(store_error(e)),
            },
        }
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.0
            .client
            .delete_item()
            .table_name(&self.0.table)
            .set_key(Some(sdk(items::upload_key(id))))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn claim_upload(&self, id: &str, expected_offset: u64) -> Result<(), StoreError> {
        let out = self
            .0
            .client
            .delete_item()
            .table_name(&self.0.table)
            .set_key(Some(sdk(items::upload_key(id))))
            .condition_expression("#off = :expected")
            .expression_attribute_names("#off", "off")
            .expression_attribute_values(":expected", n(expected_offset))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(c)) => {
                    Err(self.offset_conflict(id, expected_offset, c.item()).await)
                }
                _ => Err(store_error(e)),
            },
        }
    }

    async fn stale_uploads(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        let mut out = Vec::new();
        let bound = format!("{before_ms:015}");
        for shard in 0..items::UPLOAD_SHARDS {
            let mut next = None;
            loop {
                if out.len() >= limit {
                    return Ok(out);
                }
                let page = self
                    .0
                    .client
                    .query()
                    .table_name(&self.0.table)
                    .index_name("gsi1")
                    .key_condition_expression("gsi1pk = :p AND gsi1sk < :b")
                    .expression_attribute_values(":p", s(items::upload_index_pk(shard)))
                    .expression_attribute_values(":b", s(bound.clone()))
                    .set_exclusive_start_key(next.take())
                    .limit((limit - out.len()).clamp(1, 1000) as i32)
                    .send()
                    .await
                    .map_err(store_error)?;
                for item in page.items.unwrap_or_default() {
                    out.push(items::upload_from(&from_sdk(item)?)?);
                }
                match page.last_evaluated_key {
                    Some(k) => next = Some(k),
                    None => break,
                }
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

impl DocumentStore for DynamoMetadata {
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(sdk(items::doc_key(kind, id)), None).await? {
            Some(i) => Ok(items::doc_from(&from_sdk(i)?).map(|(_, v)| v.to_vec())),
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
        let item = sdk(items::doc_item(kind, id, value));
        self.0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(item))
            .set_condition_expression(if_absent.then(|| "attribute_not_exists(pk)".to_owned()))
            .send()
            .await
            .map_err(|e| match store_error(e) {
                StoreError::Precondition(_) => {
                    StoreError::Precondition(format!("{kind}/{id} exists"))
                }
                e => e,
            })?;
        Ok(())
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let out = self
            .0
            .client
            .delete_item()
            .table_name(&self.0.table)
            .set_key(Some(sdk(items::doc_key(kind, id))))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(store_error);
        match out {
            Ok(_) => Ok(true),
            Err(StoreError::Precondition(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = match after {
            Some(a) if a.starts_with(prefix) && a > prefix => Some(a.to_owned()),
            // Every id with the prefix sorts before `a`.
            Some(a) if a > prefix => return Ok(Vec::new()),
            _ => None,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (rows, _) = self
            .query(
                &items::doc_pk(kind),
                SortCond::Prefix(prefix),
                start,
                limit,
                None,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for i in rows {
            if let Some((id, v)) = items::doc_from(&from_sdk(i)?) {
                out.push((id.to_owned(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let m = wharf_core::testing::test_manifest(&[Digest::sha256_of(b"a")], None, None);
        let back = StoredManifest::from_record(&m.to_record().expect("encode")).expect("decode");
        assert_eq!(back.info, m.info);
        assert_eq!(back.bytes, m.bytes);
    }

    /// The server needs concrete, shareable adapters whose futures are `Send`.
    #[allow(dead_code)]
    fn adapters_are_send(m: &DynamoMetadata, u: &UploadRecord, d: &Digest, sm: &StoredManifest) {
        fn send<T: Send>(_: T) {}
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<DynamoMetadata>();
        send(m.manifest("r", &Reference::Digest(d.clone())));
        send(m.put_manifest("r", sm, &["t"], 0));
        send(m.delete_manifest("r", d, 0));
        send(m.update_upload(u, 0));
        send(m.stale_uploads(0, 1));
        send(m.list_docs("k", "", None, 1));
        use wharf_core::ports::{
            Backfill, BlobRecords, ConditionalTags, LinkCollection, Outbox, PullTimes,
        };
        send(m.link_blob("r", d, 1, 0));
        send(m.touch_link("r", d, 0));
        send(m.collect_link("r", d, 0, 0));
        send(m.unreferenced_links(None, 1));
        send(m.unlinked_blobs(None, 1));
        send(m.clear_blob_mark(d, 0));
        send(m.unlink_blob("r", d, 0));
        send(m.put_manifest_expecting("r", sm, &[], 0));
        send(m.note_pull("r", d, 0, None));
        send(m.outbox_after(None, 1));
        send(m.backfill_step(1));
    }
}

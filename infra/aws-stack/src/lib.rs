//! The AWS deployment's stores, assembled from the runtime's settings (read through
//! [`Vars`], the core's settings loader, like every other `WHARF_*` variable), and their
//! bootstrap.
//!
//! One place for what the Lambda function and `wharf serve --storage s3 --metadata
//! dynamodb` share, so the two fronts of one registry read the same variables and agree on
//! the bucket, the table and the token key:
//!
//! | variable | meaning |
//! |---|---|
//! | `WHARF_S3_BUCKET` | bucket for blobs (and manifests too large for an item) — required |
//! | `WHARF_DYNAMODB_TABLE` | the metadata table — required |
//! | `WHARF_S3_PREFIX` | key prefix inside the bucket (default: none) |
//! | `WHARF_S3_PRESIGN_ENDPOINT` | base URL clients use to reach S3 in presigned links (default: the S3 endpoint) |
//! | `WHARF_S3_FORCE_PATH_STYLE` | `true` for path-style URLs (default: true when an endpoint override is set) |
//! | `WHARF_DYNAMODB_ATTEMPT_TIMEOUT_MS` | longest wait for one DynamoDB attempt (default 5000) |
//! | `WHARF_COUNT_AWS_CALLS` | `1`: count SDK calls per operation (benchmarks) |
//!
//! plus the SDK's own: `AWS_REGION`, credentials, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`.
//!
//! Another region's stores, the replica the jobs function copies every change to
//! ([`AwsSettings::replica_from_vars`]), with the same credentials:
//!
//! | variable | meaning |
//! |---|---|
//! | `WHARF_REPLICA_S3_BUCKET` | the replica's bucket; set, the `replicate` job copies to it |
//! | `WHARF_REPLICA_DYNAMODB_TABLE` | the replica's table — required with the bucket |
//! | `WHARF_REPLICA_REGION` | the replica's AWS region (default: this one's); also its name |
//! | `WHARF_REPLICA_NAME` | the name the replication state is kept under (default: the region, else `replica`) |
//! | `WHARF_REPLICA_S3_PREFIX` | key prefix in the replica's bucket |
//! | `WHARF_REPLICA_ENDPOINT_URL_S3`, `WHARF_REPLICA_ENDPOINT_URL_DYNAMODB` | endpoint overrides (local stand-ins) |
//! | `WHARF_REPLICA_S3_PRESIGN_ENDPOINT`, `WHARF_REPLICA_S3_FORCE_PATH_STYLE` | as this region's, for the replica |
#![deny(missing_docs)]

use std::time::Duration;
use wharf_aws::CallCounter;
use wharf_core::Env;
use wharf_core::auth::{Keys, stored_keys};
use wharf_core::settings::Vars;
use wharf_dynamodb::{DynamoMetadata, DynamoOptions};
use wharf_s3::{S3BlobStore, S3Options};

/// Where the stores are, read from the runtime's settings.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Bucket for blobs and large manifests.
    pub bucket: String,
    /// Key prefix in the bucket.
    pub prefix: String,
    /// The metadata table.
    pub table: String,
    /// Path-style S3 URLs.
    pub path_style: bool,
    /// Base URL for presigned links.
    pub presign_endpoint: Option<String>,
    /// Longest wait for one DynamoDB attempt.
    pub dynamodb_attempt_timeout: Duration,
    /// Count SDK calls.
    pub count_calls: bool,
    /// Another region than the SDK's (a replica's stores).
    pub region: Option<String>,
    /// S3 endpoint over the SDK's (a replica's stand-in).
    pub s3_endpoint: Option<String>,
    /// DynamoDB endpoint over the SDK's (a replica's stand-in).
    pub dynamodb_endpoint: Option<String>,
}

/// Another region's stores to replicate to.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// The name its replication state is kept under.
    pub name: String,
    /// Where its stores are.
    pub stores: AwsSettings,
}

impl AwsSettings {
    /// Reads the variables in the table above through the runtime's settings (the AWS SDK
    /// reads its own from the environment).
    pub fn from_vars(vars: &Vars<impl Fn(&str) -> Option<String>>) -> Result<Self, String> {
        let endpoint = vars
            .text("AWS_ENDPOINT_URL_S3")
            .or_else(|| vars.text("AWS_ENDPOINT_URL"));
        let timeout_ms = vars.number("WHARF_DYNAMODB_ATTEMPT_TIMEOUT_MS", 5000)?;
        Ok(Self {
            bucket: vars.required("WHARF_S3_BUCKET")?,
            table: vars.required("WHARF_DYNAMODB_TABLE")?,
            prefix: vars.text("WHARF_S3_PREFIX").unwrap_or_default(),
            path_style: vars
                .optional_switch("WHARF_S3_FORCE_PATH_STYLE")?
                .unwrap_or(endpoint.is_some()),
            presign_endpoint: vars.text("WHARF_S3_PRESIGN_ENDPOINT").or(endpoint),
            dynamodb_attempt_timeout: Duration::from_millis(timeout_ms),
            count_calls: vars.switch("WHARF_COUNT_AWS_CALLS", false)?,
            region: None,
            s3_endpoint: None,
            dynamodb_endpoint: None,
        })
    }

    /// The replica's stores (the `WHARF_REPLICA_*` variables of the second table above),
    /// if a replica bucket is set.
    pub fn replica_from_vars(
        vars: &Vars<impl Fn(&str) -> Option<String>>,
    ) -> Result<Option<ReplicaSettings>, String> {
        let Some(bucket) = vars.text("WHARF_REPLICA_S3_BUCKET") else {
            if vars.text("WHARF_REPLICA_DYNAMODB_TABLE").is_some() {
                return Err("WHARF_REPLICA_DYNAMODB_TABLE is set without WHARF_REPLICA_S3_BUCKET: a replica needs both".into());
            }
            return Ok(None);
        };
        let here = Self::from_vars(vars)?;
        let region = vars.text("WHARF_REPLICA_REGION");
        let s3_endpoint = vars.text("WHARF_REPLICA_ENDPOINT_URL_S3");
        let name = vars
            .text("WHARF_REPLICA_NAME")
            .or_else(|| region.clone())
            .unwrap_or_else(|| "replica".into());
        let stores = AwsSettings {
            bucket,
            table: vars.required("WHARF_REPLICA_DYNAMODB_TABLE")?,
            prefix: vars.text("WHARF_REPLICA_S3_PREFIX").unwrap_or_default(),
            path_style: vars
                .optional_switch("WHARF_REPLICA_S3_FORCE_PATH_STYLE")?
                .unwrap_or(s3_endpoint.is_some()),
            presign_endpoint: vars
                .text("WHARF_REPLICA_S3_PRESIGN_ENDPOINT")
                .or_else(|| s3_endpoint.clone()),
            dynamodb_attempt_timeout: here.dynamodb_attempt_timeout,
            count_calls: here.count_calls,
            region,
            s3_endpoint,
            dynamodb_endpoint: vars.text("WHARF_REPLICA_ENDPOINT_URL_DYNAMODB"),
        };
        if stores.bucket == here.bucket && stores.table == here.table && stores.region.is_none() {
            return Err(format!(
                "the replica's bucket and table are this region's own ({}, {}): replication would copy onto itself",
                here.bucket, here.table
            ));
        }
        Ok(Some(ReplicaSettings { name, stores }))
    }
}

/// The two stores of an AWS deployment.
#[derive(Clone)]
pub struct AwsStores {
    /// Blobs in S3.
    pub blobs: S3BlobStore,
    /// Metadata in DynamoDB.
    pub meta: DynamoMetadata,
    /// SDK calls so far, when counting.
    pub calls: Option<CallCounter>,
}

/// Builds the stores: SDK configuration from the environment, no network call except
/// resolving credentials for presigning.
pub async fn open(s: &AwsSettings) -> Result<AwsStores, String> {
    let mut sdk = wharf_aws::env_config(None).await;
    if let Some(r) = &s.region {
        sdk = wharf_aws::in_region(&sdk, r);
    }
    let calls = s.count_calls.then(CallCounter::default);
    let blobs = S3BlobStore::new(
        &sdk,
        S3Options {
            prefix: s.prefix.clone(),
            force_path_style: s.path_style,
            presign_endpoint: s.presign_endpoint.clone(),
            call_counter: calls.clone(),
            endpoint_url: s.s3_endpoint.clone(),
            ..S3Options::new(&s.bucket)
        },
    )
    .await
    .map_err(|e| format!("S3 bucket {}: {e}", s.bucket))?;
    let meta = DynamoMetadata::new(
        &sdk,
        DynamoOptions {
            manifest_bucket: Some(s.bucket.clone()),
            manifest_prefix: format!("{}manifests/", s.prefix),
            s3_force_path_style: s.path_style,
            call_counter: calls.clone(),
            attempt_timeout: Some(s.dynamodb_attempt_timeout),
            endpoint_url: s.dynamodb_endpoint.clone(),
            s3_endpoint_url: s.s3_endpoint.clone(),
            ..DynamoOptions::new(&s.table)
        },
    );
    Ok(AwsStores { blobs, meta, calls })
}

/// Creates the bucket and the table if they do not exist (development and tests; in the
/// cloud Terraform does it). Returns what it did, a line per resource.
pub async fn bootstrap(stores: &AwsStores) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let bucket = stores.blobs.bucket().to_owned();
    match stores
        .blobs
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
    {
        Ok(_) => done.push(format!("created bucket {bucket}")),
        Err(e) => {
            let exists = e.as_service_error().is_some_and(|se| {
                se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()
            });
            if !exists {
                return Err(format!(
                    "creating bucket {bucket}: {}",
                    wharf_aws::store_error(e)
                ));
            }
            done.push(format!("bucket {bucket} exists"));
        }
    }
    stores
        .meta
        .create_table()
        .await
        .map_err(|e| format!("creating table: {e}"))?;
    done.push("table ready".into());
    Ok(done)
}

/// The token keys of a stateless deployment: `configured` (`WHARF_TOKEN_KEYS_PEM`, from
/// [`Vars::token_keys_pem`]; e.g. from a secret) if set, else the key kept in the table
/// (generated by the first instance or `wharf aws bootstrap`).
pub async fn token_keys(
    stores: &AwsStores,
    env: &impl Env,
    configured: Option<Keys>,
) -> Result<Keys, String> {
    if let Some(keys) = configured {
        return Ok(keys);
    }
    stored_keys(&stores.meta, env)
        .await
        .map_err(|e| format!("token key in the table: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::new(move |k: &str| map.get(k).cloned())
    }

    const HERE: [(&str, &str); 2] = [
        ("WHARF_S3_BUCKET", "a-blobs"),
        ("WHARF_DYNAMODB_TABLE", "a-meta"),
    ];

    #[test]
    fn a_replica_is_another_regions_bucket_and_table() {
        assert!(
            AwsSettings::replica_from_vars(&vars(&HERE))
                .expect("no replica")
                .is_none()
        );
        let mut v = HERE.to_vec();
        v.extend([
            ("WHARF_REPLICA_S3_BUCKET", "b-blobs"),
            ("WHARF_REPLICA_DYNAMODB_TABLE", "b-meta"),
            ("WHARF_REPLICA_REGION", "eu-west-1"),
            ("WHARF_REPLICA_ENDPOINT_URL_S3", "http://127.0.0.2:9000"),
        ]);
        let r = AwsSettings::replica_from_vars(&vars(&v))
            .expect("valid")
            .expect("a replica");
        assert_eq!(r.name, "eu-west-1");
        assert_eq!(
            (r.stores.bucket.as_str(), r.stores.table.as_str()),
            ("b-blobs", "b-meta")
        );
        assert_eq!(r.stores.region.as_deref(), Some("eu-west-1"));
        // An endpoint override implies path style and is where presigned links point.
        assert!(r.stores.path_style);
        assert_eq!(
            r.stores.presign_endpoint.as_deref(),
            Some("http://127.0.0.2:9000")
        );
        assert_eq!(r.stores.dynamodb_endpoint, None);
    }

    #[test]
    fn a_half_or_self_replica_is_refused() {
        let mut v = HERE.to_vec();
        v.push(("WHARF_REPLICA_DYNAMODB_TABLE", "b-meta"));
        let e = AwsSettings::replica_from_vars(&vars(&v)).expect_err("no bucket");
        assert!(e.contains("WHARF_REPLICA_S3_BUCKET"), "{e}");
        let mut v = HERE.to_vec();
        v.push(("WHARF_REPLICA_S3_BUCKET", "b-blobs"));
        let e = AwsSettings::replica_from_vars(&vars(&v)).expect_err("no table");
        assert!(e.contains("WHARF_REPLICA_DYNAMODB_TABLE"), "{e}");
        let mut v = HERE.to_vec();
        v.extend([
            ("WHARF_REPLICA_S3_BUCKET", "a-blobs"),
            ("WHARF_REPLICA_DYNAMODB_TABLE", "a-meta"),
        ]);
        let e = AwsSettings::replica_from_vars(&vars(&v)).expect_err("itself");
        assert!(e.contains("onto itself"), "{e}");
    }
}

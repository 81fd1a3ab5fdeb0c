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
        })
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
    let sdk = wharf_aws::env_config(None).await;
    let calls = s.count_calls.then(CallCounter::default);
    let blobs = S3BlobStore::new(
        &sdk,
        S3Options {
            prefix: s.prefix.clone(),
            force_path_style: s.path_style,
            presign_endpoint: s.presign_endpoint.clone(),
            call_counter: calls.clone(),
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

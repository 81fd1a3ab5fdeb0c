//! Front mode: the Worker as the upload front of an AWS deployment (`WHARF_UPLOAD_URL` of
//! the Lambda points here). Lambda caps request bodies at 6 MB; a Worker takes 100 MB and
//! more per request, so docker's single-PATCH layer pushes go here. The Lambda answers the
//! upload POST with a `Location` on this Worker carrying an upload capability (HMAC with
//! the shared `WHARF_UPLOAD_SECRET`); this Worker serves only such requests (PATCH, PUT,
//! status, cancel: `Config::capability_only`, no token service, everything else 401), and
//! writes the upload into the deployment's own S3 bucket and DynamoDB table over signed
//! `fetch` (wharf-s3's `RestApi`, wharf-dynamodb-items' `DynamoRest`), in the same layout,
//! so the Lambda serves the blob right after.
//!
//! | variable | meaning |
//! |---|---|
//! | `WHARF_FRONT_S3_BUCKET` | the deployment's bucket (`WHARF_S3_BUCKET`); setting it turns front mode on |
//! | `WHARF_FRONT_S3_PREFIX` | its key prefix (`WHARF_S3_PREFIX`), default none |
//! | `WHARF_FRONT_S3_ENDPOINT` | S3 endpoint, default AWS's regional one |
//! | `WHARF_FRONT_S3_PATH_STYLE` | `true` for path-style URLs (local stand-ins) |
//! | `WHARF_FRONT_DYNAMODB_TABLE` | the deployment's table (`WHARF_DYNAMODB_TABLE`) |
//! | `WHARF_FRONT_DYNAMODB_ENDPOINT` | DynamoDB endpoint, default AWS's regional one |
//! | `WHARF_FRONT_AWS_REGION` | the deployment's region |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (secrets) | an IAM user limited to the bucket's `uploads/` and `blobs/` and the table's items |
//! | `WHARF_UPLOAD_SECRET` (secret) | the capability key shared with the Lambda (at least 32 characters) |
//! | `WHARF_MAX_BODY_BYTES` | largest request body, as in edge mode (default 104857600, the Free/Pro limit) |
//! | `AWS_SESSION_TOKEN` (secret) | with temporary credentials |

use crate::WorkerEnv;
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wharf_core::Registry;
use wharf_core::settings::Vars;
use wharf_dynamodb_items::DynamoRest;
use wharf_s3::{RestApi, S3Blobs};
use wharf_sigv4::{AwsClient, Transport};

/// The S3 bucket over fetch.
pub type FrontBlobs = S3Blobs<RestApi<Fetch>>;
/// The DynamoDB table over fetch.
pub type FrontMeta = DynamoRest<Fetch>;
/// The registry in front mode.
pub type FrontApp = Registry<FrontBlobs, FrontMeta, WorkerEnv>;

/// workerd's `fetch` as the AWS clients' transport, with `Date.now()` as the clock.
#[derive(Clone, Copy, Default)]
pub struct Fetch;

impl Transport for Fetch {
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, String> {
        let (parts, body) = req.into_parts();
        let headers = worker::Headers::new();
        for (k, v) in &parts.headers {
            let v = v.to_str().map_err(|e| e.to_string())?;
            headers.append(k.as_str(), v).map_err(|e| e.to_string())?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(parts.method.as_str().to_owned()))
            .with_headers(headers);
        if !body.is_empty() {
            // One copy into JS memory; fetch sends it with its length.
            init.with_body(Some(js_sys::Uint8Array::from(&body[..]).into()));
        }
        let r = worker::Request::new_with_init(&parts.uri.to_string(), &init)
            .map_err(|e| e.to_string())?;
        let mut resp = worker::Fetch::Request(r)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = http::Response::builder().status(resp.status_code());
        for (k, v) in resp.headers().entries() {
            out = out.header(k, v);
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        out.body(Bytes::from(bytes)).map_err(|e| e.to_string())
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(js_sys::Date::now() as u64)
    }
}

/// The front's registry, or `None` when `WHARF_FRONT_S3_BUCKET` is unset (edge mode).
pub fn build(vars: &Vars<impl Fn(&str) -> Option<String>>) -> Result<Option<FrontApp>, String> {
    const MODE: &str = "front mode (WHARF_FRONT_S3_BUCKET)";
    let Some(bucket) = vars.text("WHARF_FRONT_S3_BUCKET") else {
        return Ok(None);
    };
    let table = vars.required_by("WHARF_FRONT_DYNAMODB_TABLE", MODE)?;
    let region = vars.required_by("WHARF_FRONT_AWS_REGION", MODE)?;
    let config = vars.front_config(MODE, Some(crate::config::FREE_PLAN_BODY))?;
    let creds = aws_credential_types::Credentials::new(
        vars.required_by("AWS_ACCESS_KEY_ID", MODE)?,
        vars.required_by("AWS_SECRET_ACCESS_KEY", MODE)?,
        vars.text("AWS_SESSION_TOKEN"),
        None,
        "wharf-front",
    );
    let s3 = RestApi::new(
        AwsClient::new(Fetch, creds.clone(), "s3", &region),
        vars.text("WHARF_FRONT_S3_ENDPOINT").as_deref(),
        &bucket,
        vars.switch("WHARF_FRONT_S3_PATH_STYLE", false)?,
    )
    .map_err(|e| format!("WHARF_FRONT_S3_ENDPOINT: {e}"))?;
    let blobs = S3Blobs::from_api(s3, vars.text("WHARF_FRONT_S3_PREFIX").unwrap_or_default());
    let meta = DynamoRest::new(
        AwsClient::new(Fetch, creds, "dynamodb", &region),
        vars.text("WHARF_FRONT_DYNAMODB_ENDPOINT").as_deref(),
        &table,
    );
    Ok(Some(Registry::new(blobs, meta, WorkerEnv, config)))
}

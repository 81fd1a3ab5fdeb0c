//! The scheduled jobs on AWS Lambda: one function for every job, invoked by EventBridge
//! Scheduler with the job as its input (`{"job":"gc"}`, `{"job":"advance"}`,
//! `{"job":"cleanup_uploads"}`; Scheduler passes a target's input as it is, with no
//! envelope). The jobs are the core's (`Registry::run_job`) on the same S3 bucket and
//! DynamoDB table as the API function, configured by the same variables (see
//! `wharf_aws_stack`), plus `WHARF_GC_GRACE_SECS` and `WHARF_UPLOAD_MAX_AGE_HOURS`.
//!
//! A run stops 30 s before the invocation's deadline (Lambda's 15 minutes at most) and
//! saves its checkpoint; the next invocation (the every-minute `advance` schedule)
//! continues it. So a collection of any size finishes, in as many invocations as it takes.
//!
//! `{"job":"replicate"}` copies every change to another region's stores (the
//! `WHARF_REPLICA_*` variables, see `wharf_aws_stack`) through that region's own handlers
//! in this process: blobs stream from this bucket into the replica's, never through a
//! function URL's 6 MB limit. It is triggered two ways, and a run is idempotent, so either
//! may come while the other runs:
//! - by the table's DynamoDB stream (an event source mapping filtered to outbox items):
//!   any batch of stream records (`{"Records":[{"eventSource":"aws:dynamodb",…}]}`) is a
//!   `replicate` run. The records only wake the function; the outbox is what it reads, from
//!   its checkpoint, so a lost or repeated batch loses and repeats nothing. This is what
//!   makes the lag seconds, not the minute of a schedule;
//! - by an every-minute schedule: the catch-up that retries what a failing replica
//!   refused and runs when the stream has nothing new.
//!
//! The region that arbitrates identity (the one without `WHARF_IDENTITY_HOME`) also
//! mirrors users, robots, members, projects, their policies and the token key to the
//! replica on every run, so a deletion or a password change holds there within a run: the
//! schedule's minute at most.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use wharf_core::Registry;
use wharf_core::jobs::Job;
use wharf_core::jobs::replicate::pass::PassOptions;
use wharf_core::jobs::replicate::v2::V2Target;
use wharf_core::settings::{GcSchedule, Vars};
use wharf_dynamodb::DynamoMetadata;
use wharf_os::SystemEnv;
use wharf_s3::S3BlobStore;

/// Left before the deadline when a job stops: a step's calls and the run's save fit in it
/// (a quarter of the time left, for functions given less than two minutes).
const MARGIN_MS: u64 = 30_000;

type AwsRegistry = Registry<S3BlobStore, DynamoMetadata, SystemEnv>;

struct Function {
    registry: AwsRegistry,
    schedule: GcSchedule,
    /// The replica's name and its registry, on its own stores.
    replica: Option<(String, AwsRegistry)>,
    /// This region arbitrates identity (no `WHARF_IDENTITY_HOME`): a replicate run mirrors
    /// it to the replica.
    identity_home: bool,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn build() -> Result<Function, String> {
    let vars = Vars::new(env_var);
    let stores = wharf_aws_stack::open(&wharf_aws_stack::AwsSettings::from_vars(&vars)?).await?;
    let config = vars.config(None)?;
    let replica = match wharf_aws_stack::AwsSettings::replica_from_vars(&vars)? {
        Some(r) => {
            let there = wharf_aws_stack::open(&r.stores).await?;
            tracing::info!(replica = %r.name, bucket = %r.stores.bucket, table = %r.stores.table, "replicating to");
            // The replica's registry takes only the system's writes: none of this region's
            // region settings apply to it.
            let theirs = wharf_core::Config {
                regions: None,
                identity_home: None,
                ..config.clone()
            };
            Some((
                r.name,
                Registry::new(there.blobs, there.meta, SystemEnv, theirs),
            ))
        }
        None => None,
    };
    Ok(Function {
        identity_home: config.identity_home.is_none(),
        registry: Registry::new(stores.blobs, stores.meta, SystemEnv, config),
        schedule: vars.gc_schedule()?,
        replica,
    })
}

/// The job an event asks for: a schedule's input, or a batch of DynamoDB stream records
/// (a `replicate` run).
fn job_of(payload: &Value) -> Result<Job, String> {
    let from_stream = payload
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:dynamodb"))
        });
    if from_stream {
        return Ok(Job::Replicate);
    }
    serde_json::from_value(payload.clone()).map_err(|e| {
        format!(
            "the input must be a job such as {{\"job\":\"gc\"}} (gc, advance, cleanup_uploads, retention, replicate, replication_rules) or DynamoDB stream records: {e}; got {payload}"
        )
    })
}

async fn handle(f: &Function, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let job = job_of(&event.payload)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let left = event.context.deadline.saturating_sub(now);
    // Lambda always sets a deadline; a local emulator may send none (0) or a stale one:
    // then the job gets a minute.
    let deadline = if left == 0 {
        tracing::warn!(
            deadline = event.context.deadline,
            now,
            "no deadline ahead; the job gets a minute"
        );
        now + 60_000
    } else {
        event
            .context
            .deadline
            .saturating_sub(MARGIN_MS.min(left / 4))
    };
    let out = match (job, &f.replica) {
        (Job::Replicate, Some((name, there))) => {
            // Identity first: the replica has the projects' policies before their content.
            let identity = if f.identity_home {
                match f.registry.mirror_identity(&there.meta).await {
                    Ok(r) => serde_json::json!(r),
                    Err(e) => serde_json::json!({ "error": e.message }),
                }
            } else {
                Value::Null
            };
            let target = V2Target {
                transport: there,
                base: String::new(),
            };
            f.registry
                .replicate_until(&target, name, PassOptions::default(), deadline)
                .await
                .map(|mut out| {
                    out["identity"] = identity;
                    out
                })
        }
        (Job::Replicate, None) => {
            return Err("the replicate job needs a replica: set WHARF_REPLICA_S3_BUCKET and WHARF_REPLICA_DYNAMODB_TABLE".into());
        }
        (Job::ReplicationRules, _) => f
            .registry
            .replication_tick(&wharf_v2_client::HttpConnector, deadline)
            .await
            .map(|r| serde_json::json!({ "job": Job::ReplicationRules, "tick": r })),
        (job, _) => f.registry.run_job(job, &f.schedule, deadline).await,
    }
    .map_err(|e| e.message)?;
    tracing::info!(%out, "job done");
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time()
        .init();
    let function: &'static Function = match build().await {
        Ok(f) => Box::leak(Box::new(f)),
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(function, event).await
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_stream_batches_name_their_jobs() {
        let job = |v: &str| job_of(&serde_json::from_str(v).expect("json"));
        assert_eq!(job(r#"{"job":"gc"}"#), Ok(Job::Gc));
        assert_eq!(job(r#"{"job":"replicate"}"#), Ok(Job::Replicate));
        assert_eq!(
            job(r#"{"job":"replication_rules"}"#),
            Ok(Job::ReplicationRules)
        );
        let stream = r#"{"Records":[{"eventID":"1","eventName":"INSERT","eventSource":"aws:dynamodb",
            "awsRegion":"eu-west-1","dynamodb":{"Keys":{"pk":{"S":"outbox"}}}}]}"#;
        assert_eq!(job(stream), Ok(Job::Replicate));
        // Records of another source are not a replication trigger, nor a job.
        let sqs = r#"{"Records":[{"eventSource":"aws:sqs","body":"x"}]}"#;
        let err = job(sqs).expect_err("an SQS batch is no job");
        assert!(err.contains("replicate"), "{err}");
        assert!(job(r#"{"job":"nope"}"#).is_err());
    }
}

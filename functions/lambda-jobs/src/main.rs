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

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use wharf_core::Registry;
use wharf_core::jobs::Job;
use wharf_core::settings::{GcSchedule, Vars};
use wharf_dynamodb::DynamoMetadata;
use wharf_os::SystemEnv;
use wharf_s3::S3BlobStore;

/// Left before the deadline when a job stops: a step's calls and the run's save fit in it
/// (a quarter of the time left, for functions given less than two minutes).
const MARGIN_MS: u64 = 30_000;

struct Function {
    registry: Registry<S3BlobStore, DynamoMetadata, SystemEnv>,
    schedule: GcSchedule,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn build() -> Result<Function, String> {
    let vars = Vars::new(env_var);
    let stores = wharf_aws_stack::open(&wharf_aws_stack::AwsSettings::from_vars(&vars)?).await?;
    let config = vars.config(None)?;
    Ok(Function {
        registry: Registry::new(stores.blobs, stores.meta, SystemEnv, config),
        schedule: vars.gc_schedule()?,
    })
}

async fn handle(f: &Function, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let job: Job = serde_json::from_value(event.payload.clone()).map_err(|e| {
        format!(
            "the input must be a job such as {{\"job\":\"gc\"}} (gc, advance, cleanup_uploads, retention): {e}; got {}",
            event.payload
        )
    })?;
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
    let out = f
        .registry
        .run_job(job, &f.schedule, deadline)
        .await
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

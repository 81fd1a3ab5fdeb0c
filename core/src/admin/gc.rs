//! `/api/v1/gc`: queue a garbage-collection run, read one, read the history. System
//! administrators only. Queuing writes the run's record; the runtime's scheduler runs it
//! (`Registry::advance_gc`), so a run outlives the request and the invocation.

use super::{Admin, bad, denied, ok_json};
use crate::auth::Principal;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use crate::runs::{self, GcOptions};
use http::StatusCode;
use serde::Deserialize;

/// The grace period when a request names none: what Harbor users expect of a window
/// against races is hours; an hour covers any push's HEAD-to-manifest time.
pub const DEFAULT_GRACE_SECS: u64 = 3600;

/// Uploads untouched this long are abandoned (the upload cleanup's default too).
pub const DEFAULT_UPLOAD_MAX_AGE_SECS: u64 = 24 * 3600;

/// A request to collect.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GcRequest {
    #[serde(default)]
    dry_run: bool,
    /// Recompute the bookkeeping and report differences; collects nothing.
    #[serde(default)]
    verify: bool,
    /// Seconds; 0 is allowed (the conditional writes alone then protect pushes in flight).
    #[serde(default)]
    grace_secs: Option<u64>,
    #[serde(default)]
    upload_max_age_secs: Option<u64>,
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    pub(super) async fn queue_gc<B: BlobStore>(
        &self,
        who: &Principal,
        req: GcRequest,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        let secs = |s: u64, what: &str| {
            s.checked_mul(1000)
                .ok_or_else(|| bad(format!("{what} is too large")))
        };
        let options = GcOptions {
            grace_ms: secs(req.grace_secs.unwrap_or(DEFAULT_GRACE_SECS), "grace_secs")?,
            upload_max_age_ms: secs(
                req.upload_max_age_secs
                    .unwrap_or(DEFAULT_UPLOAD_MAX_AGE_SECS),
                "upload_max_age_secs",
            )?,
            dry_run: req.dry_run,
            verify: req.verify,
        };
        let run = runs::queue_gc(self.meta, self.env, options, who.name()).await?;
        self.gate.events.emit(Event::GcQueued {
            run: run.id.clone(),
            dry_run: options.dry_run,
            verify: options.verify,
        });
        Ok(ok_json::<B>(StatusCode::ACCEPTED, run_json(&run)?))
    }

    pub(super) async fn get_gc<B: BlobStore>(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        match runs::load(self.meta, id).await? {
            Some(run) => Ok(ok_json::<B>(StatusCode::OK, run_json(&run)?)),
            None => Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("no garbage collection run {id}"),
            )
            .with_status(StatusCode::NOT_FOUND)),
        }
    }

    pub(super) async fn gc_history<B: BlobStore>(
        &self,
        who: &Principal,
        after: Option<String>,
        limit: Option<String>,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        let limit = match limit {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| bad("limit takes a number"))?
                .clamp(1, 100),
            None => 20,
        };
        let list = runs::history(self.meta, after.as_deref(), limit).await?;
        // The history lists totals; a run's items are in its own record.
        let view: Vec<serde_json::Value> = list
            .iter()
            .map(|r| {
                let mut v = run_json(r)?;
                if let Some(p) = v.get_mut("progress").and_then(|p| p.as_object_mut()) {
                    p.remove("items");
                }
                Ok(v)
            })
            .collect::<Result<_>>()?;
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({ "runs": view }),
        ))
    }
}

fn run_json(run: &runs::GcRun) -> Result<serde_json::Value> {
    serde_json::to_value(run)
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("garbage collection run: {e}")))
}

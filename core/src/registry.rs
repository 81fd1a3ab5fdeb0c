//! The registry: its adapters and configuration, and the one entry point, [`Registry::handle`],
//! that hands each request to the API it addresses.
//!
//! May use every module below it: [`crate::settings`] (its [`Config`]), [`crate::oci`],
//! [`crate::admin`], [`crate::jobs`], [`crate::auth`] and what they stand on. Nothing
//! imports it but the crate root.

use crate::admin::Admin;
use crate::auth::TokenService;
use crate::auth::authorize::{Gate, SystemCall};
use crate::error::Result;
use crate::error::StoreError;
use crate::error::{ErrorCode, RegistryError};
use crate::events::Event;
use crate::events::audit::AuditTrail;
use crate::events::pulls::PullMemo;
use crate::events::{Emitter, EventSink};
use crate::http::headers::{API_VERSION, X_CONTENT_TYPE_OPTIONS};
use crate::http::request::ClientAddr;
use crate::http::response::{ApiResponse, error_response};
use crate::jobs;
use crate::jobs::replicate::pass::{PassOptions, StepReport};
use crate::jobs::replicate::v2::Transport;
use crate::jobs::replicate::{self, Target};
use crate::oci::home::{self, ForwardHome};
use crate::oci::{Oci, Settings};
use crate::policy::retention::{self, pass::RetentionPass};
use crate::ports::{BlobInventory, BlobStore, CollectableMeta, Env, Outbox, ServingMeta};
use crate::runs::{self, GcOptions, GcRun, RunStatus};
use crate::settings::Config;
use crate::settings::GcSchedule;
use bytes::Bytes;
use futures_core::Stream;
use http::header::HeaderValue;
use http::{Method, Request};

/// The registry: adapters plus configuration. Cheap to share by reference.
pub struct Registry<B, M, E> {
    /// Blob storage.
    pub blobs: B,
    /// Metadata storage.
    pub meta: M,
    /// Time and randomness.
    pub env: E,
    /// Behaviour.
    pub config: Config,
    /// Token auth; `None` serves everyone (trusted networks, tests).
    pub auth: Option<TokenService>,
    /// Pulls noted this hour (one pull-time write per manifest an hour, per process).
    pulls: PullMemo,
}

impl<B: BlobStore, M: ServingMeta, E: Env> Registry<B, M, E> {
    /// Builds a registry with auth off.
    pub fn new(blobs: B, meta: M, env: E, config: Config) -> Self {
        Self {
            blobs,
            meta,
            env,
            config,
            auth: None,
            pulls: PullMemo::default(),
        }
    }

    /// Turns token auth on.
    pub fn with_auth(mut self, tokens: TokenService) -> Self {
        self.auth = Some(tokens);
        self
    }

    /// Handles one request. Never fails: errors become OCI error responses.
    pub async fn handle<In>(&self, req: Request<In>) -> ApiResponse<B>
    where
        In: http_body::Body,
        In::Error: std::fmt::Display,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let client = req.extensions().get::<ClientAddr>().map(|c| c.0.clone());
        let events = Emitter::new(client.unwrap_or_default());
        let result = if path == "/token" {
            self.gate(&events).token_request::<B, _>(req).await
        } else if path == "/.well-known/jwks.json" {
            self.gate(&events).jwks::<B>()
        } else if path == "/api/v1" || path.starts_with("/api/v1/") {
            self.admin(&events).api::<B, _>(req).await
        } else {
            self.oci(&events).dispatch(req).await
        };
        self.deliver(&events).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!(%method, %path, code = ?e.code, message = %e.message, "request failed");
                } else {
                    tracing::debug!(%method, %path, code = ?e.code, message = %e.message, "request refused");
                }
                error_response::<B>(&e, method == Method::HEAD)
            }
        };
        resp.headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        // No response is to be sniffed into HTML or script by a browser.
        resp.headers_mut()
            .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        resp
    }

    /// The home region a runtime forwards this request to (its method, URI, headers and
    /// body as they are), on a registry of several regions: a write of a project homed
    /// elsewhere, not forwarded here already ([`crate::oci::home`]). `None`: handle it
    /// here. A read this region cannot answer is marked in its response instead.
    pub async fn forward_target(&self, req: &http::request::Parts) -> Option<ForwardHome> {
        let regions = self.config.regions.as_ref()?;
        if !home::writes(&req.method)
            || home::forwarded(&req.headers)
            || home::replicated(&req.headers)
            || req.extensions.get::<SystemCall>().is_some()
        {
            return None;
        }
        let name = crate::oci::route::route(req.uri.path())?.name()?;
        crate::model::name::validate_name(name).ok()?;
        home::elsewhere(&self.meta, regions, name)
            .await
            .ok()
            .flatten()
    }

    /// Starts a retention pass over every project's policy if none is unfinished and the
    /// last one started `every_ms` ago or more (0: whenever none is unfinished); returns
    /// the pass to advance, if there is one.
    pub async fn start_retention(&self, every_ms: u64) -> Result<Option<RetentionPass>> {
        let now = self.env.now_ms();
        match retention::pass::load(&self.meta).await? {
            Some(p) if p.finished_ms.is_none() => Ok(Some(p)),
            Some(p) if now.saturating_sub(p.started_ms) < every_ms => Ok(None),
            _ => {
                let pass = RetentionPass {
                    started_ms: now,
                    ..RetentionPass::default()
                };
                // Two schedulers at once may both start one: the second only repeats the
                // first's decisions.
                retention::pass::save(&self.meta, &pass).await?;
                Ok(Some(pass))
            }
        }
    }

    /// Advances the unfinished retention pass by about `budget` store calls, as the
    /// `scheduler`, and saves where it got to; each deletion is audited as it would be
    /// through the API. A failed step is saved with its error and tried again next time.
    pub async fn advance_retention(&self, budget: u64) -> Result<Option<RetentionPass>> {
        match retention::pass::load(&self.meta).await? {
            Some(pass) => self.step_retention(pass, budget).await.map(Some),
            None => Ok(None),
        }
    }

    /// One step of `pass` (nothing if it is finished), saved.
    async fn step_retention(&self, mut pass: RetentionPass, budget: u64) -> Result<RetentionPass> {
        if pass.finished_ms.is_some() {
            return Ok(pass);
        }
        let events = Emitter::new("");
        events.act_as("scheduler");
        let stepped = retention::pass::advance(
            &self.meta,
            &mut pass,
            self.env.now_ms(),
            self.config.delete_enabled,
            &events,
            budget,
        )
        .await;
        // What was deleted before a failure is audited all the same.
        self.deliver(&events).await;
        pass.error = stepped.as_ref().err().map(|e| e.message.clone());
        retention::pass::save(&self.meta, &pass).await?;
        stepped.map(|()| pass)
    }

    /// Steps the saved pass, `step` calls at a time, until it is finished or the clock
    /// reaches `deadline_ms`; returns it as it was left.
    async fn retention_until(&self, step: u64, deadline_ms: u64) -> Result<Option<RetentionPass>> {
        let Some(mut pass) = retention::pass::load(&self.meta).await? else {
            return Ok(None);
        };
        while pass.finished_ms.is_none() && self.env.now_ms() < deadline_ms {
            pass = self.step_retention(pass, step).await?;
        }
        Ok(Some(pass))
    }

    /// A cron tick of a runtime that bounds its invocations (the Worker): starts a pass
    /// when one is due, and advances it by about `budget` store calls.
    pub async fn retention_tick(
        &self,
        every_ms: u64,
        budget: u64,
    ) -> Result<Option<RetentionPass>> {
        match self.start_retention(every_ms).await? {
            Some(pass) => self.step_retention(pass, budget).await.map(Some),
            None => Ok(None),
        }
    }

    /// Applies every project's retention policy to the end (`wharf serve`'s schedule, and
    /// the tests): a pass started now, or the unfinished one continued.
    pub async fn apply_retention(&self) -> Result<RetentionPass> {
        /// Store calls per step; steps follow each other until the pass is finished.
        const STEP: u64 = 10_000;
        self.start_retention(0).await?;
        Ok(self
            .retention_until(STEP, u64::MAX)
            .await?
            .unwrap_or_default())
    }

    /// Removes uploads untouched for `max_age_ms` (the scheduled upload cleanup job).
    pub async fn cleanup_uploads(&self, max_age_ms: u64) -> Result<usize> {
        self.cleanup_uploads_at_most(max_age_ms, usize::MAX).await
    }

    /// [`Self::cleanup_uploads`], stopping after `max` removals (see [`jobs::cleanup_uploads`]).
    pub async fn cleanup_uploads_at_most(&self, max_age_ms: u64, max: usize) -> Result<usize> {
        jobs::cleanup_uploads(&self.blobs, &self.meta, &self.env, max_age_ms, max).await
    }

    /// Delivers what a request or a job emitted to the event sinks.
    async fn deliver(&self, events: &Emitter) {
        let batch = events.take(self.env.now_ms());
        if !batch.is_empty() {
            let trail = AuditTrail {
                docs: &self.meta,
                env: &self.env,
                pulls: &self.pulls,
            };
            trail.deliver(&batch).await;
        }
    }

    fn gate<'a>(&'a self, events: &'a Emitter) -> Gate<'a, M, E> {
        Gate {
            docs: &self.meta,
            env: &self.env,
            tokens: self.auth.as_ref(),
            events,
        }
    }

    fn oci<'a>(&'a self, events: &'a Emitter) -> Oci<'a, B, M, E> {
        let c = &self.config;
        Oci {
            blobs: &self.blobs,
            meta: &self.meta,
            env: &self.env,
            gate: self.gate(events),
            settings: Settings {
                delete_enabled: c.delete_enabled,
                redirect_blobs: c.redirect_blobs,
                presign_ttl_secs: c.presign_ttl_secs,
                max_request_body: c.max_request_body,
                upload_front: c.upload_front.as_deref(),
                upload_secret: c.upload_secret.as_deref(),
                upload_capability_ttl_secs: c.upload_capability_ttl_secs,
                capability_only: c.capability_only,
                regions: c.regions.as_ref(),
            },
        }
    }

    fn admin<'a>(&'a self, events: &'a Emitter) -> Admin<'a, M, E> {
        Admin {
            meta: &self.meta,
            env: &self.env,
            gate: self.gate(events),
            delete_enabled: self.config.delete_enabled,
            default_quota_bytes: self.config.default_quota_bytes,
            identity_home: self.config.identity_home.as_deref(),
            regions: self.config.regions.as_ref(),
            secret_key: self.config.secret_key.as_ref(),
        }
    }
}

/// Runs over a store garbage collection can work on (every full store; not the upload
/// front's, which serves uploads only).
impl<B: BlobStore + BlobInventory, M: CollectableMeta, E: Env> Registry<B, M, E> {
    /// Queues a garbage-collection run (a schedule's: the API queues its own).
    pub async fn queue_gc(&self, options: GcOptions, by: &str) -> Result<GcRun> {
        let run = runs::queue_gc(&self.meta, &self.env, options, by).await?;
        let events = Emitter::new("");
        events.emit_by(
            by,
            Event::GcQueued {
                run: run.id.clone(),
                dry_run: options.dry_run,
                verify: options.verify,
            },
        );
        self.deliver(&events).await;
        Ok(run)
    }

    /// Advances the unfinished garbage-collection runs, oldest first, by about `budget`
    /// store calls in all, saving each after its step; returns the runs it advanced. A
    /// runtime calls it from its scheduler (a timer, a cron trigger, the jobs Lambda), as
    /// often as it likes: a run left unfinished continues at the next call, and runs
    /// advanced by two callers at once only repeat conditional work.
    pub async fn advance_gc(&self, budget: u64) -> Result<Vec<GcRun>> {
        let mut left = budget;
        let mut out = Vec::new();
        for mut run in runs::active(&self.meta, 16).await? {
            if left == 0 {
                break;
            }
            let before = run.progress.totals.metadata_calls + run.progress.totals.blob_calls;
            let stepped = match jobs::gc::check_ready(&self.meta).await {
                Ok(()) => {
                    run.status = RunStatus::Running;
                    jobs::gc::step(&self.blobs, &self.meta, &self.env, &mut run.progress, left)
                        .await
                }
                Err(e) => Err(e),
            };
            let after = run.progress.totals.metadata_calls + run.progress.totals.blob_calls;
            left = left.saturating_sub((after - before).max(1));
            match stepped {
                Ok(()) if run.progress.done() => run.status = RunStatus::Finished,
                Ok(()) => run.error = None,
                // A store that is down now may be up at the next call: the run waits.
                Err(e) if e.code == ErrorCode::Unavailable && run.status == RunStatus::Running => {
                    run.error = Some(e.message.clone());
                }
                Err(e) => {
                    run.status = RunStatus::Failed;
                    run.error = Some(e.message.clone());
                }
            }
            if matches!(run.status, RunStatus::Finished | RunStatus::Failed) {
                run.finished_ms = Some(self.env.now_ms());
            }
            runs::save(&self.meta, &run).await?;
            if run.finished_ms.is_some() {
                let t = &run.progress.totals;
                let events = Emitter::new("");
                events.emit_by(
                    &run.requested_by,
                    Event::GcFinished {
                        run: run.id.clone(),
                        status: if run.status == RunStatus::Finished {
                            "finished"
                        } else {
                            "failed"
                        }
                        .into(),
                        links: t.links,
                        blobs: t.blobs,
                        uploads: t.uploads,
                        bytes: t.bytes,
                        differences: t.differences,
                    },
                );
                self.deliver(&events).await;
            }
            out.push(run);
        }
        Ok(out)
    }

    /// A cron tick of a runtime that has only ticks (the Worker): queues a scheduled run
    /// if the last one was queued `schedule.every_ms` ago or more, then advances the runs
    /// by about `budget` store calls (the Worker's subrequests are counted per invocation).
    pub async fn gc_tick(&self, schedule: &GcSchedule, budget: u64) -> Result<Vec<GcRun>> {
        const KIND: &str = "gc_schedule";
        let now = self.env.now_ms();
        if schedule.every_ms > 0 {
            let last = self
                .meta
                .get_doc(KIND, "last")
                .await?
                .and_then(|raw| serde_json::from_slice::<u64>(&raw).ok());
            if last.is_none_or(|t| now.saturating_sub(t) >= schedule.every_ms) {
                // Two ticks at once may both queue: two runs beside each other are safe.
                self.meta
                    .put_doc(KIND, "last", now.to_string().as_bytes(), false)
                    .await?;
                let options = GcOptions {
                    grace_ms: schedule.grace_ms,
                    upload_max_age_ms: schedule.upload_max_age_ms,
                    dry_run: false,
                    verify: false,
                };
                self.queue_gc(options, "scheduler").await?;
            }
        }
        self.advance_gc(budget).await
    }

    /// Runs a scheduled job until it is done or the clock reaches `deadline_ms` (a
    /// Lambda's deadline, less a margin): what is left continues at the next invocation,
    /// from the runs' saved checkpoints. Returns what it did, for the scheduler's log.
    pub async fn run_job(
        &self,
        job: jobs::Job,
        schedule: &GcSchedule,
        deadline_ms: u64,
    ) -> Result<serde_json::Value> {
        /// Store calls per step: a deadline is checked between steps.
        const STEP: u64 = 2000;
        let mut queued = None;
        match job {
            jobs::Job::CleanupUploads => {
                let removed = self.cleanup_uploads(schedule.upload_max_age_ms).await?;
                return Ok(serde_json::json!({ "job": job, "uploads_removed": removed }));
            }
            jobs::Job::Gc => {
                let options = GcOptions {
                    grace_ms: schedule.grace_ms,
                    upload_max_age_ms: schedule.upload_max_age_ms,
                    dry_run: false,
                    verify: false,
                };
                queued = Some(self.queue_gc(options, "scheduler").await?.id);
            }
            jobs::Job::Retention => {
                self.start_retention(0).await?;
                let pass = self.retention_until(STEP, deadline_ms).await?;
                let out_of_time = pass.as_ref().is_some_and(|p| p.finished_ms.is_none());
                return Ok(serde_json::json!({
                    "job": job, "pass": pass, "out_of_time": out_of_time
                }));
            }
            jobs::Job::Replicate => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "the replicate job needs a replica, which this runtime has not been given",
                ));
            }
            jobs::Job::ReplicationRules => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "the replication_rules job needs a connector to remote registries: Registry::replication_tick",
                ));
            }
            // A retention pass a deadline stopped continues here too, before the runs; and
            // the outbox loses what every replica is past.
            jobs::Job::Advance => {
                self.retention_until(STEP, deadline_ms).await?;
                self.trim_outbox().await?;
            }
        }
        let mut advanced = std::collections::BTreeMap::new();
        while self.env.now_ms() < deadline_ms {
            let runs = self.advance_gc(STEP).await?;
            let busy = runs
                .iter()
                .any(|r| r.finished_ms.is_none() && r.error.is_none());
            for r in runs {
                advanced.insert(r.id.clone(), r);
            }
            if !busy {
                break;
            }
        }
        let runs: Vec<serde_json::Value> = advanced
            .values()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "status": r.status, "error": r.error, "totals": r.progress.totals
                })
            })
            .collect();
        let out_of_time = self.env.now_ms() >= deadline_ms;
        Ok(serde_json::json!({
            "job": job, "queued": queued, "runs": runs, "out_of_time": out_of_time
        }))
    }

    /// Runs garbage collection now to its end, in steps of `step_budget` calls (a one-off
    /// run: `wharf gc run` on a store no server holds, tests).
    pub async fn collect_garbage(
        &self,
        options: GcOptions,
        by: &str,
        step_budget: u64,
    ) -> Result<GcRun> {
        let id = self.queue_gc(options, by).await?.id;
        loop {
            self.advance_gc(step_budget).await?;
            match runs::load(&self.meta, &id).await? {
                Some(run) if run.finished_ms.is_some() => return Ok(run),
                // A one-off run does not wait out an outage: it says so.
                Some(GcRun { error: Some(e), .. }) => {
                    return Err(RegistryError::new(ErrorCode::Unavailable, e));
                }
                Some(_) => {}
                None => {
                    return Err(RegistryError::new(
                        ErrorCode::Unknown,
                        format!("garbage collection run {id} disappeared"),
                    ));
                }
            }
        }
    }
}

/// A registry is a replication target in-process: replication into another region's stores
/// goes through that registry's own handlers, which check and record every write as they
/// would a client's. The requests are authorized as the system ([`SystemCall`]); the
/// authority of their URI, if any, is ignored.
impl<B: BlobStore, M: ServingMeta, E: Env> Transport for Registry<B, M, E> {
    type Body = crate::http::Body<B::Reader>;

    async fn send<S>(
        &self,
        mut req: Request<crate::http::Body<S>>,
    ) -> Result<http::Response<Self::Body>>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = http::Uri::from(pq);
        }
        req.headers_mut()
            .entry(crate::http::headers::HOST)
            .or_insert(HeaderValue::from_static("wharf.internal"));
        req.extensions_mut().insert(SystemCall::new());
        Ok(self.handle(req).await)
    }
}

impl<B: BlobStore, M: ServingMeta + Outbox, E: Env> Registry<B, M, E> {
    /// One step of replication to `target` (named `name`, the id of its state): the
    /// outbox's changes since its checkpoint, at most `opts.limit`.
    pub async fn replicate_step<T: Target>(
        &self,
        target: &T,
        name: &str,
        opts: PassOptions,
    ) -> Result<StepReport> {
        replicate::pass::step(
            &self.blobs,
            &self.meta,
            target,
            name,
            opts,
            self.env.now_ms(),
        )
        .await
    }

    /// One tick of the replication rules' scheduler: schedules and on-push triggers queue
    /// runs, and the runs due advance until `deadline_ms` ([`replicate::triggers::tick`]).
    /// Remote registries are reached through `connector`; this registry is written to
    /// through its own handlers.
    pub async fn replication_tick<C: replicate::triggers::Connector>(
        &self,
        connector: &C,
        deadline_ms: u64,
    ) -> Result<replicate::triggers::TickReport> {
        replicate::triggers::tick(
            &self.blobs,
            &self.meta,
            &self.env,
            self,
            replicate::triggers::Tick {
                connector,
                key: self.config.secret_key.as_ref(),
                deadline_ms,
                retry_base_ms: self.config.replication_retry_base_ms,
            },
        )
        .await
    }

    /// Removes the outbox entries every replication target is past (a batch; the next call
    /// takes more): [`replicate::pass::trim`]. Returns how many went.
    pub async fn trim_outbox(&self) -> Result<usize> {
        let n = replicate::pass::trim(&self.meta, self.env.now_ms(), 1000).await?;
        if n > 0 {
            tracing::debug!(removed = n, "outbox trimmed");
        }
        Ok(n)
    }

    /// Makes another region's identity records (`dst`, its document store) equal this
    /// region's: [`replicate::identity::mirror`].
    pub async fn mirror_identity<D: crate::ports::DocumentStore>(
        &self,
        dst: &D,
    ) -> Result<replicate::identity::MirrorReport> {
        replicate::identity::mirror(&self.meta, dst).await
    }

    /// Replication to `target` as a scheduled job: steps until nothing is left, the
    /// target fails (the checkpoint holds; the next run retries), or `deadline_ms`. The
    /// report is the jobs' JSON.
    pub async fn replicate_until<T: Target>(
        &self,
        target: &T,
        name: &str,
        opts: PassOptions,
        deadline_ms: u64,
    ) -> Result<serde_json::Value> {
        let mut handled = 0;
        loop {
            let r = self.replicate_step(target, name, opts).await?;
            handled += r.handled;
            let out_of_time = self.env.now_ms() >= deadline_ms;
            if r.finished || r.state.last_error.is_some() || out_of_time {
                return Ok(serde_json::json!({
                    "job": jobs::Job::Replicate,
                    "replica": name,
                    "handled": handled,
                    "finished": r.finished,
                    "out_of_time": out_of_time && !r.finished,
                    "error": r.state.last_error,
                    "copied": r.state.copied,
                    "tags_set": r.state.tags_set,
                    "deleted": r.state.deleted,
                    "refusals": r.state.refusals.len(),
                    "walk": r.state.walk,
                }));
            }
        }
    }
}

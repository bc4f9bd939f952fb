//! Watching one task execution: dispatch (or re-attach after a takeover), follow its state and
//! output, stop it when its run is cancelled or it outlives its timeout, and record how the
//! attempt ended — completing the task, or queueing its next attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::scheduler::{KillReason, SchedulerError, TaskObservation, TaskSpec};
use gofer_core::{EventKind, PipelineConfig, TaskConfig, TaskKind, TaskStatus};
use serde_json::json;
use sqlx::PgConnection;
use tracing::Instrument;

use crate::cancel::CancelReason;
use crate::events::{self, EventScope};
use crate::finisher::Recorded;
use crate::masking::Masker;
use crate::object_refs::{has_object_references, resolve_object_references};
use crate::outcome::{Ending, RetryPolicy, Verdict, verdict};
use crate::references::{self, ReferenceError};
use crate::runs::TaskKey;
use crate::worker::Inner;
use crate::{EngineError, db, release};

/// How much log to read from the scheduler per call.
const LOG_READ_BYTES: usize = 256 * 1024;

/// How a monitor got its task execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Claimed from the queue: dispatch it.
    Dispatch,
    /// Taken over from a replica whose lease expired: find the job and re-attach.
    Takeover,
}

/// A task execution this replica now holds the lease of.
pub(crate) struct Claimed {
    pub key: TaskKey,
    pub attempt: i32,
    /// The job id the previous holder dispatched, on takeover.
    pub scheduler_id: Option<String>,
    pub mode: Mode,
    /// When it was queued (for the dispatch latency), on a claim from the queue.
    pub queued_at: Option<time::OffsetDateTime>,
    /// The traceparent of the request that started the run, when tracing was on.
    pub trace_parent: Option<String>,
    /// The run's dispatch context, when the claim's transaction already read it (a batch claim);
    /// otherwise [`watch`] reads it.
    pub context: Option<db::DispatchContext>,
    /// Whether the claim's transaction already recorded the attempt's job id and deadline and
    /// opened its attempt row (a batch claim); otherwise [`watch`] does before dispatching.
    pub attempt_opened: bool,
}

/// Writes what claiming means in the claim's transaction: the run starts and the events say so.
pub(crate) async fn record_claim(conn: &mut PgConnection, key: &TaskKey, attempt: i32) -> Result<(), EngineError> {
    let tenant = &key.run.pipeline.tenant;
    if db::start_run(conn, &key.run).await? {
        events::record(conn, tenant, EventKind::RunStarted, EventScope::run(&key.run), json!({})).await?;
    }
    let payload = json!({"attempt": attempt});
    events::record(conn, tenant, EventKind::TaskStarted, EventScope::task(&key.run, &key.task), payload).await
}

/// [`record_claim`] for a batch: the events of the runs it started, then one per claimed task,
/// in one statement.
pub(crate) async fn record_claims<'a>(
    conn: &mut PgConnection,
    started_runs: &'a [crate::runs::RunKey],
    claimed: impl Iterator<Item = (&'a TaskKey, i32)>,
) -> Result<(), EngineError> {
    let mut batch: Vec<db::NewEvent<'a>> = started_runs
        .iter()
        .map(|run| db::NewEvent {
            tenant: &run.pipeline.tenant,
            kind: EventKind::RunStarted,
            scope: EventScope::run(run),
            payload: json!({}),
        })
        .collect();
    batch.extend(claimed.map(|(key, attempt)| db::NewEvent {
        tenant: &key.run.pipeline.tenant,
        kind: EventKind::TaskStarted,
        scope: EventScope::task(&key.run, &key.task),
        payload: json!({"attempt": attempt}),
    }));
    db::insert_events(conn, &batch).await
}

/// The environment a task sees: system values, overridden by the task's env, overridden by run
/// variables; Gofer's own `GOFER_*` variables last, so nothing can shadow them (config validation
/// already refuses the prefix).
pub(crate) fn task_env(
    api_url: &str,
    key: &TaskKey,
    attempt: u32,
    task: &TaskConfig,
    run_variables: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = task.env.clone();
    env.extend(run_variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("GOFER_API_URL".into(), api_url.to_owned());
    env.insert("GOFER_NAMESPACE_ID".into(), key.run.pipeline.namespace.to_string());
    env.insert("GOFER_PIPELINE_ID".into(), key.run.pipeline.pipeline.to_string());
    env.insert("GOFER_RUN_ID".into(), key.run.run.to_string());
    env.insert("GOFER_TASK_ID".into(), key.task.to_string());
    env.insert("GOFER_TASK_IMAGE".into(), task.image.clone());
    env.insert("GOFER_TASK_ATTEMPT".into(), attempt.to_string());
    env
}

/// How long a task may run: its own `timeout_s` or the default, at most the ceiling.
pub(crate) fn task_timeout(config: &crate::EngineConfig, task: &TaskConfig) -> Duration {
    task.timeout_s
        .map(|t| Duration::from_secs(u64::from(t)))
        .unwrap_or(config.default_task_timeout)
        .min(config.max_task_timeout)
}

fn build_spec(
    inner: &Inner,
    key: &TaskKey,
    attempt: i32,
    task: &TaskConfig,
    variables: &BTreeMap<String, String>,
) -> TaskSpec {
    let p = &key.run.pipeline;
    let attempt = u32::try_from(attempt).unwrap_or(1);
    let timeout = task_timeout(&inner.config, task);
    let image = task_image(&inner.config, task).to_owned();
    let mut env = task_env(&inner.config.api_url, key, attempt, task, variables);
    env.insert("GOFER_TASK_IMAGE".into(), image.clone());
    TaskSpec {
        job_id: TaskSpec::job_id_for(&p.tenant, &p.namespace, &p.pipeline, key.run.run, &key.task, attempt),
        tenant: p.tenant.clone(),
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        run: key.run.run,
        task: key.task.clone(),
        attempt,
        image,
        command: task.command.clone(),
        entrypoint: task.entrypoint.clone(),
        env,
        timeout,
        cpu_millis: task.cpu.unwrap_or(inner.config.default_cpu_millis),
        memory_mb: task.memory_mb.unwrap_or(inner.config.default_memory_mb),
        // The plan's, set in `watch` with the placement.
        disk_mb: gofer_core::model::DEFAULT_MAX_DISK_MB,
        // Resolved from the task's `registry_auth` secret in `watch`, with the env's references.
        registry_auth: None,
        allow_network: true,
        untrusted: false,
        node_pool: None,
        gofer_cli: task.kind == TaskKind::Gofer,
    }
}

/// The image a task runs: its own, or for a `kind: gofer` task the service's gofer CLI image
/// (the stored config holds a placeholder, so moving the image changes no config's hash).
pub(crate) fn task_image<'a>(config: &'a crate::EngineConfig, task: &'a TaskConfig) -> &'a str {
    match task.kind {
        TaskKind::Gofer => &config.gofer_cli_image,
        TaskKind::Container => &task.image,
    }
}

/// Watches a claimed task execution to the end of its current attempt.
pub(crate) async fn watch(
    inner: &Inner,
    claimed: &Claimed,
    context: Option<db::DispatchContext>,
) -> Result<(), EngineError> {
    let key = &claimed.key;
    let (run, config, (node_pool, allow_network, max_disk_mb, untrusted)) = {
        let mut conn = inner.pool.acquire().await?;
        // The plan as it is at dispatch: a plan change applies to the next task dispatched.
        let context = match context {
            Some(context) => context,
            None => db::dispatch_context(&mut conn, &key.run).await?.ok_or(EngineError::RunNotFound(key.run.run))?,
        };
        let version = context.run.config_version;
        let config = inner.config_for(&mut conn, &key.run, version, &context.config_hash).await?;
        let placement = (context.node_pool, context.allow_network, context.max_disk_mb, context.untrusted);
        (context.run, VersionedConfig { version, config }, placement)
    };
    let task = config
        .config
        .tasks
        .iter()
        .find(|t| t.id == key.task)
        .ok_or_else(|| EngineError::TaskNotFound(key.task.clone()))?;
    let mut spec = build_spec(inner, key, claimed.attempt, task, run.variables());
    spec.node_pool = node_pool;
    spec.allow_network = allow_network;
    spec.disk_mb = u32::try_from(max_disk_mb).unwrap_or(gofer_core::model::DEFAULT_MAX_DISK_MB);
    spec.untrusted = untrusted;
    if task.inject_api_token {
        // Valid until the run's deadline at most; the API also refuses it once the run completes.
        let expires =
            run.deadline().unwrap_or_else(|| time::OffsetDateTime::now_utc() + inner.config.default_run_timeout);
        match &inner.run_tokens {
            Some(minter) => {
                let p = &key.run.pipeline;
                let token = minter
                    .mint(&p.tenant, &p.namespace, &p.pipeline, key.run.run, expires)
                    .map_err(|e| EngineError::Corrupt(format!("minting a run token: {e}")))?;
                spec.env.insert("GOFER_API_TOKEN".into(), token);
            }
            None => tracing::warn!("the task asks for a run token, but this engine mints none"),
        }
    }
    // References resolve into the spec only: nothing resolved is written to Postgres or events.
    // The secret values resolved (to mask them in the logs), or why they could not be.
    let resolution: Result<Vec<String>, ReferenceError> = {
        let p = &key.run.pipeline;
        let ctx = references::Context { tenant: &p.tenant, namespace: &p.namespace, pipeline: &p.pipeline };
        async {
            let mut secrets = inner.resolvers.resolve_env(&mut spec.env, &ctx).await?;
            if let Some(name) = &task.registry_auth {
                let (auth, password) = inner.resolvers.registry_auth(name, &ctx).await?;
                spec.registry_auth = Some(auth);
                secrets.push(password);
            }
            Ok(secrets)
        }
        .await
    };
    let job_id = claimed.scheduler_id.clone().unwrap_or_else(|| spec.job_id.clone());
    let signal = inner.signals.subscribe(&key.run);
    let log_key = key.log_key(u32::try_from(claimed.attempt).unwrap_or(1));
    let mut offset = 0;
    let secrets: Vec<String>;

    match claimed.mode {
        Mode::Dispatch => {
            if !claimed.attempt_opened {
                let mut conn = inner.pool.acquire().await?;
                db::queue::open_attempt(&mut conn, key, claimed.attempt, &job_id, spec.timeout.as_secs_f64()).await?;
            }
            if run.cancelling().is_some() {
                return conclude(inner, claimed, &config, task, &job_id, Ending::NotStarted).await;
            }
            secrets = match resolution {
                Ok(secrets) => secrets,
                Err(ReferenceError::Unresolvable(reason)) => {
                    tracing::warn!(reason = %reason.description, "the task's env does not resolve; failing it");
                    return conclude(inner, claimed, &config, task, &job_id, Ending::Unresolvable(reason)).await;
                }
                Err(ReferenceError::Unavailable(detail)) => {
                    tracing::warn!(error = %detail, "the secret store is unavailable; the task will be retried");
                    let ending = Ending::SecretStoreUnavailable(detail);
                    return conclude(inner, claimed, &config, task, &job_id, ending).await;
                }
            };
            // Object references in env values, just before the start; a missing one fails the task.
            if let Some(store) = inner.logs.archive().filter(|_| has_object_references(&spec.env)) {
                let max = inner.config.max_env_object_bytes;
                if let Err(e) = resolve_object_references(store.as_ref(), &key.run, &mut spec.env, max).await {
                    return conclude(inner, claimed, &config, task, &job_id, Ending::StartRejected(e.to_string()))
                        .await;
                }
            }
            tracing::info!(job = %job_id, "dispatching");
            let starting = start_through_outages(inner, claimed, &spec, &signal);
            let ending = match starting.instrument(tracing::info_span!("scheduler.start", job = %job_id)).await? {
                Start::Started => {
                    if let Some(queued_at) = claimed.queued_at {
                        crate::measure::dispatched((time::OffsetDateTime::now_utc() - queued_at).as_seconds_f64());
                    }
                    None
                }
                Start::LeaseLost => return Ok(()),
                Start::Cancelled => {
                    // A start that timed out may still have created the job.
                    if let Err(e) = inner.scheduler.stop(&job_id, inner.config.stop_grace).await {
                        tracing::warn!(error = %e, "stopping a job whose start was abandoned failed");
                    }
                    Some(Ending::NotStarted)
                }
                Start::Failed(SchedulerError::Rejected(detail)) => Some(Ending::StartRejected(detail)),
                Start::Failed(e) => Some(Ending::StartUnavailable(e.to_string())),
            };
            if let Some(ending) = ending {
                return conclude(inner, claimed, &config, task, &job_id, ending).await;
            }
        }
        Mode::Takeover => {
            let mut conn = inner.pool.acquire().await?;
            let payload = json!({"attempt": claimed.attempt, "replica": inner.config.replica_id});
            let scope = EventScope::task(&key.run, &key.task);
            events::record(&mut conn, &key.run.pipeline.tenant, EventKind::TaskTakenOver, scope, payload).await?;
            if claimed.scheduler_id.is_none() {
                // The previous holder died before dispatching: the scheduler never got it.
                drop(conn);
                return conclude(inner, claimed, &config, task, &job_id, Ending::Observed(TaskObservation::Unknown))
                    .await;
            }
            // Re-attach: continue the log where the previous holder stopped copying. The secrets
            // are resolved again only to mask them.
            secrets = resolution.unwrap_or_else(|e| {
                tracing::warn!(error = ?e, "cannot resolve the task's secrets again; its further output is not masked");
                Vec::new()
            });
            // The raw offset of the scheduler's output, not the stored length: masking changes it.
            offset = inner.logs.resume_offset(&log_key).await?;
        }
    }

    let mut masker = Masker::new(secrets.iter().map(String::as_str));
    drop(secrets);
    let started = Instant::now();
    let deadline = spec.timeout + inner.config.timeout_grace;
    let mut last_heartbeat = Instant::now();
    let mut started_marked = false;
    let mut stop_sent = false;
    let mut cancel_seen = false;
    // Look soon after the start, then less and less often up to `monitor_interval`: a short task
    // then frees its slot in milliseconds, and a long one costs no more observations than before.
    let mut wait = (inner.config.monitor_interval / 16).max(Duration::from_millis(1));
    let mut output_seen = Instant::now();
    let observation = loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => wait = (wait * 2).min(inner.config.monitor_interval),
            _ = signal.cancelled() => cancel_seen = true,
        }
        let copied = copy_logs(inner, &log_key, &job_id, offset, &mut masker).await;
        if copied != offset {
            (offset, output_seen) = (copied, Instant::now());
        } else if !masker.held_back().is_empty() && output_seen.elapsed() >= MASK_HOLD_LIMIT {
            // The task went quiet on a line the masker holds back because it could begin a
            // secret's encoded form (wrapped onto the next line): a live log must not lag behind
            // it. A secret the task writes in two parts more than this apart is not masked.
            write_held_back(inner, &log_key, offset, &mut masker).await;
            output_seen = Instant::now();
        }
        let observation = match inner.scheduler.observe(&job_id).await {
            Ok(o) => o,
            Err(e) => {
                crate::measure::scheduler_error("observe");
                tracing::warn!(error = %e, "observing the task failed; trying again");
                TaskObservation::Pending
            }
        };
        if observation.is_final() {
            break observation;
        }
        if observation == TaskObservation::Running && !started_marked {
            started_marked = true;
            let node = inner.scheduler.node(&job_id).await;
            let mut conn = inner.pool.acquire().await?;
            db::queue::mark_started(&mut conn, key, claimed.attempt, node.as_deref()).await?;
        }
        if cancel_seen && !stop_sent {
            stop_sent = true;
            tracing::info!("the run is being stopped; stopping the task");
            let stopping = inner.scheduler.stop(&job_id, inner.config.stop_grace);
            if let Err(e) = stopping.instrument(tracing::info_span!("scheduler.stop", job = %job_id)).await {
                crate::measure::scheduler_error("stop");
                tracing::warn!(error = %e, "stopping the task failed; trying again on the next heartbeat");
                stop_sent = false;
            }
        }
        if started.elapsed() > deadline {
            // The scheduler should have stopped it; do it ourselves and say why.
            tracing::warn!("task outlived its timeout in the scheduler; stopping it");
            let _ = inner.scheduler.stop(&job_id, Duration::from_secs(5)).await;
            break TaskObservation::Killed { reason: KillReason::Timeout };
        }
        if last_heartbeat.elapsed() > inner.config.lease / 3 {
            last_heartbeat = Instant::now();
            let mut conn = inner.pool.acquire().await?;
            match db::queue::heartbeat(&mut conn, key, inner.config.replica_id, inner.config.lease.as_secs_f64())
                .await?
            {
                None => {
                    tracing::warn!("lease lost; another replica owns this task execution now");
                    return Ok(());
                }
                Some(cancelling) => cancel_seen |= cancelling,
            }
        }
    };
    drain_logs(inner, &log_key, &job_id, offset, &mut masker).await;
    // A task quicker than one observation was never seen running: its node is recorded with its end.
    let node = match started_marked || observation == TaskObservation::Unknown {
        true => None,
        false => inner.scheduler.node(&job_id).await,
    };
    conclude_on(inner, claimed, &config, task, &job_id, Ending::Observed(observation), node.as_deref())
        .instrument(tracing::info_span!("engine.conclude"))
        .await?;
    if let Err(e) =
        inner.scheduler.purge(&job_id).instrument(tracing::info_span!("scheduler.purge", job = %job_id)).await
    {
        crate::measure::scheduler_error("purge");
        tracing::warn!(error = %e, "purging the finished job failed");
    }
    Ok(())
}

/// How dispatching went.
enum Start {
    Started,
    /// Refused, or still unavailable after the outage tolerance.
    Failed(SchedulerError),
    /// The run is being stopped; the task was not started.
    Cancelled,
    /// Another replica holds the lease now.
    LeaseLost,
}

/// Starts the job, retrying in place while the scheduler is unavailable (an outage, a slow
/// scheduler) for up to `scheduler_outage_tolerance`: the lease is renewed meanwhile, so the task
/// neither fails nor moves to another replica because the scheduler was briefly away. Starts are
/// idempotent on the job id, so a start that timed out after creating the job is harmless to repeat.
async fn start_through_outages(
    inner: &Inner,
    claimed: &Claimed,
    spec: &TaskSpec,
    signal: &crate::cancel::SignalGuard,
) -> Result<Start, EngineError> {
    let began = Instant::now();
    let mut last_heartbeat = Instant::now();
    let mut backoff = inner.config.monitor_interval.max(Duration::from_millis(100));
    loop {
        let error = match inner.scheduler.start(spec).await {
            Ok(()) => return Ok(Start::Started),
            Err(e @ SchedulerError::Rejected(_)) => {
                crate::measure::scheduler_error("start");
                return Ok(Start::Failed(e));
            }
            Err(e) => {
                crate::measure::scheduler_error("start");
                e
            }
        };
        if began.elapsed() >= inner.config.scheduler_outage_tolerance {
            return Ok(Start::Failed(error));
        }
        tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "the scheduler is unavailable; retrying the start");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {},
            _ = signal.cancelled() => return Ok(Start::Cancelled),
        }
        // Never sleep through a lease renewal.
        backoff = (backoff * 2).min(Duration::from_secs(5)).min(inner.config.lease / 4);
        if last_heartbeat.elapsed() > inner.config.lease / 3 {
            last_heartbeat = Instant::now();
            let mut conn = inner.pool.acquire().await?;
            let key = &claimed.key;
            match db::queue::heartbeat(&mut conn, key, inner.config.replica_id, inner.config.lease.as_secs_f64())
                .await?
            {
                None => {
                    tracing::warn!("lease lost while the scheduler was unavailable");
                    return Ok(Start::LeaseLost);
                }
                Some(true) => return Ok(Start::Cancelled),
                Some(false) => {}
            }
        }
    }
}

/// How many times the last copy of a finished task's output is tried, a monitor interval apart
/// (doubling), before the rest of the output is given up: the scheduler or the log store may be
/// briefly unavailable just as the task ends, and the output is then lost for good.
const FINAL_LOG_COPY_TRIES: u32 = 8;

/// Copies the rest of a finished task's output and the masker's held-back tail, retrying failures.
async fn drain_logs(inner: &Inner, log_key: &crate::logs::LogKey, job_id: &str, mut offset: u64, masker: &mut Masker) {
    let mut pause = inner.config.monitor_interval.max(Duration::from_millis(50));
    for attempt in 1..=FINAL_LOG_COPY_TRIES {
        let (next, complete) = copy_logs_to_end(inner, log_key, job_id, offset, masker).await;
        offset = next;
        if complete {
            break;
        }
        tracing::warn!(attempt, "copying the finished task's output failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    for _ in 1..=FINAL_LOG_COPY_TRIES {
        if write_held_back(inner, log_key, offset, masker).await {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// How long the masker may hold back output of a task that writes nothing more (see
/// [`crate::masking`]: a line that could begin a secret's wrapped encoding waits for the next).
const MASK_HOLD_LIMIT: Duration = Duration::from_secs(1);

/// Masks and stores what the masker holds back, which ends the raw output at `offset`; answers
/// whether it was stored (if not, the masker still holds it).
async fn write_held_back(inner: &Inner, log_key: &crate::logs::LogKey, offset: u64, masker: &mut Masker) -> bool {
    let held = masker.held_back().to_vec();
    let tail = masker.finish();
    match inner.logs.append_masked(log_key, &tail, offset.saturating_sub(held.len() as u64), offset).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "writing the task log failed");
            masker.restore(held);
            false
        }
    }
}

/// Copies everything new in the scheduler's output to the log store, masking secrets; answers the
/// next offset. Failures are logged and retried on the next call: a log hiccup must not fail the task.
async fn copy_logs(
    inner: &Inner,
    log_key: &crate::logs::LogKey,
    job_id: &str,
    offset: u64,
    masker: &mut Masker,
) -> u64 {
    copy_logs_to_end(inner, log_key, job_id, offset, masker).await.0
}

/// [`copy_logs`], also answering whether it reached the end of the output (no failure on the way).
async fn copy_logs_to_end(
    inner: &Inner,
    log_key: &crate::logs::LogKey,
    job_id: &str,
    mut offset: u64,
    masker: &mut Masker,
) -> (u64, bool) {
    loop {
        match inner.scheduler.read_logs(job_id, offset, LOG_READ_BYTES).await {
            Ok(chunk) if chunk.data.is_empty() => return (offset, true),
            Ok(chunk) => {
                let held = masker.held_back().to_vec();
                let masked = masker.feed(&chunk.data);
                // Raw positions of the stored log's end, before and after: what the masker holds
                // back is not stored yet.
                let raw_before = offset.saturating_sub(held.len() as u64);
                let raw_after = chunk.next_offset.saturating_sub(masker.held_back().len() as u64);
                if let Err(e) = inner.logs.append_masked(log_key, &masked, raw_before, raw_after).await {
                    tracing::warn!(error = %e, "writing the task log failed");
                    // The chunk is read again next time: put the masker back as it was.
                    masker.restore(held);
                    return (offset, false);
                }
                crate::measure::log_bytes(chunk.data.len());
                offset = chunk.next_offset;
            }
            Err(SchedulerError::NotFound(_)) => return (offset, true),
            Err(e) => {
                tracing::debug!(error = %e, "reading task output failed");
                return (offset, false);
            }
        }
    }
}

/// A run's pipeline config and its version.
pub(crate) struct VersionedConfig {
    pub version: i64,
    pub config: Arc<PipelineConfig>,
}

/// Records how the attempt ended, in one transaction fenced by this replica's lease: either the
/// task execution completes (and its dependants are released), or it goes back to the queue for
/// its next attempt.
async fn conclude(
    inner: &Inner,
    claimed: &Claimed,
    config: &VersionedConfig,
    task: &TaskConfig,
    job_id: &str,
    ending: Ending,
) -> Result<(), EngineError> {
    conclude_on(inner, claimed, config, task, job_id, ending, None).await
}

/// [`conclude`], recording the node the attempt ran on when it was learned only at its end.
///
/// The run's row lock serializes a run's transitions (two finishing parents must not both release
/// a child; exactly one finisher must complete the run), but siblings finishing together queue on
/// it, so it is taken as late as possible: when the verdict cannot depend on the run being stopped
/// (a success, a failure without retries left), the task's own rows are written first and the run
/// is locked only to release dependants and see whether the run is complete. That stays correct
/// because each transaction updates its task before it waits for the lock, and reads the run's
/// task states after it holds it: the last sibling to take the lock sees every other one complete.
async fn conclude_on(
    inner: &Inner,
    claimed: &Claimed,
    config: &VersionedConfig,
    task: &TaskConfig,
    job_id: &str,
    ending: Ending,
    node: Option<&str>,
) -> Result<(), EngineError> {
    let key = &claimed.key;
    let requested =
        (task.cpu.unwrap_or(inner.config.default_cpu_millis), task.memory_mb.unwrap_or(inner.config.default_memory_mb));
    // A success completes the task whatever else holds (a cancel, earlier failures): it is
    // recorded in a batch with the replica's other successes.
    if let Ending::Observed(TaskObservation::Exited { exit_code: 0 }) = ending {
        let status = TaskStatus::Successful;
        let success = crate::finisher::Success {
            key: key.clone(),
            attempt: claimed.attempt,
            exit_code: Some(0),
            requested,
            node: node.map(str::to_owned),
            event: json!({"status": status, "status_reason": null, "exit_code": 0, "attempt": claimed.attempt,
                          "job_id": job_id}),
            config_version: config.version,
            config: config.config.clone(),
        };
        match inner.finisher.record(success).await {
            Recorded::Finished => {
                crate::measure::task_completed(status);
                tracing::info!(%status, exit_code = 0, "task execution finished");
                return Ok(());
            }
            Recorded::AlreadyFinished => {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            // Recorded alone below.
            Recorded::BatchFailed => {}
        }
    }
    let owner = inner.config.replica_id;
    let mut tx = inner.pool.begin().await?;
    // A success needs no failure counts: it completes whatever came before.
    let failures = match ending {
        Ending::Observed(TaskObservation::Exited { exit_code: 0 }) => (0, 0),
        _ => {
            let (infra, own) = db::queue::failure_counts(&mut tx, key).await?;
            (u32::try_from(infra).unwrap_or(0), u32::try_from(own).unwrap_or(0))
        }
    };
    let policy = RetryPolicy {
        infra_limit: inner.config.infra_retries,
        own_limit: task.retries,
        backoff_base: inner.config.retry_backoff,
    };
    let timeout_s = task.timeout_s.map(u64::from).unwrap_or(inner.config.default_task_timeout.as_secs());
    let decide = |cancelling| verdict(&ending, cancelling, timeout_s, failures, policy);
    let unaffected_by_cancel = [Some(CancelReason::User), Some(CancelReason::Timeout), Some(CancelReason::Quota)]
        .into_iter()
        .all(|cancelling| decide(cancelling) == decide(None));
    // `Some(cancelling)` once the run's row is locked.
    let mut locked: Option<Option<CancelReason>> = None;
    if !unaffected_by_cancel {
        locked = Some(db::lock_run(&mut tx, &key.run).await?.ok_or(EngineError::RunNotFound(key.run.run))?);
    }
    let tenant = &key.run.pipeline.tenant;
    let scope = EventScope::task(&key.run, &key.task);
    let closed = |status, reason, exit_code, retried| db::queue::ClosedAttempt {
        attempt: claimed.attempt,
        status,
        reason,
        exit_code,
        retried,
        requested,
        node,
    };
    match decide(locked.flatten()) {
        Verdict::Complete { status, reason, exit_code } => {
            let payload = json!({"status": status, "status_reason": reason, "exit_code": exit_code,
                                 "attempt": claimed.attempt, "job_id": job_id});
            let finished = db::queue::Finished {
                key,
                attempt: claimed.attempt,
                status,
                attempt_status: if status == TaskStatus::Skipped { TaskStatus::Cancelled } else { status },
                reason: reason.as_ref(),
                exit_code,
                requested,
                node,
                event: &payload,
            };
            if db::queue::finish_tasks(&mut tx, owner, std::slice::from_ref(&finished)).await? != [true] {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            // Then lock the run (already locked when the cancel mattered) and read its states.
            let states = db::queue::lock_runs_states(&mut tx, &[&key.run]).await?.pop().flatten();
            let (cancelling, states) = states.ok_or(EngineError::RunNotFound(key.run.run))?;
            release::release_with_states(&mut tx, &key.run, cancelling, config.version, &config.config, states).await?;
            tx.commit().await?;
            crate::measure::task_completed(status);
            tracing::info!(%status, ?exit_code, "task execution finished");
        }
        Verdict::Retry { infra, reason, exit_code, backoff } => {
            if !db::queue::requeue_for_retry(&mut tx, key, owner, backoff.as_secs_f64(), infra).await? {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            let attempt = closed(TaskStatus::Failed, Some(&reason), exit_code, true);
            db::queue::close_attempt(&mut tx, key, &attempt).await?;
            let payload = json!({"attempt": claimed.attempt, "status_reason": reason, "exit_code": exit_code,
                                 "infrastructure": infra, "backoff_ms": backoff.as_millis() as u64});
            events::record(&mut tx, tenant, EventKind::TaskRetrying, scope, payload).await?;
            tx.commit().await?;
            crate::measure::task_retried(infra);
            tracing::warn!(reason = %reason.reason, backoff_ms = backoff.as_millis() as u64, "attempt failed; retrying");
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_gofer_task_runs_in_the_configured_cli_image_and_others_in_their_own() {
        let config = gofer_core::ValidConfig::parse(
            br#"{"name":"x","tasks":[{"id":"abc","kind":"gofer","args":["run","list","x"]},
                {"id":"def","image":"debian:12","command":["true"]}]}"#,
        )
        .unwrap();
        let engine =
            crate::EngineConfig { gofer_cli_image: "registry.example/gofer-cli:1".into(), ..Default::default() };
        assert_eq!(task_image(&engine, &config.config().tasks[0]), "registry.example/gofer-cli:1");
        assert_eq!(task_image(&engine, &config.config().tasks[1]), "debian:12");
    }
}

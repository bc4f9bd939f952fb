//! Watching one task execution through its current attempt, in three steps: prepare (read the
//! run's dispatch context and config, build the job's spec, resolve its references), begin
//! (dispatch it, or re-attach after a takeover: `dispatch.rs`), and follow it (copy its output,
//! stop it when its run is cancelled or it outlives its timeout, renew the lease; what to do after
//! each observation is decided by `follow.rs`). Then the attempt is concluded (`conclude.rs`):
//! the task completes, or its next attempt is queued.

use std::time::{Duration, Instant};

use gofer_core::TaskConfig;
use gofer_core::scheduler::{TaskObservation, TaskSpec};
use tracing::Instrument;

use super::backoff::DoublingDelay;
use super::cancel::SignalGuard;
use super::capture::{self, MASK_HOLD_LIMIT};
use super::claim::{Claimed, ClaimedTask};
use super::conclude::{VersionedConfig, conclude, conclude_on};
use super::context::EngineCtx;
use super::dispatch::{Begun, dispatch_or_reattach};
use super::follow::{Chore, Decision, Following, Next, Observation};
use super::outcome::Ending;
use super::references::{self, ReferenceError};
use super::spec::build_spec;
use crate::logs::LogKey;
use crate::logs::masking::Masker;
use crate::{EngineError, db, measure};

/// Watches a claimed task execution to the end of its current attempt.
pub(crate) async fn watch(ctx: &EngineCtx, mut claimed: Claimed) -> Result<(), EngineError> {
    let known_context = claimed.take_context();
    let (mut prepared, resolution) = prepare(ctx, &claimed, known_context).await?;
    let task = claimed.task();
    let signal = ctx.signals.subscribe(&task.key.run);
    let (offset, secrets) = match dispatch_or_reattach(ctx, &claimed, &mut prepared, resolution, &signal).await? {
        Begun::Following { offset, secrets } => (offset, secrets),
        Begun::Ended(ending) => {
            return conclude(ctx, task, &prepared.config, prepared.task(), &prepared.job_id, ending).await;
        }
        Begun::LeaseLost => return Ok(()),
    };
    let Followed::Ended { observation, start_recorded } =
        follow(ctx, task, &prepared, &signal, offset, secrets).await?
    else {
        return Ok(());
    };
    let job_id = prepared.job_id.as_str();
    // A task quicker than one observation was never seen running: its node is recorded with its end.
    let node = match start_recorded || observation == TaskObservation::Unknown {
        true => None,
        false => ctx.scheduler.node(job_id).await,
    };
    let ending = Ending::Observed(observation);
    conclude_on(ctx, task, &prepared.config, prepared.task(), job_id, ending, node.as_deref())
        .instrument(tracing::info_span!("engine.conclude"))
        .await?;
    if let Err(e) = ctx.scheduler.purge(job_id).instrument(tracing::info_span!("scheduler.purge", job = %job_id)).await
    {
        measure::scheduler_error("purge");
        tracing::warn!(error = %e, "purging the finished job failed");
    }
    Ok(())
}

/// What beginning an attempt needs, read and built before anything is sent to the scheduler.
pub(super) struct Prepared {
    /// The run as it is at dispatch (its variables, its deadline, whether it is being stopped).
    pub run: db::RunRow,
    pub config: VersionedConfig,
    /// Where the task is among the config's tasks.
    task_index: usize,
    /// The job's spec, complete but for the env's object references (resolved just before the start).
    pub spec: TaskSpec,
    /// The job id of the attempt: the spec's, or on a takeover the one the previous holder dispatched.
    pub job_id: String,
    /// Where the attempt's output is stored.
    pub log_key: LogKey,
}

impl Prepared {
    /// The task's config.
    pub(super) fn task(&self) -> &TaskConfig {
        &self.config.config.tasks[self.task_index]
    }
}

/// The secret values the task's env and registry auth resolved to (to mask them in its output),
/// or why they could not be.
pub(super) type Resolution = Result<Vec<String>, ReferenceError>;

/// Reads the run's dispatch context (unless the claim already did) and config, and builds the
/// job's spec with the plan's placement, a run token when the task asks for one and its
/// references resolved.
async fn prepare(
    ctx: &EngineCtx,
    claimed: &Claimed,
    known_context: Option<db::DispatchContext>,
) -> Result<(Prepared, Resolution), EngineError> {
    let ClaimedTask { key, attempt, .. } = claimed.task();
    let (run, config, (node_pool, allow_network, max_disk_mb, untrusted)) = {
        let mut conn = ctx.pool.acquire().await?;
        // The plan as it is at dispatch: a plan change applies to the next task dispatched.
        let context = match known_context {
            Some(context) => context,
            None => db::dispatch_context(&mut conn, &key.run).await?.ok_or(EngineError::RunNotFound(key.run.run))?,
        };
        let version = context.run.config_version;
        let config = ctx.config_for(&mut conn, &key.run, version, &context.config_hash).await?;
        let placement = (context.node_pool, context.allow_network, context.max_disk_mb, context.untrusted);
        (context.run, VersionedConfig { version, config }, placement)
    };
    let task_index = config
        .config
        .tasks
        .iter()
        .position(|t| t.id == key.task)
        .ok_or_else(|| EngineError::TaskNotFound(key.task.clone()))?;
    let task = &config.config.tasks[task_index];
    let mut spec = build_spec(&ctx.config, key, *attempt, task, run.variables());
    spec.node_pool = node_pool;
    spec.allow_network = allow_network;
    spec.disk_mb = u32::try_from(max_disk_mb).unwrap_or(gofer_core::model::DEFAULT_MAX_DISK_MB);
    spec.untrusted = untrusted;
    if task.inject_api_token {
        // Valid until the run's deadline at most; the API also refuses it once the run completes.
        let expires = run
            .deadline()
            .unwrap_or_else(|| time::OffsetDateTime::now_utc() + ctx.config.settings.default_run_timeout());
        match &ctx.run_tokens {
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
    let resolution: Resolution = {
        let p = &key.run.pipeline;
        let scope = references::Context { tenant: &p.tenant, namespace: &p.namespace, pipeline: &p.pipeline };
        async {
            let mut secrets = ctx.resolvers.resolve_env(&mut spec.env, &scope).await?;
            if let Some(name) = &task.registry_auth {
                let (auth, password) = ctx.resolvers.registry_auth(name, &scope).await?;
                spec.registry_auth = Some(auth);
                secrets.push(password);
            }
            Ok(secrets)
        }
        .await
    };
    let job_id = match claimed {
        Claimed::TakenOver { scheduler_id: Some(dispatched), .. } => dispatched.clone(),
        _ => spec.job_id.clone(),
    };
    let log_key = key.log_key(u32::try_from(*attempt).unwrap_or(1));
    Ok((Prepared { run, config, task_index, spec, job_id, log_key }, resolution))
}

/// How following a job ended.
enum Followed {
    /// The attempt ended this way and the rest of its output was copied; `start_recorded` says
    /// whether its start (and node) was recorded while it ran.
    Ended { observation: TaskObservation, start_recorded: bool },
    /// Another replica holds the lease now.
    LeaseLost,
}

/// Follows the job from raw output position `offset` until it ends, then copies the rest of its
/// output.
async fn follow(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    prepared: &Prepared,
    signal: &SignalGuard,
    offset: u64,
    secrets: Vec<String>,
) -> Result<Followed, EngineError> {
    let masker = Masker::new(secrets.iter().map(String::as_str));
    drop(secrets);
    let mut follower = Follower::new(ctx, claimed, prepared, offset, masker);
    let observation = loop {
        match follower.look(signal).await? {
            Next::KeepFollowing => {}
            Next::Finish(observation) => break observation,
            Next::GiveUp => return Ok(Followed::LeaseLost),
        }
    };
    let Follower { mut masker, offset, following, .. } = follower;
    capture::drain_logs(ctx, &prepared.log_key, &prepared.job_id, offset, &mut masker).await;
    Ok(Followed::Ended { observation, start_recorded: following.start_recorded() })
}

/// The follow step between two looks at the job.
struct Follower<'a> {
    ctx: &'a EngineCtx,
    claimed: &'a ClaimedTask,
    prepared: &'a Prepared,
    /// What the decision has learned so far.
    following: Following,
    masker: Masker,
    /// The raw output position copied up to.
    offset: u64,
    /// When output last came (or held-back output was written).
    output_seen: Instant,
    /// Until the next look: soon after the start, then less and less often up to
    /// `monitor_interval`, so a short task frees its slot in milliseconds and a long one costs
    /// no more looks than at a fixed interval.
    wait: DoublingDelay,
    /// When following began, and how long the job may run from then (timeout and grace).
    started: Instant,
    deadline: Duration,
    last_heartbeat: Instant,
}

impl<'a> Follower<'a> {
    fn new(ctx: &'a EngineCtx, claimed: &'a ClaimedTask, prepared: &'a Prepared, offset: u64, masker: Masker) -> Self {
        let now = Instant::now();
        let first_wait = (ctx.config.settings.monitor_interval() / 16).max(Duration::from_millis(1));
        Self {
            ctx,
            claimed,
            prepared,
            following: Following::default(),
            masker,
            offset,
            output_seen: now,
            wait: DoublingDelay::new(first_wait, ctx.config.settings.monitor_interval()),
            started: now,
            deadline: prepared.spec.timeout + ctx.config.timeout_grace,
            last_heartbeat: now,
        }
    }

    /// Waits (or hears the run's cancel), copies the job's new output, asks the scheduler about
    /// the job, checks its deadline and renews the lease when due, feeding each finding to the
    /// decision in that order. Answers where following goes.
    async fn look(&mut self, signal: &SignalGuard) -> Result<Next, EngineError> {
        let signalled = tokio::select! {
            _ = tokio::time::sleep(self.wait.current()) => {
                self.wait.double();
                false
            }
            _ = signal.cancelled() => true,
        };
        if signalled {
            let next = self.learn(Observation::CancelSignalled).await?;
            if next != Next::KeepFollowing {
                return Ok(next);
            }
        }
        self.copy_output().await;
        let state = match self.ctx.scheduler.observe(&self.prepared.job_id).await {
            Ok(state) => state,
            Err(e) => {
                measure::scheduler_error("observe");
                tracing::warn!(error = %e, "observing the task failed; trying again");
                TaskObservation::Pending
            }
        };
        let next = self.learn(Observation::Job(state)).await?;
        if next != Next::KeepFollowing {
            return Ok(next);
        }
        if self.started.elapsed() > self.deadline {
            return self.learn(Observation::PastDeadline).await;
        }
        if self.last_heartbeat.elapsed() > self.ctx.config.settings.lease() / 3 {
            self.last_heartbeat = Instant::now();
            let config = &self.ctx.config;
            let mut conn = self.ctx.pool.acquire().await?;
            let renewed = db::queue::heartbeat(
                &mut conn,
                &self.claimed.key,
                config.replica_id,
                config.settings.lease().as_secs_f64(),
            )
            .await?;
            drop(conn);
            let observation = match renewed {
                None => {
                    tracing::warn!("lease lost; another replica owns this task execution now");
                    Observation::LeaseLost
                }
                Some(cancelling) => Observation::LeaseRenewed { cancelling },
            };
            return self.learn(observation).await;
        }
        Ok(Next::KeepFollowing)
    }

    /// Copies what is new in the job's output to the log store.
    async fn copy_output(&mut self) {
        let (ctx, log_key, job_id) = (self.ctx, &self.prepared.log_key, &self.prepared.job_id);
        let copied = capture::copy_logs(ctx, log_key, job_id, self.offset, &mut self.masker).await;
        if copied != self.offset {
            (self.offset, self.output_seen) = (copied, Instant::now());
        } else if !self.masker.held_back().is_empty() && self.output_seen.elapsed() >= MASK_HOLD_LIMIT {
            // The task went quiet on a line the masker holds back because it could begin a
            // secret's encoded form (wrapped onto the next line): a live log must not lag behind
            // it. A secret the task writes in two parts more than this apart is not masked.
            capture::write_held_back(ctx, log_key, self.offset, &mut self.masker).await;
            self.output_seen = Instant::now();
        }
    }

    /// Feeds one observation to the decision and does its chores; answers where following goes.
    async fn learn(&mut self, observation: Observation) -> Result<Next, EngineError> {
        let Decision { chores, next } = self.following.decide(observation);
        let (ctx, job_id) = (self.ctx, self.prepared.job_id.as_str());
        for chore in chores {
            match chore {
                Chore::RecordStart => {
                    let node = ctx.scheduler.node(job_id).await;
                    let mut conn = ctx.pool.acquire().await?;
                    db::queue::mark_started(&mut conn, &self.claimed.key, self.claimed.attempt, node.as_deref())
                        .await?;
                }
                Chore::StopJob => {
                    tracing::info!("the run is being stopped; stopping the task");
                    let stopping = ctx.scheduler.stop(job_id, ctx.config.settings.stop_grace());
                    if let Err(e) = stopping.instrument(tracing::info_span!("scheduler.stop", job = %job_id)).await {
                        measure::scheduler_error("stop");
                        tracing::warn!(error = %e, "stopping the task failed; trying again on the next heartbeat");
                        // Always keeps following, with no chores: the stop is asked again later.
                        self.following.decide(Observation::StopFailed);
                    }
                }
                Chore::StopOverdue => {
                    // The scheduler should have stopped it; do it here and say why.
                    tracing::warn!("task outlived its timeout in the scheduler; stopping it");
                    let _ = ctx.scheduler.stop(job_id, Duration::from_secs(5)).await;
                }
            }
        }
        Ok(next)
    }
}

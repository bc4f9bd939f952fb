//! Watching one task execution through its current attempt, in three steps: prepare (read the
//! run's dispatch context and config, build the job's spec, resolve its references: `prepare.rs`), begin
//! (dispatch it, or re-attach after a takeover: `dispatch.rs`), and follow it (copy its output,
//! stop it when its run is cancelled or it outlives its timeout, renew the lease; what to do after
//! each observation is decided by `follow.rs`). Then the attempt is concluded (`conclude.rs`):
//! the task completes, or its next attempt is queued.

use std::time::{Duration, Instant};

use gofer_core::scheduler::TaskObservation;
use tracing::Instrument;

use super::backoff::DoublingDelay;
use super::cancel::SignalGuard;
use super::capture::{self, MASK_HOLD_LIMIT};
use super::claim::{Claimed, ClaimedTask};
use super::conclude::{conclude, conclude_on};
use super::context::EngineCtx;
use super::dispatch::{Begun, dispatch_or_reattach};
use super::follow::{Chore, Decision, Following, Next, Observation};
use super::outcome::Ending;
use super::prepare::{Prepared, prepare};
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

//! The first step of watching a task execution: read what its attempt needs and build the job's
//! spec, before anything is sent to the scheduler (`monitor.rs` runs the steps).

use gofer_core::TaskConfig;
use gofer_core::scheduler::TaskSpec;

use super::claim::{Claimed, ClaimedTask};
use super::conclude::VersionedConfig;
use super::context::EngineCtx;
use super::references::{self, ReferenceError};
use super::spec::build_spec;
use crate::logs::LogKey;
use crate::{EngineError, db};

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
pub(super) async fn prepare(
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

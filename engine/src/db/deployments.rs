//! SQL of deployments, their step logs and the runs a canary routed. Every function takes the
//! tenant first (inside the key).

use std::collections::BTreeMap;

use gofer_core::model::{Deployment, DeploymentLogEntry};
use gofer_core::{CanaryPolicy, DeploymentId, DeploymentKind, DeploymentState, DeploymentStatus, RunId, RunStatus};
use gofer_db::{BindKey, TenantTx};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::corrupt;
use crate::EngineError;
use gofer_core::keys::DeploymentKey;
use gofer_core::keys::{PipelineKey, RunKey};

#[derive(sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    pub id: i64,
    kind: String,
    pub from_version: Option<i64>,
    pub to_version: i64,
    state: String,
    status: String,
    status_reason: Option<String>,
    canary_percent: Option<i32>,
    max_failure_rate: Option<f64>,
    min_runs: Option<i32>,
    pub routed_runs: i64,
    pub routed_to_canary: i64,
    canary_runs: i64,
    canary_failures: i64,
    started_at: OffsetDateTime,
    ended_at: Option<OffsetDateTime>,
}

impl DeploymentRow {
    pub(crate) fn key(&self, pipeline: &PipelineKey) -> DeploymentKey {
        DeploymentKey { pipeline: pipeline.clone(), deployment: DeploymentId::from_i64(self.id) }
    }

    pub(crate) fn state(&self) -> Result<DeploymentState, EngineError> {
        self.state.parse().map_err(corrupt)
    }

    pub(crate) fn status(&self) -> Result<DeploymentStatus, EngineError> {
        self.status.parse().map_err(corrupt)
    }

    /// The canary's rules; `None` for an immediate deployment.
    pub(crate) fn policy(&self) -> Result<Option<CanaryPolicy>, EngineError> {
        match (self.canary_percent, self.max_failure_rate, self.min_runs) {
            (Some(percent), Some(rate), Some(min_runs)) => {
                let percent = u32::try_from(percent).map_err(corrupt)?;
                let min_runs = u32::try_from(min_runs).map_err(corrupt)?;
                CanaryPolicy::new(percent, rate, min_runs).map(Some).map_err(corrupt)
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn into_deployment(self, log: Vec<DeploymentLogEntry>) -> Result<Deployment, EngineError> {
        Ok(Deployment {
            id: DeploymentId::from_i64(self.id),
            kind: self.kind.parse::<DeploymentKind>().map_err(corrupt)?,
            from_version: self.from_version,
            to_version: self.to_version,
            state: self.state()?,
            status: self.status()?,
            status_reason: self.status_reason,
            canary_percent: self.canary_percent.map(u32::try_from).transpose().map_err(corrupt)?,
            max_failure_rate: self.max_failure_rate,
            min_runs: self.min_runs.map(u32::try_from).transpose().map_err(corrupt)?,
            routed_runs: self.routed_runs,
            routed_to_canary: self.routed_to_canary,
            canary_runs: self.canary_runs,
            canary_failures: self.canary_failures,
            started: self.started_at,
            ended: self.ended_at,
            log,
        })
    }
}

/// The columns [`DeploymentRow`] reads.
macro_rules! deployment_columns {
    () => {
        "id, kind, from_version, to_version, state, status, status_reason, canary_percent, max_failure_rate, \
         min_runs, routed_runs, routed_to_canary, canary_runs, canary_failures, started_at, ended_at"
    };
}

/// Inserts the pipeline's next deployment, running (the caller holds the pipeline's lock).
pub(crate) async fn insert_deployment(
    tx: &mut TenantTx,
    key: &PipelineKey,
    kind: DeploymentKind,
    from_version: Option<i64>,
    to_version: i64,
    policy: Option<&CanaryPolicy>,
) -> Result<DeploymentId, EngineError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (tenant_id, namespace_id, pipeline_id, id, kind, from_version, to_version, state,
             status, canary_percent, max_failure_rate, min_runs)
         SELECT $1, $2, $3, COALESCE(MAX(id), 0) + 1, $4, $5, $6, 'running', 'unknown', $7, $8, $9 FROM deployments
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
         RETURNING id",
    )
    .bind_key(key)
    .bind(kind.as_str())
    .bind(from_version)
    .bind(to_version)
    .bind(policy.map(|p| i32::try_from(p.percent()).unwrap_or(i32::MAX)))
    .bind(policy.map(CanaryPolicy::max_failure_rate))
    .bind(policy.map(|p| i32::try_from(p.min_runs()).unwrap_or(i32::MAX)))
    .fetch_one(&mut **tx)
    .await?;
    Ok(DeploymentId::from_i64(id))
}

/// Reads a deployment; with `lock`, its row stays locked until the transaction ends (always lock
/// the pipeline first: every writer takes the pipeline's lock, then the deployment's).
/// A bare connection: the API's deployments write it in a `TenantTx`, the cross-tenant completion
/// of a canary run (`deployments::on_run_completed`) in the engine's own transaction.
pub(crate) async fn get_deployment(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    lock: bool,
) -> Result<Option<DeploymentRow>, EngineError> {
    const BY_KEY: &str = concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4"
    );
    const BY_KEY_LOCKED: &str = concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4 FOR UPDATE"
    );
    Ok(sqlx::query_as::<_, DeploymentRow>(if lock { BY_KEY_LOCKED } else { BY_KEY })
        .bind_key(key)
        .fetch_optional(conn)
        .await?)
}

/// The pipeline's running deployment, if any; with `lock`, its row stays locked.
pub(crate) async fn running_deployment(
    tx: &mut TenantTx,
    key: &PipelineKey,
    lock: bool,
) -> Result<Option<DeploymentRow>, EngineError> {
    const RUNNING: &str = concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND state = 'running'"
    );
    const RUNNING_LOCKED: &str = concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND state = 'running'
          FOR UPDATE"
    );
    Ok(sqlx::query_as::<_, DeploymentRow>(if lock { RUNNING_LOCKED } else { RUNNING })
        .bind_key(key)
        .fetch_optional(&mut **tx)
        .await?)
}

/// The newest successful deployment that made `version` live.
pub(crate) async fn latest_deployment_to(
    tx: &mut TenantTx,
    key: &PipelineKey,
    version: i64,
) -> Result<Option<DeploymentRow>, EngineError> {
    Ok(sqlx::query_as::<_, DeploymentRow>(concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
          AND to_version = $4 AND status = 'successful' ORDER BY id DESC LIMIT 1"
    ))
    .bind_key(key)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Deployments of a pipeline, newest first, before `before`.
pub(crate) async fn list_deployments(
    tx: &mut TenantTx,
    key: &PipelineKey,
    before: Option<DeploymentId>,
    limit: i64,
) -> Result<Vec<DeploymentRow>, EngineError> {
    Ok(sqlx::query_as::<_, DeploymentRow>(concat!(
        "SELECT ",
        deployment_columns!(),
        " FROM deployments WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
          AND ($4::bigint IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    ))
    .bind_key(key)
    .bind(before.map(DeploymentId::get))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Completes a running deployment; answers false when it was no longer running.
/// A bare connection: the API's deployments write it in a `TenantTx`, the cross-tenant completion
/// of a canary run (`deployments::on_run_completed`) in the engine's own transaction.
pub(crate) async fn complete_deployment(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    status: DeploymentStatus,
    reason: &str,
) -> Result<bool, EngineError> {
    let done = sqlx::query(
        "UPDATE deployments SET state = 'complete', status = $5, status_reason = $6, ended_at = now()
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4 AND state = 'running'",
    )
    .bind_key(key)
    .bind(status.as_str())
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Appends a step to a deployment's log.
/// A bare connection: the API's deployments write it in a `TenantTx`, the cross-tenant completion
/// of a canary run (`deployments::on_run_completed`) in the engine's own transaction.
pub(crate) async fn append_log(conn: &mut PgConnection, key: &DeploymentKey, message: &str) -> Result<(), EngineError> {
    sqlx::query(
        "INSERT INTO deployment_log (tenant_id, namespace_id, pipeline_id, deployment_id, message)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind_key(key)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// The logs of some deployments of a pipeline, oldest step first, by deployment id.
pub(crate) async fn logs(
    tx: &mut TenantTx,
    key: &PipelineKey,
    deployments: &[i64],
) -> Result<BTreeMap<i64, Vec<DeploymentLogEntry>>, EngineError> {
    let rows: Vec<(i64, OffsetDateTime, String)> = sqlx::query_as(
        "SELECT deployment_id, logged_at, message FROM deployment_log
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND deployment_id = ANY($4)
         ORDER BY deployment_id, seq",
    )
    .bind_key(key)
    .bind(deployments)
    .fetch_all(&mut **tx)
    .await?;
    let mut out: BTreeMap<i64, Vec<DeploymentLogEntry>> = BTreeMap::new();
    for (id, time, message) in rows {
        out.entry(id).or_default().push(DeploymentLogEntry { time, message });
    }
    Ok(out)
}

/// Records that `run` was routed by the deployment, to the canary or not, and counts it.
pub(crate) async fn record_routing(
    tx: &mut TenantTx,
    key: &DeploymentKey,
    run: RunId,
    canary: bool,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE deployments SET routed_runs = routed_runs + 1,
             routed_to_canary = routed_to_canary + CASE WHEN $5 THEN 1 ELSE 0 END
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4",
    )
    .bind_key(key)
    .bind(canary)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO deployment_runs (tenant_id, namespace_id, pipeline_id, run_id, deployment_id, canary)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind_key(&key.pipeline)
    .bind(run.get())
    .bind(key.deployment.get())
    .bind(canary)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The deployment that routed `run`, and whether it sent the run to the canary.
pub(crate) async fn run_routing(conn: &mut PgConnection, run: &RunKey) -> Result<Option<(i64, bool)>, EngineError> {
    Ok(sqlx::query_as(
        "SELECT deployment_id, canary FROM deployment_runs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4",
    )
    .bind_key(run)
    .fetch_optional(conn)
    .await?)
}

/// Marks a routed run's outcome as seen; answers false when it was seen before, so a run is
/// counted at most once.
pub(crate) async fn mark_run_counted(
    conn: &mut PgConnection,
    run: &RunKey,
    status: RunStatus,
) -> Result<bool, EngineError> {
    let done = sqlx::query(
        "UPDATE deployment_runs SET counted_status = $5
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND counted_status IS NULL",
    )
    .bind_key(run)
    .bind(status.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Counts one completed canary run; answers the counts after it: (runs, failures).
pub(crate) async fn count_canary_run(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    failed: bool,
) -> Result<(i64, i64), EngineError> {
    Ok(sqlx::query_as(
        "UPDATE deployments SET canary_runs = canary_runs + 1,
             canary_failures = canary_failures + CASE WHEN $5 THEN 1 ELSE 0 END
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4
         RETURNING canary_runs, canary_failures",
    )
    .bind_key(key)
    .bind(failed)
    .fetch_one(conn)
    .await?)
}

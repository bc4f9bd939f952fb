//! Deployments: which config version new runs get (immediate switches, canaries), and what a
//! finished run teaches a canary.
//!
//! Locking: every writer takes the pipeline's row lock before a deployment's (runs::start holds
//! the pipeline's lock when it asks [`choose_version`]; [`on_run_completed`] takes it before the
//! deployment's), so two transactions never wait on each other in opposite orders.

use gofer_core::deployment::Verdict;
use gofer_core::model::{Deployment, PageRequest};
use gofer_core::{
    CanaryPolicy, ConfigState, DeploymentId, DeploymentKind, DeploymentState, DeploymentStatus, EventKind, RunStatus,
    Version,
};
use gofer_db::TenantTx;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::pipelines;
use crate::db::deployments::{self as dbd, DeploymentRow};
use crate::db::pipelines as dbp;
use crate::events::{self, EventScope};
use crate::{EngineError, db};
use gofer_core::keys::{PipelineKey, RunKey};

pub use gofer_core::keys::DeploymentKey;

/// Deploys `version`: at once (`canary: None`) or as a canary. Deploying the live version while
/// no deployment runs changes nothing and answers the deployment that made it live, with `false`.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline, %version))]
pub async fn deploy(
    pool: &PgPool,
    key: &PipelineKey,
    version: Version,
    canary: Option<CanaryPolicy>,
) -> Result<(Deployment, bool), EngineError> {
    let mut tx = db::scoped(pool, &key.tenant).await?;
    let pipeline = pipelines::require(&mut tx, key, true).await?;
    if dbp::config_state(&mut tx, key, version.get()).await?.is_none() {
        return Err(EngineError::ConfigNotFound(version));
    }
    ensure_none_running(&mut tx, key).await?;
    if pipeline.live_version == Some(version.get()) {
        let row = dbd::latest_deployment_to(&mut tx, key, version.get())
            .await?
            .ok_or_else(|| db::corrupt(format!("live version {version} has no deployment")))?;
        let deployment = load(&mut tx, &row.key(key)).await?;
        return Ok((deployment, false));
    }
    let id = match canary {
        None => deploy_immediately(&mut tx, key, pipeline.live_version, version.get()).await?,
        Some(policy) => {
            let live =
                pipeline.live_version.ok_or_else(|| EngineError::CanaryWithoutLiveVersion(key.pipeline.clone()))?;
            start_canary(&mut tx, key, live, version.get(), &policy).await?
        }
    };
    let deployment = load(&mut tx, &DeploymentKey { pipeline: key.clone(), deployment: id }).await?;
    tx.commit().await?;
    tracing::info!(deployment = %id, kind = %deployment.kind, "deployment started");
    Ok((deployment, true))
}

/// Reads one deployment with its log.
pub async fn get(pool: &PgPool, key: &DeploymentKey) -> Result<Deployment, EngineError> {
    let mut conn = db::scoped(pool, &key.pipeline.tenant).await?;
    pipelines::require(&mut conn, &key.pipeline, false).await?;
    load(&mut conn, key).await
}

/// Lists a pipeline's deployments, newest first, each with its log.
pub async fn list(
    pool: &PgPool,
    key: &PipelineKey,
    page: &PageRequest<DeploymentId>,
) -> Result<(Vec<Deployment>, Option<DeploymentId>), EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    pipelines::require(&mut conn, key, false).await?;
    let rows = dbd::list_deployments(&mut conn, key, page.after, i64::from(page.limit) + 1).await?;
    let (rows, next) = page.finish(rows, |d| DeploymentId::from_i64(d.id));
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut logs = dbd::logs(&mut conn, key, &ids).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let log = logs.remove(&row.id).unwrap_or_default();
            row.into_deployment(log)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, next))
}

/// Rolls a running canary back by hand: the live version stays, the canary version is deprecated.
/// Rolling back a deployment that was already rolled back changes nothing.
#[tracing::instrument(skip_all, fields(tenant = %key.pipeline.tenant, pipeline = %key.pipeline.pipeline, deployment = %key.deployment))]
pub async fn rollback(pool: &PgPool, key: &DeploymentKey, reason: Option<&str>) -> Result<Deployment, EngineError> {
    let mut tx = db::scoped(pool, &key.pipeline.tenant).await?;
    pipelines::require(&mut tx, &key.pipeline, true).await?;
    let row = dbd::get_deployment(&mut tx, key, true).await?.ok_or(EngineError::DeploymentNotFound(key.deployment))?;
    match (row.state()?, row.status()?) {
        (DeploymentState::Running, _) => {
            let reason = match reason {
                Some(r) => format!("rolled back by hand: {r}"),
                None => "rolled back by hand".to_owned(),
            };
            roll_back(&mut tx, key, &row, &reason).await?;
        }
        (DeploymentState::Complete, DeploymentStatus::RolledBack) => {}
        (DeploymentState::Complete, _) => return Err(EngineError::DeploymentNotRunning(key.deployment)),
    }
    let deployment = load(&mut tx, key).await?;
    tx.commit().await?;
    Ok(deployment)
}

/// Refuses when a deployment of the pipeline is running (the caller holds the pipeline's lock).
pub(crate) async fn ensure_none_running(tx: &mut TenantTx, key: &PipelineKey) -> Result<(), EngineError> {
    match dbd::running_deployment(tx, key, false).await? {
        Some(running) => Err(EngineError::DeploymentInProgress(DeploymentId::from_i64(running.id))),
        None => Ok(()),
    }
}

/// Makes `to` live at once, recording a complete immediate deployment (the caller holds the
/// pipeline's lock and checked that no deployment runs).
pub(crate) async fn deploy_immediately(
    tx: &mut TenantTx,
    key: &PipelineKey,
    from: Option<i64>,
    to: i64,
) -> Result<DeploymentId, EngineError> {
    let id = dbd::insert_deployment(tx, key, DeploymentKind::Immediate, from, to, None).await?;
    let dkey = DeploymentKey { pipeline: key.clone(), deployment: id };
    let live = from.map(|v| format!("live: version {v}")).unwrap_or_else(|| "no live version".into());
    dbd::append_log(tx, &dkey, &format!("immediate deployment of version {to} started ({live})")).await?;
    started_event(tx, &dkey, DeploymentKind::Immediate, from, to).await?;
    switch_live(tx, key, from, to).await?;
    let step = match from {
        Some(v) => format!("version {to} is live; version {v} is deprecated"),
        None => format!("version {to} is live"),
    };
    dbd::append_log(tx, &dkey, &step).await?;
    complete(tx, &dkey, to, DeploymentStatus::Successful, "deployed immediately").await?;
    Ok(id)
}

async fn start_canary(
    tx: &mut TenantTx,
    key: &PipelineKey,
    live: i64,
    to: i64,
    policy: &CanaryPolicy,
) -> Result<DeploymentId, EngineError> {
    let id = dbd::insert_deployment(tx, key, DeploymentKind::Canary, Some(live), to, Some(policy)).await?;
    let dkey = DeploymentKey { pipeline: key.clone(), deployment: id };
    dbp::set_config_state(tx, key, to, ConfigState::Canary).await?;
    let message = format!(
        "canary deployment of version {to} started beside live version {live}: {}% of new runs go to it; \
         promoted after {} completed canary runs with at most {} failed",
        policy.percent(),
        policy.min_runs(),
        gofer_core::deployment::percent(policy.max_failure_rate())
    );
    dbd::append_log(tx, &dkey, &message).await?;
    started_event(tx, &dkey, DeploymentKind::Canary, Some(live), to).await?;
    Ok(id)
}

/// Deprecates `from` (when there is one) and makes `to` live, in that order (one live version per
/// pipeline is enforced by a unique index). A bare connection, as for [`promote`]: an immediate
/// deployment (a `TenantTx`) and a promoted canary both switch.
async fn switch_live(
    conn: &mut PgConnection,
    key: &PipelineKey,
    from: Option<i64>,
    to: i64,
) -> Result<(), EngineError> {
    if let Some(from) = from {
        dbp::set_config_state(conn, key, from, ConfigState::Deprecated).await?;
    }
    dbp::set_config_state(conn, key, to, ConfigState::Live).await?;
    dbp::set_live_version(conn, key, to).await
}

/// Promotes a canary. A bare connection: it runs in the cross-tenant completion of a run.
async fn promote(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    row: &DeploymentRow,
    reason: &str,
) -> Result<(), EngineError> {
    switch_live(conn, &key.pipeline, row.from_version, row.to_version).await?;
    let deprecated = row.from_version.map(|v| format!(", version {v} is deprecated")).unwrap_or_default();
    dbd::append_log(conn, key, &format!("promoted: {reason}; version {} is live{deprecated}", row.to_version)).await?;
    complete(conn, key, row.to_version, DeploymentStatus::Successful, reason).await
}

/// Rolls a canary back. A bare connection: the API's rollback runs it in a `TenantTx`, the
/// cross-tenant completion of a run in the engine's transaction.
async fn roll_back(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    row: &DeploymentRow,
    reason: &str,
) -> Result<(), EngineError> {
    dbp::set_config_state(conn, &key.pipeline, row.to_version, ConfigState::Deprecated).await?;
    let live = row.from_version.map(|v| format!("version {v} stays live, ")).unwrap_or_default();
    let message = format!("rolled back: {reason}; {live}version {} is deprecated", row.to_version);
    dbd::append_log(conn, key, &message).await?;
    complete(conn, key, row.to_version, DeploymentStatus::RolledBack, reason).await
}

/// Completes the deployment with its event. A bare connection: an immediate deployment (a
/// `TenantTx`) and the cross-tenant promotion or rollback of a canary both complete one.
async fn complete(
    conn: &mut PgConnection,
    key: &DeploymentKey,
    to: i64,
    status: DeploymentStatus,
    reason: &str,
) -> Result<(), EngineError> {
    if !dbd::complete_deployment(conn, key, status, reason).await? {
        return Err(db::corrupt(format!("deployment {} was not running", key.deployment)));
    }
    let payload = json!({"deployment": key.deployment, "to_version": to, "status": status, "status_reason": reason});
    events::record(
        conn,
        &key.pipeline.tenant,
        EventKind::DeploymentCompleted,
        EventScope::pipeline(&key.pipeline),
        payload,
    )
    .await?;
    tracing::info!(deployment = %key.deployment, %status, reason, "deployment complete");
    Ok(())
}

async fn started_event(
    tx: &mut TenantTx,
    key: &DeploymentKey,
    kind: DeploymentKind,
    from: Option<i64>,
    to: i64,
) -> Result<(), EngineError> {
    let payload = json!({"deployment": key.deployment, "type": kind, "from_version": from, "to_version": to});
    events::record(
        tx,
        &key.pipeline.tenant,
        EventKind::DeploymentStarted,
        EventScope::pipeline(&key.pipeline),
        payload,
    )
    .await?;
    Ok(())
}

async fn load(tx: &mut TenantTx, key: &DeploymentKey) -> Result<Deployment, EngineError> {
    let row = dbd::get_deployment(tx, key, false).await?.ok_or(EngineError::DeploymentNotFound(key.deployment))?;
    let log = dbd::logs(tx, &key.pipeline, &[row.id]).await?.remove(&row.id).unwrap_or_default();
    row.into_deployment(log)
}

/// Chooses the config version for a new run (the caller holds the pipeline's lock).
/// `live_version` is the pipeline's live version. While a canary runs, the run goes to the canary
/// version whenever the canary is behind its share (see [`CanaryPolicy::routes_to_canary`]), and
/// the routing is recorded.
pub(crate) async fn choose_version(tx: &mut TenantTx, run: &RunKey, live_version: i64) -> Result<i64, EngineError> {
    let Some(deployment) = dbd::running_deployment(tx, &run.pipeline, true).await? else {
        return Ok(live_version);
    };
    let Some(policy) = deployment.policy()? else {
        return Ok(live_version);
    };
    let routed_to_canary = u64::try_from(deployment.routed_to_canary).map_err(db::corrupt)?;
    let routed_runs = u64::try_from(deployment.routed_runs).map_err(db::corrupt)?;
    let canary = policy.routes_to_canary(routed_to_canary, routed_runs);
    dbd::record_routing(tx, &deployment.key(&run.pipeline), run.run, canary).await?;
    Ok(if canary { deployment.to_version } else { live_version })
}

/// Tells the deployment machinery that a run finished (the caller holds the run's lock). A
/// completed canary run is counted, and the canary is promoted or rolled back once its runs say so.
pub(crate) async fn on_run_completed(
    conn: &mut PgConnection,
    run: &RunKey,
    config_version: i64,
    status: RunStatus,
) -> Result<(), EngineError> {
    let Some((deployment_id, true)) = dbd::run_routing(conn, run).await? else {
        return Ok(());
    };
    // Promotion changes the pipeline's live version: take the pipeline's lock before the
    // deployment's, as every other writer does.
    pipelines::require(conn, &run.pipeline, true).await?;
    let key = DeploymentKey { pipeline: run.pipeline.clone(), deployment: DeploymentId::from_i64(deployment_id) };
    let Some(row) = dbd::get_deployment(conn, &key, true).await? else {
        return Ok(());
    };
    if row.state()? != DeploymentState::Running || !dbd::mark_run_counted(conn, run, status).await? {
        return Ok(());
    }
    let Some(policy) = row.policy()? else {
        return Ok(());
    };
    if !matches!(status, RunStatus::Successful | RunStatus::Failed) {
        let message = format!("run {} on canary version {config_version} ended {status}; not counted", run.run);
        return dbd::append_log(conn, &key, &message).await;
    }
    let (runs, failures) = dbd::count_canary_run(conn, &key, status == RunStatus::Failed).await?;
    let message = format!(
        "run {} on canary version {config_version} ended {status}: {runs} of {} canary runs counted, {failures} failed",
        run.run,
        policy.min_runs()
    );
    dbd::append_log(conn, &key, &message).await?;
    let payload =
        json!({"deployment": key.deployment, "status": status, "canary_runs": runs, "canary_failures": failures});
    events::record(conn, &run.pipeline.tenant, EventKind::CanaryRunCounted, EventScope::run(run), payload).await?;
    let counts = (u64::try_from(runs).map_err(db::corrupt)?, u64::try_from(failures).map_err(db::corrupt)?);
    match policy.verdict(counts.0, counts.1) {
        Verdict::Continue => Ok(()),
        Verdict::Promote { reason } => promote(conn, &key, &row, &reason).await,
        Verdict::RollBack { reason } => roll_back(conn, &key, &row, &reason).await,
    }
}

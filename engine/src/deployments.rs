//! Deployments: which config version new runs get (immediate switches, canaries), and what a
//! finished run teaches a canary.

use gofer_core::RunStatus;
use sqlx::PgConnection;

use crate::EngineError;
use crate::runs::RunKey;

/// Chooses the config version for a new run (the caller holds the pipeline's lock).
/// `live_version` is the pipeline's live version.
pub(crate) async fn choose_version(
    _conn: &mut PgConnection,
    _run: &RunKey,
    live_version: i64,
) -> Result<i64, EngineError> {
    Ok(live_version)
}

/// Tells the deployment machinery that a run finished (the caller holds the run's lock).
pub(crate) async fn on_run_completed(
    _conn: &mut PgConnection,
    _run: &RunKey,
    _config_version: i64,
    _status: RunStatus,
) -> Result<(), EngineError> {
    Ok(())
}

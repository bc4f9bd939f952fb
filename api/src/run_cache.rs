//! Complete runs in a replica's memory, for `GET …/runs/{run}`, the most read route: a complete
//! run never changes, so it can be answered without a database round trip. Authorization is not
//! cached: the route's extractor still checks the token (from the token cache) and its
//! namespaces, and the key carries the token's tenant. Deletes evict through NOTIFY (migration
//! `notify_run_deletes`); see [`gofer_tenants::memo`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::RunState;
use gofer_core::model::Run;
use gofer_engine::runs::RunKey;
use gofer_tenants::memo::TenantMemo;
use sqlx::PgPool;

use crate::error::ApiError;

/// The channel the run-delete trigger notifies with the tenant id.
pub const CHANNEL: &str = "gofer_runs_deleted";

/// Complete runs of this replica.
pub struct CompleteRuns {
    memo: Arc<TenantMemo<RunKey, Run>>,
}

impl CompleteRuns {
    /// A cache keeping complete runs for `ttl` (zero: none), at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { memo: Arc::new(TenantMemo::new(ttl, max_entries, |key: &RunKey, _| Some(key.pipeline.tenant.clone()))) }
    }

    /// Reads a run, from memory when it is complete and remembered.
    pub async fn get(&self, pool: &PgPool, key: RunKey) -> Result<Run, ApiError> {
        let now = Instant::now();
        if let Some(run) = self.memo.get(&key, now) {
            return Ok(run);
        }
        let generation = self.memo.generation();
        let run = gofer_engine::runs::get(pool, &key).await?;
        if run.state == RunState::Complete {
            self.memo.store(key, run.clone(), generation, now, None);
        }
        Ok(run)
    }
}

/// Evicts a tenant's runs whenever some of its runs are deleted, for the life of the replica.
pub async fn follow(pool: PgPool, cache: Arc<CompleteRuns>) {
    gofer_tenants::memo::follow(pool, CHANNEL, cache.memo.clone()).await
}

//! Complete runs in a replica's memory, for the most read routes, `GET …/runs/{run}` and the run
//! list: a complete run never changes, so it is kept as the JSON the API answers, serialized once,
//! and answered without a database round trip (a run page costs one light read of its ids; full
//! rows are read only for the runs not remembered). Authorization is not cached: the route's
//! extractor still checks the token (from the token cache) and its namespaces, and the key
//! carries the token's tenant. Deletes evict through NOTIFY (migration `notify_run_deletes`); see
//! [`gofer_tenants::memo`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use gofer_core::keys::{PipelineKey, RunKey};
use gofer_core::model::{PageRequest, Run};
use gofer_core::{RunId, RunState};
use gofer_tenants::memo::TenantMemo;
use sqlx::PgPool;

use crate::error::ApiError;

/// A page of a pipeline's run ids as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    pipeline: PipelineKey,
    after: Option<RunId>,
    limit: u32,
}

/// A page's run ids, newest first, and the next page's key.
type IdPage = Arc<(Vec<RunId>, Option<RunId>)>;

/// A run as the API answers it: its number and its JSON (a `Run` object).
#[derive(Debug)]
pub struct RunJson {
    /// The run number.
    pub id: RunId,
    /// The serialized `Run`.
    pub json: Bytes,
}

impl RunJson {
    fn of(run: &Run) -> Result<Self, ApiError> {
        let json = serde_json::to_vec(run).map_err(|e| ApiError::internal(format!("cannot serialize a run: {e}")))?;
        Ok(Self { id: run.id, json: Bytes::from(json) })
    }
}

/// Complete runs of this replica, and the run ids of the pages it answered.
pub struct CompleteRuns {
    memo: Arc<TenantMemo<RunKey, Arc<RunJson>>>,
    /// Which runs a page holds changes only when runs are added or deleted (a run's state is read
    /// from `memo` or the database each time): pages are evicted by both notifications.
    pages: Arc<TenantMemo<PageKey, IdPage>>,
}

impl CompleteRuns {
    /// A cache keeping complete runs, and pages of run ids, for `ttl` (zero: none), at most
    /// `max_entries` of each.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            memo: Arc::new(TenantMemo::new(ttl, max_entries, |key: &RunKey, _| Some(key.pipeline.tenant.clone()))),
            pages: Arc::new(TenantMemo::new(ttl, max_entries, |key: &PageKey, _| Some(key.pipeline.tenant.clone()))),
        }
    }

    /// Reads a run, from memory when it is complete and remembered.
    pub async fn get(&self, pool: &PgPool, key: RunKey) -> Result<Arc<RunJson>, ApiError> {
        let now = Instant::now();
        if let Some(run) = self.memo.get(&key, now) {
            return Ok(run);
        }
        let generation = self.memo.generation();
        let run = gofer_engine::runs::get(pool, &key).await?;
        self.remember(key, &run, generation, now)
    }

    /// One page of a pipeline's runs, newest first, and the next page's key: the page's ids from
    /// the database, then each run from memory, or read (in one round trip for all of them) when
    /// not remembered. A run deleted between the two reads is left out of the page.
    pub async fn list(
        &self,
        pool: &PgPool,
        pipeline: &PipelineKey,
        page: &PageRequest<RunId>,
    ) -> Result<(Vec<Arc<RunJson>>, Option<RunId>), ApiError> {
        let now = Instant::now();
        // Taken before the first read: a delete committed after it may not be seen by the reads.
        let generation = self.memo.generation();
        let page_key = PageKey { pipeline: pipeline.clone(), after: page.after, limit: page.limit };
        let ids_page = match self.pages.get(&page_key, now) {
            Some(ids) => ids,
            None => {
                let page_generation = self.pages.generation();
                let ids = Arc::new(gofer_engine::runs::list_ids(pool, pipeline, page).await?);
                // Not an empty page: deleting a pipeline without runs notifies nothing, and its
                // empty page would then hide that it is gone.
                if !ids.0.is_empty() {
                    self.pages.store(page_key, ids.clone(), page_generation, now, None);
                }
                ids
            }
        };
        let (ids, next) = (&ids_page.0, ids_page.1);
        let key_of = |run: RunId| RunKey { pipeline: pipeline.clone(), run };
        let mut runs: Vec<Option<Arc<RunJson>>> = ids.iter().map(|id| self.memo.get(&key_of(*id), now)).collect();
        let missing: Vec<RunId> = ids.iter().zip(&runs).filter(|(_, run)| run.is_none()).map(|(id, _)| *id).collect();
        if !missing.is_empty() {
            let read = gofer_engine::runs::runs_by_id(pool, pipeline, &missing).await?;
            let mut read: HashMap<RunId, Run> = read.into_iter().map(|run| (run.id, run)).collect();
            for (id, slot) in ids.iter().zip(runs.iter_mut()) {
                if slot.is_none()
                    && let Some(run) = read.remove(id)
                {
                    *slot = Some(self.remember(key_of(*id), &run, generation, now)?);
                }
            }
        }
        Ok((runs.into_iter().flatten().collect(), next))
    }

    /// Forgets a tenant's runs and pages at once, after this replica deleted some of its runs: the
    /// NOTIFY that evicts them everywhere arrives a moment later, and the replica that made the
    /// delete must not answer a deleted run in between.
    pub fn forget(&self, tenant: &gofer_core::TenantId) {
        self.memo.evict(Some(tenant));
        self.pages.evict(Some(tenant));
    }

    /// Serializes a run read from the database, keeping it when complete.
    fn remember(&self, key: RunKey, run: &Run, generation: u64, now: Instant) -> Result<Arc<RunJson>, ApiError> {
        let entry = Arc::new(RunJson::of(run)?);
        if run.state == RunState::Complete {
            self.memo.store(key, entry.clone(), generation, now, None);
        }
        Ok(entry)
    }
}

/// Evicts a tenant's runs whenever some of its runs are deleted, and its pages whenever runs are
/// deleted or added (`deleted`: [`gofer_db::channels::RUNS_DELETED`], `changed`: that and
/// [`gofer_db::channels::RUNS_ADDED`], on the
/// replica's shared listener), for the life of the replica.
pub async fn follow(
    deleted: gofer_notify::Subscription,
    changed: gofer_notify::Subscription,
    cache: Arc<CompleteRuns>,
) {
    tokio::join!(
        gofer_tenants::memo::follow(deleted, cache.memo.clone()),
        gofer_tenants::memo::follow(changed, cache.pages.clone())
    );
}

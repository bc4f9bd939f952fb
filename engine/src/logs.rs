//! Task execution logs, keyed
//! `tenants/<t>/namespaces/<ns>/pipelines/<p>/runs/<r>/tasks/<task>/attempt-<n>.log` (each attempt
//! keeps its own log): the capped local store the engine appends to as output is captured
//! (`store.rs`, with `raw_offset.rs` for takeovers), the masking of secrets applied before anything
//! is stored (`masking.rs`), and the archive and expiry of finished logs (`archive.rs`). Reading a
//! task's log, wherever it is now, is here.

mod archive;
pub mod masking;
mod raw_offset;
mod store;

use sqlx::PgPool;

use crate::EngineError;
use gofer_core::keys::TaskKey;

pub use archive::{archive_finished, expire_finished};
pub use store::{DEFAULT_MAX_BYTES_PER_TASK, LogKey, LogSlice, LogStore, cut_marker};

/// Reads one attempt's log (the current attempt by default) as stored so far from raw position
/// `offset` (0: the start), once the task execution is known to exist: the head, the cut marker,
/// the tail.
pub async fn read_task_log(
    pool: &PgPool,
    store: &LogStore,
    key: &TaskKey,
    attempt: Option<u32>,
    offset: u64,
) -> Result<LogSlice, EngineError> {
    let task = crate::runs::get_task(pool, key).await?;
    let attempt = attempt.unwrap_or(task.attempt);
    if attempt == 0 || attempt > task.attempt {
        return Err(EngineError::AttemptNotFound(attempt));
    }
    let log_key = key.log_key(attempt);
    // Twice at most: the archive job may move the log between the row read and the file read.
    for _ in 0..2 {
        let where_ = {
            let mut tx = crate::db::scoped(pool, &key.run.pipeline.tenant).await?;
            crate::db::logs::attempt_log(&mut tx, key, attempt).await?
        };
        match where_ {
            Some(log) if log.expired => return Err(EngineError::LogsExpired(attempt)),
            Some(log) if log.archived => return archive::read_archived(store, &log_key, log, offset).await,
            _ => {}
        }
        let slice = store.read_all_from(&log_key, offset).await?;
        if slice.exists || store.archive().is_none() {
            return Ok(slice);
        }
    }
    Ok(LogSlice { data: Vec::new(), next_offset: offset, exists: false })
}

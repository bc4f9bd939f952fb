//! Finished logs in the object store: a periodic job moves each ended attempt's log there once
//! `archive_after` has passed (so live followers have finished), as it reads (head, marker, tail),
//! records its shape on the attempt row and removes the local files; reads of an archived log come
//! from the store. After the retention period the job removes the log (archived or not) and reads
//! answer `logs_expired`.

use std::time::Duration;

use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TenantId};
use sqlx::PgPool;

use super::{LogKey, LogSlice, LogStore, cut_marker};
use crate::EngineError;

/// Reads an archived log from raw position `offset`, with the same cut marker as a local one.
pub(super) async fn read_archived(
    store: &LogStore,
    key: &LogKey,
    log: crate::db::logs::AttemptLog,
    offset: u64,
) -> Result<LogSlice, EngineError> {
    use futures_util::StreamExt;
    let archive = store.archive().ok_or_else(|| EngineError::Corrupt("an archived log without an archive".into()))?;
    let fetched =
        archive.get(&key.path()).await.map_err(|e| EngineError::Logs(std::io::Error::other(e.to_string())))?;
    let Some(mut fetched) = fetched else {
        return Ok(LogSlice { data: Vec::new(), next_offset: offset, exists: false });
    };
    let mut shown = Vec::with_capacity(usize::try_from(fetched.size).unwrap_or(0));
    while let Some(chunk) = fetched.body.next().await {
        shown.extend_from_slice(&chunk?);
    }
    let n = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    let (raw, head, tail_start) = (n(log.raw_bytes), n(log.head_bytes), n(log.tail_start));
    // Shown = head, then (when bytes were cut) the marker, then the tail from `tail_start`.
    let tail_at = shown.len().saturating_sub(usize::try_from(raw - tail_start.min(raw)).unwrap_or(0));
    let data = if offset >= raw {
        Vec::new()
    } else if offset < head {
        shown[usize::try_from(offset).unwrap_or(0)..].to_vec()
    } else if offset < tail_start {
        let mut data = cut_marker(tail_start - offset);
        data.extend_from_slice(&shown[tail_at..]);
        data
    } else {
        shown[tail_at + usize::try_from(offset - tail_start).unwrap_or(0)..].to_vec()
    };
    Ok(LogSlice { data, next_offset: offset.max(raw), exists: true })
}

/// Moves the logs of attempts that ended over `after` ago to the store's archive: uploads what a
/// read shows, records its shape, removes the local files. Cross-tenant work of the periodic job.
/// Answers how many logs moved.
pub async fn archive_finished(pool: &PgPool, store: &LogStore, after: Duration) -> Result<u64, EngineError> {
    let Some(archive) = store.archive() else { return Ok(0) };
    let mut moved = 0;
    loop {
        let due = crate::db::logs::due_for_archive(pool, after.as_secs_f64(), 200).await?;
        if due.is_empty() {
            return Ok(moved);
        }
        for log in &due {
            let key = due_key(log)?;
            let (raw, head, tail_start) = store.shape(&key).await?.unwrap_or((0, 0, 0));
            let shown = store.read_all_from(&key, 0).await?.data;
            let length = shown.len() as u64;
            let body: gofer_core::objects::ByteStream =
                Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(shown))]));
            archive
                .put(&key.path(), body, Some(length), u64::MAX)
                .await
                .map_err(|e| EngineError::Logs(std::io::Error::other(e.to_string())))?;
            crate::db::logs::mark_archived(pool, log, raw, head, tail_start).await?;
            store.remove_local(&key).await?;
            moved += 1;
        }
    }
}

/// Removes the logs of attempts that ended over `retention` ago (archived or not); reads then
/// answer `logs_expired`. Answers how many.
pub async fn expire_finished(pool: &PgPool, store: &LogStore, retention: Duration) -> Result<u64, EngineError> {
    let mut removed = 0;
    loop {
        let due = crate::db::logs::due_for_expiry(pool, retention.as_secs_f64(), 200).await?;
        if due.is_empty() {
            return Ok(removed);
        }
        for log in &due {
            let key = due_key(log)?;
            if let Some(archive) = store.archive() {
                archive
                    .delete(&key.path())
                    .await
                    .map_err(|e| EngineError::Logs(std::io::Error::other(e.to_string())))?;
            }
            store.remove_local(&key).await?;
            crate::db::logs::mark_expired(pool, log).await?;
            removed += 1;
        }
    }
}

fn due_key(log: &crate::db::logs::DueLog) -> Result<LogKey, EngineError> {
    let corrupt = |e: gofer_core::IdError| EngineError::Corrupt(e.to_string());
    Ok(LogKey {
        tenant: TenantId::parse(log.tenant_id.as_str()).map_err(corrupt)?,
        namespace: NamespaceId::parse(log.namespace_id.as_str()).map_err(corrupt)?,
        pipeline: PipelineId::parse(log.pipeline_id.as_str()).map_err(corrupt)?,
        run: RunId::from_i64(log.run_id),
        task: TaskId::parse(log.task_id.as_str()).map_err(corrupt)?,
        attempt: u32::try_from(log.attempt).unwrap_or(1),
    })
}

//! Capturing a task's output: copying what the scheduler holds to the log store as it comes,
//! masking secrets on the way (see [`crate::logs::masking`]), and draining the rest once the task
//! ended. A log failure never fails the task: copies are retried.

use std::time::Duration;

use gofer_core::scheduler::SchedulerError;

use super::backoff::DoublingDelay;
use super::context::EngineCtx;
use crate::logs::LogKey;
use crate::logs::masking::Masker;

/// How much log to read from the scheduler per call.
const LOG_READ_BYTES: usize = 256 * 1024;

/// How many times the last copy of a finished task's output is tried, a monitor interval apart
/// (doubling), before the rest of the output is given up: the scheduler or the log store may be
/// briefly unavailable just as the task ends, and the output is then lost for good.
const FINAL_LOG_COPY_TRIES: u32 = 8;

/// Copies the rest of a finished task's output and the masker's held-back tail, retrying failures.
pub(super) async fn drain_logs(ctx: &EngineCtx, log_key: &LogKey, job_id: &str, mut offset: u64, masker: &mut Masker) {
    let first = ctx.config.settings.monitor_interval().max(Duration::from_millis(50));
    let mut pause = DoublingDelay::new(first, Duration::from_secs(5));
    for attempt in 1..=FINAL_LOG_COPY_TRIES {
        let (next, complete) = copy_logs_to_end(ctx, log_key, job_id, offset, masker).await;
        offset = next;
        if complete {
            break;
        }
        tracing::warn!(attempt, "copying the finished task's output failed; trying again");
        tokio::time::sleep(pause.current()).await;
        pause.double();
    }
    for _ in 1..=FINAL_LOG_COPY_TRIES {
        if write_held_back(ctx, log_key, offset, masker).await {
            return;
        }
        tokio::time::sleep(pause.current()).await;
    }
}

/// How long the masker may hold back output of a task that writes nothing more (see
/// [`crate::logs::masking`]: a line that could begin a secret's wrapped encoding waits for the next).
pub(super) const MASK_HOLD_LIMIT: Duration = Duration::from_secs(1);

/// Masks and stores what the masker holds back, which ends the raw output at `offset`; answers
/// whether it was stored (if not, the masker still holds it).
pub(super) async fn write_held_back(ctx: &EngineCtx, log_key: &LogKey, offset: u64, masker: &mut Masker) -> bool {
    let held = masker.held_back().to_vec();
    let tail = masker.finish();
    match ctx.logs.append_masked(log_key, &tail, offset.saturating_sub(held.len() as u64), offset).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "writing the task log failed");
            masker.restore(held);
            false
        }
    }
}

/// Copies everything new in the scheduler's output to the log store, masking secrets; answers the
/// next offset. Failures are logged and retried on the next call: a log hiccup must not fail the task.
pub(super) async fn copy_logs(
    ctx: &EngineCtx,
    log_key: &LogKey,
    job_id: &str,
    offset: u64,
    masker: &mut Masker,
) -> u64 {
    copy_logs_to_end(ctx, log_key, job_id, offset, masker).await.0
}

/// [`copy_logs`], also answering whether it reached the end of the output (no failure on the way).
async fn copy_logs_to_end(
    ctx: &EngineCtx,
    log_key: &LogKey,
    job_id: &str,
    mut offset: u64,
    masker: &mut Masker,
) -> (u64, bool) {
    loop {
        match ctx.scheduler.read_logs(job_id, offset, LOG_READ_BYTES).await {
            Ok(chunk) if chunk.data.is_empty() => return (offset, true),
            Ok(chunk) => {
                let held = masker.held_back().to_vec();
                let masked = masker.feed(&chunk.data);
                // Raw positions of the stored log's end, before and after: what the masker holds
                // back is not stored yet.
                let raw_before = offset.saturating_sub(held.len() as u64);
                let raw_after = chunk.next_offset.saturating_sub(masker.held_back().len() as u64);
                if let Err(e) = ctx.logs.append_masked(log_key, &masked, raw_before, raw_after).await {
                    tracing::warn!(error = %e, "writing the task log failed");
                    // The chunk is read again next time: put the masker back as it was.
                    masker.restore(held);
                    return (offset, false);
                }
                crate::measure::log_bytes(chunk.data.len());
                offset = chunk.next_offset;
            }
            Err(SchedulerError::NotFound(_)) => return (offset, true),
            Err(e) => {
                tracing::debug!(error = %e, "reading task output failed");
                return (offset, false);
            }
        }
    }
}

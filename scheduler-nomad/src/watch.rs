//! Following `/v1/event/stream` (NDJSON, `{}` heartbeats): allocation updates land in a cache
//! that `observe` answers from while the stream is connected. The stream reconnects with backoff,
//! resuming from the last index it saw; while it is down, and for each job once after every
//! reconnect (events of the gap may have been evicted), `observe` polls instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::client::Client;
use crate::state::Allocation;

/// Without a byte for this long (Nomad's heartbeat is every 30 s) the stream counts as broken.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The newest allocation known per job, and whether the stream can be trusted for it.
#[derive(Default)]
pub(crate) struct Tracker {
    /// job id → (stream generation when stored, allocation).
    allocs: Mutex<HashMap<String, (u64, Allocation)>>,
    connected: AtomicBool,
    /// Bumped on every disconnection: entries of an older generation may have missed events.
    generation: AtomicU64,
}

impl Tracker {
    /// The cached allocation of a job, when the stream is connected and has followed it since it was stored.
    pub(crate) fn fresh(&self, job_id: &str) -> Option<Allocation> {
        if !self.connected.load(Ordering::SeqCst) {
            return None;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let allocs = self.allocs.lock().ok()?;
        allocs.get(job_id).filter(|(g, _)| *g == generation).map(|(_, a)| a.clone())
    }

    /// The cached allocation, however old.
    pub(crate) fn any(&self, job_id: &str) -> Option<Allocation> {
        self.allocs.lock().ok()?.get(job_id).filter(|(_, a)| !a.id.is_empty()).map(|(_, a)| a.clone())
    }

    /// Stores an allocation unless a newer one of the job is already known. Only jobs already
    /// tracked (started or observed here) are kept: the stream carries every job of the cluster,
    /// and a job id names its tenant's namespace (`identity.rs`), so one elsewhere is not ours.
    pub(crate) fn store(&self, alloc: Allocation, from_stream: bool) {
        if crate::identity::home_namespace(&alloc.job_id).is_some_and(|home| home != alloc.namespace) {
            // The same id in another tenant's namespace: not the job tracked here.
            return;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Ok(mut allocs) = self.allocs.lock() else { return };
        match allocs.get(&alloc.job_id) {
            None if from_stream => {}
            Some((_, known)) if (known.create_index, known.modify_index) > (alloc.create_index, alloc.modify_index) => {
                // Older news; still refresh the generation when a poll confirmed it.
                if !from_stream && let Some(entry) = allocs.get_mut(&alloc.job_id) {
                    entry.0 = generation;
                }
            }
            _ => {
                allocs.insert(alloc.job_id.clone(), (generation, alloc));
            }
        }
    }

    /// Starts following a job (its first allocation may come from the stream).
    pub(crate) fn track(&self, job_id: &str) {
        if let Ok(mut allocs) = self.allocs.lock() {
            allocs.entry(job_id.to_owned()).or_insert_with(|| (u64::MAX, Allocation::default()));
        }
    }

    /// Forgets a job.
    pub(crate) fn forget(&self, job_id: &str) {
        if let Ok(mut allocs) = self.allocs.lock() {
            allocs.remove(job_id);
        }
    }

    fn set_connected(&self, connected: bool) {
        if !connected {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.connected.store(connected, Ordering::SeqCst);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamLine {
    #[serde(rename = "Index")]
    index: u64,
    #[serde(rename = "Events")]
    events: Vec<StreamEvent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamEvent {
    #[serde(rename = "Topic")]
    topic: String,
    #[serde(rename = "Payload")]
    payload: Payload,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Payload {
    #[serde(rename = "Allocation")]
    allocation: Option<Allocation>,
}

/// Follows the event stream until the task is aborted.
pub(crate) async fn follow(client: Client, tracker: std::sync::Arc<Tracker>) {
    let mut index = 0;
    let mut backoff = Duration::from_millis(500);
    loop {
        match client.event_stream(index).await {
            Ok(response) => {
                tracker.set_connected(true);
                backoff = Duration::from_millis(500);
                tracing::info!(index, "following the Nomad event stream");
                let reason = read(response, &tracker, &mut index).await;
                tracing::warn!(reason, index, "the Nomad event stream ended; polling until it is back");
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the Nomad event stream; polling until it is back"),
        }
        tracker.set_connected(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn read(response: reqwest::Response, tracker: &Tracker, index: &mut u64) -> String {
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
            Err(_) => return "no heartbeat".into(),
            Ok(None) => return "closed by Nomad".into(),
            Ok(Some(Err(e))) => return e.to_string(),
            Ok(Some(Ok(chunk))) => chunk,
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<StreamLine>(line) {
                Ok(parsed) => {
                    // `{}` is a heartbeat: index 0, no events.
                    for event in parsed.events.into_iter().filter(|e| e.topic == "Allocation") {
                        if let Some(alloc) = event.payload.allocation {
                            tracker.store(alloc, true);
                        }
                    }
                    if parsed.index > 0 {
                        // Resume after the last index seen.
                        *index = parsed.index + 1;
                    }
                }
                Err(e) => return format!("unreadable event: {e}"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alloc(job: &str, modify: u64, status: &str) -> Allocation {
        Allocation {
            id: "a".into(),
            job_id: job.into(),
            client_status: status.into(),
            create_index: 1,
            modify_index: modify,
            ..Allocation::default()
        }
    }

    #[test]
    fn the_cache_is_trusted_only_while_connected_and_keeps_the_newest() {
        let t = Tracker::default();
        t.set_connected(true);
        t.store(alloc("other", 1, "running"), true);
        assert!(t.any("other").is_none(), "jobs not tracked here are ignored");
        t.track("j");
        t.store(alloc("j", 5, "running"), true);
        t.store(alloc("j", 3, "pending"), true);
        assert_eq!(t.fresh("j").unwrap().client_status, "running");
        t.set_connected(false);
        assert!(t.fresh("j").is_none());
        t.set_connected(true);
        assert!(t.fresh("j").is_none(), "stale after a reconnect until polled");
        t.store(alloc("j", 5, "running"), false);
        assert_eq!(t.fresh("j").unwrap().modify_index, 5);
        t.forget("j");
        assert!(t.any("j").is_none());
    }
}

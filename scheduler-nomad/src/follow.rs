//! Held `follow=true` log streams (`/v1/client/fs/logs/:alloc`), one per allocation and output
//! (`stdout`, `stderr`), decoding Nomad's frames into a buffer the scheduler drains on each read.
//!
//! A stream that drops (closed, an error, or no byte for [`SILENCE_LIMIT`]) is reopened at the
//! offset of the last complete frame, with backoff, so nothing is read twice or skipped. After
//! [`GIVE_UP_AFTER`] failed attempts in a row (refused, or ended by Nomad without a byte, as for a
//! dead task) the follower gives up and the scheduler reads that output by polling
//! (`follow=false`) instead — a proxy that buffers streams or a Nomad that
//! refuses them costs latency, never output.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;

use crate::client::{Client, FrameDecoder};

/// Without a byte for this long (Nomad sends a heartbeat frame every few seconds while a task is
/// quiet) the stream counts as dropped.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Failed (re)connections in a row before polling takes over.
pub(crate) const GIVE_UP_AFTER: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Shared {
    /// Decoded output not taken yet.
    data: Vec<u8>,
    /// Set by the reader that takes the last bytes: nothing may be added after it.
    closed: bool,
    /// The follower gave up (see the module docs).
    gave_up: bool,
}

/// One followed output of one allocation. Dropping it stops the stream.
#[derive(Debug)]
pub(crate) struct Follower {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Follower {
    /// Starts following `kind` of the task `task` in `alloc` from `offset`.
    pub(crate) fn start(client: Client, alloc: String, task: &'static str, kind: &'static str, offset: u64) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(follow(client, alloc, task, kind, offset, shared.clone()));
        Self { shared, task }
    }

    /// Takes what arrived since the last call.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.shared).data)
    }

    /// Whether the follower gave up (then poll instead; what it had is still to [`Follower::close`]).
    pub(crate) fn gave_up(&self) -> bool {
        lock(&self.shared).gave_up
    }

    /// Stops the stream and answers the bytes it had not handed out: after this nothing more is
    /// added, so a reader can continue from exactly here by other means.
    pub(crate) fn close(self) -> Vec<u8> {
        let mut shared = lock(&self.shared);
        shared.closed = true;
        std::mem::take(&mut shared.data)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.task.abort();
    }
}

async fn follow(
    client: Client,
    alloc: String,
    task: &'static str,
    kind: &'static str,
    mut offset: u64,
    shared: Arc<Mutex<Shared>>,
) {
    let mut failures = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.follow_logs(&alloc, task, kind, offset).await {
            Ok(response) => {
                let from = offset;
                let ended = read(response, &shared, &mut offset).await;
                // A stream Nomad ends without a byte (the task is dead, so there is nothing to
                // wait for) counts as a failure too: the scheduler polls the rest.
                if offset > from || !matches!(ended, Ended::ByNomad) {
                    failures = 0;
                    backoff = FIRST_BACKOFF;
                } else {
                    failures += 1;
                }
                match ended {
                    Ended::Closed => return,
                    Ended::ByNomad => tracing::debug!(alloc = %alloc, kind, offset, "log stream ended; reopening it"),
                    Ended::Dropped(reason) => {
                        tracing::info!(alloc = %alloc, kind, offset, reason = %reason, "log stream dropped; reopening it at the last offset")
                    }
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(alloc = %alloc, kind, error = %e, "opening the log stream failed");
            }
        }
        if failures >= GIVE_UP_AFTER {
            tracing::info!(alloc = %alloc, kind, offset, "not following the task's log any more (refused, or the task is dead); polling it");
            lock(&shared).gave_up = true;
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if lock(&shared).closed {
            return;
        }
    }
}

enum Ended {
    /// The reader closed the follower.
    Closed,
    /// Nomad ended the response (the task is dead, or the agent went away).
    ByNomad,
    /// An error, undecodable frames, or silence.
    Dropped(String),
}

async fn read(response: reqwest::Response, shared: &Mutex<Shared>, offset: &mut u64) -> Ended {
    let mut body = response.bytes_stream();
    let mut decoder = FrameDecoder::default();
    loop {
        let piece = match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
            Err(_) => return Ended::Dropped("no frame or heartbeat".into()),
            Ok(None) => return Ended::ByNomad,
            Ok(Some(Err(e))) => return Ended::Dropped(e.to_string()),
            Ok(Some(Ok(piece))) => piece,
        };
        let data = match decoder.push(&piece) {
            Ok(data) => data,
            Err(e) => return Ended::Dropped(e.to_string()),
        };
        let mut shared = lock(shared);
        if shared.closed {
            return Ended::Closed;
        }
        *offset += data.len() as u64;
        shared.data.extend(data);
    }
}

//! Live streams: the events channel of the replica's shared `LISTEN` ([`gofer_notify`]), fanned
//! out to every open stream, which then reads from the database; the Server-Sent Events stream of a tenant's events;
//! and the follow of a task execution's log.
//!
//! Streams never buffer what they send: each one keeps a cursor and asks the database (or the log
//! store) for what comes after it, a bounded batch at a time, and only when the client has taken
//! the previous frame. A slow client therefore costs one small batch of memory, and a stream that
//! falls behind the broadcast simply re-reads. Streams hold no task of their own: when a client
//! goes away, actix drops the response body, and with it everything the stream holds. When the
//! server shuts down, [`EventHub::close`] ends them all at once rather than letting them hold the
//! graceful shutdown open: event streams end (clients reconnect elsewhere with `Last-Event-ID`),
//! log follows break off with an error, so that a client never mistakes them for a complete log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use futures_util::Stream;
use gofer_core::TaskState;
use gofer_core::TenantId;
use gofer_core::model::Event;
use gofer_engine::LogStore;
use gofer_engine::events::EventFilter;
use gofer_engine::runs::TaskKey;
use gofer_notify::{Notice, Subscription};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};

use crate::error::ApiError;

/// Events read per database round trip of a stream.
const EVENT_BATCH: i64 = 100;
/// Log bytes read per round trip of a follow.
const LOG_CHUNK: usize = 64 * 1024;
/// Wake-ups the fan-out keeps for a stream that has not looked yet; one that falls further behind
/// is told it lagged and re-reads from the database, which is all a wake-up asks it to do anyway.
const WAKE_CAPACITY: usize = 1024;

/// A reason for a stream to look at the database again.
#[derive(Debug, Clone)]
enum Wake {
    /// Something happened in this tenant.
    Tenant(Arc<str>),
    /// The listener reconnected, so notifications may have been missed: everyone looks.
    All,
}

/// The replica's shared listener and the streams it wakes; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    wake: broadcast::Sender<Wake>,
    /// Set once by [`EventHub::close`]; every stream watches it.
    closed: watch::Sender<bool>,
    open: AtomicUsize,
    listener: tokio::task::AbortHandle,
}

impl EventHub {
    /// Starts fanning out the events channel (`notices`, from the replica's shared listener,
    /// which reconnects by itself) on the current runtime; streams also poll, so they keep working
    /// (more slowly) while the listener is down.
    pub fn start(notices: Subscription) -> Self {
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);
        let listener = tokio::spawn(listen(notices, wake.clone())).abort_handle();
        let closed = watch::Sender::new(false);
        Self { inner: Arc::new(HubInner { wake, closed, open: AtomicUsize::new(0), listener }) }
    }

    /// How many event streams and log follows are open on this replica.
    pub fn open_streams(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Ends every open stream (and any opened later) and stops the shared listener: the server
    /// is shutting down.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
        self.inner.listener.abort();
    }

    fn subscribe(&self, tenant: &TenantId) -> Wakeups {
        Wakeups { rx: self.inner.wake.subscribe(), tenant: tenant.as_str().into() }
    }

    fn closing(&self) -> Closing {
        Closing(self.inner.closed.subscribe())
    }

    fn guard(&self) -> OpenGuard {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.inner.clone())
    }
}

/// Counts a stream as open until it is dropped.
struct OpenGuard(Arc<HubInner>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn listen(mut notices: Subscription, wake: broadcast::Sender<Wake>) {
    loop {
        // No receiver is fine: no stream is open.
        let _ = match notices.recv().await {
            Notice::Message { payload, .. } => wake.send(Wake::Tenant(payload)),
            // Whatever was announced before a (re)connection may have been missed; while the
            // connection is down, streams poll.
            Notice::Listening | Notice::Lost => wake.send(Wake::All),
        };
    }
}

/// One stream's view of the fan-out: wakes for its own tenant only.
struct Wakeups {
    rx: broadcast::Receiver<Wake>,
    tenant: Arc<str>,
}

impl Wakeups {
    /// Waits until something may have happened in this tenant. Never returns once the hub is gone
    /// (the stream's poll carries on alone).
    async fn next(&mut self) {
        loop {
            match self.rx.recv().await {
                Ok(Wake::Tenant(t)) if t != self.tenant => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// Forgets the wake-ups already queued: the read about to happen covers them, so a busy
    /// tenant costs a stream one read per batch of events rather than one per event.
    fn drain(&mut self) {
        while !matches!(
            self.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

/// Whether the hub closed (the server is shutting down), for a stream to end.
struct Closing(watch::Receiver<bool>);

impl Closing {
    fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the hub closes.
    async fn wait(&mut self) {
        if self.0.wait_for(|closed| *closed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn interval(period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(10));
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Timing of the event streams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventStreamTiming {
    /// Safety-net poll when no NOTIFY arrives.
    pub poll: Duration,
    /// Comment sent to keep idle connections (and proxies) open.
    pub keepalive: Duration,
}

/// One Server-Sent Events frame for an event: `id`, `event` (the kind) and `data` (the JSON).
pub(crate) fn sse_frame(event: &Event) -> Bytes {
    // serde_json escapes newlines inside strings, so the JSON is one line, as `data:` needs.
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("id: {}\nevent: {}\ndata: {json}\n\n", event.id, event.kind))
}

struct EventStream {
    pool: PgPool,
    tenant: TenantId,
    filter: EventFilter,
    /// The id of the last event read.
    cursor: i64,
    pending: VecDeque<Event>,
    look: bool,
    wake: Wakeups,
    closing: Closing,
    poll: Interval,
    keepalive: Interval,
    _open: OpenGuard,
}

impl EventStream {
    /// The next frame to send; `None` once the hub closed.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.closing.is_closed() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(sse_frame(&event));
            }
            if self.look {
                self.look = false;
                self.wake.drain();
                match gofer_engine::events::list(&self.pool, &self.tenant, &self.filter, self.cursor, EVENT_BATCH).await
                {
                    Ok(events) => {
                        // A full batch: there may be more right away.
                        self.look = events.len() as i64 == EVENT_BATCH;
                        if let Some(last) = events.last() {
                            self.cursor = last.id;
                        }
                        self.pending.extend(events);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, tenant = %self.tenant, "reading events for a stream failed; retrying")
                    }
                }
            }
            tokio::select! {
                () = self.wake.next() => self.look = true,
                _ = self.poll.tick() => self.look = true,
                _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keepalive\n\n")),
                () = self.closing.wait() => {}
            }
        }
    }
}

/// The SSE stream of a tenant's events passing `filter`, after the event `after`. It ends only
/// when the client goes away or the hub closes.
pub(crate) fn event_stream(
    hub: &EventHub,
    pool: PgPool,
    tenant: TenantId,
    filter: EventFilter,
    after: i64,
    timing: EventStreamTiming,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + 'static {
    let state = EventStream {
        wake: hub.subscribe(&tenant),
        closing: hub.closing(),
        _open: hub.guard(),
        pool,
        tenant,
        filter,
        cursor: after,
        pending: VecDeque::new(),
        look: true,
        poll: interval(timing.poll),
        keepalive: interval(timing.keepalive),
    };
    // A first comment, so the client sees the stream open before the first event.
    let open = futures_util::stream::once(async { Ok(Bytes::from_static(b": stream open\n\n")) });
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((Ok(frame), state))
    });
    futures_util::StreamExt::chain(open, frames)
}

/// Timing of a log follow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowTiming {
    /// How often the log store is read: the engine's monitor interval, since that is how often it
    /// writes there. Also the least time between two reads of the task's state.
    pub log_poll: Duration,
    /// Safety-net read of the task's state when no NOTIFY arrives.
    pub state_poll: Duration,
}

struct LogFollow {
    pool: PgPool,
    logs: LogStore,
    key: TaskKey,
    /// The attempt whose log is followed.
    attempt: u32,
    offset: u64,
    /// The task execution was seen complete: everything it will ever write is in the store.
    complete: bool,
    state_due: bool,
    last_state_read: Instant,
    done: bool,
    wake: Wakeups,
    closing: Closing,
    log_tick: Interval,
    state_tick: Interval,
    timing: FollowTiming,
    _open: OpenGuard,
}

impl LogFollow {
    // Why poll the log store and wake on events for the state: a log has no change feed (files
    // now, an object store later), so its bytes are read every monitor interval, the cadence at
    // which the engine appends them. Completion does have one: a task_completed event NOTIFYs the
    // tenant, so the state is re-read when the tenant's channel fires (at most once per log poll,
    // so a busy tenant does not multiply the reads) and every `state_poll` as a safety net. The
    // engine copies a task's last output before it records the completion, so once the state reads
    // complete, reading the store until it is empty sends everything.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let log_key = self.key.log_key(self.attempt);
        loop {
            if self.done {
                return None;
            }
            if self.closing.is_closed() {
                self.done = true;
                return Some(Err(std::io::Error::other("the server is shutting down; follow again to resume")));
            }
            if !self.complete && self.state_due && self.last_state_read.elapsed() >= self.timing.log_poll {
                self.state_due = false;
                self.last_state_read = Instant::now();
                self.wake.drain();
                match gofer_engine::runs::get_task(&self.pool, &self.key).await {
                    // A retry moves on to a new attempt: this one will not grow any more.
                    Ok(task) => self.complete = task.state == TaskState::Complete || task.attempt > self.attempt,
                    Err(e) => tracing::warn!(error = %e, "reading a followed task's state failed; retrying"),
                }
            }
            let slice = match self.logs.read_from(&log_key, self.offset, LOG_CHUNK).await {
                Ok(slice) => slice,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.offset = slice.next_offset;
            if !slice.data.is_empty() {
                return Some(Ok(Bytes::from(slice.data)));
            }
            if self.complete {
                self.done = true;
                return None;
            }
            tokio::select! {
                _ = self.log_tick.tick() => {}
                () = self.wake.next() => self.state_due = true,
                _ = self.state_tick.tick() => self.state_due = true,
                () = self.closing.wait() => {}
            }
        }
    }
}

/// The log of a task execution from raw position `offset`, as it is written, ending once the
/// execution is complete and everything stored was sent. `complete` is the state the caller read.
pub(crate) fn follow_log(
    hub: &EventHub,
    pool: PgPool,
    logs: LogStore,
    (key, attempt): (TaskKey, u32),
    offset: u64,
    complete: bool,
    timing: FollowTiming,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let state = LogFollow {
        wake: hub.subscribe(&key.run.pipeline.tenant),
        closing: hub.closing(),
        _open: hub.guard(),
        pool,
        logs,
        key,
        attempt,
        offset,
        complete,
        state_due: false,
        last_state_read: Instant::now(),
        done: false,
        log_tick: interval(timing.log_poll),
        state_tick: interval(timing.state_poll),
        timing,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((chunk, state))
    })
}

/// Parses a `follow` query parameter: `true`/`false` (or `1`/`0`), absent meaning false.
pub(crate) fn follow_param(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => {
            Err(ApiError::InvalidParameter { code: "invalid_follow", detail: "follow must be true or false".into() })
        }
    }
}

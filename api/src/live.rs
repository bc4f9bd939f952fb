//! Live streams: the events channel of the replica's shared `LISTEN` ([`gofer_notify`]), fanned
//! out to one reader per tenant with live streams (its [`feed`]); the Server-Sent Events stream of
//! a tenant's events; and the follow of a task execution's log.
//!
//! A tenant's streams share its feed: one read of the database per wake-up of the tenant, whatever
//! the number of streams, each stream filtering the batch by its own filter and resume point (see
//! `feed` for why that misses nothing and repeats nothing). A stream reads the database itself
//! only to catch up: from its resume point when it opens, and again from its own cursor when it
//! fell behind the feed. Streams buffer at most one batch: they take the next one only when the
//! client has taken the previous frames, so a slow client costs one batch of memory and falls back
//! to reading from its cursor. Streams hold no task of their own: when a client goes away, actix
//! drops the response body, and with it everything the stream holds (its feed's reader stops with
//! the last one). When the server shuts down, [`EventHub::close`] ends them all at once rather than
//! letting them hold the graceful shutdown open: event streams end (clients reconnect elsewhere
//! with `Last-Event-ID`), log follows break off with an error, so that a client never mistakes them
//! for a complete log.

mod feed;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use futures_util::Stream;
use gofer_core::TaskState;
use gofer_core::TenantId;
use gofer_core::keys::TaskKey;
use gofer_core::model::Event;
use gofer_engine::LogStore;
use gofer_engine::events::{EventFilter, Position, StoredEvent};
use gofer_notify::{Notice, Subscription};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};

use self::feed::{Feed, FeedSubscription, Received};
use crate::error::ApiError;
use crate::event_ids::TenantEventIds;
use crate::streams::StreamSlot;

/// Events read per database round trip of a stream catching up.
const EVENT_BATCH: i64 = 100;
/// Log bytes read per round trip of a follow.
const LOG_CHUNK: usize = 64 * 1024;
/// Wake-ups the fan-out keeps for a feed that has not looked yet; one that falls further behind
/// is told it lagged and re-reads from the database, which is all a wake-up asks it to do anyway.
const WAKE_CAPACITY: usize = 1024;

/// A reason for a feed to look at the database again.
#[derive(Debug, Clone)]
enum Wake {
    /// Something happened in this tenant.
    Tenant(Arc<str>),
    /// The listener reconnected, so notifications may have been missed: everyone looks.
    All,
}

/// The replica's shared listener, the tenants' feeds and the streams they serve; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    wake: broadcast::Sender<Wake>,
    /// Set once by [`EventHub::close`]; every stream and feed watches it.
    closed: watch::Sender<bool>,
    open: AtomicUsize,
    listener: tokio::task::AbortHandle,
    /// The feed of each tenant with live streams; an entry whose feed stopped is replaced (or
    /// swept) when the next stream subscribes.
    feeds: Mutex<HashMap<TenantId, Weak<Feed>>>,
    /// Reads of the database by feeds, and by streams catching up (tests and metrics).
    feed_reads: AtomicU64,
    stream_reads: AtomicU64,
}

/// How often live streams have read the database on this replica, by reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReads {
    /// Reads by tenants' feeds: one per wake-up (or poll) of a tenant with live streams.
    pub feed: u64,
    /// Reads by streams catching up: when they open, and when they fell behind their feed.
    pub stream: u64,
}

impl EventHub {
    /// Starts fanning out the events channel (`notices`, from the replica's shared listener,
    /// which reconnects by itself) on the current runtime; feeds also poll, so they keep working
    /// (more slowly) while the listener is down.
    pub fn start(notices: Subscription) -> Self {
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);
        let listener = tokio::spawn(listen(notices, wake.clone())).abort_handle();
        let closed = watch::Sender::new(false);
        Self {
            inner: Arc::new(HubInner {
                wake,
                closed,
                open: AtomicUsize::new(0),
                listener,
                feeds: Mutex::new(HashMap::new()),
                feed_reads: AtomicU64::new(0),
                stream_reads: AtomicU64::new(0),
            }),
        }
    }

    /// How many event streams and log follows are open on this replica.
    pub fn open_streams(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// How many tenants have a feed reading for their streams on this replica.
    pub fn live_feeds(&self) -> usize {
        self.feeds().values().filter(|f| f.strong_count() > 0).count()
    }

    /// How often live streams have read the database on this replica.
    pub fn event_reads(&self) -> EventReads {
        EventReads {
            feed: self.inner.feed_reads.load(Ordering::Relaxed),
            stream: self.inner.stream_reads.load(Ordering::Relaxed),
        }
    }

    /// Ends every open stream (and any opened later) and stops the shared listener: the server
    /// is shutting down.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
        self.inner.listener.abort();
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Weak<Feed>>> {
        self.inner.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A subscription to `tenant`'s feed, started now if the tenant has none (`poll`: its
    /// safety-net poll when no NOTIFY arrives).
    fn feed(&self, pool: &PgPool, tenant: &TenantId, poll: Duration) -> FeedSubscription {
        let mut feeds = self.feeds();
        feeds.retain(|_, feed| feed.strong_count() > 0);
        let feed = match feeds.get(tenant).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None => {
                let feed = Arc::new(Feed::start(&self.inner, pool.clone(), tenant.clone(), poll));
                feeds.insert(tenant.clone(), Arc::downgrade(&feed));
                feed
            }
        };
        drop(feeds);
        feed.subscribe()
    }

    fn closing(&self) -> Closing {
        Closing(self.inner.closed.subscribe())
    }

    fn guard(&self) -> OpenGuard {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.inner.clone())
    }

    fn count_stream_read(&self) {
        metrics::counter!("gofer_event_reads_total", "reader" => "stream").increment(1);
        self.inner.stream_reads.fetch_add(1, Ordering::Relaxed);
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

/// One feed's view of the fan-out: wakes for its own tenant only.
struct Wakeups {
    rx: broadcast::Receiver<Wake>,
    tenant: Arc<str>,
}

impl Wakeups {
    fn new(hub: &HubInner, tenant: &TenantId) -> Self {
        Self { rx: hub.wake.subscribe(), tenant: tenant.as_str().into() }
    }

    /// Waits until something may have happened in this tenant. Never returns once the hub is gone
    /// (the feed's poll carries on alone).
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
    /// tenant costs its feed one read per batch of events rather than one per event.
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

/// Where an event stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the tenant's feed to have its starting point.
    Joining,
    /// Reading the database from its own cursor until a read is not full.
    CatchingUp,
    /// Taking the feed's batches.
    Live,
}

struct EventStream {
    pool: PgPool,
    tenant: TenantId,
    /// Makes the ids the tenant sees; the cursor stays the event's place in the table.
    ids: TenantEventIds,
    filter: EventFilter,
    /// The `seq` of the last event read.
    cursor: i64,
    /// The position of the last event read, once known: events of the feed at or before it were
    /// handed out already (or do not pass the filter).
    position: Option<Position>,
    pending: VecDeque<StoredEvent>,
    phase: Phase,
    feed: FeedSubscription,
    hub: EventHub,
    closing: Closing,
    /// Wait before reading again after a failed read.
    retry: Duration,
    keepalive: Interval,
    _open: OpenGuard,
    _slot: StreamSlot,
}

impl EventStream {
    /// The next frame to send; `None` once the hub closed.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.closing.is_closed() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(sse_frame(&self.ids.event(event)));
            }
            match self.phase {
                Phase::Joining if self.feed.started() => self.phase = Phase::CatchingUp,
                Phase::Joining => tokio::select! {
                    () = self.feed.wait_started() => {}
                    _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keepalive\n\n")),
                    () = self.closing.wait() => {}
                },
                Phase::CatchingUp => {
                    if let Err(e) = self.catch_up().await {
                        tracing::warn!(error = %e, tenant = %self.tenant, "reading events for a stream failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(self.retry) => {}
                            _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keepalive\n\n")),
                            () = self.closing.wait() => {}
                        }
                    }
                }
                Phase::Live => tokio::select! {
                    received = self.feed.recv() => match received {
                        Received::Batch(batch) => self.take(&batch),
                        // Batches went by while the client was slow: read them from the database.
                        Received::Lagged => self.phase = Phase::CatchingUp,
                    },
                    _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keepalive\n\n")),
                    () = self.closing.wait() => {}
                },
            }
        }
    }

    /// Reads the next batch after the cursor from the database; a batch that is not full means the
    /// stream has caught up, and takes the feed from there.
    async fn catch_up(&mut self) -> Result<(), gofer_engine::EngineError> {
        let events =
            gofer_engine::events::list(&self.pool, &self.tenant, &self.filter, self.cursor, EVENT_BATCH).await?;
        self.hub.count_stream_read();
        let caught_up = (events.len() as i64) < EVENT_BATCH;
        if let Some(last) = events.last() {
            (self.cursor, self.position) = (last.seq, Some(last.position));
        }
        self.pending.extend(events);
        if caught_up {
            if self.position.is_none() {
                // Nothing read since the resume point: the feed's events are compared with it.
                self.position = Some(gofer_engine::events::position_of(&self.pool, &self.tenant, self.cursor).await?);
            }
            self.phase = Phase::Live;
        }
        Ok(())
    }

    /// Queues the events of a feed's batch that pass the filter and come after the last one read.
    fn take(&mut self, batch: &[StoredEvent]) {
        let Some(position) = self.position else { return };
        let new = news(batch, &self.filter, position);
        if let Some(last) = new.last() {
            (self.cursor, self.position) = (last.seq, Some(last.position));
        }
        self.pending.extend(new.into_iter().cloned());
    }
}

/// The events of a feed's batch that a stream standing at `position` hands out: those after it
/// that pass `filter`, in the batch's (stream) order.
fn news<'a>(batch: &'a [StoredEvent], filter: &EventFilter, position: Position) -> Vec<&'a StoredEvent> {
    batch.iter().filter(|e| e.position > position && filter.matches(e)).collect()
}

/// The SSE stream of a tenant's events passing `filter`, after the event whose `seq` is `after`,
/// each under the id `ids` makes for it. It ends only when the client goes away or the hub closes,
/// and holds the tenant's stream `slot` until then.
pub(crate) fn event_stream(
    hub: &EventHub,
    pool: PgPool,
    (tenant, ids, slot): (TenantId, TenantEventIds, StreamSlot),
    filter: EventFilter,
    after: i64,
    timing: EventStreamTiming,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + 'static {
    // Subscribed before anything is read: see `feed` for why that order misses nothing.
    let feed = hub.feed(&pool, &tenant, timing.poll);
    let state = EventStream {
        feed,
        hub: hub.clone(),
        closing: hub.closing(),
        _open: hub.guard(),
        _slot: slot,
        pool,
        tenant,
        ids,
        filter,
        cursor: after,
        position: None,
        pending: VecDeque::new(),
        phase: Phase::Joining,
        retry: timing.poll,
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
    feed: FeedSubscription,
    closing: Closing,
    log_tick: Interval,
    state_tick: Interval,
    timing: FollowTiming,
    _open: OpenGuard,
    _slot: StreamSlot,
}

impl LogFollow {
    // Why poll the log store and watch events for the state: a log has no change feed (files
    // now, an object store later), so its bytes are read every monitor interval, the cadence at
    // which the engine appends them. Completion does have one: a task_completed event of the task,
    // so the state is re-read when the tenant's feed brings an event of this task (at most once per
    // log poll) and every `state_poll` as a safety net; other tasks' events cost nothing. The
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
                () = news_of(&mut self.feed, &self.key) => self.state_due = true,
                _ = self.state_tick.tick() => self.state_due = true,
                () = self.closing.wait() => {}
            }
        }
    }
}

/// Waits for an event of the task `key` in its tenant's feed (or for word that events were
/// missed, which might have been one). Cancel-safe: a batch is taken whole between two awaits.
async fn news_of(feed: &mut FeedSubscription, key: &TaskKey) {
    let pipeline = &key.run.pipeline;
    loop {
        match feed.recv().await {
            Received::Batch(batch) => {
                let about = |e: &StoredEvent| {
                    e.task_id.as_ref() == Some(&key.task)
                        && e.run_id == Some(key.run.run)
                        && e.pipeline_id.as_ref() == Some(&pipeline.pipeline)
                        && e.namespace_id.as_ref() == Some(&pipeline.namespace)
                };
                if batch.iter().any(about) {
                    return;
                }
            }
            Received::Lagged => return,
        }
    }
}

/// The log of a task execution from raw position `offset`, as it is written, ending once the
/// execution is complete and everything stored was sent. `complete` is the state the caller read.
/// Holds the tenant's stream `slot` until it ends.
#[allow(clippy::too_many_arguments)]
pub(crate) fn follow_log(
    hub: &EventHub,
    pool: PgPool,
    logs: LogStore,
    (key, attempt): (TaskKey, u32),
    offset: u64,
    complete: bool,
    timing: FollowTiming,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let state = LogFollow {
        feed: hub.feed(&pool, &key.run.pipeline.tenant, timing.state_poll),
        closing: hub.closing(),
        _open: hub.guard(),
        _slot: slot,
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

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_core::{EventKind, NamespaceId};

    fn event(xact: i64, seq: i64, namespace: &str) -> StoredEvent {
        StoredEvent {
            seq,
            position: Position { xact, seq },
            kind: EventKind::ConfigRegistered,
            namespace_id: Some(NamespaceId::parse(namespace).unwrap()),
            pipeline_id: None,
            run_id: None,
            task_id: None,
            payload: serde_json::Value::Null,
            emitted: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_stream_takes_from_a_batch_only_what_passes_its_filter_after_its_position() {
        // Stream order: transaction 10 wrote 7 and 9; transaction 11 wrote 8 (it began later).
        let batch = [event(10, 7, "builds"), event(10, 9, "other"), event(11, 8, "builds"), event(12, 12, "builds")];
        let seqs = |taken: Vec<&StoredEvent>| taken.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(news(&batch, &EventFilter::All, Position::START)), [7, 9, 8, 12]);
        // Caught up to 9 from the database already: 7 and 9 are not sent twice, 8 still comes
        // (a lower seq, but after 9 in stream order).
        assert_eq!(seqs(news(&batch, &EventFilter::All, Position { xact: 10, seq: 9 })), [8, 12]);
        let builds = EventFilter::Namespace(NamespaceId::parse("builds").unwrap());
        assert_eq!(seqs(news(&batch, &builds, Position { xact: 10, seq: 7 })), [8, 12]);
        assert!(news(&batch, &builds, Position { xact: 12, seq: 12 }).is_empty());
    }
}

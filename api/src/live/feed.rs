//! One reader of the database per tenant with live streams (issue 19, item 5): the tenant's
//! *feed* reads its new events once per wake-up and hands the batch to every stream and follow
//! of the tenant, which filter it themselves. Before, every stream read the database on every
//! wake-up of its tenant: a tenant with many streams multiplied the reads of each of its events.
//!
//! **No gap, no duplicate.** A feed starts at the tenant's last visible event (its *tail*) and
//! then reads in stream order, so its batches are contiguous: each one holds exactly the events
//! after the previous one's last, up to the visibility horizon of its read. A stream subscribes to
//! the feed first, waits until the feed has its tail, and only then reads the database itself from
//! its own resume point until it has caught up (a read that is not full). Every event is then
//! either in that catch-up (it was visible when the stream read, which covers everything up to the
//! feed's tail and every batch sent before the stream subscribed) or in a batch the stream receives
//! (the feed read it after the stream subscribed). The stream hands out only events positioned
//! after the last one it handed out, so an event in both is sent once.
//!
//! **Back-pressure.** The feed's channel keeps at most [`FEED_CAPACITY`] batches of at most
//! [`FEED_BATCH`] events; a batch is dropped once every stream has taken it. A stream takes the
//! next batch only when its client has taken the previous frames, so a slow client's stream falls
//! behind the channel instead of growing memory: it is told it lagged, and catches up from the
//! database from its own cursor again, as a new stream would. A slow client never holds back the
//! feed or the other streams.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gofer_core::TenantId;
use gofer_engine::events::{EventFilter, StoredEvent};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};

use super::{Closing, HubInner, Wakeups, interval};

/// Events one read of a feed takes at most (a wake-up with more reads again at once).
pub(super) const FEED_BATCH: i64 = 100;
/// Batches a feed's channel keeps for streams that have not taken them yet.
pub(super) const FEED_CAPACITY: usize = 32;

/// A batch of a tenant's events, in stream order, right after the previous batch's last.
pub(super) type Batch = Arc<[StoredEvent]>;

/// A tenant's running feed; its reader stops when the last stream lets go of it.
pub(super) struct Feed {
    tx: broadcast::Sender<Batch>,
    started: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Starts the reader of `tenant`'s events on the current runtime.
    pub(super) fn start(hub: &Arc<HubInner>, pool: PgPool, tenant: TenantId, poll: Duration) -> Self {
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
        let (started_tx, started) = watch::channel(false);
        let reader = Reader {
            pool,
            wake: Wakeups::new(hub, &tenant),
            closing: Closing(hub.closed.subscribe()),
            tenant,
            poll,
            tx: tx.clone(),
            started: started_tx,
            hub: Arc::downgrade(hub),
        };
        let task = tokio::spawn(reader.run()).abort_handle();
        Self { tx, started, task }
    }

    /// A subscription that receives every batch sent from now on.
    pub(super) fn subscribe(self: &Arc<Self>) -> FeedSubscription {
        FeedSubscription { rx: self.tx.subscribe(), started: self.started.clone(), _feed: self.clone() }
    }
}

/// A stream's or follow's hold on its tenant's feed.
pub(crate) struct FeedSubscription {
    rx: broadcast::Receiver<Batch>,
    started: watch::Receiver<bool>,
    _feed: Arc<Feed>,
}

/// What a subscription's next receive gave.
pub(super) enum Received {
    /// The next batch.
    Batch(Batch),
    /// Batches were dropped before this subscriber took them: read from the database again.
    Lagged,
}

impl FeedSubscription {
    /// Whether the feed has its starting point (its tail): reads of the database made from now on
    /// cover everything the feed will not send.
    pub(super) fn started(&self) -> bool {
        *self.started.borrow()
    }

    /// Waits until the feed has its starting point. Never returns if its reader is gone (the hub
    /// closed: the caller's own close check ends it).
    pub(super) async fn wait_started(&mut self) {
        if self.started.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The next batch, or word that some were missed.
    pub(super) async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(batch) => Received::Batch(batch),
            Err(broadcast::error::RecvError::Lagged(_)) => Received::Lagged,
            // The feed holds a sender as long as this subscription holds the feed.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// The task reading one tenant's events.
struct Reader {
    pool: PgPool,
    tenant: TenantId,
    wake: Wakeups,
    closing: Closing,
    poll: Duration,
    tx: broadcast::Sender<Batch>,
    started: watch::Sender<bool>,
    hub: std::sync::Weak<HubInner>,
}

impl Reader {
    async fn run(mut self) {
        // Where the feed starts: what is visible now. Each subscriber reads up to here itself.
        let mut cursor = loop {
            if self.closing.is_closed() {
                return;
            }
            match gofer_engine::events::tail(&self.pool, &self.tenant).await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %self.tenant, "starting a tenant's event feed failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.poll) => {}
                        () = self.closing.wait() => return,
                    }
                }
            }
        };
        self.started.send_replace(true);
        let mut poll = interval(self.poll);
        // Look at once: events may have become visible since the tail was read.
        let mut look = true;
        loop {
            if look {
                look = false;
                self.wake.drain();
                match gofer_engine::events::list(&self.pool, &self.tenant, &EventFilter::All, cursor, FEED_BATCH).await
                {
                    Ok(events) => {
                        self.count_read();
                        // A full batch: there may be more right away.
                        look = events.len() as i64 == FEED_BATCH;
                        if let Some(last) = events.last() {
                            cursor = last.seq;
                            // No subscriber is fine: the last one just left.
                            let _ = self.tx.send(events.into());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, tenant = %self.tenant, "reading a tenant's event feed failed; retrying")
                    }
                }
                continue;
            }
            tokio::select! {
                () = self.wake.next() => look = true,
                _ = poll.tick() => look = true,
                () = self.closing.wait() => return,
            }
        }
    }

    fn count_read(&self) {
        metrics::counter!("gofer_event_reads_total", "reader" => "feed").increment(1);
        if let Some(hub) = self.hub.upgrade() {
            hub.feed_reads.fetch_add(1, Ordering::Relaxed);
        }
    }
}

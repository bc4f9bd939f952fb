//! One LISTEN connection per replica, fanned out to every part of it that follows Postgres
//! notifications (the engine's queue and cancel signals, the event streams, the IP blocks and the
//! token and run caches).
//!
//! Why one: on every commit that notifies, Postgres 15 signals *every* backend of the database
//! that listens on any channel, and each of them wakes up to read the notification queue, whatever
//! the channel. Five listening connections per replica made each notifying commit wake five
//! backends per replica; a notifying transaction ran at half the rate with ten idle listeners on
//! other channels as with none (pgbench, docs/benchmarks.md).
//!
//! A [`Subscription`] hears the channels it asked for, plus two states of the shared connection:
//! [`Notice::Listening`] when it is subscribed (at first and after every reconnection; anything
//! announced before may have been missed, so a follower re-reads what it keeps) and
//! [`Notice::Lost`] when it dropped (nothing is heard until the next `Listening`). A subscriber
//! that falls too far behind also gets `Listening`, since it missed some notifications.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

/// How many notices a slow subscriber may fall behind before it is told it missed some.
const CAPACITY: usize = 4096;

/// What a [`Subscription`] hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The connection listens (again): from here on every notification arrives; earlier ones may
    /// have been missed.
    Listening,
    /// The connection dropped: nothing arrives until the next [`Notice::Listening`].
    Lost,
    /// A notification on one of the subscription's channels.
    Message {
        /// The channel, as declared to [`Notifications::start`].
        channel: &'static str,
        /// The payload.
        payload: Arc<str>,
    },
}

struct Shared {
    channels: Vec<&'static str>,
    notices: broadcast::Sender<Notice>,
    /// Whether the connection listens now; changed together with the notice that says so, under
    /// this lock, so a new subscription learns the state it starts in exactly once.
    listening: Mutex<bool>,
}

impl Shared {
    fn announce(&self, listening: bool) {
        let mut state = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        *state = listening;
        // No subscriber is fine.
        let _ = self.notices.send(if listening { Notice::Listening } else { Notice::Lost });
    }
}

/// The replica's shared listener (see the module docs).
#[derive(Clone)]
pub struct Notifications {
    shared: Arc<Shared>,
    task: Arc<tokio::task::AbortHandle>,
}

impl Notifications {
    /// Starts listening on `channels` on the current runtime, reconnecting by itself (backing off
    /// from 100 ms to 5 s) whenever the connection drops.
    pub fn start(pool: PgPool, channels: &[&'static str]) -> Self {
        let (notices, _) = broadcast::channel(CAPACITY);
        let shared = Arc::new(Shared { channels: channels.to_vec(), notices, listening: Mutex::new(false) });
        let task = tokio::spawn(listen(pool, shared.clone())).abort_handle();
        Self { shared, task: Arc::new(task) }
    }

    /// Hears `channels` (each must be one given to [`Self::start`]). The first notice says whether
    /// the connection listens now, if it does.
    ///
    /// # Panics
    /// On a channel not given to [`Self::start`]: that is a mistake in the replica's wiring, and
    /// the subscriber would otherwise wait forever.
    pub fn subscribe(&self, channels: &[&'static str]) -> Subscription {
        for channel in channels {
            assert!(self.shared.channels.contains(channel), "channel {channel} is not listened to");
        }
        let state = self.shared.listening.lock().unwrap_or_else(|e| e.into_inner());
        let notices = self.shared.notices.subscribe();
        let pending = state.then_some(Notice::Listening);
        Subscription { notices, channels: channels.to_vec(), pending }
    }

    /// Whether the connection listens now.
    pub fn is_listening(&self) -> bool {
        *self.shared.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops listening for good (the replica is shutting down); subscribers then wait forever.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// One follower's view of the shared listener.
pub struct Subscription {
    notices: broadcast::Receiver<Notice>,
    channels: Vec<&'static str>,
    pending: Option<Notice>,
}

impl Subscription {
    /// The next notice for this subscription. Cancel-safe: dropping the future loses nothing.
    /// Once the listener is stopped, never returns.
    pub async fn recv(&mut self) -> Notice {
        if let Some(notice) = self.pending.take() {
            return notice;
        }
        loop {
            match self.notices.recv().await {
                Ok(Notice::Message { channel, .. }) if !self.channels.contains(&channel) => {}
                Ok(notice) => return notice,
                // Fell behind: some notifications are gone.
                Err(broadcast::error::RecvError::Lagged(_)) => return Notice::Listening,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

async fn listen(pool: PgPool, shared: Arc<Shared>) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connect(&pool, &shared.channels).await {
            Ok(mut listener) => {
                backoff = FIRST_BACKOFF;
                shared.announce(true);
                // `try_recv` answers `None` when the connection dropped (`recv` would reconnect
                // silently and hide the notifications lost meanwhile).
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            let channel = shared.channels.iter().find(|c| **c == notification.channel());
                            if let Some(channel) = channel {
                                let payload = notification.payload().into();
                                let _ = shared.notices.send(Notice::Message { channel, payload });
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("the LISTEN connection dropped; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
                shared.announce(false);
            }
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN; retrying (followers poll or stay off meanwhile)"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(pool: &PgPool, channels: &[&'static str]) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}

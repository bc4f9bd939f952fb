//! Issue 19, item 5: a tenant's live streams share one reader of the database (its feed) instead of
//! each reading on every wake-up, and a client too slow for the feed falls back to reading from
//! its own cursor, with no gap and no duplicate, instead of growing the server's memory.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::id::EventId;
use gofer_core::model::Event;
use gofer_tests::{SseConnection, TenantClient, spawn_app};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

fn quick(name: &str) -> Value {
    json!({"name": name, "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]})
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Registers `count` pipelines `<prefix>-<i>` in `builds`: three events each.
async fn register_many(client: &TenantClient<'_>, prefix: &str, count: usize) {
    for i in 0..count {
        client.register("builds", &format!("{prefix}-{i}"), quick(prefix)).await;
    }
}

/// The tenant's history once it holds `n` events (an event becomes visible once every older
/// transaction has ended, a little after its request answered).
async fn history_of(client: &TenantClient<'_>, n: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let history = client.history().await;
        if history.len() >= n {
            return history;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} events, expected {n}", history.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next_events(stream: &mut SseConnection, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < n {
        events.push(stream.next_event(WAIT).await);
    }
    events
}

#[tokio::test]
async fn a_tenants_streams_share_one_feed_and_read_nothing_themselves_while_they_keep_up() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    acme.namespace("builds").await;
    umbrella.namespace("builds").await;
    let mut streams = Vec::new();
    for i in 0..10 {
        streams.push(acme.open_sse(if i % 2 == 0 { "" } else { "namespace=builds" }, None).await);
    }
    let mut bystander = umbrella.open_sse("", None).await;
    app.wait_for_open_streams(11, WAIT).await;
    assert_eq!(app.hub.live_feeds(), 2, "one feed per tenant, whatever its number of streams");

    // Once every stream has its first events it takes the feed's batches (it caught up when it
    // opened: one read of its own each, at most two with the look-up of its resume point).
    register_many(&acme, "first", 1).await;
    let first = history_of(&acme, 3).await;
    for stream in &mut streams {
        assert_eq!(ids(&next_events(stream, 3).await), ids(&first));
    }
    let before = app.hub.event_reads();
    assert!(before.stream >= 10, "{before:?}");

    // Live traffic: thirty events reach ten streams with reads by the feed only.
    register_many(&acme, "more", 10).await;
    let history = history_of(&acme, 33).await;
    for stream in &mut streams {
        assert_eq!(ids(&next_events(stream, 30).await), ids(&history[3..]), "no gap, no duplicate");
    }
    let after = app.hub.event_reads();
    assert_eq!(after.stream, before.stream, "streams that keep up read nothing themselves");
    assert!(after.feed > before.feed, "{before:?} {after:?}");
    // Ten streams each reading once per wake-up would have made at least ten reads per
    // registration; the feed makes about one (plus its safety-net polls).
    assert!(after.feed - before.feed < 10 * 10, "{before:?} {after:?}");

    // The bystander's stream is served by its own feed, untouched by Acme's traffic.
    register_many(&umbrella, "theirs", 1).await;
    let theirs = history_of(&umbrella, 3).await;
    assert_eq!(ids(&next_events(&mut bystander, 3).await), ids(&theirs));

    // The feed stops with the tenant's last stream.
    drop(streams);
    app.wait_for_open_streams(1, WAIT).await;
    gofer_tests::wait_until("Acme's feed stops", WAIT, || async { app.hub.live_feeds() == 1 }).await;
}

/// A raw SSE connection with a small receive buffer (64 KiB: small enough that a client that stops
/// reading soon holds the server's stream back, big enough to read quickly again afterwards).
struct SlowClient {
    socket: tokio::net::TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl SlowClient {
    async fn open(address: &str, token: &str) -> Self {
        let host = address.trim_start_matches("http://");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut socket = socket.connect(host.parse().unwrap()).await.unwrap();
        let request = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        Self { socket, raw: Vec::new(), body: Vec::new() }
    }

    /// Reads until `n` events arrived (after the response head, through the chunked encoding).
    async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.decode();
            let events = self.parsed();
            if events.len() >= n {
                return events;
            }
            let read = tokio::time::timeout(WAIT, self.socket.read(&mut buf)).await.expect("in time").unwrap();
            assert!(read > 0, "the server closed the stream");
            self.raw.extend_from_slice(&buf[..read]);
        }
    }

    /// Moves whole chunks of the chunked body from `raw` to `body`.
    fn decode(&mut self) {
        if let Some(head) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head_text = String::from_utf8_lossy(&self.raw[..head]).to_string();
            if head_text.starts_with("HTTP/1.1") {
                assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
                assert!(head_text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head_text}");
                self.raw.drain(..head + 4);
            }
        }
        loop {
            let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line]).unwrap().trim(), 16).unwrap();
            if self.raw.len() < line + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[line + 2..line + 2 + size]);
            self.raw.drain(..line + 2 + size + 2);
        }
    }

    fn parsed(&self) -> Vec<Event> {
        let text = String::from_utf8_lossy(&self.body);
        let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
        complete
            .split("\n\n")
            .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_client_too_slow_for_the_feed_catches_up_from_its_own_cursor_without_gap_or_duplicate() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let mut slow = SlowClient::open(&app.address, &acme.token).await;
    // A client that keeps up, beside it.
    let mut quick_client = acme.open_sse("", None).await;
    app.wait_for_open_streams(2, WAIT).await;
    gofer_tests::wait_until("both streams caught up once", WAIT, || async { app.hub.event_reads().stream >= 2 }).await;
    let caught_up = app.hub.event_reads().stream;

    // Far more than the slow client's socket buffers (the server's may grow to 4 MiB) and the
    // feed's channel (32 batches) hold between them: 160 events of 64 KiB, each in a transaction
    // of its own (as the engine writes them, with its NOTIFY). The quick client reads each one
    // before the next is written, so each is a batch of its own however loaded the machine is
    // (a slow feed would otherwise gather several into one batch, and the channel might not fill).
    let pad = json!({"pad": "x".repeat(64 * 1024)});
    let mut quick = Vec::new();
    for _ in 0..160 {
        sqlx::query(
            "WITH e AS (INSERT INTO events (tenant_id, kind, payload) VALUES ('acme', 'config_registered', $1)
                        RETURNING id)
             SELECT pg_notify('gofer_events', 'acme') FROM e",
        )
        .bind(&pad)
        .execute(&app.db)
        .await
        .unwrap();
        quick.push(quick_client.next_event(WAIT).await);
    }
    let history = history_of(&acme, 160).await;
    assert_eq!(history.len(), 160);
    assert_eq!(ids(&quick), ids(&history), "the quick client kept up");

    let delivered = slow.events(160).await;
    assert_eq!(ids(&delivered), ids(&history), "no gap, no duplicate");
    let reads = app.hub.event_reads();
    assert!(reads.stream > caught_up, "the slow stream fell behind and read from its cursor: {reads:?}");
}

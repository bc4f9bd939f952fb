//! Events end to end: history pages, the live SSE stream, resuming, and tenant isolation.

use std::collections::BTreeSet;
use std::time::Duration;

use gofer_core::id::EventId;
use gofer_core::model::Event;
use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, RunState};
use gofer_sdk::EventFilter;
use gofer_tests::{TenantClient, fresh_database, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};
use sqlx::Connection;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

fn quick() -> Value {
    json!({"name": "Quick", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]})
}

/// `kind` or `kind:task` of each event, to compare sequences.
fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}{}", e.kind, e.task_id.as_ref().map(|t| format!(":{t}")).unwrap_or_default()))
        .collect()
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn run_to_completion(client: &TenantClient<'_>, namespace: &str, pipeline: &str) -> RunId {
    let run = client.start_run(namespace, pipeline).await;
    client.wait_for_run(namespace, pipeline, run, RUN_TIMEOUT).await;
    run
}

/// The tenant's history once the run's `run_completed` is visible.
async fn settled_history(client: &TenantClient<'_>, run: RunId, pipeline: &str) -> Vec<Event> {
    client
        .wait_for_event(EVENT_TIMEOUT, |e| {
            e.kind == EventKind::RunCompleted
                && e.run_id == Some(run)
                && e.pipeline_id.as_ref().is_some_and(|p| p.as_str() == pipeline)
        })
        .await
}

#[tokio::test]
async fn history_pages_oldest_first_with_next_cursor_and_filters() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.namespace("other").await;
    acme.register("builds", "hello", quick()).await;
    acme.register("other", "solo", quick()).await;
    run_to_completion(&acme, "builds", "hello").await;
    let second = run_to_completion(&acme, "builds", "hello").await;
    let solo = run_to_completion(&acme, "other", "solo").await;
    let all = settled_history(&acme, solo, "solo").await;
    // Per pipeline: config_registered plus the immediate deployment's started and completed.
    assert_eq!(all.len(), 2 * 3 + 3 * 6, "{:#?}", kinds(&all));

    // Oldest first: nothing here overlapped, so stream order is id order, as stored.
    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM events WHERE tenant_id = 'acme' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let acme_ids = app.event_ids("acme").await;
    assert_eq!(ids(&all), stored.iter().map(|seq| acme_ids.id(*seq)).collect::<Vec<_>>());
    assert_eq!(all[0].kind, EventKind::ConfigRegistered);

    // Pages of 4 through next_cursor add up to the whole history; only the last has no cursor.
    let mut paged = Vec::new();
    let mut path = "/api/v1/events?limit=4".to_owned();
    loop {
        let page = acme.request("GET", &path, None).await;
        assert_eq!(page.status, 200, "{page:?}");
        let items: Vec<Event> = serde_json::from_value(page.body["items"].clone()).unwrap();
        assert!(items.len() <= 4);
        paged.extend(items);
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/events?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(ids(&paged), ids(&all));

    // `after` starts after an event.
    let after = acme.sdk().list_events(Some(&all[2].id), 500).await.unwrap();
    assert_eq!(ids(&after.items), ids(&all[3..]));
    assert!(after.next_cursor.is_none());

    // Filters: a namespace, a pipeline, a run.
    let sdk = acme.sdk();
    let ns = |n: &str| Some(NamespaceId::parse(n).unwrap());
    let p = |n: &str| Some(PipelineId::parse(n).unwrap());
    let other =
        sdk.list_events_filtered(&EventFilter { namespace: ns("other"), ..Default::default() }, None, 500).await;
    let other = other.unwrap().items;
    assert_eq!(other.len(), 9);
    assert!(other.iter().all(|e| e.namespace_id == ns("other")));
    let hello = EventFilter { namespace: ns("builds"), pipeline: p("hello"), run: None };
    let hello = sdk.list_events_filtered(&hello, None, 500).await.unwrap().items;
    let want: Vec<EventId> = all.iter().filter(|e| e.pipeline_id == p("hello")).map(|e| e.id.clone()).collect();
    assert_eq!(ids(&hello), want);
    let run = EventFilter { namespace: ns("builds"), pipeline: p("hello"), run: Some(second) };
    let run = sdk.list_events_filtered(&run, None, 500).await.unwrap().items;
    assert_eq!(
        kinds(&run),
        ["run_created", "task_queued:noop", "run_started", "task_started:noop", "task_completed:noop", "run_completed"]
    );
    assert!(run.iter().all(|e| e.run_id == Some(second)));
    let payload = &run.last().unwrap().payload;
    assert_eq!(payload["status"], "successful", "{payload}");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_runs_events_arrive_on_the_stream_in_order_while_it_runs() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "hello",
        json!({"name": "Hello", "tasks": [
            {"id": "build", "image": "debian:12", "command": ["sh", "-c", "sleep 2; echo built"]},
            {"id": "test", "image": "debian:12", "command": ["echo", "tested"], "depends_on": {"build": "success"}}
        ]}),
    )
    .await;
    let (ns, p) = (NamespaceId::parse("builds").unwrap(), PipelineId::parse("hello").unwrap());
    let filter = EventFilter { namespace: Some(ns.clone()), pipeline: Some(p.clone()), run: Some(RunId::from_i64(1)) };
    let mut stream = acme.sdk().follow_events(&filter, None).await.unwrap();
    let run = acme.start_run("builds", "hello").await;

    let mut received = Vec::new();
    loop {
        let event = tokio::time::timeout(RUN_TIMEOUT, stream.next()).await.expect("the next event in time");
        let event = event.expect("the stream stays open").unwrap();
        if event.kind == EventKind::TaskStarted {
            // Delivered live: the build task sleeps, so the run cannot be complete yet.
            let current = acme.sdk().get_run(&ns, &p, run).await.unwrap();
            if event.task_id.as_ref().unwrap().as_str() == "build" {
                assert_ne!(current.state, RunState::Complete, "task_started arrived only after the run ended");
            }
        }
        let done = event.kind == EventKind::RunCompleted;
        received.push(event);
        if done {
            break;
        }
    }
    assert_eq!(
        kinds(&received),
        [
            "run_created",
            "task_queued:build",
            "run_started",
            "task_started:build",
            "task_completed:build",
            "task_queued:test",
            "task_started:test",
            "task_completed:test",
            "run_completed"
        ]
    );
    assert_eq!(stream.last_event_id(), Some(&received.last().unwrap().id));
    let history = acme.history().await;
    let run_events: Vec<EventId> = history.iter().filter(|e| e.run_id == Some(run)).map(|e| e.id.clone()).collect();
    assert_eq!(ids(&received), run_events, "the stream and the history agree");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn reconnecting_with_last_event_id_gets_exactly_the_events_after_it() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "quick", quick()).await;
    let first = run_to_completion(&acme, "builds", "quick").await;
    let before = settled_history(&acme, first, "quick").await;
    assert_eq!(before.len(), 9, "three for the registration's deployment, six for the run");

    // Last-Event-ID wins over `after` (an EventSource reconnects to its first URL with the header).
    let mut stream = acme.open_sse(&format!("after={}", before[0].id), Some(before[2].id.as_str())).await;
    assert_eq!(stream.response.status(), 200);
    let mut resumed = Vec::new();
    for _ in 3..before.len() {
        resumed.push(stream.next_event(EVENT_TIMEOUT).await);
    }
    assert_eq!(ids(&resumed), ids(&before[3..]), "exactly the events after Last-Event-ID");

    // What happens next follows without a gap or a repeat.
    let second = acme.start_run("builds", "quick").await;
    let mut live = Vec::new();
    while live.last().is_none_or(|e: &Event| e.kind != EventKind::RunCompleted) {
        live.push(stream.next_event(RUN_TIMEOUT).await);
    }
    let after = settled_history(&acme, second, "quick").await;
    assert_eq!(ids(&live), ids(&after[before.len()..]));
    assert!(live.iter().all(|e| e.run_id == Some(second)));

    // `follow=true` with `after`, without the Accept header, is the same stream.
    let response = app
        .http
        .get(format!("{}/api/v1/events?follow=true&after={}", app.address, after[after.len() - 2].id))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut follow = gofer_tests::SseConnection::from(response);
    assert_eq!(follow.next_event(EVENT_TIMEOUT).await.id, after.last().unwrap().id);
}

#[tokio::test]
async fn another_tenants_events_never_appear_on_a_stream_or_in_history() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    // Umbrella listens to everything it may see, and to a namespace named like Acme's.
    let mut everything = umbrella.open_sse("", None).await;
    let mut same_name = umbrella.open_sse("namespace=builds", None).await;
    let mut acme_stream = acme.open_sse("", None).await;

    acme.namespace("builds").await;
    acme.register("builds", "hello", quick()).await;
    let acme_run = run_to_completion(&acme, "builds", "hello").await;
    let acme_history = settled_history(&acme, acme_run, "hello").await;

    // Then Umbrella does the same; its streams must show its own events first and only them.
    umbrella.namespace("builds").await;
    umbrella.register("builds", "hello", quick()).await;
    let umbrella_run = run_to_completion(&umbrella, "builds", "hello").await;
    let umbrella_history = settled_history(&umbrella, umbrella_run, "hello").await;

    let acme_ids: BTreeSet<String> = ids(&acme_history).iter().map(ToString::to_string).collect();
    let umbrella_ids: BTreeSet<String> = ids(&umbrella_history).iter().map(ToString::to_string).collect();
    assert!(acme_ids.is_disjoint(&umbrella_ids), "histories are the tenants' own");
    let umbrella_key = app.event_ids("umbrella").await;
    let stored: BTreeSet<String> = sqlx::query_scalar("SELECT id FROM events WHERE tenant_id = 'umbrella'")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|seq: i64| umbrella_key.id(seq).to_string())
        .collect();
    assert_eq!(umbrella_ids, stored, "Umbrella's history is exactly its rows");

    for stream in [&mut everything, &mut same_name] {
        let mut seen = Vec::new();
        for _ in 0..umbrella_history.len() {
            seen.push(stream.next_event(EVENT_TIMEOUT).await);
        }
        assert_eq!(ids(&seen), ids(&umbrella_history), "no Acme event came first or in between");
    }
    let mut seen = Vec::new();
    for _ in 0..acme_history.len() {
        seen.push(acme_stream.next_event(EVENT_TIMEOUT).await);
    }
    assert_eq!(ids(&seen), ids(&acme_history));
    // Another tenant's id is no place to resume from: it is refused.
    let resumed = umbrella.request("GET", &format!("/api/v1/events?after={}", acme_history[0].id), None).await;
    assert_eq!((resumed.status, resumed.code()), (422, "invalid_after"), "{resumed:?}");
}

#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped_by_a_reader_that_resumed_past_its_id() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let insert = "INSERT INTO events (tenant_id, kind) VALUES ('acme', 'config_registered') RETURNING id";
    let url = app.db.connect_options();
    let mut early = sqlx::PgConnection::connect_with(&url).await.unwrap();
    let mut late = sqlx::PgConnection::connect_with(&url).await.unwrap();
    // `early` takes its transaction id first but writes its event second, so its event has the
    // higher id; it commits while `late` is still in flight.
    sqlx::query("BEGIN").execute(&mut early).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut early).await.unwrap();
    sqlx::query("BEGIN").execute(&mut late).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut late).await.unwrap();
    let late_seq: i64 = sqlx::query_scalar(insert).fetch_one(&mut late).await.unwrap();
    let early_seq: i64 = sqlx::query_scalar(insert).fetch_one(&mut early).await.unwrap();
    assert!(early_seq > late_seq);
    sqlx::query("COMMIT").execute(&mut early).await.unwrap();
    let acme_ids = app.event_ids("acme").await;
    let (early_id, late_id) = (acme_ids.id(early_seq), acme_ids.id(late_seq));

    let seen = acme.wait_for_event(EVENT_TIMEOUT, |e| e.id == early_id).await;
    assert!(!seen.iter().any(|e| e.id == late_id), "an uncommitted event is never shown");
    let mut stream = acme.open_sse("", Some(early_id.as_str())).await;
    assert!(acme.sdk().list_events(Some(&early_id), 500).await.unwrap().items.is_empty());

    sqlx::query("COMMIT").execute(&mut late).await.unwrap();
    let resumed = acme.wait_for_event(EVENT_TIMEOUT, |e| e.id == late_id).await;
    let after_early = ids(&acme.sdk().list_events(Some(&early_id), 500).await.unwrap().items);
    assert_eq!(after_early, std::slice::from_ref(&late_id), "resuming after {early_id} still gets {late_id}");
    assert_eq!(ids(&resumed), [early_id, late_id.clone()], "stream order puts the late commit last");
    assert_eq!(stream.next_event(EVENT_TIMEOUT).await.id, late_id, "and so does the stream");
}

#[tokio::test]
async fn bad_event_parameters_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let after_and_cursor = format!("after={}&cursor=Mw", app.event_ids("acme").await.id(1));
    // 400: not the shape of the parameter; 422: the right shape, but not one of this tenant's
    // ids, or parameters that do not go together.
    for (query, status, code) in [
        ("after=-1", 400, "invalid_after"),
        ("after=abc", 400, "invalid_after"),
        ("limit=0", 400, "invalid_limit"),
        ("limit=501", 400, "invalid_limit"),
        ("cursor=garbage!", 400, "invalid_cursor"),
        ("after=3", 400, "invalid_after"),
        ("after=AAAAAAAAAAAAAAAAAAAAAA", 422, "invalid_after"),
        (&after_and_cursor, 422, "invalid_cursor"),
        ("run=1", 422, "invalid_filter"),
        ("pipeline=hello", 422, "invalid_filter"),
        ("namespace=builds&run=1", 422, "invalid_filter"),
        ("namespace=Builds", 400, "invalid_identifier"),
        ("namespace=builds&pipeline=hello&run=0", 400, "invalid_identifier"),
        ("follow=yes", 400, "invalid_follow"),
        ("follow=true&after=x", 400, "invalid_after"),
    ] {
        let answer = acme.request("GET", &format!("/api/v1/events?{query}"), None).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{query}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{query}");
    }
    let stream = acme.open_sse("", Some("not-an-id")).await;
    assert_eq!(stream.response.status(), 400);
    let problem: Value = stream.response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_last_event_id");

    let anonymous = app.request("GET", "/api/v1/events", None, None).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let operator = app.request("GET", "/api/v1/events?follow=true", Some(&app.operator_token), None).await;
    assert_eq!((operator.status, operator.code()), (403, "forbidden"));
    assert_eq!(app.hub.open_streams(), 0, "a refused stream never opened");
}

#[tokio::test]
async fn streams_frame_events_keep_alive_and_close_when_the_client_goes() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.events.keepalive_s = 1;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;

    let mut stream = acme.open_sse("", None).await;
    assert_eq!(stream.response.status(), 200);
    let headers = stream.response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    let open = stream.next_frame(EVENT_TIMEOUT).await.unwrap();
    assert!(open.is_comment(), "{open:?}");
    app.wait_for_open_streams(1, EVENT_TIMEOUT).await;

    acme.register("builds", "quick", quick()).await;
    let frame = loop {
        let frame = stream.next_frame(EVENT_TIMEOUT).await.unwrap();
        if !frame.is_comment() {
            break frame;
        }
    };
    let event = frame.event().unwrap();
    assert_eq!(frame.0, format!("id: {}\nevent: config_registered\ndata: {}", event.id, frame.field("data").unwrap()));
    assert_eq!(event.kind, EventKind::ConfigRegistered);
    assert_eq!(event.payload["version"], 1);
    // The registration's immediate deployment follows.
    for kind in ["deployment_started", "deployment_completed"] {
        let frame = stream.next_frame(EVENT_TIMEOUT).await.unwrap();
        assert_eq!(frame.event().unwrap().kind.as_str(), kind);
    }
    let keepalive = stream.next_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(keepalive.0, ": keepalive");

    drop(stream);
    app.wait_for_open_streams(0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn shutting_down_ends_event_streams_and_breaks_off_log_follows() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "slow", "wait", &["sh", "-c", "echo started; sleep 5"]).await;
    let run = acme.start_run("builds", "slow").await;
    let mut stream = acme.open_sse("", None).await;
    let (ns, p, task) = (
        NamespaceId::parse("builds").unwrap(),
        PipelineId::parse("slow").unwrap(),
        gofer_core::TaskId::parse("wait").unwrap(),
    );
    let mut log = acme.sdk().follow_logs(&ns, &p, run, &task, 0).await.unwrap();
    app.wait_for_open_streams(2, EVENT_TIMEOUT).await;

    // What `run_until_stopped` does on SIGTERM, before actix's graceful shutdown waits for requests.
    app.hub.close();
    loop {
        match stream.next_frame(EVENT_TIMEOUT).await {
            None => break,
            Some(frame) => assert!(frame.is_comment() || frame.event().is_some(), "{frame:?}"),
        }
    }
    let ended = loop {
        let chunk =
            tokio::time::timeout(EVENT_TIMEOUT, futures_util::StreamExt::next(&mut log)).await.expect("in time");
        match chunk {
            Some(Ok(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(ended, Some(Err(_))), "a follow cut short is an error, not the end of the log: {ended:?}");
    app.wait_for_open_streams(0, EVENT_TIMEOUT).await;
    acme.wait_for_run("builds", "slow", run, RUN_TIMEOUT).await;
}

/// The 128 bits behind an event id, to compare ids as numbers the way a curious client would.
fn id_bits(id: &EventId) -> u128 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id.as_str()).expect("ids are base64url");
    u128::from_be_bytes(bytes.try_into().expect("ids are 16 bytes"))
}

/// Issue 19, item 6: event ids were the table's one sequence, so the gaps between a tenant's own
/// ids counted every other tenant's events. Ids (JSON `id`, SSE `id:` lines, `next_cursor`) are now
/// that sequence encrypted with a key of the tenant's own; resuming still crosses a bystander's
/// activity exactly, and nothing but a tenant's own ids is accepted back.
#[tokio::test]
async fn a_tenants_event_ids_do_not_count_a_bystanders_events_and_resume_across_them_exactly() {
    const ROUNDS: usize = 5;
    const BURST: usize = 10;
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    acme.namespace("builds").await;
    umbrella.namespace("builds").await;
    let mut acme_stream = acme.open_sse("", None).await;
    let mut umbrella_stream = umbrella.open_sse("", None).await;

    // Acme registers a pipeline (three events each), and the bystander registers ten between two
    // of Acme's: thirty events of its own in every gap of Acme's.
    let busy = |round: usize| {
        let umbrella = &umbrella;
        async move {
            for i in 0..BURST {
                umbrella.register("builds", &format!("busy-{round}-{i}"), quick()).await;
            }
        }
    };
    for round in 0..ROUNDS {
        acme.register("builds", &format!("mine-{round}"), quick()).await;
        busy(round).await;
    }
    let mut frames = Vec::new();
    while frames.len() < 3 * ROUNDS {
        let frame = acme_stream.next_frame(EVENT_TIMEOUT).await.expect("the stream stays open");
        if !frame.is_comment() {
            frames.push(frame);
        }
    }
    let streamed: Vec<Event> = frames.iter().map(|f| f.event().unwrap()).collect();
    for (frame, event) in frames.iter().zip(&streamed) {
        assert_eq!(frame.field("id"), Some(event.id.as_str()), "the SSE id: line is the event's id");
    }

    // The attack's precondition holds: in the table, the bystander's events lie between Acme's.
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT id FROM events WHERE tenant_id = 'acme' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let between: i64 = seqs.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert!(between >= ((ROUNDS - 1) * BURST * 3) as i64, "{seqs:?}");

    // Everything id-like Acme is shown: ids, SSE `id:` lines, and every `next_cursor` of a
    // history read one event per page.
    let history = acme.history().await;
    assert_eq!(ids(&history), ids(&streamed), "the stream and the history agree");
    let mut cursors = Vec::new();
    let mut path = "/api/v1/events?limit=1".to_owned();
    loop {
        let page = acme.request("GET", &path, None).await;
        assert_eq!(page.status, 200, "{page:?}");
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                cursors.push(cursor.to_owned());
                path = format!("/api/v1/events?limit=1&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(cursors.len(), history.len() - 1);
    for (cursor, event) in cursors.iter().zip(&history) {
        // A cursor is the page's last id, and nothing more.
        assert_eq!(cursor, event.id.as_str());
    }
    for id in ids(&history) {
        assert!(id.as_str().parse::<i64>().is_err(), "{id} is no number");
        assert!(!seqs.iter().any(|seq| id_bits(&id) == *seq as u128), "{id} is no sequence number");
    }
    // Read as numbers, Acme's ids neither rise with its events nor keep their spacing: the step
    // from one event to the next (one apart in the table) and across a burst (thirty-one apart)
    // look alike, as unrelated 128-bit values do (they differ in about half their bits).
    let bits: Vec<u128> = ids(&history).iter().map(id_bits).collect();
    assert!(!bits.windows(2).all(|w| w[0] < w[1]), "ids do not rise");
    let steps: Vec<(i64, u32)> =
        seqs.windows(2).zip(bits.windows(2)).map(|(s, b)| (s[1] - s[0], (b[0] ^ b[1]).count_ones())).collect();
    assert!(steps.iter().any(|(gap, _)| *gap == 1) && steps.iter().any(|(gap, _)| *gap > 30), "{steps:?}");
    assert!(steps.iter().all(|(_, differing)| (30..=98).contains(differing)), "{steps:?}");

    // Resume across the bystander's activity: Acme goes away after its last event, both tenants
    // carry on, Acme comes back with Last-Event-ID and gets exactly what it missed.
    drop(acme_stream);
    let last = streamed.last().unwrap().id.clone();
    for round in ROUNDS..ROUNDS + 2 {
        busy(round).await;
        acme.register("builds", &format!("mine-{round}"), quick()).await;
    }
    busy(ROUNDS + 2).await;
    let mut resumed_stream = acme.open_sse("", Some(last.as_str())).await;
    let mut resumed = Vec::new();
    for _ in 0..6 {
        resumed.push(resumed_stream.next_event(EVENT_TIMEOUT).await);
    }
    let history = acme.history().await;
    assert_eq!(history.len(), 3 * (ROUNDS + 2));
    assert_eq!(ids(&resumed), ids(&history[3 * ROUNDS..]), "no gap, no duplicate");
    assert!(resumed.iter().all(|e| e.pipeline_id.as_ref().is_some_and(|p| p.as_str().starts_with("mine-"))));
    let after = acme.sdk().list_events(Some(&streamed[7].id), 500).await.unwrap();
    assert_eq!(ids(&after.items), ids(&history[8..]), "`after` resumes as exactly");

    // Nothing but Acme's own ids goes back in: the bystander's id, cursor and a forged id are
    // refused, each naming its parameter.
    let theirs = umbrella_stream.next_event(EVENT_TIMEOUT).await.id;
    let their_cursor =
        umbrella.request("GET", "/api/v1/events?limit=1", None).await.body["next_cursor"].as_str().unwrap().to_owned();
    let mut forged = last.as_str().to_owned();
    let flipped = if forged.starts_with('A') { "B" } else { "A" };
    forged.replace_range(0..1, flipped);
    // Another tenant's id, or a forged one, has the shape (422); a raw sequence number has not (400).
    for (query, status, code, name) in [
        (format!("after={theirs}"), 422, "invalid_after", "after"),
        (format!("after={forged}"), 422, "invalid_after", "after"),
        (format!("cursor={their_cursor}"), 422, "invalid_cursor", "cursor"),
        (format!("after={}", seqs[0]), 400, "invalid_after", "after"),
    ] {
        let answer = acme.request("GET", &format!("/api/v1/events?{query}"), None).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{query}: {answer:?}");
        assert!(answer.body["detail"].as_str().unwrap().contains(name), "{answer:?}");
    }
    for id in [theirs.as_str(), forged.as_str()] {
        let refused = acme.open_sse("", Some(id)).await;
        assert_eq!(refused.response.status(), 422);
        let problem: Value = refused.response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_last_event_id");
        assert!(problem["detail"].as_str().unwrap().contains("Last-Event-ID"), "{problem}");
    }

    // The bystander saw all of its own events and nothing else, under ids of its own.
    let umbrella_history = umbrella.history().await;
    assert_eq!(umbrella_history.len(), 3 * BURST * (ROUNDS + 3));
    assert!(umbrella_history.iter().all(|e| e.pipeline_id.as_ref().is_some_and(|p| p.as_str().starts_with("busy-"))));
    let mut seen = vec![theirs.clone()];
    while seen.len() < umbrella_history.len() {
        seen.push(umbrella_stream.next_event(EVENT_TIMEOUT).await.id);
    }
    assert_eq!(seen, ids(&umbrella_history));
    let mine: BTreeSet<String> = ids(&history).iter().map(ToString::to_string).collect();
    assert!(seen.iter().all(|id| !mine.contains(id.as_str())));
}

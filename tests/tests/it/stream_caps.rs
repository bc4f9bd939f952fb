//! Issue 19, item 5: long-lived streams (event streams, log follows, attach sessions) are capped
//! per tenant by its plan's `max_concurrent_streams`; over the cap the answer is 429
//! `too_many_streams` naming it, a bystander tenant is untouched, and closing a stream frees its slot.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TaskState};
use gofer_sdk::AttachOptions;
use gofer_tests::{SseConnection, TenantClient, TestApp, fresh_database, spawn_with, test_config, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn ids() -> (NamespaceId, PipelineId, TaskId) {
    (NamespaceId::parse("builds").unwrap(), PipelineId::parse("sleepy").unwrap(), TaskId::parse("nap").unwrap())
}

/// Moves `tenant` to a copy of the default plan that allows `cap` streams.
async fn cap_streams(app: &TestApp, tenant: &str, cap: u32) {
    let op = Some(app.operator_token.as_str());
    let mut plan = app.request("GET", "/api/v1/plans/default", op, None).await.body["plan"].clone();
    assert_eq!(plan["max_concurrent_streams"], json!(20), "the default plan's cap: {plan}");
    plan["id"] = json!("few-streams");
    plan["max_concurrent_streams"] = json!(cap);
    let created = app.request("POST", "/api/v1/plans", op, Some(&plan)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let path = format!("/api/v1/tenants/{tenant}/plan");
    let moved = app.request("PUT", &path, op, Some(&json!({"plan": "few-streams"}))).await;
    assert_eq!(moved.status, 200, "{moved:?}");
}

/// A run whose task prints `ready` and sleeps; answers once it runs.
async fn sleeping_task(client: &TenantClient<'_>) -> RunId {
    client.namespace("builds").await;
    let config = json!({"name": "Sleepy", "tasks": [
        {"id": "nap", "image": "debian:12", "command": ["sh", "-c", "echo ready; sleep 600"]}
    ]});
    client.register("builds", "sleepy", config).await;
    let run = client.start_run("builds", "sleepy").await;
    let sdk = client.sdk();
    let (ns, p, t) = ids();
    wait_until("the task runs", WAIT, || {
        let (sdk, ns, p, t) = (sdk.clone(), ns.clone(), p.clone(), t.clone());
        async move { sdk.get_task(&ns, &p, run, &t).await.unwrap().state == TaskState::Running }
    })
    .await;
    run
}

fn log_path(run: RunId) -> String {
    format!("/api/v1/namespaces/builds/pipelines/sleepy/runs/{run}/tasks/nap/logs?follow=true")
}

/// Asserts a refusal names the cap: 429 `too_many_streams`, the plan field and its value, and a
/// `Retry-After`.
async fn assert_refused_sse(stream: SseConnection, cap: u32) {
    assert_eq!(stream.response.status(), 429);
    let retry = stream.response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(retry.as_deref(), Some("5"));
    let problem: Value = stream.response.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_streams", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("max_concurrent_streams {cap}")), "{detail}");
}

/// Opens event streams until one is accepted, failing after `WAIT`: a closed stream's slot comes
/// back once the server notices the client left.
async fn open_once_a_slot_is_free(client: &TenantClient<'_>) -> SseConnection {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stream = client.open_sse("", None).await;
        if stream.response.status() == 200 {
            return stream;
        }
        assert_eq!(stream.response.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "no slot came back within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn streams_over_the_plans_cap_are_refused_naming_it_while_a_bystander_opens_its_own_and_closing_frees_a_slot() {
    // An event stream notices its client left when it next writes: at the latest, its keepalive.
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.events.keepalive_s = 1;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    cap_streams(&app, "acme", 3).await;
    let op = Some(app.operator_token.as_str());
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await;
    assert_eq!(trial.body["plan"]["max_concurrent_streams"], json!(3), "the trial plan's cap");
    let run = sleeping_task(&acme).await;
    let (ns, p, t) = ids();

    // Two event streams and a log follow: the cap.
    let first = acme.open_sse("", None).await;
    let second = acme.open_sse("namespace=builds", None).await;
    assert_eq!((first.response.status().as_u16(), second.response.status().as_u16()), (200, 200));
    let follow = acme.sdk().follow_logs(&ns, &p, run, &t, 0).await.unwrap();
    app.wait_for_open_streams(3, WAIT).await;

    // A fourth of any kind is refused, naming the cap.
    assert_refused_sse(acme.open_sse("", None).await, 3).await;
    let followed = acme.request("GET", &log_path(run), None).await;
    assert_eq!((followed.status, followed.code()), (429, "too_many_streams"), "{followed:?}");
    assert!(followed.body["detail"].as_str().unwrap().contains("max_concurrent_streams 3"));
    let attach = acme.sdk().attach(&ns, &p, run, &t, &AttachOptions::default()).await;
    let refused = attach.err().expect("the attach is refused");
    assert_eq!((refused.status(), refused.code()), (Some(429), Some("too_many_streams")));
    // A plain read of the log is no stream: it still answers.
    assert_eq!(acme.request("GET", &log_path(run).replace("?follow=true", ""), None).await.status, 200);

    // The bystander opens more streams than Acme's cap, of its own.
    let mut bystander = Vec::new();
    for _ in 0..4 {
        let stream = umbrella.open_sse("", None).await;
        assert_eq!(stream.response.status(), 200);
        bystander.push(stream);
    }
    app.wait_for_open_streams(7, WAIT).await;

    // Closing a stream frees its slot.
    drop(first);
    let third = open_once_a_slot_is_free(&acme).await;
    assert_refused_sse(acme.open_sse("", None).await, 3).await;

    // An attach session holds a slot for its life, and gives it back when it ends.
    drop(third);
    app.wait_for_open_streams(6, WAIT).await;
    let options = AttachOptions { command: vec!["cat".into()], ..Default::default() };
    let session = acme.sdk().attach(&ns, &p, run, &t, &options).await.expect("the session opens");
    assert_refused_sse(acme.open_sse("", None).await, 3).await;
    drop(session);
    let fourth = open_once_a_slot_is_free(&acme).await;

    // A follow gives its slot back when the task's log ends.
    let sdk = acme.sdk();
    sdk.cancel_run(&ns, &p, run).await.unwrap();
    acme.wait_for_run("builds", "sleepy", run, WAIT).await;
    let rest: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(follow).await;
    assert!(rest.iter().all(Result::is_ok), "the follow ended cleanly");
    let fifth = open_once_a_slot_is_free(&acme).await;
    drop((second, fourth, fifth, bystander));
    app.wait_for_open_streams(0, WAIT).await;
}

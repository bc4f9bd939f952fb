//! Objects: pipeline and run objects through the API against both stores (the local
//! content-addressed store and a real S3 server), limits, eviction, expiry, isolation, deletion
//! with their pipeline, and run tokens.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use gofer_core::{EventKind, RunStatus};
use gofer_tests::{TestApp, fresh_database, pipeline_path, spawn_with, test_config, test_s3, use_test_s3};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    S3,
}

async fn app_with(backend: Backend, adjust: impl FnOnce(&mut gofer_api::Config)) -> TestApp {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    if let Backend::S3 = backend {
        use_test_s3(&mut config);
    }
    adjust(&mut config);
    spawn_with(config, state_dir).await
}

async fn put(app: &TestApp, token: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app.http.put(format!("{}{path}", app.address)).bearer_auth(token).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Vec<u8>, Option<String>) {
    let response = app.http.get(format!("{}{path}", app.address)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let sha = response.headers().get("gofer-object-sha256").map(|v| v.to_str().unwrap().to_owned());
    (status, response.bytes().await.unwrap().to_vec(), sha)
}

fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const NOOP: &str = r#"{"name": "N", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]}"#;

async fn objects_round_trip(backend: Backend) {
    let app = app_with(backend, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "hello", serde_json::from_str(NOOP).unwrap()).await;
    let base = pipeline_path("builds", "hello");

    // Pipeline objects: put, read back, list in key order, replace, delete.
    let content = b"#!/bin/sh\necho hello\n".to_vec();
    let (status, body) = put(&app, &acme.token, &format!("{base}/objects/bin/hello.sh"), content.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["object"]["size"], content.len());
    assert_eq!(body["object"]["sha256"], sha256(&content));
    assert_eq!(body["object"]["expired"], false);
    let (status, read, sha) = get(&app, &acme.token, &format!("{base}/objects/bin/hello.sh")).await;
    assert_eq!((status, read.as_slice(), sha.as_deref()), (200, content.as_slice(), Some(sha256(&content).as_str())));
    assert_eq!(put(&app, &acme.token, &format!("{base}/objects/a"), vec![]).await.0, 201, "empty objects are fine");
    assert_eq!(put(&app, &acme.token, &format!("{base}/objects/a"), b"again".to_vec()).await.0, 201);
    assert_eq!(get(&app, &acme.token, &format!("{base}/objects/a")).await.1, b"again");

    let page = acme.request("GET", &format!("{base}/objects?limit=1"), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["items"][0]["key"], "a");
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = acme.request("GET", &format!("{base}/objects?limit=1&cursor={cursor}"), None).await;
    assert_eq!(rest.body["items"][0]["key"], "bin/hello.sh");
    assert_eq!(rest.body["next_cursor"], Value::Null);

    let gone = acme.request("DELETE", &format!("{base}/objects/a"), None).await;
    assert_eq!(gone.status, 204);
    let missing = acme.request("GET", &format!("{base}/objects/a"), None).await;
    assert_eq!((missing.status, missing.code()), (404, "object_not_found"));
    assert_eq!(acme.request("DELETE", &format!("{base}/objects/a"), None).await.code(), "object_not_found");

    // Run objects live under their run.
    let run = acme.start_run("builds", "hello").await;
    let (status, _) = put(&app, &acme.token, &format!("{base}/runs/{run}/objects/out.txt"), b"result".to_vec()).await;
    assert_eq!(status, 201);
    assert_eq!(get(&app, &acme.token, &format!("{base}/runs/{run}/objects/out.txt")).await.1, b"result");
    let list = acme.request("GET", &format!("{base}/runs/{run}/objects"), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let no_run = acme.request("GET", &format!("{base}/runs/99/objects"), None).await;
    assert_eq!((no_run.status, no_run.code()), (404, "run_not_found"));
    let (status, body) = put(&app, &acme.token, &format!("{base}/runs/99/objects/x"), b"x".to_vec()).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("run_not_found")));

    // Bad keys are refused by the one rule.
    for bad in ["a//b", "sp%20ace", "a%5Cb"] {
        let (status, body) = put(&app, &acme.token, &format!("{base}/objects/{bad}"), b"x".to_vec()).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_object_key")), "{bad}");
    }

    // Deleting the pipeline removes its objects from the store.
    acme.wait_for_run("builds", "hello", run, Duration::from_secs(60)).await;
    let deleted = acme.request("DELETE", &format!("{base}?delete_runs=true"), None).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    if let Backend::Local = backend {
        let refs = app.state_dir.path().join("objects/refs/tenants/acme");
        let left: Vec<_> = walk(&refs);
        assert!(left.is_empty(), "nothing of the pipeline left in the store: {left:?}");
        let blobs = walk(&app.state_dir.path().join("objects/blobs"));
        assert!(blobs.is_empty(), "unreferenced blobs are collected: {blobs:?}");
    }
    acme.register("builds", "hello", serde_json::from_str(NOOP).unwrap()).await;
    let again = acme.request("GET", &format!("{base}/objects/bin/hello.sh"), None).await;
    assert_eq!(again.code(), "object_not_found", "a recreated pipeline starts empty");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

#[tokio::test]
async fn objects_round_trip_through_the_local_store() {
    objects_round_trip(Backend::Local).await;
}

#[tokio::test]
async fn objects_round_trip_through_s3() {
    objects_round_trip(Backend::S3).await;
}

#[tokio::test]
async fn another_tenants_objects_are_not_found() {
    let app = app_with(Backend::Local, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "hello", serde_json::from_str(NOOP).unwrap()).await;
    let base = pipeline_path("builds", "hello");
    assert_eq!(put(&app, &acme.token, &format!("{base}/objects/secret"), b"acme's".to_vec()).await.0, 201);
    let run = acme.start_run("builds", "hello").await;
    assert_eq!(put(&app, &acme.token, &format!("{base}/runs/{run}/objects/r"), b"acme's".to_vec()).await.0, 201);

    let evil = app.tenant("evil").await;
    evil.namespace("builds").await;
    for path in [
        format!("{base}/objects/secret"),
        format!("{base}/objects"),
        format!("{base}/runs/{run}/objects/r"),
        format!("{base}/runs/{run}/objects"),
    ] {
        let answer = evil.request("GET", &path, None).await;
        assert_eq!((answer.status, answer.code()), (404, "pipeline_not_found"), "{path}");
    }
    let (status, _) = put(&app, &evil.token, &format!("{base}/objects/secret"), b"evil".to_vec()).await;
    assert_eq!(status, 404);
    assert_eq!(evil.request("DELETE", &format!("{base}/objects/secret"), None).await.status, 404);
    // Same names in evil's own pipeline are a different object.
    evil.register("builds", "hello", serde_json::from_str(NOOP).unwrap()).await;
    assert_eq!(evil.request("GET", &format!("{base}/objects/secret"), None).await.code(), "object_not_found");
    assert_eq!(get(&app, &acme.token, &format!("{base}/objects/secret")).await.1, b"acme's");

    // Deleting a tenant removes its objects from the store.
    let removed = app.request("DELETE", "/api/v1/tenants/acme?force=true", Some(&app.operator_token), None).await;
    assert!(removed.status == 204, "{removed:?}");
    assert!(walk(&app.state_dir.path().join("objects/refs/tenants/acme")).is_empty());
}

async fn use_plan(app: &TestApp, plan: Value) {
    let created = app.request("POST", "/api/v1/plans", Some(&app.operator_token), Some(&plan)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let body = json!({"plan": plan["id"]});
    let assigned = app.request("PUT", "/api/v1/tenants/acme/plan", Some(&app.operator_token), Some(&body)).await;
    assert!(assigned.status < 300, "{assigned:?}");
}

fn object_plan(id: &str, count: u32, pipeline_bytes: u64, tenant_bytes: u64) -> Value {
    json!({"id": id, "name": "Objects", "max_concurrent_tasks": 1, "max_task_timeout_s": 60,
        "max_run_duration_s": 60, "max_cpu_millis": 1000, "max_memory_mb": 128, "task_seconds_per_month": 1000,
        "object_storage_bytes": tenant_bytes, "max_pipeline_objects": count,
        "max_pipeline_object_bytes": pipeline_bytes, "requests_per_minute": 1000})
}

async fn keys(acme: &gofer_tests::TenantClient<'_>, base: &str) -> Vec<String> {
    let list = acme.request("GET", &format!("{base}/objects"), None).await;
    list.body["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_owned()).collect()
}

/// The tenant's `object_evicted` events as (key, reason), once there are at least `count`.
async fn evictions(acme: &gofer_tests::TenantClient<'_>, count: usize) -> Vec<(String, String)> {
    let evicted = acme.events_of_kind(EventKind::ObjectEvicted, count, Duration::from_secs(10)).await;
    evicted
        .iter()
        .map(|e| (e.payload["key"].as_str().unwrap().to_owned(), e.payload["reason"].as_str().unwrap().to_owned()))
        .collect()
}

fn sorted(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, r)| (k.as_str(), r.as_str())).collect();
    pairs.sort_unstable();
    pairs
}

#[tokio::test]
async fn pipeline_objects_past_the_plans_limits_evict_the_oldest_with_an_event() {
    let app = app_with(Backend::Local, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    for p in ["hello", "other"] {
        acme.register("builds", p, serde_json::from_str(NOOP).unwrap()).await;
    }
    let base = pipeline_path("builds", "hello");
    let other = pipeline_path("builds", "other");
    let put_object = async |base: &str, key: &str, size: usize| {
        let (status, body) = put(&app, &acme.token, &format!("{base}/objects/{key}"), vec![7u8; size]).await;
        assert_eq!(status, 201, "{key}: {body}");
    };

    // The plan's max_pipeline_objects: per pipeline, the oldest go.
    use_plan(&app, object_plan("two-objects", 2, 1000, 1000)).await;
    for key in ["one", "two", "three"] {
        put_object(&base, key, 1).await;
    }
    put_object(&other, "elsewhere", 1).await;
    assert_eq!(keys(&acme, &base).await, ["three", "two"]);
    assert_eq!(keys(&acme, &other).await, ["elsewhere"], "another pipeline's objects do not count");
    assert_eq!(sorted(&evictions(&acme, 1).await), [("one", "max_pipeline_objects")]);

    // Its max_pipeline_object_bytes: one pipeline's objects together.
    let mut plan = object_plan("ten-bytes", 100, 10, 1000);
    use_plan(&app, plan.clone()).await;
    let (status, body) = put(&app, &acme.token, &format!("{base}/objects/big"), vec![0u8; 11]).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
    put_object(&base, "six", 6).await;
    put_object(&other, "eight", 8).await;
    assert_eq!(keys(&acme, &base).await, ["six", "three", "two"], "1 + 1 + 6 fit in 10");
    put_object(&base, "five", 5).await;
    assert_eq!(keys(&acme, &base).await, ["five"], "6 + 5 is over 10: the older ones went");
    assert_eq!(keys(&acme, &other).await, ["eight", "elsewhere"]);
    let reasons = evictions(&acme, 4).await;
    let bytes = "max_pipeline_object_bytes";
    assert_eq!(sorted(&reasons[1..]), [("six", bytes), ("three", bytes), ("two", bytes)], "{reasons:?}");

    // Its object_storage_bytes: all the tenant's pipeline objects together.
    plan["object_storage_bytes"] = json!(12);
    let updated = app.request("PUT", "/api/v1/plans/ten-bytes", Some(&app.operator_token), Some(&plan)).await;
    assert_eq!(updated.body["plan"]["object_storage_bytes"], 12, "{updated:?}");
    put_object(&base, "four", 4).await;
    assert_eq!(keys(&acme, &base).await, ["five", "four"]);
    assert_eq!(keys(&acme, &other).await, Vec::<String>::new(), "5 + 4 + 8 + 1 is over 12: the oldest anywhere went");
    let reasons = evictions(&acme, 6).await;
    let total = "object_storage_bytes";
    assert_eq!(sorted(&reasons[4..]), [("eight", total), ("elsewhere", total)], "{reasons:?}");
}

#[tokio::test]
async fn the_trial_and_default_plans_carry_documented_object_limits() {
    let app = app_with(Backend::Local, |_| {}).await;
    let op = Some(app.operator_token.as_str());
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await;
    assert_eq!(
        (trial.body["plan"]["max_pipeline_objects"].clone(), trial.body["plan"]["max_pipeline_object_bytes"].clone()),
        (json!(10), json!(5 * 1024 * 1024))
    );
    let default = app.request("GET", "/api/v1/plans/default", op, None).await;
    assert_eq!(
        (
            default.body["plan"]["max_pipeline_objects"].clone(),
            default.body["plan"]["max_pipeline_object_bytes"].clone()
        ),
        (json!(1000), json!(1u64 << 30))
    );
}

#[tokio::test]
async fn run_objects_of_older_runs_expire_and_say_so() {
    let app = app_with(Backend::S3, |c| {
        c.objects.keep_run_objects_for_runs = 1;
        c.objects.expiry_interval_s = 1;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "hello", serde_json::from_str(NOOP).unwrap()).await;
    let base = pipeline_path("builds", "hello");
    let first = acme.start_run("builds", "hello").await;
    assert_eq!(put(&app, &acme.token, &format!("{base}/runs/{first}/objects/out"), b"1".to_vec()).await.0, 201);
    acme.wait_for_run("builds", "hello", first, Duration::from_secs(60)).await;
    let second = acme.run_to_completion("builds", "hello", Duration::from_secs(60)).await;
    assert_eq!(second.status, RunStatus::Successful);
    assert_eq!(put(&app, &acme.token, &format!("{base}/runs/{}/objects/out", second.id), b"2".to_vec()).await.0, 201);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = acme.request("GET", &format!("{base}/runs/{first}/objects/out"), None).await;
        if answer.status == 410 {
            assert_eq!(answer.code(), "object_expired");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run 1's object never expired: {answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = acme.request("GET", &format!("{base}/runs/{first}/objects"), None).await;
    assert_eq!(list.body["items"][0]["expired"], true);
    assert_eq!(get(&app, &acme.token, &format!("{base}/runs/{}/objects/out", second.id)).await.1, b"2");
    let events = acme.wait_for_event(Duration::from_secs(5), |e| e.kind.as_str() == "run_objects_expired").await;
    assert!(events.iter().any(|e| e.kind.as_str() == "run_objects_expired"));
}

#[tokio::test]
async fn a_task_uploads_a_binary_as_a_run_object_and_a_dependant_downloads_and_runs_it() {
    let app = app_with(Backend::Local, |c| c.sandbox.share_network = true).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "other", serde_json::from_str(NOOP).unwrap()).await;
    let base = pipeline_path("builds", "hello");
    let build = r#"
        set -e
        api="$GOFER_API_URL/api/v1/namespaces/builds/pipelines/$GOFER_PIPELINE_ID"
        auth="Authorization: Bearer $GOFER_API_TOKEN"
        printf '#!/bin/sh\necho built-and-ran "$@"\n' > app.sh
        curl -sf -X PUT -H "$auth" --data-binary @app.sh "$api/runs/$GOFER_RUN_ID/objects/dist/app.sh" >/dev/null
        echo "pipeline-object=$(curl -s -H "$auth" "$api/objects/greeting")"
        echo "other-run=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$auth" --data-binary x "$api/runs/1/objects/x")"
        echo "other-pipeline=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "$GOFER_API_URL/api/v1/namespaces/builds/pipelines/other/objects")"
        echo "write-pipeline=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$auth" --data-binary x "$api/objects/x")"
        echo "delete-own=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "$auth" "$api/runs/$GOFER_RUN_ID/objects/dist/app.sh")"
    "#;
    let run_it = r#"
        set -e
        api="$GOFER_API_URL/api/v1/namespaces/builds/pipelines/$GOFER_PIPELINE_ID"
        curl -sf -H "Authorization: Bearer $GOFER_API_TOKEN" -o app.sh "$api/runs/$GOFER_RUN_ID/objects/dist/app.sh"
        chmod +x app.sh && ./app.sh now
    "#;
    acme.register(
        "builds",
        "hello",
        json!({"name": "H", "tasks": [
            {"id": "build", "image": "debian:12", "inject_api_token": true, "command": ["sh", "-c", build]},
            {"id": "run", "image": "debian:12", "inject_api_token": true, "depends_on": {"build": "success"},
             "command": ["sh", "-c", run_it]}
        ]}),
    )
    .await;
    let greeting = put(&app, &acme.token, &format!("{base}/objects/greeting"), b"hi".to_vec()).await;
    assert_eq!(greeting.0, 201);
    let first = acme.start_run("builds", "hello").await;
    acme.wait_for_run("builds", "hello", first, Duration::from_secs(60)).await;
    let run = acme.start_run("builds", "hello").await;
    let done = acme.wait_for_run("builds", "hello", run, Duration::from_secs(60)).await;
    let logs = |task: &'static str| {
        let (acme, base) = (&acme, &base);
        async move {
            let answer = acme.request("GET", &format!("{base}/runs/{run}/tasks/{task}/logs"), None).await;
            answer.body["text"].as_str().unwrap_or_default().to_owned()
        }
    };
    let build_log = logs("build").await;
    assert_eq!(done.status, RunStatus::Successful, "{build_log}\n{}", logs("run").await);
    assert!(logs("run").await.contains("built-and-ran now"));
    let field =
        |name: &str| build_log.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or("").to_owned();
    assert_eq!(field("pipeline-object"), "hi", "{build_log}");
    assert_eq!(field("other-run"), "403", "{build_log}");
    assert_eq!(field("other-pipeline"), "403");
    assert_eq!(field("write-pipeline"), "403");
    assert_eq!(field("delete-own"), "403");
}

#[tokio::test]
async fn finished_logs_move_to_the_store_read_the_same_and_expire_with_logs_expired() {
    let app = app_with(Backend::S3, |c| {
        c.logs.max_bytes_per_task = 100;
        c.logs.archive_after_s = 0;
        c.logs.retention_s = 6;
        c.objects.expiry_interval_s = 1;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "hello",
        json!({"name": "H", "tasks": [
            {"id": "short", "image": "debian:12", "command": ["sh", "-c", "echo hello; echo world"]},
            {"id": "long", "image": "debian:12", "command": ["seq", "1", "200"]}
        ]}),
    )
    .await;
    let run = acme.run_to_completion("builds", "hello", Duration::from_secs(60)).await;
    assert_eq!(run.status, RunStatus::Successful);
    let base = pipeline_path("builds", "hello");
    let log = |task: &'static str, offset: u64| {
        let (acme, base, id) = (&acme, &base, run.id);
        async move { acme.request("GET", &format!("{base}/runs/{id}/tasks/{task}/logs?offset={offset}"), None).await }
    };

    // Wait until both logs moved to the store (and left the local disk).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM task_attempts WHERE log_archived_at IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
        // The attempt is marked archived before its local copy is removed (readers switch to the
        // store first), so the copy may outlive the mark by a moment.
        if archived == 2 && walk(&app.state_dir.path().join("logs")).is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "logs were never archived, or local copies never removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(log("short", 0).await.body["text"], "hello\nworld\n");
    assert_eq!(log("short", 6).await.body["text"], "world\n");
    let all: Vec<u8> = (1..=200).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    let mut expected = all[..50].to_vec();
    expected.extend(format!("\n[gofer: {} bytes cut]\n", all.len() - 100).into_bytes());
    expected.extend(&all[all.len() - 50..]);
    assert_eq!(log("long", 0).await.body["text"], String::from_utf8(expected).unwrap());
    let from_cut = log("long", 60).await.body["text"].as_str().unwrap().to_owned();
    assert_eq!(
        from_cut,
        format!("\n[gofer: {} bytes cut]\n{}", all.len() - 50 - 60, String::from_utf8_lossy(&all[all.len() - 50..]))
    );
    let followed = log("long", 0).await;
    assert_eq!(followed.status, 200);

    // After the retention period they are gone, and reads say so.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = log("short", 0).await;
        if answer.status == 410 {
            assert_eq!(answer.code(), "logs_expired");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "logs never expired: {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn env_references_to_objects_resolve_to_their_content_and_name_a_missing_key() {
    use gofer_core::objects::{ObjectKey, ObjectScope, ObjectStore, object_store_key};
    use gofer_engine::object_refs::{ObjectRefError, resolve_object_references};
    let dir = tempfile::tempdir().unwrap();
    let store = gofer_objects::LocalStore::new(dir.path());
    let run = gofer_core::keys::RunKey {
        pipeline: gofer_core::keys::PipelineKey {
            tenant: "acme".parse().unwrap(),
            namespace: "builds".parse().unwrap(),
            pipeline: "hello".parse().unwrap(),
        },
        run: gofer_core::RunId::from_i64(3),
    };
    let p = &run.pipeline;
    for (scope, key, content) in
        [(ObjectScope::Pipeline, "cfg/name", "gofer"), (ObjectScope::Run(run.run), "version", "1.2.3")]
    {
        let store_key = object_store_key(&p.tenant, &p.namespace, &p.pipeline, scope, &ObjectKey::parse(key).unwrap());
        let body: gofer_core::objects::ByteStream = Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
            bytes::Bytes::from(content.as_bytes().to_vec()),
        )]));
        store.put(&store_key, body, None, 1024).await.unwrap();
    }
    let mut env = std::collections::BTreeMap::from([
        ("GREETING".to_owned(), "hello pipeline_object{{ cfg/name }} v=run_object{{version}}!".to_owned()),
        ("PLAIN".to_owned(), "as is".to_owned()),
    ]);
    resolve_object_references(&store, &run, &mut env, 1024).await.unwrap();
    assert_eq!(env["GREETING"], "hello gofer v=1.2.3!");
    assert_eq!(env["PLAIN"], "as is");

    let mut missing = std::collections::BTreeMap::from([("X".to_owned(), "run_object{{ nope }}".to_owned())]);
    let err = resolve_object_references(&store, &run, &mut missing, 1024).await.unwrap_err();
    assert!(matches!(&err, ObjectRefError::Missing { key, .. } if key == "nope"), "{err}");
    let mut big = std::collections::BTreeMap::from([("X".to_owned(), "run_object{{ version }}".to_owned())]);
    let err = resolve_object_references(&store, &run, &mut big, 3).await.unwrap_err();
    assert!(matches!(err, ObjectRefError::Unusable { .. }), "{err}");
}

#[tokio::test]
async fn a_task_env_referencing_an_object_sees_its_content_and_a_missing_one_fails_the_task_naming_it() {
    let app = app_with(Backend::Local, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "hello",
        json!({"name": "H", "tasks": [
            {"id": "greet", "image": "debian:12", "env": {"GREETING": "hello pipeline_object{{ name }}"},
             "command": ["sh", "-c", "echo \"$GREETING\""]},
            {"id": "broken", "image": "debian:12", "env": {"X": "run_object{{ nope }}"}, "command": ["true"]}
        ]}),
    )
    .await;
    let base = pipeline_path("builds", "hello");
    assert_eq!(put(&app, &acme.token, &format!("{base}/objects/name"), b"gofer".to_vec()).await.0, 201);
    let run = acme.run_to_completion("builds", "hello", Duration::from_secs(60)).await;
    assert_eq!(run.status, RunStatus::Failed);
    let greet = acme.request("GET", &format!("{base}/runs/{}/tasks/greet/logs", run.id), None).await;
    assert_eq!(greet.body["text"], "hello gofer\n");
    let broken = acme.request("GET", &format!("{base}/runs/{}/tasks/broken", run.id), None).await;
    assert!(broken.body.to_string().contains("nope"), "the reason names the key: {}", broken.body);
}

/// Multipart uploads still open in the test S3 server (s3s-fs keeps `.upload-<id>.json` and
/// `.upload_id-<id>.part-<n>` files in its data directory; it does not implement
/// ListMultipartUploads). Only this test makes multipart uploads in this binary.
fn open_multipart_uploads() -> Vec<String> {
    let data = std::env::var("GOFER_TEST_S3_DATA_DIR").expect("GOFER_TEST_S3_DATA_DIR (set by infra/test.sh)");
    std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.contains(".upload"))
        .collect()
}

async fn read_whole(store: &impl gofer_core::objects::ObjectStore, key: &str) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    let mut fetched = gofer_core::objects::ObjectStore::get(store, key).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(chunk) = fetched.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, fetched.size, "{key}: the size announced is the size read");
    Some(out)
}

/// The test S3 server's store (a fresh bucket, named in the answer) with 5 MiB parts; bodies of a
/// declared length up to `single_put_max` stream into one `PutObject`.
async fn s3_store(single_put_max: u64) -> (gofer_objects::S3Store, String) {
    let s3 = gofer_objects::S3Settings {
        part_size_bytes: 5 * 1024 * 1024,
        part_concurrency: 4,
        single_put_max_bytes: single_put_max,
        ..test_s3()
    };
    let store = gofer_objects::S3Store::connect(&s3).await.with_stall_timeout(Duration::from_secs(2));
    store.ensure_bucket().await.unwrap();
    (store, s3.bucket)
}

/// `content` as a body stream in chunks of about a third of a MiB, then `tail` (an error, or
/// extra bytes).
fn chunked(content: &[u8], tail: Option<std::io::Result<bytes::Bytes>>) -> gofer_core::objects::ByteStream {
    let mut chunks: Vec<std::io::Result<bytes::Bytes>> =
        content.chunks(349_525).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    chunks.extend(tail);
    Box::pin(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_body_of_declared_length_streams_into_one_put_and_one_not_matching_it_replaces_nothing() {
    use futures_util::StreamExt;
    use gofer_core::objects::{ObjectStore, ObjectStoreError};
    const MIB: usize = 1024 * 1024;
    let (store, bucket) = s3_store(64 * MIB as u64).await;
    let content: Vec<u8> = (0..17 * MIB + 3).map(|i| (i % 241) as u8 ^ (i / MIB) as u8).collect();
    let length = Some(content.len() as u64);

    // Longer than a part, yet one PutObject: S3 gives a multipart object an ETag ending in
    // `-<parts>`, and this one has none.
    let stored = store.put("declared.bin", chunked(&content, None), length, u64::MAX).await.unwrap();
    assert_eq!(stored.size, content.len() as u64);
    assert_eq!(stored.sha256, sha256(&content));
    assert!(read_whole(&store, "declared.bin").await.unwrap() == content, "it reads back as written");
    let head = store.client().head_object().bucket(&bucket).key("declared.bin").send().await.unwrap();
    let etag = head.e_tag().unwrap().trim_matches('"').to_owned();
    assert!(!etag.contains('-'), "sent as one PutObject, not in parts: ETag {etag}");

    refused_bodies_replace_nothing(&store, &content).await;

    // A body that stops sending (the client stalled) is refused once `stall_timeout` (2 s here)
    // passes, saying so, rather than left to S3's own idle limit, which would read as S3 failing.
    let first = bytes::Bytes::copy_from_slice(&content[..MIB]);
    let stalled = futures_util::stream::iter([Ok(first)]).chain(futures_util::stream::pending());
    let refused = store.put("stalled.bin", Box::pin(stalled), length, u64::MAX).await;
    assert!(matches!(&refused, Err(ObjectStoreError::Body(m)) if m.contains("stalled")), "{refused:?}");
    assert!(read_whole(&store, "stalled.bin").await.is_none(), "nothing stored under stalled.bin");
    let local_dir = tempfile::tempdir().unwrap();
    refused_bodies_replace_nothing(&gofer_objects::LocalStore::new(local_dir.path()), &content).await;
}

/// Bodies that do not match their declared length, or break off, or are too large, are refused
/// and leave the object they would have replaced as it was, and none where there was none.
async fn refused_bodies_replace_nothing(store: &impl gofer_core::objects::ObjectStore, content: &[u8]) {
    use gofer_core::objects::ObjectStoreError;
    const MIB: usize = 1024 * 1024;
    let length = Some(content.len() as u64);
    let kept = b"the object as it was".to_vec();
    store.put("kept.bin", chunked(&kept, None), Some(kept.len() as u64), u64::MAX).await.unwrap();
    let short = store.put("kept.bin", chunked(&content[..content.len() - 1], None), length, u64::MAX).await;
    let expected = format!("ended after {} of the {} bytes", content.len() - 1, content.len());
    assert!(matches!(&short, Err(ObjectStoreError::Body(m)) if m.contains(&expected)), "{short:?}");
    let long =
        store.put("kept.bin", chunked(content, Some(Ok(bytes::Bytes::from_static(b"!")))), length, u64::MAX).await;
    assert!(matches!(&long, Err(ObjectStoreError::Body(m)) if m.contains("longer than")), "{long:?}");
    let gone = Some(Err(std::io::Error::other("the client went away")));
    let broken = store.put("kept.bin", chunked(&content[..9 * MIB], gone), length, u64::MAX).await;
    assert!(matches!(&broken, Err(ObjectStoreError::Body(m)) if m.contains("went away")), "{broken:?}");
    let too_large = store.put("kept.bin", chunked(content, None), length, content.len() as u64 - 1).await;
    assert!(matches!(too_large, Err(ObjectStoreError::TooLarge(_))), "{too_large:?}");
    assert!(read_whole(store, "kept.bin").await.unwrap() == kept, "the old object is untouched");
    assert!(store.put("new.bin", chunked(&content[..MIB], None), length, u64::MAX).await.is_err());
    assert!(read_whole(store, "new.bin").await.is_none(), "nothing stored under new.bin");
}

#[tokio::test]
async fn a_multipart_upload_failing_with_parts_in_flight_leaves_no_object_and_no_open_upload() {
    use futures_util::StreamExt;
    use gofer_core::objects::{ObjectStore, ObjectStoreError};
    const MIB: usize = 1024 * 1024;
    let (store, _) = s3_store(0).await;
    let chunk = bytes::Bytes::from((0..MIB).map(|i| (i % 253) as u8).collect::<Vec<u8>>());

    // The body breaks off after 17 MiB: three 5 MiB parts went up concurrently meanwhile.
    let sent = chunk.clone();
    let broken = futures_util::stream::iter(0..18)
        .map(move |i| if i < 17 { Ok(sent.clone()) } else { Err(std::io::Error::other("the client went away")) });
    let failed = store.put("broken.bin", Box::pin(broken), None, u64::MAX).await;
    assert!(matches!(failed, Err(ObjectStoreError::Body(_))), "{failed:?}");
    assert!(read_whole(&store, "broken.bin").await.is_none(), "no object under the failed key");
    assert_eq!(open_multipart_uploads(), Vec::<String>::new(), "the failed upload was aborted");

    // The put is dropped midway (its caller went away): the upload is aborted in the background.
    let sent = chunk.clone();
    let stalled =
        futures_util::stream::iter(0..17).map(move |_| Ok(sent.clone())).chain(futures_util::stream::pending());
    let dropped =
        tokio::time::timeout(Duration::from_secs(2), store.put("dropped.bin", Box::pin(stalled), None, u64::MAX));
    assert!(dropped.await.is_err(), "the stalled put was still waiting for its body");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !open_multipart_uploads().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open_multipart_uploads(), Vec::<String>::new(), "the dropped upload was aborted");
    assert!(read_whole(&store, "dropped.bin").await.is_none(), "no object under the dropped key");

    // Sizes around the part boundaries read back whole and in order (ranged reads past a part).
    for size in [0, 1, 5 * MIB, 5 * MIB + 1, 17 * MIB + 3] {
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ (i / MIB) as u8).collect();
        let body = futures_util::stream::iter(
            content.chunks(MIB / 3 + 1).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
        );
        let key = format!("sized-{size}.bin");
        let stored = store.put(&key, Box::pin(body), None, u64::MAX).await.unwrap();
        assert_eq!(stored.size, size as u64);
        assert_eq!(stored.sha256, sha256(&content));
        assert!(read_whole(&store, &key).await.unwrap() == content, "{key} reads back as written");
    }
    assert_eq!(open_multipart_uploads(), Vec::<String>::new());
}

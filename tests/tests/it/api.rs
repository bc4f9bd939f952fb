//! The API's contract: health, auth, bootstrap, refusals with their codes, pagination, isolation.

use gofer_tests::{fresh_database, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn task(id: &str) -> Value {
    json!({"id": id, "image": "debian:12", "command": ["true"]})
}

#[tokio::test]
async fn health_ready_and_the_openapi_document_answer_without_a_token() {
    let app = spawn_app().await;
    let health = app.request("GET", "/health", None, None).await;
    assert_eq!((health.status, health.body["status"].as_str()), (200, Some("ok")));
    let ready = app.request("GET", "/ready", None, None).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));
    let doc = app.request("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["paths"]["/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs"].is_object());
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc.body, committed, "the served document is the committed one");
}

#[tokio::test]
async fn the_bootstrap_token_is_issued_once_written_0600_and_stored_hashed() {
    let state_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database().await;
    let mut config = test_config(database_url.clone(), state_dir.path());
    config.bootstrap_token = None;
    let app = gofer_api::Application::build(config.clone()).await.unwrap();
    let token = app.bootstrap_token().expect("first start issues a token").to_owned();
    assert!(token.starts_with("gofer_") && token.len() > 40);

    let file = state_dir.path().join("bootstrap-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);

    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM api_tokens").fetch_all(&db).await.unwrap();
    assert_eq!(hashes, vec![Sha256::digest(token.as_bytes()).to_vec()], "only the hash is stored");
    let issued: Option<String> =
        sqlx::query_scalar("SELECT value FROM metadata WHERE key = 'bootstrap_token_issued_at'")
            .fetch_one(&db)
            .await
            .ok();
    assert!(issued.is_some_and(|v| v.starts_with("20")));

    // A second start on the same database issues nothing new, and the token still works.
    let again = gofer_api::Application::build(config).await.unwrap();
    assert!(again.bootstrap_token().is_none());
    let port = again.port();
    tokio::spawn(again.run_until_stopped());
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}

#[tokio::test]
async fn a_preset_bootstrap_token_is_used() {
    let state_dir = tempfile::tempdir().unwrap();
    let config = test_config(fresh_database().await, state_dir.path());
    let preset = gofer_api::secrecy::ExposeSecret::expose_secret(config.bootstrap_token.as_ref().unwrap()).to_owned();
    let app = spawn_with(config, state_dir).await;
    assert_eq!(app.operator_token, preset);
    let answer =
        app.request("POST", "/api/v1/tenants", Some(&preset), Some(&json!({"id": "acme", "name": "Acme"}))).await;
    assert_eq!(answer.status, 201);
    assert!(answer.body["token"].as_str().unwrap().starts_with("gofer_"));
    assert_eq!(answer.body["tenant"]["id"], "acme");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized_and_wrong_kinds_forbidden() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for token in [None, Some("gofer_not-a-real-token")] {
        let answer = app.request("GET", "/api/v1/namespaces", token, None).await;
        assert_eq!((answer.status, answer.code()), (401, "unauthorized"));
        assert_eq!(answer.content_type, "application/problem+json");
        assert_eq!(answer.body["type"], "urn:gofer:problem:unauthorized");
        assert_eq!(answer.body["status"], 401);
        assert!(answer.body["title"].is_string() && answer.body["detail"].is_string());
    }
    let operator_in_tenant = app.request("GET", "/api/v1/namespaces", Some(&app.operator_token), None).await;
    assert_eq!((operator_in_tenant.status, operator_in_tenant.code()), (403, "forbidden"));
    let tenant_as_operator = acme.request("POST", "/api/v1/tenants", Some(&json!({"id": "evil", "name": "x"}))).await;
    assert_eq!((tenant_as_operator.status, tenant_as_operator.code()), (403, "forbidden"));
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_code() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let configs = "/api/v1/namespaces/builds/pipelines/demo/configs";
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        ("POST", configs.into(), json!({"name": "x", "tasks": [task("abc")], "colour": "red"}), 400, "unknown_field"),
        (
            "POST",
            configs.into(),
            json!({"name": "x", "tasks": [{"id": "abc", "image": "i", "command": ["c"], "retry": 1}]}),
            400,
            "unknown_field",
        ),
        ("POST", configs.into(), json!({"tasks": [task("abc")]}), 400, "missing_field"),
        ("POST", configs.into(), json!({"name": "x", "tasks": [task("abc"), task("abc")]}), 422, "duplicate_task_id"),
        (
            "POST",
            configs.into(),
            json!({"name": "x", "tasks": [{"id": "abc", "image": "i", "command": ["c"], "depends_on": {"ghost": "success"}}]}),
            422,
            "unknown_dependency",
        ),
        (
            "POST",
            configs.into(),
            json!({"name": "x", "tasks": [
            {"id": "aaa", "image": "i", "command": ["c"], "depends_on": {"ccc": "success"}},
            {"id": "bbb", "image": "i", "command": ["c"], "depends_on": {"aaa": "success"}},
            {"id": "ccc", "image": "i", "command": ["c"], "depends_on": {"bbb": "any"}}]}),
            422,
            "dependency_cycle",
        ),
        ("POST", configs.into(), json!({"name": "x", "tasks": [task("Build")]}), 422, "invalid_identifier"),
        ("POST", configs.into(), json!({"name": "x", "tasks": []}), 422, "invalid_task_count"),
        (
            "POST",
            "/api/v1/namespaces/Builds/pipelines/demo/configs".into(),
            json!({"name": "x", "tasks": [task("abc")]}),
            400,
            "invalid_identifier",
        ),
        (
            "POST",
            "/api/v1/namespaces/builds/pipelines/9de/configs".into(),
            json!({"name": "x", "tasks": [task("abc")]}),
            400,
            "invalid_identifier",
        ),
        ("POST", "/api/v1/namespaces".into(), json!({"id": "9lives", "name": "x"}), 400, "invalid_identifier"),
        ("POST", "/api/v1/namespaces".into(), json!({"id": "fine", "name": "x", "owner": "me"}), 400, "unknown_field"),
        ("POST", "/api/v1/namespaces".into(), json!({"id": "builds", "name": "again"}), 409, "namespace_exists"),
        ("GET", "/api/v1/namespaces?limit=0".into(), Value::Null, 400, "invalid_limit"),
        ("GET", "/api/v1/namespaces?limit=501".into(), Value::Null, 400, "invalid_limit"),
        ("GET", "/api/v1/namespaces?cursor=garbage!".into(), Value::Null, 400, "invalid_cursor"),
        ("GET", "/api/v1/namespaces/nope".into(), Value::Null, 404, "namespace_not_found"),
        ("GET", "/api/v1/namespaces/nope/pipelines/demo/runs".into(), Value::Null, 404, "namespace_not_found"),
        ("GET", "/api/v1/namespaces/builds/pipelines/demo/runs".into(), Value::Null, 404, "pipeline_not_found"),
        (
            "POST",
            "/api/v1/namespaces/nope/pipelines/demo/runs".into(),
            json!({"variables": {}}),
            404,
            "namespace_not_found",
        ),
        (
            "POST",
            "/api/v1/namespaces/nope/pipelines/demo/configs".into(),
            json!({"name": "x", "tasks": [task("abc")]}),
            404,
            "namespace_not_found",
        ),
        ("GET", "/api/v1/namespaces/builds/pipelines/demo/runs/0".into(), Value::Null, 400, "invalid_identifier"),
        ("GET", "/api/v1/namespaces/builds/pipelines/demo/runs/abc".into(), Value::Null, 400, "invalid_identifier"),
        ("GET", "/api/v1/nowhere".into(), Value::Null, 404, "route_not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let body = (!body.is_null()).then_some(&body);
        let answer = acme.request(method, &path, body).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{method} {path} {body:?}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{method} {path}");
    }

    // With a pipeline in place, missing runs and tasks are named.
    acme.register("builds", "demo", json!({"name": "Demo", "tasks": [task("abc")]})).await;
    let run = acme.start_run("builds", "demo").await;
    for (path, code) in [
        ("/api/v1/namespaces/builds/pipelines/demo/runs/99".to_owned(), "run_not_found"),
        (format!("/api/v1/namespaces/builds/pipelines/demo/runs/{run}/tasks/zzz"), "task_not_found"),
        (format!("/api/v1/namespaces/builds/pipelines/demo/runs/{run}/tasks/zzz/logs"), "task_not_found"),
        ("/api/v1/namespaces/builds/pipelines/demo/runs/99/tasks".to_owned(), "run_not_found"),
    ] {
        let answer = acme.request("GET", &path, None).await;
        assert_eq!((answer.status, answer.code()), (404, code), "{path}");
    }
    let bad_vars = acme
        .request("POST", "/api/v1/namespaces/builds/pipelines/demo/runs", Some(&json!({"variables": {"GOFER_X": "1"}})))
        .await;
    assert_eq!((bad_vars.status, bad_vars.code()), (422, "invalid_field"));
    let unknown =
        acme.request("POST", "/api/v1/namespaces/builds/pipelines/demo/runs", Some(&json!({"vars": {}}))).await;
    assert_eq!((unknown.status, unknown.code()), (400, "unknown_field"));
    assert!(unknown.body["detail"].as_str().unwrap().contains("vars"), "the field is named");

    let not_json = app
        .http
        .post(format!("{}/api/v1/namespaces/builds/pipelines/demo/configs", app.address))
        .bearer_auth(&acme.token)
        .header("content-type", "text/plain")
        .body("name: x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let huge = json!({"name": "x", "description": "d".repeat(2 * 1024 * 1024), "tasks": [task("abc")]});
    let too_big = acme.request("POST", "/api/v1/namespaces/builds/pipelines/demo/configs", Some(&huge)).await;
    assert_eq!((too_big.status, too_big.code()), (413, "payload_too_large"));

    // Nothing refused was stored.
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM pipeline_configs").fetch_one(&app.db).await.unwrap();
    assert_eq!(versions, 1);
    let namespaces: i64 = sqlx::query_scalar("SELECT count(*) FROM namespaces").fetch_one(&app.db).await.unwrap();
    assert_eq!(namespaces, 1);
}

#[tokio::test]
async fn a_new_config_becomes_the_live_version_for_new_runs() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    assert_eq!(acme.register("builds", "demo", json!({"name": "One", "tasks": [task("abc")]})).await, 1);
    let first = acme.start_run("builds", "demo").await;
    assert_eq!(acme.register("builds", "demo", json!({"name": "Two", "tasks": [task("abc"), task("def")]})).await, 2);
    let second = acme.start_run("builds", "demo").await;
    let run = |id| format!("/api/v1/namespaces/builds/pipelines/demo/runs/{id}");
    assert_eq!(acme.request("GET", &run(first), None).await.body["run"]["config_version"], 1);
    assert_eq!(acme.request("GET", &run(second), None).await.body["run"]["config_version"], 2);
    let tasks = acme.request("GET", &format!("{}/tasks", run(second)), None).await;
    assert_eq!(tasks.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn namespaces_list_in_pages() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for id in ["ns-c", "ns-a", "ns-b"] {
        acme.namespace(id).await;
    }
    let first = acme.sdk().list_namespaces(2, None).await.unwrap();
    let ids: Vec<&str> = first.items.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["ns-a", "ns-b"]);
    let second = acme.sdk().list_namespaces(2, first.next_cursor.as_deref()).await.unwrap();
    let ids: Vec<&str> = second.items.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["ns-c"]);
    assert!(second.next_cursor.is_none());
}

#[tokio::test]
async fn another_tenants_objects_answer_404_exactly_like_missing_ones() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    acme.namespace("secret-ns").await;
    acme.register("secret-ns", "secret-p", json!({"name": "S", "tasks": [task("abc")]})).await;
    let run = acme.start_run("secret-ns", "secret-p").await;
    umbrella.namespace("mine").await;

    let probes = [
        ("GET", "/api/v1/namespaces/secret-ns".to_owned(), None),
        ("GET", format!("/api/v1/namespaces/secret-ns/pipelines/secret-p/runs/{run}"), None),
        ("GET", "/api/v1/namespaces/secret-ns/pipelines/secret-p/runs".to_owned(), None),
        ("GET", format!("/api/v1/namespaces/secret-ns/pipelines/secret-p/runs/{run}/tasks"), None),
        ("GET", format!("/api/v1/namespaces/secret-ns/pipelines/secret-p/runs/{run}/tasks/abc/logs"), None),
        ("POST", "/api/v1/namespaces/secret-ns/pipelines/secret-p/runs".to_owned(), Some(json!({"variables": {}}))),
        (
            "POST",
            "/api/v1/namespaces/secret-ns/pipelines/secret-p/configs".to_owned(),
            Some(json!({"name": "x", "tasks": [task("abc")]})),
        ),
    ];
    for (method, path, body) in probes {
        let theirs = umbrella.request(method, &path, body.as_ref()).await;
        let missing = umbrella.request(method, &path.replace("secret-ns", "never-ns"), body.as_ref()).await;
        assert_eq!((theirs.status, theirs.code()), (404, "namespace_not_found"), "{method} {path}");
        assert_eq!(
            theirs.body["detail"].as_str().unwrap().replace("secret-ns", "X"),
            missing.body["detail"].as_str().unwrap().replace("never-ns", "X"),
            "{method} {path}: same answer as a missing object"
        );
    }
    let listed = umbrella.request("GET", "/api/v1/namespaces", None).await;
    let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mine"]);
    // Umbrella can create a namespace with the same id as Acme's: ids are per tenant.
    umbrella.namespace("secret-ns").await;
    let runs = umbrella.request("GET", "/api/v1/namespaces/secret-ns/pipelines/secret-p/runs", None).await;
    assert_eq!((runs.status, runs.code()), (404, "pipeline_not_found"));
    // And nothing of Acme's changed.
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE tenant_id = 'acme'").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_duplicate_tenant_is_a_conflict() {
    let app = spawn_app().await;
    app.tenant("acme").await;
    let again = app
        .request("POST", "/api/v1/tenants", Some(&app.operator_token), Some(&json!({"id": "acme", "name": "Acme"})))
        .await;
    assert_eq!((again.status, again.code()), (409, "tenant_exists"));
    let bad =
        app.request("POST", "/api/v1/tenants", Some(&app.operator_token), Some(&json!({"id": "A", "name": "x"}))).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_identifier"));
}

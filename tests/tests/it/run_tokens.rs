//! Run tokens: a task that asks for one reads its own run and its namespace's runs with it, not
//! the rest of the tenant, and the token dies with the run.

use std::time::Duration;

use gofer_core::{NamespaceId, PipelineId, RunStatus, TaskId};
use gofer_tests::{fresh_database, spawn_with, test_config};
use serde_json::json;

#[tokio::test]
async fn a_task_reads_its_namespace_s_runs_with_its_run_token_and_nothing_else_and_the_token_dies_with_the_run() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    // The task calls the API on the host's loopback.
    config.sandbox.share_network = true;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "other", "noop", &["true"]).await;
    let other_run = acme.start_run("builds", "other").await;
    acme.wait_for_run("builds", "other", other_run, Duration::from_secs(60)).await;

    let script = r#"
        api="$GOFER_API_URL/api/v1/namespaces/builds/pipelines"
        code() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $GOFER_API_TOKEN" "$1"; }
        echo "own=$(code "$api/$GOFER_PIPELINE_ID/runs/$GOFER_RUN_ID")"
        echo "own-tasks=$(code "$api/$GOFER_PIPELINE_ID/runs/$GOFER_RUN_ID/tasks")"
        echo "other-pipeline=$(code "$api/other/runs/1")"
        echo "pipeline=$(code "$api/$GOFER_PIPELINE_ID")"
        echo "namespaces=$(code "$GOFER_API_URL/api/v1/namespaces")"
        echo "start=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
            -H "Authorization: Bearer $GOFER_API_TOKEN" -d '{}' "$api/$GOFER_PIPELINE_ID/runs")"
        echo "reversed=$(printf %s "$GOFER_API_TOKEN" | rev)"
    "#;
    acme.register(
        "builds",
        "caller",
        json!({"name": "C", "tasks": [
            {"id": "call", "image": "debian:12", "inject_api_token": true, "command": ["sh", "-c", script]},
            {"id": "plain", "image": "debian:12", "command": ["sh", "-c", "echo token=${GOFER_API_TOKEN:-none}"]}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "caller").await;
    let done = acme.wait_for_run("builds", "caller", run, Duration::from_secs(60)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let (ns, p) = (NamespaceId::parse("builds").unwrap(), PipelineId::parse("caller").unwrap());
    let log = acme.sdk().task_logs(&ns, &p, run, &TaskId::parse("call").unwrap()).await.unwrap();
    let field = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {log}"))
            .to_owned()
    };
    assert_eq!(field("own"), "200", "{log}");
    assert_eq!(field("own-tasks"), "200");
    // Another pipeline's runs in its namespace: what `gofer run start other --watch` reads.
    assert_eq!(field("other-pipeline"), "200");
    assert_eq!(field("pipeline"), "403");
    assert_eq!(field("namespaces"), "403");
    assert_eq!(field("start"), "409", "its own pipeline it may not start: it would loop (run_chain_loop)");
    let plain = acme.sdk().task_logs(&ns, &p, run, &TaskId::parse("plain").unwrap()).await.unwrap();
    assert_eq!(plain, "token=none\n", "only tasks that ask get a token");

    // After the run, the same token fails.
    let token: String = field("reversed").chars().rev().collect();
    assert_eq!(token.matches('.').count(), 2, "a JWT");
    let after =
        app.request("GET", &format!("/api/v1/namespaces/builds/pipelines/caller/runs/{run}"), Some(&token), None).await;
    assert_eq!((after.status, after.code()), (401, "unauthorized"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE $1")
        .bind(format!("%{}%", &token[..20]))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the token is not stored");
}

#[tokio::test]
async fn a_run_token_of_a_suspended_tenant_is_refused_at_once_and_a_bystander_s_still_works() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    // Tokens minted the way the engine mints them, with a key the test knows.
    let key = gofer_tests::KnownRunTokenKey::generate();
    key.configure(&mut config);
    let keys = key.keys();
    let app = spawn_with(config, state_dir).await;

    let mut tokens = Vec::new();
    for tenant in ["acme", "umbrella"] {
        let client = app.tenant(tenant).await;
        client.namespace("builds").await;
        client.register_one_task("builds", "live", "nap", &["sleep", "120"]).await;
        let run = client.start_run("builds", "live").await;
        let scope = gofer_tenants::run_tokens::RunScope {
            tenant: tenant.parse().unwrap(),
            namespace: "builds".parse().unwrap(),
            pipeline: "live".parse().unwrap(),
            run,
        };
        let token = keys.mint(&scope, time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unwrap();
        tokens.push((format!("/api/v1/namespaces/builds/pipelines/live/runs/{run}"), token));
    }
    let [(acme_run, acme_token), (umbrella_run, umbrella_token)] = &tokens[..] else { unreachable!() };
    assert_eq!(app.request("GET", acme_run, Some(acme_token), None).await.status, 200);

    let suspended = app.request("POST", "/api/v1/tenants/acme/suspend", Some(&app.operator_token), None).await;
    assert_eq!(suspended.status, 200, "{suspended:?}");

    // Refused as the tenant's own tokens are, whatever state its run is in by now.
    let refused = app.request("GET", acme_run, Some(acme_token), None).await;
    assert_eq!((refused.status, refused.code()), (403, "tenant_suspended"), "{refused:?}");
    let bystander = app.request("GET", umbrella_run, Some(umbrella_token), None).await;
    assert_eq!(bystander.status, 200, "{bystander:?}");

    // Resumed, the tenant's run token is judged by its run again (cancelled by the suspension).
    let resumed = app.request("POST", "/api/v1/tenants/acme/resume", Some(&app.operator_token), None).await;
    assert_eq!(resumed.status, 200, "{resumed:?}");
    let cancelled = app.request("GET", acme_run, Some(acme_token), None).await;
    assert_ne!(cancelled.status, 403, "{cancelled:?}");
}

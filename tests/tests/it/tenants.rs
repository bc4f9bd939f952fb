//! Operators manage tenants (list, read, suspend, resume, delete); tenants manage namespaces.

use std::time::Duration;

use gofer_core::RunStatus;
use gofer_tests::spawn_app;
use serde_json::json;

#[tokio::test]
async fn operators_list_and_read_tenants_in_pages() {
    let app = spawn_app().await;
    for id in ["charlie", "alpha", "bravo"] {
        app.tenant(id).await;
    }
    let op = Some(app.operator_token.as_str());
    let first = app.request("GET", "/api/v1/tenants?limit=2", op, None).await;
    let ids: Vec<&str> = first.body["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha", "bravo"]);
    let next = first.body["next_cursor"].as_str().unwrap();
    let second = app.request("GET", &format!("/api/v1/tenants?limit=2&cursor={next}"), op, None).await;
    assert_eq!(second.body["items"][0]["id"], "charlie");
    let one = app.request("GET", "/api/v1/tenants/bravo", op, None).await;
    assert_eq!((one.status, one.body["tenant"]["suspended"].is_null()), (200, true));
    let missing = app.request("GET", "/api/v1/tenants/nobody", op, None).await;
    assert_eq!((missing.status, missing.code()), (404, "tenant_not_found"));
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_and_its_runs_are_cancelled_until_it_is_resumed() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "slow", "wait", &["sleep", "60"]).await;
    let run = acme.start_run("builds", "slow").await;
    let op = Some(app.operator_token.as_str());
    let suspended = app.request("POST", "/api/v1/tenants/acme/suspend", op, None).await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert!(suspended.body["tenant"]["suspended"].is_string());
    let refused = acme.request("GET", "/api/v1/namespaces", None).await;
    assert_eq!((refused.status, refused.code()), (403, "tenant_suspended"));
    // The run was cancelled (read it straight from the database: the tenant's tokens are refused).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE tenant_id = 'acme' AND id = $1")
            .bind(run.get())
            .fetch_one(&app.db)
            .await
            .unwrap();
        if status == RunStatus::Cancelled.as_str() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run was not cancelled: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed = app.request("POST", "/api/v1/tenants/acme/resume", op, None).await;
    assert!(resumed.body["tenant"]["suspended"].is_null());
    assert_eq!(acme.request("GET", "/api/v1/namespaces", None).await.status, 200);
}

#[tokio::test]
async fn deleting_a_tenant_removes_everything_it_owns() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "quick", "say", &["echo", "hi"]).await;
    let run = acme.start_run("builds", "quick").await;
    acme.wait_for_run("builds", "quick", run, Duration::from_secs(60)).await;
    let logs = app.state_dir.path().join("logs/tenants/acme");
    assert!(logs.exists());
    let deleted = app.request("DELETE", "/api/v1/tenants/acme", Some(&app.operator_token), None).await;
    assert_eq!(deleted.status, 204);
    for table in ["namespaces", "pipelines", "runs", "task_executions", "api_tokens", "events"] {
        let left: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = 'acme'")))
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(left, 0, "{table} still has acme's rows");
    }
    assert!(!logs.exists(), "logs are removed");
    assert_eq!(acme.request("GET", "/api/v1/namespaces", None).await.status, 401, "its tokens are gone");
    assert_eq!(other.request("GET", "/api/v1/namespaces", None).await.status, 200, "others are untouched");
    let again = app.request("DELETE", "/api/v1/tenants/acme", Some(&app.operator_token), None).await;
    assert_eq!((again.status, again.code()), (404, "tenant_not_found"));
}

#[tokio::test]
async fn namespaces_are_updated_and_deleted_but_not_while_runs_are_live_unless_forced() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let renamed = acme
        .request(
            "PATCH",
            "/api/v1/namespaces/builds",
            Some(&json!({"name": "Build farm", "description": "all builds"})),
        )
        .await;
    assert_eq!((renamed.status, renamed.body["namespace"]["name"].as_str()), (200, Some("Build farm")));
    let modified = renamed.body["namespace"]["modified"].clone();
    let same = acme.request("PATCH", "/api/v1/namespaces/builds", Some(&json!({"name": "Build farm"}))).await;
    assert_eq!((same.status, &same.body["namespace"]["modified"]), (200, &modified), "no change, no new modified time");
    let unknown = acme.request("PATCH", "/api/v1/namespaces/builds", Some(&json!({"owner": "me"}))).await;
    assert_eq!((unknown.status, unknown.code()), (400, "unknown_field"));

    acme.register_one_task("builds", "slow", "wait", &["sleep", "60"]).await;
    let run = acme.start_run("builds", "slow").await;
    let busy = acme.request("DELETE", "/api/v1/namespaces/builds", None).await;
    assert_eq!((busy.status, busy.code()), (409, "namespace_busy"));
    let forced = acme.request("DELETE", "/api/v1/namespaces/builds?force=true", None).await;
    assert_eq!(forced.status, 204);
    let gone = acme.request("GET", "/api/v1/namespaces/builds", None).await;
    assert_eq!((gone.status, gone.code()), (404, "namespace_not_found"));
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE id = $1").bind(run.get()).fetch_one(&app.db).await.unwrap();
    assert_eq!(rows, 0);
    let missing = acme.request("DELETE", "/api/v1/namespaces/builds", None).await;
    assert_eq!((missing.status, missing.code()), (404, "namespace_not_found"));
}

//! Row-level security, the second line of defence: a transaction scoped to one tenant (as the
//! service runs every tenant-facing request) cannot see or change another tenant's rows even with
//! a query that forgets its tenant filter.

use std::time::Duration;

use gofer_tests::spawn_app;
use serde_json::json;

const TABLES: [&str; 9] = [
    "namespaces",
    "pipelines",
    "pipeline_configs",
    "runs",
    "task_executions",
    "task_attempts",
    "events",
    "api_tokens",
    "deployments",
];

#[tokio::test]
async fn a_tenant_scoped_transaction_sees_only_its_tenants_rows_whatever_the_query() {
    let app = spawn_app().await;
    for tenant in ["acme", "umbrella"] {
        let client = app.tenant(tenant).await;
        client.namespace("builds").await;
        client
            .register(
                "builds",
                "demo",
                json!({"name": "D", "tasks": [{"id": "work", "image": "debian:12", "command": ["true"]}]}),
            )
            .await;
        let run = client.start_run("builds", "demo").await;
        client.wait_for_run("builds", "demo", run, Duration::from_secs(60)).await;
    }

    for table in TABLES {
        // The service's own role (owner, cross-tenant work) sees both tenants.
        let all: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT tenant_id FROM {table} WHERE tenant_id IS NOT NULL ORDER BY 1"
        )))
        .fetch_all(&app.db)
        .await
        .unwrap();
        assert_eq!(all, ["acme", "umbrella"], "{table} has rows of both tenants");

        // Scoped to umbrella, an unfiltered query finds only umbrella's rows.
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query("SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', 'umbrella', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let seen: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT DISTINCT tenant_id FROM {table}")))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert_eq!(seen, ["umbrella"], "{table}: a scoped transaction crossed tenants");
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE tenant_id = 'acme'")))
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 0, "{table}: a scoped transaction deleted another tenant's rows");
        tx.rollback().await.unwrap();

        // With no tenant set, a scoped transaction sees nothing at all.
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query("SELECT set_config('role', 'gofer_tenant', true)").execute(&mut *tx).await.unwrap();
        let none: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(none, 0, "{table} without a tenant");
        tx.rollback().await.unwrap();
    }

    // Writing a row for another tenant is refused by the policy's check.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', 'umbrella', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let refused = sqlx::query("INSERT INTO namespaces (tenant_id, id, name) VALUES ('acme', 'sneaky', 'x')")
        .execute(&mut *tx)
        .await;
    assert!(refused.unwrap_err().to_string().contains("row-level security"), "inserting for another tenant");
    tx.rollback().await.unwrap();
    // And the scoped role cannot read service metadata at all.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SELECT set_config('role', 'gofer_tenant', true)").execute(&mut *tx).await.unwrap();
    assert!(sqlx::query("SELECT * FROM metadata").execute(&mut *tx).await.is_err());
}

/// The one-round-trip reads (`gofer_tenant_run`, `gofer_tenant_run_ids`,
/// `gofer_tenant_runs_by_id`) switch to the tenant role themselves: what they switched is in
/// force for the rest of their transaction (so their own query ran under the policies), and gone
/// after it, so a pooled connection is left as it was.
#[tokio::test]
async fn the_one_round_trip_reads_run_as_the_tenant_and_leave_nothing_behind() {
    let app = spawn_app().await;
    for tenant in ["acme", "umbrella"] {
        let client = app.tenant(tenant).await;
        client.namespace("builds").await;
        client.register_one_task("builds", "demo", "work", &["true"]).await;
        client.start_run("builds", "demo").await;
    }
    let mut conn = app.db.acquire().await.unwrap();
    let one: Vec<i64> = sqlx::query_scalar("SELECT id FROM gofer_tenant_run('umbrella', 'builds', 'demo', 1)")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, [1]);
    let page: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM gofer_tenant_run_ids('acme', 'builds', 'demo', NULL, 10) AS id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(page, [1]);
    let by_id: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM gofer_tenant_runs_by_id('umbrella', 'builds', 'demo', ARRAY[1, 2]::bigint[])",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(by_id, [1]);
    // Autocommit: the next statement on the same connection is the service's own role again.
    let (user, tenant): (String, String) =
        sqlx::query_as("SELECT current_user::text, coalesce(current_setting('app.tenant_id', true), '')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_ne!(user, "gofer_tenant");
    assert_eq!(tenant, "");

    // In a transaction, the switch outlives the call: an unfiltered query sees only umbrella.
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    sqlx::query("SELECT count(*) FROM gofer_tenant_run('umbrella', 'builds', 'demo', 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM runs").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(seen, ["umbrella"]);
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(user, "gofer_tenant");
    tx.rollback().await.unwrap();
}

//! What the tenant database role (`gofer_tenant`, the role of every tenant-scoped transaction) may
//! do, table by table, and that every table holding tenant data has row-level security. A new
//! table fails here until someone decides what the tenant role may do with it.

use std::collections::BTreeMap;

use gofer_tests::spawn_app;
use sqlx::PgPool;

const ALL: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];
const READ: &[&str] = &["SELECT"];
const NONE: &[&str] = &[];

/// Every table of the schema and the tenant role's privileges on it.
const EXPECTED: &[(&str, &[&str])] = &[
    ("_sqlx_migrations", NONE),
    ("api_tokens", ALL),
    ("deployment_log", ALL),
    ("deployment_runs", ALL),
    ("deployments", ALL),
    ("events", ALL),
    ("ip_blocks", NONE),
    ("metadata", NONE),
    ("namespaces", ALL),
    ("objects", ALL),
    ("pipeline_configs", ALL),
    ("pipeline_daily_stats", ALL),
    ("pipelines", ALL),
    // Read at admission; written by operators only.
    ("plans", READ),
    ("replicas", NONE),
    ("runs", ALL),
    // Sealed values: reached through the service's role only.
    ("secret_values", NONE),
    ("secrets", ALL),
    ("task_attempts", ALL),
    ("task_executions", ALL),
    // Its own row, read-only: plan, suspension and quota are the operator's and the engine's.
    ("tenants", READ),
    ("trial_challenges_used", NONE),
    ("trials", NONE),
    // The metering ledger is written by the engine.
    ("usage_records", READ),
];

async fn tenant_role_privileges(db: &PgPool) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT c.relname::text,
                (SELECT array_agg(g.privilege_type::text ORDER BY g.privilege_type)
                 FROM information_schema.role_table_grants g
                 WHERE g.grantee = 'gofer_tenant' AND g.table_schema = 'public' AND g.table_name = c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .expect("read the tenant role's grants");
    rows.into_iter().map(|(table, privileges)| (table, privileges.unwrap_or_default())).collect()
}

#[tokio::test]
async fn the_tenant_role_has_exactly_the_privileges_decided_for_each_table() {
    let app = spawn_app().await;
    let actual = tenant_role_privileges(&app.db).await;
    let expected: BTreeMap<String, Vec<String>> = EXPECTED
        .iter()
        .map(|(table, privileges)| ((*table).to_owned(), privileges.iter().map(|p| (*p).to_owned()).collect()))
        .collect();
    for (table, privileges) in &actual {
        let decided = expected.get(table).unwrap_or_else(|| {
            panic!("table {table} has no decision in db_privileges.rs (the tenant role has {privileges:?})")
        });
        assert_eq!(privileges, decided, "the tenant role's privileges on {table}");
    }
    for table in expected.keys() {
        assert!(actual.contains_key(table), "{table} is listed in db_privileges.rs but does not exist");
    }
}

#[tokio::test]
async fn every_table_with_a_tenant_id_has_row_level_security_and_a_policy() {
    let app = spawn_app().await;
    // Row-level security is enabled, not forced: the service's own role (the tables' owner) does
    // the cross-tenant work on purpose (see the enable_row_level_security migration).
    let tables: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity,
                (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
           AND (c.relname = 'tenants' OR EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
         ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(tables.len() > 10, "tables with tenant data: {tables:?}");
    for (table, enabled, policies) in tables {
        assert!(enabled, "{table} holds tenant data without row-level security");
        assert!(policies >= 1, "{table} has row-level security but no policy");
    }
}

#[tokio::test]
async fn a_tenant_scoped_transaction_cannot_write_plans_or_its_tenant() {
    let app = spawn_app().await;
    let client = app.tenant("acme").await;
    let hostile = [
        "UPDATE plans SET max_concurrent_tasks = 100000",
        "INSERT INTO plans (id, name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis,
                            max_memory_mb, task_seconds_per_month, object_storage_bytes, requests_per_minute)
         VALUES ('mine', 'Mine', 100000, 1, 1, 1, 1, 1, 1, 1)",
        "DELETE FROM plans WHERE id = 'trial'",
        "UPDATE tenants SET plan_id = 'default', suspended_at = NULL",
        "DELETE FROM usage_records",
        "INSERT INTO usage_records (tenant_id) VALUES ('acme')",
    ];
    for statement in hostile {
        let mut tx = app.db.begin().await.unwrap();
        as_tenant(&mut tx, client.tenant.as_str()).await;
        let refused = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.unwrap_err();
        let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {refused}");
        tx.rollback().await.unwrap();
    }

    // Reading its plan (admission) still works under the tenant role.
    let mut tx = app.db.begin().await.unwrap();
    as_tenant(&mut tx, client.tenant.as_str()).await;
    let plan: String = sqlx::query_scalar("SELECT p.id FROM tenants t JOIN plans p ON p.id = t.plan_id")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(plan, "default");
    tx.rollback().await.unwrap();

    let plans: i64 =
        sqlx::query_scalar("SELECT count(*) FROM plans WHERE id = 'mine' OR max_concurrent_tasks = 100000")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(plans, 0);
}

/// Makes the rest of `tx` run as the tenant role, scoped to `tenant`, as tenant-facing queries do.
async fn as_tenant(tx: &mut sqlx::PgConnection, tenant: &str) {
    sqlx::query("SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(tx)
        .await
        .expect("switching to the tenant role");
}

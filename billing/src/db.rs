//! SQL of the billing crate. Plans are not tenant-owned; operators' work uses the owner role.

use gofer_core::TenantId;
use gofer_core::model::Plan;
use sqlx::PgPool;

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    name: String,
    max_concurrent_tasks: i32,
    max_task_timeout_s: i32,
    max_run_duration_s: i32,
    max_cpu_millis: i32,
    max_memory_mb: i32,
    task_seconds_per_month: i64,
    object_storage_bytes: i64,
    requests_per_minute: i32,
    node_pool: Option<String>,
    allow_network: bool,
}

impl From<PlanRow> for Plan {
    fn from(r: PlanRow) -> Self {
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        Plan {
            id: r.id,
            name: r.name,
            max_concurrent_tasks: u(r.max_concurrent_tasks),
            max_task_timeout_s: u(r.max_task_timeout_s),
            max_run_duration_s: u(r.max_run_duration_s),
            max_cpu_millis: u(r.max_cpu_millis),
            max_memory_mb: u(r.max_memory_mb),
            task_seconds_per_month: u64::try_from(r.task_seconds_per_month).unwrap_or(0),
            object_storage_bytes: u64::try_from(r.object_storage_bytes).unwrap_or(0),
            requests_per_minute: u(r.requests_per_minute),
            node_pool: r.node_pool,
            allow_network: r.allow_network,
        }
    }
}

macro_rules! plan_columns {
    () => {
        "id, name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis, max_memory_mb, \
         task_seconds_per_month, object_storage_bytes, requests_per_minute, node_pool, allow_network"
    };
}

fn i(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn l(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) async fn insert(pool: &PgPool, p: &Plan) -> Result<(), sqlx::Error> {
    sqlx::query(concat!(
        "INSERT INTO plans (",
        plan_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&p.id)
    .bind(&p.name)
    .bind(i(p.max_concurrent_tasks))
    .bind(i(p.max_task_timeout_s))
    .bind(i(p.max_run_duration_s))
    .bind(i(p.max_cpu_millis))
    .bind(i(p.max_memory_mb))
    .bind(l(p.task_seconds_per_month))
    .bind(l(p.object_storage_bytes))
    .bind(i(p.requests_per_minute))
    .bind(&p.node_pool)
    .bind(p.allow_network)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn update(pool: &PgPool, p: &Plan) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE plans SET name = $2, max_concurrent_tasks = $3, max_task_timeout_s = $4, max_run_duration_s = $5,
             max_cpu_millis = $6, max_memory_mb = $7, task_seconds_per_month = $8, object_storage_bytes = $9,
             requests_per_minute = $10, node_pool = $11, allow_network = $12,
             modified_at = CASE WHEN (name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis,
                                      max_memory_mb, task_seconds_per_month, object_storage_bytes, requests_per_minute,
                                      node_pool, allow_network)
                                     IS DISTINCT FROM ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                                THEN now() ELSE modified_at END
         WHERE id = $1",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(i(p.max_concurrent_tasks))
    .bind(i(p.max_task_timeout_s))
    .bind(i(p.max_run_duration_s))
    .bind(i(p.max_cpu_millis))
    .bind(i(p.max_memory_mb))
    .bind(l(p.task_seconds_per_month))
    .bind(l(p.object_storage_bytes))
    .bind(i(p.requests_per_minute))
    .bind(&p.node_pool)
    .bind(p.allow_network)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

pub(crate) async fn list(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<Plan>, sqlx::Error> {
    let rows: Vec<PlanRow> = sqlx::query_as(concat!(
        "SELECT ",
        plan_columns!(),
        " FROM plans WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn get(pool: &PgPool, id: &str) -> Result<Option<Plan>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(concat!("SELECT ", plan_columns!(), " FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(Into::into))
}

pub(crate) async fn tenants_on(pool: &PgPool, id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM tenants WHERE plan_id = $1").bind(id).fetch_one(pool).await
}

pub(crate) async fn delete(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

pub(crate) async fn assign(pool: &PgPool, tenant: &TenantId, plan: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE tenants SET plan_id = $2 WHERE id = $1")
        .bind(tenant.as_str())
        .bind(plan)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(done == 1)
}

pub(crate) async fn tenant_plan(pool: &PgPool, tenant: &TenantId) -> Result<Option<Plan>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(concat!(
        "SELECT ",
        plan_columns!(),
        " FROM plans WHERE id = (SELECT plan_id FROM tenants WHERE id = $1)"
    ))
    .bind(tenant.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

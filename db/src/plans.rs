//! Plans as rows: the one mapping of a `plans` row to [`Plan`], for billing (which manages
//! plans) and the engine (which admits a run under its tenant's plan, inside the run's own
//! transaction).

use gofer_core::TenantId;
use gofer_core::model::Plan;
use sqlx::PgConnection;

/// A `plans` row.
#[derive(sqlx::FromRow)]
pub struct PlanRow {
    id: String,
    name: String,
    max_concurrent_tasks: i32,
    max_task_timeout_s: i32,
    max_run_duration_s: i32,
    max_cpu_millis: i32,
    max_memory_mb: i32,
    max_disk_mb: i32,
    task_seconds_per_month: i64,
    object_storage_bytes: i64,
    max_pipeline_objects: i32,
    max_pipeline_object_bytes: i64,
    requests_per_minute: i32,
    node_pool: Option<String>,
    allow_network: bool,
    allow_attach: bool,
    untrusted: bool,
    max_concurrent_streams: i32,
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
            max_disk_mb: u(r.max_disk_mb),
            task_seconds_per_month: u64::try_from(r.task_seconds_per_month).unwrap_or(0),
            object_storage_bytes: u64::try_from(r.object_storage_bytes).unwrap_or(0),
            max_pipeline_objects: u(r.max_pipeline_objects),
            max_pipeline_object_bytes: u64::try_from(r.max_pipeline_object_bytes).unwrap_or(0),
            requests_per_minute: u(r.requests_per_minute),
            node_pool: r.node_pool,
            allow_network: r.allow_network,
            allow_attach: r.allow_attach,
            untrusted: r.untrusted,
            max_concurrent_streams: u(r.max_concurrent_streams),
        }
    }
}

/// The columns of a [`PlanRow`], as a literal for `concat!`: `gofer_db::plan_columns!()`.
#[macro_export]
macro_rules! plan_columns {
    () => {
        "id, name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis, max_memory_mb, \
         task_seconds_per_month, object_storage_bytes, requests_per_minute, node_pool, allow_network, allow_attach, \
         max_pipeline_objects, max_pipeline_object_bytes, max_disk_mb, untrusted, max_concurrent_streams"
    };
}

/// The plan of `tenant`; `None` when the tenant does not exist (or is not visible to a scoped
/// transaction). Plans are readable by the tenant role, so a [`crate::TenantTx`] may ask.
pub async fn tenant_plan(conn: &mut PgConnection, tenant: &TenantId) -> Result<Option<Plan>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(concat!(
        "SELECT ",
        crate::plan_columns!(),
        " FROM plans WHERE id = (SELECT plan_id FROM tenants WHERE id = $1)"
    ))
    .bind(tenant.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

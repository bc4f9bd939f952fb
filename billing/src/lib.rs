//! Plans: what a tenant may use. Operators manage them; every tenant has one.

mod db;
mod error;
mod handle;
pub mod ip_blocks;
mod settings;
pub mod trials;
pub mod usage;

use gofer_core::TenantId;
use gofer_core::id::validate_identifier;
use gofer_core::model::{PageRequest, Plan};
use sqlx::PgPool;

pub use error::BillingError;
pub use handle::Billing;
pub use settings::{IpBlockSettings, TrialSettings};

/// Checks a plan: a valid id, a name, every limit at least 1 (storage and task-seconds may be 0),
/// and a node pool name Nomad accepts.
pub fn validate(plan: &Plan) -> Result<(), BillingError> {
    validate_identifier("plan", &plan.id).map_err(|e| BillingError::Invalid(e.to_string()))?;
    if plan.name.trim().is_empty() || plan.name.chars().count() > 128 || plan.name.chars().any(char::is_control) {
        return Err(BillingError::Invalid("name: 1 to 128 characters, not only spaces, no control characters".into()));
    }
    for (field, value) in [
        ("max_concurrent_tasks", plan.max_concurrent_tasks),
        ("max_task_timeout_s", plan.max_task_timeout_s),
        ("max_run_duration_s", plan.max_run_duration_s),
        ("max_cpu_millis", plan.max_cpu_millis),
        ("max_memory_mb", plan.max_memory_mb),
        ("requests_per_minute", plan.requests_per_minute),
        ("max_pipeline_objects", plan.max_pipeline_objects),
        ("max_disk_mb", plan.max_disk_mb),
    ] {
        if value == 0 || value > i32::MAX as u32 {
            return Err(BillingError::Invalid(format!("{field}: between 1 and {}", i32::MAX)));
        }
    }
    if plan.max_concurrent_streams > i32::MAX as u32 {
        return Err(BillingError::Invalid(format!("max_concurrent_streams: between 0 and {}", i32::MAX)));
    }
    if let Some(pool) = &plan.node_pool
        && (pool.is_empty()
            || pool.len() > 127
            || !pool.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(BillingError::Invalid("node_pool: 1 to 127 letters, digits, '_' or '-'".into()));
    }
    if [plan.task_seconds_per_month, plan.object_storage_bytes, plan.max_pipeline_object_bytes]
        .iter()
        .any(|v| *v > i64::MAX as u64)
    {
        return Err(BillingError::Invalid(
            "task_seconds_per_month, object_storage_bytes and max_pipeline_object_bytes fit in 63 bits".into(),
        ));
    }
    Ok(())
}

/// Creates a plan.
pub async fn create(pool: &PgPool, plan: &Plan) -> Result<Plan, BillingError> {
    validate(plan)?;
    db::insert(pool, plan).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => BillingError::PlanExists(plan.id.clone()),
        other => other.into(),
    })?;
    get(pool, &plan.id).await
}

/// Lists plans by id.
pub async fn list(pool: &PgPool, page: &PageRequest<String>) -> Result<(Vec<Plan>, Option<String>), BillingError> {
    let rows = db::list(pool, page.after.as_deref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |p| p.id.clone()))
}

/// Reads a plan.
pub async fn get(pool: &PgPool, id: &str) -> Result<Plan, BillingError> {
    db::get(pool, id).await?.ok_or_else(|| BillingError::PlanNotFound(id.to_owned()))
}

/// Replaces a plan's limits; tenants on it get them at once. No change answers it unchanged.
pub async fn update(pool: &PgPool, plan: &Plan) -> Result<Plan, BillingError> {
    validate(plan)?;
    if !db::update(pool, plan).await? {
        return Err(BillingError::PlanNotFound(plan.id.clone()));
    }
    get(pool, &plan.id).await
}

/// Deletes a plan no tenant uses.
pub async fn delete(pool: &PgPool, id: &str) -> Result<(), BillingError> {
    get(pool, id).await?;
    let users = db::tenants_on(pool, id).await?;
    if users > 0 {
        return Err(BillingError::PlanInUse(id.to_owned(), users));
    }
    db::delete(pool, id).await?;
    Ok(())
}

/// Moves a tenant to a plan, effective at once.
pub async fn assign(pool: &PgPool, tenant: &TenantId, plan: &str) -> Result<Plan, BillingError> {
    let plan = get(pool, plan).await?;
    if !db::assign(pool, tenant, &plan.id).await? {
        return Err(BillingError::TenantNotFound(tenant.clone()));
    }
    Ok(plan)
}

/// The plan of a tenant.
pub async fn tenant_plan(pool: &PgPool, tenant: &TenantId) -> Result<Plan, BillingError> {
    db::tenant_plan(pool, tenant).await?.ok_or_else(|| BillingError::TenantNotFound(tenant.clone()))
}

//! SQL of the billing crate. Plans are not tenant-owned; operators' work uses the owner role.

use gofer_core::TenantId;
use gofer_core::model::{Plan, UsageGroup};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One group per UTC day.
    Day,
    /// One group per pipeline (`namespace/pipeline`).
    Pipeline,
}

impl GroupBy {
    /// Parses `day` or `pipeline`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(GroupBy::Day),
            "pipeline" => Some(GroupBy::Pipeline),
            _ => None,
        }
    }
}

fn i(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn l(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Binds a plan's fields as `$1`..`$18`, in the order of `plan_columns!`.
fn bind_plan<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    p: &'q Plan,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
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
        .bind(p.allow_attach)
        .bind(i(p.max_pipeline_objects))
        .bind(l(p.max_pipeline_object_bytes))
        .bind(i(p.max_disk_mb))
        .bind(p.untrusted)
        .bind(i(p.max_concurrent_streams))
}

pub(crate) async fn insert(pool: &PgPool, p: &Plan) -> Result<(), sqlx::Error> {
    bind_plan(
        sqlx::query(concat!(
            "INSERT INTO plans (",
            gofer_db::plan_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        )),
        p,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn update(pool: &PgPool, p: &Plan) -> Result<bool, sqlx::Error> {
    let query = sqlx::query(
        "UPDATE plans SET name = $2, max_concurrent_tasks = $3, max_task_timeout_s = $4, max_run_duration_s = $5,
             max_cpu_millis = $6, max_memory_mb = $7, task_seconds_per_month = $8, object_storage_bytes = $9,
             requests_per_minute = $10, node_pool = $11, allow_network = $12, allow_attach = $13,
             max_pipeline_objects = $14, max_pipeline_object_bytes = $15, max_disk_mb = $16, untrusted = $17,
             max_concurrent_streams = $18,
             modified_at = CASE WHEN (name, max_concurrent_tasks, max_task_timeout_s, max_run_duration_s, max_cpu_millis,
                                      max_memory_mb, task_seconds_per_month, object_storage_bytes, requests_per_minute,
                                      node_pool, allow_network, allow_attach, max_pipeline_objects,
                                      max_pipeline_object_bytes, max_disk_mb, untrusted, max_concurrent_streams)
                                     IS DISTINCT FROM ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                                                       $18)
                                THEN now() ELSE modified_at END
         WHERE id = $1",
    );
    let done = bind_plan(query, p).execute(pool).await?.rows_affected();
    Ok(done == 1)
}

pub(crate) async fn list(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<Plan>, sqlx::Error> {
    let rows: Vec<gofer_db::plans::PlanRow> = sqlx::query_as(concat!(
        "SELECT ",
        gofer_db::plan_columns!(),
        " FROM plans WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn get(pool: &PgPool, id: &str) -> Result<Option<Plan>, sqlx::Error> {
    let row: Option<gofer_db::plans::PlanRow> =
        sqlx::query_as(concat!("SELECT ", gofer_db::plan_columns!(), " FROM plans WHERE id = $1"))
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
    gofer_db::plans::tenant_plan(&mut *pool.acquire().await?, tenant).await
}

#[derive(sqlx::FromRow)]
struct UsageRow {
    key: String,
    attempts: i64,
    task_seconds: f64,
    cpu_core_seconds: f64,
    memory_mb_seconds: f64,
}

/// Usage groups of the ledger, keyed by `$key`, after `$5`, ordered by key.
macro_rules! usage_groups_sql {
    ($key:literal) => {
        concat!(
            "SELECT * FROM (
                 SELECT ",
            $key,
            " AS key, count(*) AS attempts, (sum(task_ms) / 1000.0)::double precision AS task_seconds,
                        (sum(task_ms::numeric * cpu_millis) / 1000000.0)::double precision AS cpu_core_seconds,
                        (sum(task_ms::numeric * memory_mb) / 1000.0)::double precision AS memory_mb_seconds
                 FROM usage_records
                 WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3
                 GROUP BY 1
             ) g
             WHERE ($4::text IS NULL OR g.key > $4) ORDER BY g.key LIMIT $5"
        )
    };
}

/// Tenants' reports run it in their [`gofer_db::TenantTx`], operators' on the owner role: a bare
/// connection serves both.
pub(crate) async fn usage_groups(
    conn: &mut PgConnection,
    tenant: &TenantId,
    from: OffsetDateTime,
    to: OffsetDateTime,
    group_by: GroupBy,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UsageGroup>, sqlx::Error> {
    const BY_DAY: &str = usage_groups_sql!("to_char(date_trunc('day', finished_at, 'UTC'), 'YYYY-MM-DD')");
    const BY_PIPELINE: &str = usage_groups_sql!("namespace_id || '/' || pipeline_id");
    let rows: Vec<UsageRow> = sqlx::query_as(match group_by {
        GroupBy::Day => BY_DAY,
        GroupBy::Pipeline => BY_PIPELINE,
    })
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| UsageGroup {
            key: r.key,
            attempts: r.attempts,
            task_seconds: r.task_seconds,
            cpu_core_seconds: r.cpu_core_seconds,
            memory_mb_seconds: r.memory_mb_seconds,
        })
        .collect())
}

// Trials and IP blocks are not tenant-owned: operators' and the service's own bookkeeping (owner role).

/// Serialises trial signups of one client address for the rest of the transaction.
/// Serialises trial sign-ups (all of them: the caps per network and per hour count across
/// addresses).
pub(crate) async fn lock_trials(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gofer:trials'))").execute(conn).await?;
    Ok(())
}

/// Records a proof-of-work challenge as spent; false when it was spent already.
pub(crate) async fn spend_challenge(
    conn: &mut PgConnection,
    id: &str,
    expires: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO trial_challenges_used (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(expires)
            .execute(conn)
            .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(crate) async fn forget_expired_challenges(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM trial_challenges_used WHERE expires_at < now()").execute(pool).await?;
    Ok(done.rows_affected())
}

/// Trials started within `window` from addresses inside `network`, and when the oldest started.
pub(crate) async fn network_trials_since(
    conn: &mut PgConnection,
    network: &ipnet::IpNet,
    window: time::Duration,
) -> Result<(i64, Option<OffsetDateTime>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), min(created_at) FROM trials
         WHERE created_at > now() - make_interval(secs => $2) AND client_ip::inet <<= $1::cidr",
    )
    .bind(network.to_string())
    .bind(window.as_seconds_f64())
    .fetch_one(conn)
    .await
}

/// Trials started within `window` from anywhere, and when the oldest started.
pub(crate) async fn all_trials_since(
    conn: &mut PgConnection,
    window: time::Duration,
) -> Result<(i64, Option<OffsetDateTime>), sqlx::Error> {
    sqlx::query_as("SELECT count(*), min(created_at) FROM trials WHERE created_at > now() - make_interval(secs => $1)")
        .bind(window.as_seconds_f64())
        .fetch_one(conn)
        .await
}

/// When a trial of `address` (not converted) last ran out of task-seconds, within `window`.
pub(crate) async fn last_exhausted_trial(
    conn: &mut PgConnection,
    address: &str,
    window: time::Duration,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(COALESCE(t.exhausted_at, n.quota_exhausted_at)) FROM trials t LEFT JOIN tenants n ON n.id = t.tenant_id
         WHERE t.client_ip = $1 AND t.converted_at IS NULL
           AND COALESCE(t.exhausted_at, n.quota_exhausted_at) > now() - make_interval(secs => $2)",
    )
    .bind(address)
    .bind(window.as_seconds_f64())
    .fetch_one(conn)
    .await
}

/// Trials of `address` started within `window`, and when the oldest of them started.
pub(crate) async fn trials_since(
    conn: &mut PgConnection,
    address: &str,
    window: time::Duration,
) -> Result<(i64, Option<OffsetDateTime>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), min(created_at) FROM trials
         WHERE client_ip = $1 AND created_at > now() - make_interval(secs => $2)",
    )
    .bind(address)
    .bind(window.as_seconds_f64())
    .fetch_one(conn)
    .await
}

pub(crate) async fn insert_trial(
    conn: &mut PgConnection,
    tenant: &TenantId,
    address: &str,
    expires: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO trials (tenant_id, client_ip, expires_at) VALUES ($1, $2, $3)")
        .bind(tenant.as_str())
        .bind(address)
        .bind(expires)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn mark_exhausted(pool: &PgPool, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET quota_exhausted_at = now() WHERE id = $1")
        .bind(tenant.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn mark_converted(pool: &PgPool, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE trials SET converted_at = now() WHERE tenant_id = $1 AND converted_at IS NULL")
        .bind(tenant.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Trial tenants whose trial ended: not yet suspended (`grace` unset), or ended more than
/// `grace` ago (due for removal).
pub(crate) async fn ended_trials(
    pool: &PgPool,
    grace: Option<time::Duration>,
    limit: i64,
) -> Result<Vec<TenantId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tenants
         WHERE trial_expires_at IS NOT NULL
           AND CASE WHEN $1::float8 IS NULL THEN trial_expires_at <= now() AND suspended_at IS NULL
                    ELSE trial_expires_at <= now() - make_interval(secs => $1) END
         ORDER BY trial_expires_at LIMIT $2",
    )
    .bind(grace.map(|g| g.as_seconds_f64()))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    ids.into_iter().map(|id| TenantId::parse(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))).collect()
}

pub(crate) async fn mark_removed(pool: &PgPool, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE trials t SET removed_at = now(),
             exhausted_at = COALESCE(t.exhausted_at, (SELECT n.quota_exhausted_at FROM tenants n WHERE n.id = t.tenant_id))
         WHERE t.tenant_id = $1",
    )
    .bind(tenant.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    client_ip: String,
    reason: String,
    scope: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl From<BlockRow> for gofer_core::model::IpBlock {
    fn from(r: BlockRow) -> Self {
        // The column's check admits only the two scopes; anything else fails closed.
        let scope = gofer_core::model::BlockScope::parse(&r.scope).unwrap_or(gofer_core::model::BlockScope::All);
        Self { address: r.client_ip, reason: r.reason, scope, created: r.created_at, expires: r.expires_at }
    }
}

/// Blocks an address (extending an existing block, and widening its scope to `all` when either
/// is) and tells every replica, in one statement.
pub(crate) async fn upsert_block(
    pool: &PgPool,
    address: &str,
    reason: &str,
    duration: time::Duration,
    scope: gofer_core::model::BlockScope,
) -> Result<gofer_core::model::IpBlock, sqlx::Error> {
    let row: BlockRow = sqlx::query_as(
        "WITH upserted AS (
             INSERT INTO ip_blocks (client_ip, reason, expires_at, scope)
             VALUES ($1, $2, now() + make_interval(secs => $3), $5)
             ON CONFLICT (client_ip) DO UPDATE
                 SET reason = EXCLUDED.reason, expires_at = GREATEST(ip_blocks.expires_at, EXCLUDED.expires_at),
                     scope = CASE WHEN 'all' IN (ip_blocks.scope, EXCLUDED.scope) THEN 'all' ELSE 'anonymous' END
             RETURNING client_ip, reason, scope, created_at, expires_at
         )
         SELECT u.*, pg_notify($4, u.client_ip) IS NULL AS notified FROM upserted u",
    )
    .bind(address)
    .bind(reason)
    .bind(duration.as_seconds_f64())
    .bind(gofer_db::channels::IP_BLOCKS)
    .bind(scope.as_str())
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

pub(crate) async fn delete_block(pool: &PgPool, address: &str) -> Result<bool, sqlx::Error> {
    let deleted: Option<String> = sqlx::query_scalar(
        "WITH deleted AS (DELETE FROM ip_blocks WHERE client_ip = $1 AND expires_at > now() RETURNING client_ip)
         SELECT pg_notify($2, d.client_ip)::text FROM deleted d",
    )
    .bind(address)
    .bind(gofer_db::channels::IP_BLOCKS)
    .fetch_optional(pool)
    .await?;
    Ok(deleted.is_some())
}

pub(crate) async fn list_blocks(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<gofer_core::model::IpBlock>, sqlx::Error> {
    let rows: Vec<BlockRow> = sqlx::query_as(
        "SELECT client_ip, reason, scope, created_at, expires_at FROM ip_blocks
         WHERE expires_at > now() AND ($1::text IS NULL OR client_ip > $1) ORDER BY client_ip LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn active_blocks(pool: &PgPool) -> Result<Vec<gofer_core::model::IpBlock>, sqlx::Error> {
    let rows: Vec<BlockRow> = sqlx::query_as(
        "SELECT client_ip, reason, scope, created_at, expires_at FROM ip_blocks WHERE expires_at > now()",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn purge_blocks(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM ip_blocks WHERE expires_at <= now()").execute(pool).await?.rows_affected())
}

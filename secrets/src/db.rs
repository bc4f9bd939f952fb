//! Every SQL statement of the secrets crate: metadata rows (`secrets`, tenant-scoped under
//! row-level security) and the Postgres store's sealed values (`secret_values`).

use gofer_core::TenantId;
use gofer_db::TenantTx;
use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;

/// A tenant-scoped transaction: row-level security limits it to `tenant`'s rows.
pub(crate) use gofer_db::scoped;

macro_rules! meta_columns {
    () => {
        "scope, key, namespaces, created_at, updated_at, updated_by"
    };
}

/// A metadata row.
#[derive(Debug, FromRow)]
pub(crate) struct MetaRow {
    pub scope: String,
    pub key: String,
    pub namespaces: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub updated_by: Option<uuid::Uuid>,
}

/// Whether the pipeline exists (pipeline secrets need it).
pub(crate) async fn pipeline_exists(
    tx: &mut TenantTx,
    tenant: &TenantId,
    namespace: &str,
    pipeline: &str,
) -> Result<(bool, bool), sqlx::Error> {
    let row: (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM namespaces WHERE tenant_id = $1 AND id = $2),
                EXISTS (SELECT 1 FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3)",
    )
    .bind(tenant.as_str())
    .bind(namespace)
    .bind(pipeline)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

/// Inserts or updates a metadata row; answers it and whether it was created.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_meta(
    tx: &mut TenantTx,
    tenant: &TenantId,
    scope: &str,
    key: &str,
    pipeline: Option<(&str, &str)>,
    namespaces: &[String],
    by: Option<uuid::Uuid>,
) -> Result<(MetaRow, bool), sqlx::Error> {
    #[derive(FromRow)]
    struct Upserted {
        #[sqlx(flatten)]
        row: MetaRow,
        created: bool,
    }
    let r: Upserted = sqlx::query_as(concat!(
        "INSERT INTO secrets (tenant_id, scope, key, namespace_id, pipeline_id, namespaces, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, scope, key) DO UPDATE
            SET namespaces = EXCLUDED.namespaces, updated_by = EXCLUDED.updated_by, updated_at = now()
         RETURNING ",
        meta_columns!(),
        ", (xmax = 0) AS created"
    ))
    .bind(tenant.as_str())
    .bind(scope)
    .bind(key)
    .bind(pipeline.map(|p| p.0))
    .bind(pipeline.map(|p| p.1))
    .bind(namespaces)
    .bind(by)
    .fetch_one(&mut **tx)
    .await?;
    Ok((r.row, r.created))
}

/// One metadata row.
pub(crate) async fn get_meta(
    tx: &mut TenantTx,
    tenant: &TenantId,
    scope: &str,
    key: &str,
) -> Result<Option<MetaRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        meta_columns!(),
        " FROM secrets WHERE tenant_id = $1 AND scope = $2 AND key = $3"
    ))
    .bind(tenant.as_str())
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
}

/// Metadata rows of a scope after `after`, by key.
pub(crate) async fn list_meta(
    tx: &mut TenantTx,
    tenant: &TenantId,
    scope: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<MetaRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        meta_columns!(),
        " FROM secrets WHERE tenant_id = $1 AND scope = $2 AND ($3::text IS NULL OR key > $3)
          ORDER BY key COLLATE \"C\" LIMIT $4"
    ))
    .bind(tenant.as_str())
    .bind(scope)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// Deletes a metadata row; answers whether it existed.
pub(crate) async fn delete_meta(
    tx: &mut TenantTx,
    tenant: &TenantId,
    scope: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND scope = $2 AND key = $3")
        .bind(tenant.as_str())
        .bind(scope)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The candidates for resolving `key` in a pipeline: its own row and the global one.
pub(crate) async fn resolution_candidates(
    tx: &mut TenantTx,
    tenant: &TenantId,
    pipeline_scope: &str,
    key: &str,
) -> Result<Vec<MetaRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        meta_columns!(),
        " FROM secrets WHERE tenant_id = $1 AND key = $3 AND scope IN ($2, 'global')"
    ))
    .bind(tenant.as_str())
    .bind(pipeline_scope)
    .bind(key)
    .fetch_all(&mut **tx)
    .await
}

/// A sealed value row of the Postgres store.
#[derive(Debug, FromRow)]
pub(crate) struct ValueRow {
    pub path: String,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

// The Postgres store runs on the service's own role (no row-level security): it is storage for
// the engine and the API alike, every statement filters by tenant, and `gofer_tenant` may not read
// `secret_values` at all.

pub(crate) async fn put_value(
    pool: &PgPool,
    tenant: &TenantId,
    path: &str,
    key_id: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO secret_values (tenant_id, path, key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, path) DO UPDATE
            SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(path)
    .bind(key_id)
    .bind(nonce)
    .bind(ciphertext)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn get_value(pool: &PgPool, tenant: &TenantId, path: &str) -> Result<Option<ValueRow>, sqlx::Error> {
    sqlx::query_as("SELECT path, key_id, nonce, ciphertext FROM secret_values WHERE tenant_id = $1 AND path = $2")
        .bind(tenant.as_str())
        .bind(path)
        .fetch_optional(pool)
        .await
}

pub(crate) async fn delete_value(pool: &PgPool, tenant: &TenantId, path: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM secret_values WHERE tenant_id = $1 AND path = $2")
        .bind(tenant.as_str())
        .bind(path)
        .execute(pool)
        .await?;
    Ok(())
}

/// Paths directly under `prefix` (which ends in `/`), sorted.
pub(crate) async fn list_values(pool: &PgPool, tenant: &TenantId, prefix: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT path FROM secret_values
          WHERE tenant_id = $1 AND starts_with(path, $2) AND strpos(substr(path, length($2) + 1), '/') = 0
          ORDER BY path COLLATE \"C\"",
    )
    .bind(tenant.as_str())
    .bind(prefix)
    .fetch_all(pool)
    .await
}

/// Deletes every value whose path starts with `prefix` (empty: the whole tenant).
pub(crate) async fn purge_values(pool: &PgPool, tenant: &TenantId, prefix: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM secret_values WHERE tenant_id = $1 AND starts_with(path, $2)")
        .bind(tenant.as_str())
        .bind(prefix)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Up to `limit` values sealed by another key than `primary` (for re-encryption), with their tenant.
pub(crate) async fn values_not_sealed_by(
    pool: &PgPool,
    primary: &str,
    limit: i64,
) -> Result<Vec<(String, ValueRow)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        tenant_id: String,
        #[sqlx(flatten)]
        value: ValueRow,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant_id, path, key_id, nonce, ciphertext FROM secret_values WHERE key_id <> $1
          ORDER BY tenant_id, path LIMIT $2",
    )
    .bind(primary)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.tenant_id, r.value)).collect())
}

/// Replaces a value's sealing, only if it is still sealed by `old_key_id` (a concurrent write wins).
pub(crate) async fn reseal_value(
    pool: &PgPool,
    tenant: &str,
    path: &str,
    old_key_id: &str,
    key_id: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE secret_values SET key_id = $4, nonce = $5, ciphertext = $6
          WHERE tenant_id = $1 AND path = $2 AND key_id = $3",
    )
    .bind(tenant)
    .bind(path)
    .bind(old_key_id)
    .bind(key_id)
    .bind(nonce)
    .bind(ciphertext)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

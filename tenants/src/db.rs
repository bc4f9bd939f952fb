//! SQL of the tenants crate.

use gofer_core::model::{Namespace, Tenant};
use gofer_core::{NamespaceId, TenantId};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::token::{Principal, Role, TokenSecret};

pub(crate) async fn insert_tenant(conn: &mut PgConnection, id: &TenantId, name: &str) -> Result<Tenant, sqlx::Error> {
    let created: OffsetDateTime =
        sqlx::query_scalar("INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at")
            .bind(id.as_str())
            .bind(name)
            .fetch_one(conn)
            .await?;
    Ok(Tenant { id: id.clone(), name: name.to_owned(), created })
}

pub(crate) async fn insert_token(
    conn: &mut PgConnection,
    secret: &TokenSecret,
    tenant: Option<&TenantId>,
    role: Role,
    description: &str,
) -> Result<uuid::Uuid, sqlx::Error> {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, kind, tenant_id, role, description) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(secret.hash())
    .bind(if tenant.is_some() { "tenant" } else { "operator" })
    .bind(tenant.map(TenantId::as_str))
    .bind(role.as_str())
    .bind(description)
    .execute(conn)
    .await?;
    Ok(id)
}

pub(crate) async fn find_live_token(pool: &PgPool, hash: &[u8]) -> Result<Option<Principal>, sqlx::Error> {
    let row: Option<(uuid::Uuid, Option<String>, String)> = sqlx::query_as(
        "SELECT id, tenant_id, role FROM api_tokens
         WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    let Some((token_id, tenant, role)) = row else { return Ok(None) };
    let role = Role::parse(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?;
    Ok(Some(match tenant {
        None => Principal::Operator { token_id },
        Some(tenant) => Principal::Tenant {
            token_id,
            tenant: TenantId::parse(tenant).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            role,
        },
    }))
}

/// Records `key` with the current time unless it exists; answers whether this call recorded it.
pub(crate) async fn insert_metadata_once(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO metadata (key, value) VALUES ($1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub(crate) async fn get_metadata(pool: &PgPool, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM metadata WHERE key = $1").bind(key).fetch_optional(pool).await
}

#[derive(sqlx::FromRow)]
struct NamespaceRow {
    id: String,
    name: String,
    description: String,
    created_at: OffsetDateTime,
    modified_at: OffsetDateTime,
}

impl TryFrom<NamespaceRow> for Namespace {
    type Error = sqlx::Error;
    fn try_from(row: NamespaceRow) -> Result<Self, sqlx::Error> {
        Ok(Namespace {
            id: NamespaceId::parse(row.id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            name: row.name,
            description: row.description,
            created: row.created_at,
            modified: row.modified_at,
        })
    }
}

pub(crate) async fn insert_namespace(
    pool: &PgPool,
    tenant: &TenantId,
    id: &NamespaceId,
    name: &str,
    description: &str,
) -> Result<Namespace, sqlx::Error> {
    let row: NamespaceRow = sqlx::query_as(
        "INSERT INTO namespaces (tenant_id, id, name, description) VALUES ($1, $2, $3, $4)
         RETURNING id, name, description, created_at, modified_at",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(name)
    .bind(description)
    .fetch_one(pool)
    .await?;
    row.try_into()
}

pub(crate) async fn list_namespaces(
    pool: &PgPool,
    tenant: &TenantId,
    after: Option<&NamespaceId>,
    limit: i64,
) -> Result<Vec<Namespace>, sqlx::Error> {
    let rows: Vec<NamespaceRow> = sqlx::query_as(
        "SELECT id, name, description, created_at, modified_at FROM namespaces
         WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after.map(NamespaceId::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub(crate) async fn get_namespace(
    pool: &PgPool,
    tenant: &TenantId,
    id: &NamespaceId,
) -> Result<Option<Namespace>, sqlx::Error> {
    let row: Option<NamespaceRow> = sqlx::query_as(
        "SELECT id, name, description, created_at, modified_at FROM namespaces WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(TryInto::try_into).transpose()
}

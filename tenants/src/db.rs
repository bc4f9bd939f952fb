//! SQL of the tenants crate.

use gofer_core::model::{Namespace, Tenant};
use gofer_core::{NamespaceId, TenantId};
use gofer_db::TenantTx;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::token::{NamespaceGlobs, NewToken, Principal, Role, TokenOwner, TokenSecret};
use gofer_core::model::TokenMetadata;

/// Begins a transaction scoped to one tenant: row-level security lets it reach only that tenant's
/// rows, whatever its queries forget.
pub(crate) use gofer_db::scoped;

/// A transaction for an owner's tokens: tenant-scoped for a tenant; operators' tokens belong to no
/// tenant, so theirs is not. The token functions take its connection, whichever it is.
pub(crate) enum OwnerTx {
    Tenant(TenantTx),
    Operator(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl OwnerTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            OwnerTx::Tenant(tx) => tx.commit().await,
            OwnerTx::Operator(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for OwnerTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            OwnerTx::Tenant(tx) => tx,
            OwnerTx::Operator(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for OwnerTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            OwnerTx::Tenant(tx) => tx,
            OwnerTx::Operator(tx) => tx,
        }
    }
}

/// Begins an [`OwnerTx`] for `owner`.
pub(crate) async fn begin_for(pool: &PgPool, owner: &TokenOwner) -> Result<OwnerTx, sqlx::Error> {
    Ok(match owner {
        TokenOwner::Tenant(tenant) => OwnerTx::Tenant(scoped(pool, tenant).await?),
        TokenOwner::Operator => OwnerTx::Operator(pool.begin().await?),
    })
}

/// A tenant to create.
#[derive(Debug, Clone)]
pub struct NewTenant<'a> {
    /// Its id.
    pub id: &'a TenantId,
    /// Display name.
    pub name: &'a str,
    /// Its plan; `None` is the default plan.
    pub plan: Option<&'a str>,
    /// For a trial: when it ends (its first token is a `trial` token expiring then).
    pub trial_expires: Option<time::OffsetDateTime>,
}

macro_rules! tenant_columns {
    () => {
        "id, name, created_at, suspended_at, plan_id, trial_expires_at"
    };
}

pub(crate) async fn insert_tenant(conn: &mut PgConnection, new: &NewTenant<'_>) -> Result<Tenant, sqlx::Error> {
    let row: TenantRow = sqlx::query_as(concat!(
        "INSERT INTO tenants (id, name, plan_id, trial_expires_at) VALUES ($1, $2, COALESCE($3, 'default'), $4)
         RETURNING ",
        tenant_columns!()
    ))
    .bind(new.id.as_str())
    .bind(new.name)
    .bind(new.plan)
    .bind(new.trial_expires)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    created_at: OffsetDateTime,
    suspended_at: Option<OffsetDateTime>,
    plan_id: String,
    trial_expires_at: Option<OffsetDateTime>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = sqlx::Error;
    fn try_from(r: TenantRow) -> Result<Self, sqlx::Error> {
        Ok(Tenant {
            id: TenantId::parse(r.id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            name: r.name,
            created: r.created_at,
            suspended: r.suspended_at,
            plan: r.plan_id,
            trial_expires: r.trial_expires_at,
        })
    }
}

/// Operator scope: lists every tenant, by id.
pub(crate) async fn list_tenants(
    pool: &PgPool,
    after: Option<&TenantId>,
    limit: i64,
) -> Result<Vec<Tenant>, sqlx::Error> {
    let rows: Vec<TenantRow> = sqlx::query_as(concat!(
        "SELECT ",
        tenant_columns!(),
        " FROM tenants WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after.map(TenantId::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub(crate) async fn get_tenant(pool: &PgPool, id: &TenantId) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<TenantRow> = sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(TryInto::try_into).transpose()
}

/// Suspends (or resumes) a tenant; suspending keeps the first suspension time.
pub(crate) async fn set_suspended(pool: &PgPool, id: &TenantId, suspended: bool) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET suspended_at = CASE WHEN $2 THEN COALESCE(suspended_at, now()) ELSE NULL END WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(suspended)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Whether a tenant is suspended; `None` when it does not exist.
pub(crate) async fn tenant_suspended(pool: &PgPool, id: &TenantId) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT suspended_at IS NOT NULL FROM tenants WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
}

/// Deletes a tenant and, through foreign keys, everything it owns.
pub(crate) async fn delete_tenant(pool: &PgPool, id: &TenantId) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id.as_str()).execute(pool).await?.rows_affected() == 1)
}

/// Changes a namespace's name and description; answers whether it exists.
pub(crate) async fn update_namespace(
    tx: &mut TenantTx,
    tenant: &TenantId,
    id: &NamespaceId,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE namespaces SET name = COALESCE($3, name), description = COALESCE($4, description),
             modified_at = CASE WHEN COALESCE($3, name) IS DISTINCT FROM name
                                  OR COALESCE($4, description) IS DISTINCT FROM description
                                THEN now() ELSE modified_at END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(name)
    .bind(description)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Deletes a namespace and, through foreign keys, its pipelines, runs and task executions.
/// Locks a namespace row and its pipelines' rows until `tx` ends: creating a pipeline in it (its
/// foreign key) and starting a run of one (which updates the pipeline's row) wait. Whether the
/// namespace exists.
pub(crate) async fn lock_namespace(
    tx: &mut TenantTx,
    tenant: &TenantId,
    id: &NamespaceId,
) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM namespaces WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    sqlx::query("SELECT 1 FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(found.is_some())
}

pub(crate) async fn delete_namespace(
    tx: &mut TenantTx,
    tenant: &TenantId,
    id: &NamespaceId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM namespaces WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(done == 1)
}

/// Inserts a token; a trial token (`expires` set, tenant set) has kind `trial`.
pub(crate) async fn insert_token(
    conn: &mut PgConnection,
    secret: &TokenSecret,
    tenant: Option<&TenantId>,
    role: Role,
    description: &str,
    trial_expires: Option<OffsetDateTime>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let id = uuid::Uuid::new_v4();
    let kind = match (tenant, trial_expires) {
        (None, _) => "operator",
        (Some(_), None) => "tenant",
        (Some(_), Some(_)) => "trial",
    };
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, kind, tenant_id, role, description, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(secret.hash())
    .bind(kind)
    .bind(tenant.map(TenantId::as_str))
    .bind(role.as_str())
    .bind(description)
    .bind(trial_expires)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Makes a trial tenant a regular one on `plan`: no trial end, its trial tokens become tenant
/// tokens valid for `token_days` more days. Answers false when the tenant does not exist.
pub(crate) async fn convert_trial(
    conn: &mut PgConnection,
    id: &TenantId,
    plan: &str,
    token_days: u32,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE tenants SET plan_id = $2, trial_expires_at = NULL, suspended_at = NULL WHERE id = $1")
            .bind(id.as_str())
            .bind(plan)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    sqlx::query(
        "UPDATE api_tokens SET kind = 'tenant', expires_at = GREATEST(expires_at, now() + make_interval(days => $2))
         WHERE tenant_id = $1 AND kind = 'trial'",
    )
    .bind(id.as_str())
    .bind(i32::try_from(token_days).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(done == 1)
}

/// A live token's principal with what the extractor still checks: client networks, suspension.
pub(crate) struct LiveToken {
    pub principal: Principal,
    pub allowed_cidrs: Vec<String>,
    pub tenant_suspended: bool,
    /// The tenant's plan's request rate (tenant tokens).
    pub requests_per_minute: Option<i32>,
    /// A trial tenant's token (`kind = 'trial'`).
    pub trial: bool,
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct LiveTokenRow {
    id: uuid::Uuid,
    tenant_id: Option<String>,
    role: String,
    namespaces: Vec<String>,
    allowed_cidrs: Vec<String>,
    suspended: bool,
    requests_per_minute: Option<i32>,
    trial: bool,
    expires_at: Option<OffsetDateTime>,
}

pub(crate) async fn find_live_token(pool: &PgPool, hash: &[u8]) -> Result<Option<LiveToken>, sqlx::Error> {
    let row: Option<LiveTokenRow> = sqlx::query_as(
        "SELECT t.id, t.tenant_id, t.role, t.namespaces, t.allowed_cidrs, (n.suspended_at IS NOT NULL) AS suspended,
                p.requests_per_minute, t.kind = 'trial' AS trial, t.expires_at
         FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id LEFT JOIN plans p ON p.id = n.plan_id
         WHERE t.hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let role = Role::parse(&row.role).ok_or_else(|| decode(format!("unknown role {:?}", row.role)))?;
    let principal = match row.tenant_id {
        None => Principal::Operator { token_id: row.id },
        Some(tenant) => Principal::Tenant {
            token_id: row.id,
            tenant: TenantId::parse(tenant).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            role,
            namespaces: NamespaceGlobs::parse(row.namespaces).map_err(decode)?,
        },
    };
    Ok(Some(LiveToken {
        principal,
        allowed_cidrs: row.allowed_cidrs,
        tenant_suspended: row.suspended,
        requests_per_minute: row.requests_per_minute,
        trial: row.trial,
        expires_at: row.expires_at,
    }))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: uuid::Uuid,
    kind: String,
    tenant_id: Option<String>,
    role: String,
    namespaces: Vec<String>,
    allowed_cidrs: Vec<String>,
    description: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl TryFrom<TokenRow> for TokenMetadata {
    type Error = sqlx::Error;
    fn try_from(r: TokenRow) -> Result<Self, sqlx::Error> {
        Ok(TokenMetadata {
            id: r.id.to_string(),
            kind: r.kind,
            tenant_id: r.tenant_id.map(TenantId::parse).transpose().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            role: r.role,
            namespaces: r.namespaces,
            allowed_cidrs: r.allowed_cidrs,
            description: r.description,
            created: r.created_at,
            expires: r.expires_at,
            revoked: r.revoked_at,
        })
    }
}

macro_rules! token_columns {
    () => {
        "id, kind, tenant_id, role, namespaces, allowed_cidrs, description, created_at, expires_at, revoked_at"
    };
}

pub(crate) async fn insert_scoped_token(
    conn: &mut PgConnection,
    secret: &TokenSecret,
    tenant: Option<&TenantId>,
    new: &NewToken,
    expires: OffsetDateTime,
) -> Result<TokenMetadata, sqlx::Error> {
    let row: TokenRow = sqlx::query_as(concat!(
        "INSERT INTO api_tokens (id, hash, kind, tenant_id, role, description, namespaces, allowed_cidrs, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        token_columns!()
    ))
    .bind(uuid::Uuid::new_v4())
    .bind(secret.hash())
    .bind(if tenant.is_some() { "tenant" } else { "operator" })
    .bind(tenant.map(TenantId::as_str))
    .bind(new.role.as_str())
    .bind(&new.description)
    .bind(new.namespaces.as_slice())
    .bind(new.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>())
    .bind(expires)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

fn owner_tenant(owner: &TokenOwner) -> Option<&str> {
    match owner {
        TokenOwner::Operator => None,
        TokenOwner::Tenant(t) => Some(t.as_str()),
    }
}

pub(crate) async fn list_tokens(
    conn: &mut PgConnection,
    owner: &TokenOwner,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TokenMetadata>, sqlx::Error> {
    let after = after.map(uuid::Uuid::parse_str).transpose().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let rows: Vec<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        token_columns!(),
        " FROM api_tokens WHERE tenant_id IS NOT DISTINCT FROM $1 AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id LIMIT $3"
    ))
    .bind(owner_tenant(owner))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub(crate) async fn get_token(
    conn: &mut PgConnection,
    owner: &TokenOwner,
    id: uuid::Uuid,
) -> Result<Option<TokenMetadata>, sqlx::Error> {
    let row: Option<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        token_columns!(),
        " FROM api_tokens WHERE tenant_id IS NOT DISTINCT FROM $1 AND id = $2"
    ))
    .bind(owner_tenant(owner))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(TryInto::try_into).transpose()
}

pub(crate) async fn revoke_token(
    conn: &mut PgConnection,
    owner: &TokenOwner,
    id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE tenant_id IS NOT DISTINCT FROM $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(owner_tenant(owner))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Cross-tenant on purpose: the purge job serves every tenant.
pub(crate) async fn purge_tokens(
    pool: &PgPool,
    before: OffsetDateTime,
) -> Result<Vec<(Option<String>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH gone AS (DELETE FROM api_tokens WHERE expires_at < $1 OR revoked_at < $1 RETURNING tenant_id)
         SELECT tenant_id, count(*) FROM gone GROUP BY tenant_id",
    )
    .bind(before)
    .fetch_all(pool)
    .await
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
    tx: &mut TenantTx,
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
    .fetch_one(&mut **tx)
    .await?;
    row.try_into()
}

pub(crate) async fn list_namespaces(
    tx: &mut TenantTx,
    tenant: &TenantId,
    like_patterns: &[String],
    after: Option<&NamespaceId>,
    limit: i64,
) -> Result<Vec<Namespace>, sqlx::Error> {
    let rows: Vec<NamespaceRow> = sqlx::query_as(
        "SELECT id, name, description, created_at, modified_at FROM namespaces
         WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2)
           AND (cardinality($4::text[]) = 0 OR id LIKE ANY ($4))
         ORDER BY id LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after.map(NamespaceId::as_str))
    .bind(limit)
    .bind(like_patterns)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub(crate) async fn get_namespace(
    tx: &mut TenantTx,
    tenant: &TenantId,
    id: &NamespaceId,
) -> Result<Option<Namespace>, sqlx::Error> {
    let row: Option<NamespaceRow> = sqlx::query_as(
        "SELECT id, name, description, created_at, modified_at FROM namespaces WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(TryInto::try_into).transpose()
}

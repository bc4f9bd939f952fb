//! The embedded secret store: values AES-256-GCM encrypted in the `secret_values` table, each
//! with the id of the key that sealed it and bound to its tenant and path.

use gofer_core::TenantId;
use gofer_core::scheduler::BoxFuture;
use gofer_core::secrets::{SecretKey, SecretPrefix, SecretScope, SecretStore, SecretStoreError, SecretValue};
use sqlx::PgPool;

use crate::db;
use crate::keyring::{Keyring, Sealed};

/// Secrets sealed in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    keys: Keyring,
}

fn unavailable(e: sqlx::Error) -> SecretStoreError {
    SecretStoreError::Unavailable(format!("database: {e}"))
}

/// The associated data a value is sealed with: its tenant and path.
fn context(tenant: &str, path: &str) -> String {
    format!("{tenant}/{path}")
}

fn path(scope: &SecretScope, key: &SecretKey) -> String {
    format!("{}/{key}", scope.path())
}

impl PostgresStore {
    /// A store over `pool` sealing with `keys`.
    pub fn new(pool: PgPool, keys: Keyring) -> Self {
        Self { pool, keys }
    }

    /// Re-seals every value sealed by a key other than the primary one (after a rotation); answers
    /// how many were re-sealed. Safe to run on several replicas at once.
    pub async fn reencrypt(&self) -> Result<u64, SecretStoreError> {
        let mut done = 0;
        loop {
            let batch = db::values_not_sealed_by(&self.pool, self.keys.primary(), 100).await.map_err(unavailable)?;
            if batch.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for (tenant, row) in batch {
                let ctx = context(&tenant, &row.path);
                let sealed = Sealed { key_id: row.key_id.clone(), nonce: row.nonce, ciphertext: row.ciphertext };
                let Some(plain) = self.keys.open(&sealed, &ctx) else {
                    return Err(SecretStoreError::Corrupt(format!(
                        "a value of tenant {tenant} sealed by key {:?} does not open (is the key configured?)",
                        row.key_id
                    )));
                };
                let new = self.keys.seal(&plain, &ctx);
                if db::reseal_value(
                    &self.pool,
                    &tenant,
                    &row.path,
                    &row.key_id,
                    &new.key_id,
                    &new.nonce,
                    &new.ciphertext,
                )
                .await
                .map_err(unavailable)?
                {
                    done += 1;
                }
                progressed = true;
            }
            if !progressed {
                return Ok(done);
            }
        }
    }
}

impl SecretStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
        value: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move {
            let path = path(scope, key);
            let sealed = self.keys.seal(value.expose().as_bytes(), &context(tenant.as_str(), &path));
            db::put_value(&self.pool, tenant, &path, &sealed.key_id, &sealed.nonce, &sealed.ciphertext)
                .await
                .map_err(unavailable)
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<Option<SecretValue>, SecretStoreError>> {
        Box::pin(async move {
            let path = path(scope, key);
            let Some(row) = db::get_value(&self.pool, tenant, &path).await.map_err(unavailable)? else {
                return Ok(None);
            };
            let sealed = Sealed { key_id: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext };
            let plain = self.keys.open(&sealed, &context(tenant.as_str(), &path)).ok_or_else(|| {
                SecretStoreError::Corrupt(format!("secret {key} does not open with key {:?}", sealed.key_id))
            })?;
            let text = String::from_utf8(plain).map_err(|_| SecretStoreError::Corrupt("not UTF-8".into()))?;
            Ok(Some(SecretValue::new(text)))
        })
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move { db::delete_value(&self.pool, tenant, &path(scope, key)).await.map_err(unavailable) })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
    ) -> BoxFuture<'a, Result<Vec<SecretKey>, SecretStoreError>> {
        Box::pin(async move {
            let prefix = format!("{}/", scope.path());
            let paths = db::list_values(&self.pool, tenant, &prefix).await.map_err(unavailable)?;
            paths
                .into_iter()
                .map(|p| {
                    SecretKey::parse(p[prefix.len()..].to_owned()).map_err(|e| SecretStoreError::Corrupt(e.to_string()))
                })
                .collect()
        })
    }

    fn purge<'a>(
        &'a self,
        tenant: &'a TenantId,
        prefix: &'a SecretPrefix,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move {
            let n = db::purge_values(&self.pool, tenant, &prefix.path()).await.map_err(unavailable)?;
            tracing::info!(tenant = %tenant, removed = n, "secret values purged");
            Ok(())
        })
    }
}

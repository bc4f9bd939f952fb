//! The database: the pool, the migrations, and the first operator token.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::Config;

/// Connects this replica's pool and applies the migrations this build knows.
pub(super) async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        // sqlx pings every connection on release anyway; pinging again on acquire is a round
        // trip per query for nothing, except after a connection sat idle, when Postgres may
        // have restarted or a proxy dropped it.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(1) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .acquire_timeout(Duration::from_secs(10))
        .connect(config.database_url.expose_secret())
        .await
        .with_context(|| "connecting to Postgres (is it running? `infra/postgres.sh start` starts the private one)")?;
    gofer_db::MIGRATOR.run(&pool).await.context("applying database migrations")?;
    Ok(pool)
}

/// Issues the bootstrap operator token on the first start of an empty database, into
/// `<state_dir>/bootstrap-token`; `None` on every later start.
pub(super) async fn issue_bootstrap_token(pool: &PgPool, config: &Config) -> anyhow::Result<Option<String>> {
    let token = gofer_tenants::bootstrap(pool, config.bootstrap_token.as_ref().map(|t| t.expose_secret()))
        .await
        .context("issuing the bootstrap token")?
        .map(|secret| secret.expose().to_owned());
    if let Some(token) = &token {
        let file = config.state_dir.join("bootstrap-token");
        super::stores::write_secret_file(&file, token)?;
        tracing::info!(file = %file.display(), "issued the bootstrap operator token");
    }
    Ok(token)
}

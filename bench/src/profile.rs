//! Which SQL a measurement ran, from pg_stat_statements (when the cluster preloads it): calls and
//! time per statement in the benchmark's database, and statements per task execution.

use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// One normalised statement.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Statement {
    /// Times it ran.
    pub calls: i64,
    /// Total execution time inside Postgres, in milliseconds.
    pub total_ms: f64,
    /// Total planning time, in milliseconds (0 unless `pg_stat_statements.track_planning` is on).
    pub plan_ms: f64,
    /// Rows it answered or changed.
    pub rows: i64,
    /// The normalised text, squeezed onto one line and shortened.
    pub query: String,
}

/// What a measurement asked of Postgres.
#[derive(Debug, Clone, Serialize)]
pub struct SqlProfile {
    /// Statements executed (including BEGIN and COMMIT), all kinds together.
    pub statements: i64,
    /// Execution time inside Postgres summed over statements, in milliseconds.
    pub total_ms: f64,
    /// Planning time summed over statements, in milliseconds (see [`Statement::plan_ms`]).
    pub plan_ms: f64,
    /// The statements taking the most time, most first.
    pub top: Vec<Statement>,
}

/// Profiles one measurement of one database.
pub struct Profiler {
    pool: PgPool,
}

impl Profiler {
    /// Starts profiling the database at `database_url` when `enabled` and possible (a note on
    /// stderr says why not otherwise).
    pub async fn start(database_url: &str, enabled: bool) -> anyhow::Result<Option<Self>> {
        if !enabled {
            return Ok(None);
        }
        let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await?;
        Ok(reset(&pool).await.then_some(Self { pool }))
    }

    /// What ran since [`Profiler::start`].
    pub async fn finish(self) -> anyhow::Result<SqlProfile> {
        let profile = read(&self.pool, 15).await;
        self.pool.close().await;
        profile
    }
}

/// Resets the counters of the database behind `pool` (needs pg_stat_statements preloaded);
/// answers whether profiling is possible.
async fn reset(pool: &PgPool) -> bool {
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(pool).await {
        eprintln!("note: no SQL profile: {e}");
        return false;
    }
    let reset = sqlx::query(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .execute(pool)
    .await;
    match reset {
        Ok(_) => true,
        Err(e) => {
            eprintln!("note: no SQL profile (is pg_stat_statements in shared_preload_libraries?): {e}");
            false
        }
    }
}

/// The statements of this database, leaving out the profiler's own.
macro_rules! this_database {
    () => {
        " FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND query NOT LIKE '%pg_stat_statements%' "
    };
}

/// Reads the counters of the database behind `pool` since [`reset`].
async fn read(pool: &PgPool, top: i64) -> anyhow::Result<SqlProfile> {
    let (statements, total_ms, plan_ms): (Option<i64>, Option<f64>, Option<f64>) = sqlx::query_as(concat!(
        "SELECT sum(calls)::bigint, sum(total_exec_time), sum(total_plan_time)",
        this_database!()
    ))
    .fetch_one(pool)
    .await?;
    let mut statements_top: Vec<Statement> = sqlx::query_as(concat!(
        "SELECT calls, total_exec_time AS total_ms, total_plan_time AS plan_ms, rows, query",
        this_database!(),
        "ORDER BY total_exec_time DESC LIMIT $1"
    ))
    .bind(top)
    .fetch_all(pool)
    .await?;
    for statement in &mut statements_top {
        let squeezed = statement.query.split_whitespace().collect::<Vec<_>>().join(" ");
        statement.query = squeezed.chars().take(110).collect();
    }
    Ok(SqlProfile {
        statements: statements.unwrap_or(0),
        total_ms: total_ms.unwrap_or(0.0),
        plan_ms: plan_ms.unwrap_or(0.0),
        top: statements_top,
    })
}

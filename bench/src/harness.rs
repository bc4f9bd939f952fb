//! The pieces every scenario needs: a fresh database per run, the real server started in-process
//! on port 0 (as `tests/` does), a tenant's HTTP client, and a wait for runs to complete.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gofer_core::scheduler::Scheduler;
use serde_json::{Value, json};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};

/// A database created for one measurement and dropped after it.
pub struct Database {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl Database {
    /// Creates an empty database in the cluster of `admin_url` (the server migrates it).
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("gofer_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin_url).await.with_context(|| format!("connecting to {admin_url}"))?;
        // The name is generated above, never taken from input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        let (base, _) = admin_url.rsplit_once('/').context("the database URL has no path")?;
        Ok(Self { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name })
    }

    /// Drops the database, closing whatever connections are left.
    pub async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// Refreshes the planner statistics of the database at `url`, as autovacuum does in a database
/// that has been running a while; skipped with `--no-analyze`.
pub async fn analyze(options: &crate::Options, url: &str) -> anyhow::Result<()> {
    if !options.no_analyze {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }
    Ok(())
}

/// The operator token every replica of a measurement is configured with.
pub fn operator_token() -> String {
    format!("gofer_bench_operator_{}", uuid::Uuid::new_v4().simple())
}

/// A replica's configuration: the service defaults, on port 0, quiet logs, with the given
/// `monitor_interval_ms` (`None`: the default) and `max_parallel_tasks` (`None`: the default).
pub fn replica_config(
    database_url: &str,
    state_dir: &Path,
    operator_token: &str,
    monitor_interval_ms: Option<u64>,
    max_parallel_tasks: Option<usize>,
) -> gofer_api::Config {
    let mut config = gofer_api::Config {
        listen: "127.0.0.1:0".into(),
        database_url: database_url.to_owned().into(),
        state_dir: state_dir.to_path_buf(),
        bootstrap_token: Some(operator_token.to_owned().into()),
        ..gofer_api::Config::default()
    };
    // The benchmark drives one tenant far past any plan's request rate: it measures the engine.
    config.rate_limits.enabled = false;
    if let Some(ms) = monitor_interval_ms {
        config.engine.monitor_interval_ms = ms;
    }
    if let Some(n) = max_parallel_tasks {
        config.engine.max_parallel_tasks = Some(n);
    }
    config
}

/// One replica: the real `Application` serving on its own port.
pub struct Replica {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    server: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    _state_dir: tempfile::TempDir,
}

impl Replica {
    /// Builds and starts a replica with its own state dir, configured by `configure` (given the
    /// state dir); `scheduler` replaces the configured one (the local sandbox) when given.
    pub async fn start(
        scheduler: Option<Arc<dyn Scheduler>>,
        configure: impl FnOnce(&Path) -> gofer_api::Config,
    ) -> anyhow::Result<Self> {
        let state_dir = tempfile::tempdir().context("creating a state dir")?;
        let config = configure(state_dir.path());
        let app =
            gofer_api::Application::build_with_scheduler(config, scheduler).await.context("building the server")?;
        let address = format!("http://127.0.0.1:{}", app.port());
        let server = app.server_handle();
        let running = tokio::spawn(app.run_until_stopped());
        Ok(Self { address, server, running, _state_dir: state_dir })
    }

    /// Stops the HTTP server and then the engine, and waits for both.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop(true).await;
        self.running.await.context("the server task panicked")?.context("the server failed")?;
        Ok(())
    }
}

/// The plan of the benchmark's tenants.
const BENCH_PLAN: &str = "bench";

/// A tenant's admin, talking to a replica over HTTP.
pub struct TenantClient {
    http: reqwest::Client,
    address: String,
    token: String,
    /// The tenant's id.
    pub tenant: String,
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).bearer_auth(token).json(body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("POST {url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {url} answered something other than JSON: {text}"))
}

impl TenantClient {
    /// The tenant admin's token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Creates tenant `tenant` through the operator API of the replica at `address`.
    pub async fn create(address: &str, operator_token: &str, tenant: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        // A plan of its own: the default plan's 16 running tasks per tenant would cap the queue
        // throughput of one tenant, whatever the number of replicas (the benchmark measures the
        // engine, not a plan).
        let plan = json!({"id": BENCH_PLAN, "name": "Benchmark", "max_concurrent_tasks": 100_000,
            "max_task_timeout_s": 86_400, "max_run_duration_s": 86_400, "max_cpu_millis": 64_000,
            "max_memory_mb": 262_144, "task_seconds_per_month": 1_000_000_000_u64,
            "object_storage_bytes": 1_u64 << 40, "requests_per_minute": 1_000_000});
        let plans = format!("{address}/api/v1/plans");
        let exists = http.get(format!("{plans}/{BENCH_PLAN}")).bearer_auth(operator_token).send().await?;
        if !exists.status().is_success() {
            post(&http, &plans, operator_token, &plan).await?;
        }
        let body = json!({"id": tenant, "name": tenant, "plan": BENCH_PLAN});
        let answer = post(&http, &format!("{address}/api/v1/tenants"), operator_token, &body).await?;
        let token = answer["token"].as_str().context("the tenant answer carries no token")?.to_owned();
        Ok(Self { http, address: address.to_owned(), token, tenant: tenant.to_owned() })
    }

    /// Creates a namespace.
    pub async fn namespace(&self, id: &str) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/namespaces", self.address);
        post(&self.http, &url, &self.token, &json!({"id": id, "name": id})).await.map(drop)
    }

    /// Registers a pipeline with `tasks` independent tasks running `command`.
    pub async fn pipeline(
        &self,
        namespace: &str,
        pipeline: &str,
        tasks: usize,
        command: &[&str],
    ) -> anyhow::Result<()> {
        let tasks: Vec<Value> =
            (1..=tasks).map(|i| json!({"id": format!("task{i}"), "image": "debian:12", "command": command})).collect();
        let url = format!("{}/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs", self.address);
        post(&self.http, &url, &self.token, &json!({"name": pipeline, "tasks": tasks})).await.map(drop)
    }

    /// Starts a run and answers its number.
    pub async fn start_run(&self, namespace: &str, pipeline: &str) -> anyhow::Result<i64> {
        let url = format!("{}/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs", self.address);
        let answer = post(&self.http, &url, &self.token, &json!({"variables": {}})).await?;
        answer["run"]["id"].as_i64().context("the run answer carries no id")
    }
}

/// Waits for runs to complete, woken by the event notifications every transition sends (so it
/// does not poll the database while the engine works), with a slow poll as a safety net.
pub struct RunWatcher {
    pool: PgPool,
    listener: PgListener,
}

impl RunWatcher {
    /// Connects to the benchmark's database.
    pub async fn connect(database_url: &str) -> anyhow::Result<Self> {
        let pool = PgPool::connect(database_url).await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(gofer_db::channels::EVENTS).await?;
        Ok(Self { pool, listener })
    }

    /// A pool on the benchmark's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Waits until runs `first..=last` of the pipeline are all complete; answers when it saw so.
    pub async fn wait_complete(
        &mut self,
        pipeline: &str,
        first: i64,
        last: i64,
        deadline: Instant,
    ) -> anyhow::Result<Instant> {
        loop {
            let complete: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE pipeline_id = $1 AND id BETWEEN $2 AND $3 AND state = 'complete'",
            )
            .bind(pipeline)
            .bind(first)
            .bind(last)
            .fetch_one(&self.pool)
            .await?;
            if complete == last - first + 1 {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!("runs {first}..={last} of {pipeline}: only {complete} complete before the deadline");
            }
            // Any event may be the one completing the run; a missed one is caught by the timeout.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.listener.recv()).await;
        }
    }

    /// How many runs of the pipeline completed successfully, and how many runs it has.
    pub async fn successful_runs(&self, pipeline: &str) -> anyhow::Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'complete' AND status = 'successful'), count(*)
             FROM runs WHERE pipeline_id = $1",
        )
        .bind(pipeline)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Closes its connections.
    pub async fn close(self) {
        drop(self.listener);
        self.pool.close().await;
    }
}

//! Test harness: spawns the real server on port 0 against a fresh Postgres database per test
//! (zero2prod's spawn_app), with typed helpers so tests read as specifications.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod fake_scheduler;
pub mod nomad_double;
pub mod tcp_proxy;

use gofer_api::secrecy::ExposeSecret;
use gofer_core::model::{Event, Run};
use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, RunState, TenantId};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

/// The cluster the tests run against; `infra/test.sh` starts one and sets this.
pub const DATABASE_ENV: &str = "GOFER_TEST_DATABASE_URL";

/// A running server with its own database and state directory.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The bootstrap operator token.
    pub operator_token: String,
    /// A direct connection pool to this test's database, for assertions on stored state.
    pub db: PgPool,
    /// Plain HTTP client.
    pub http: reqwest::Client,
    /// The state dir (logs, sandbox work dirs), removed when the test ends.
    pub state_dir: tempfile::TempDir,
    server: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The server's events listener, to count its open streams.
    pub hub: gofer_api::EventHub,
}

/// An HTTP answer: status and body parsed as JSON (or the raw text under `"text"`).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content-Type header.
    pub content_type: String,
    /// Parsed body.
    pub body: Value,
}

impl Answer {
    /// The problem `code`, for error answers.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// Polls `check` every 50 ms until it holds, failing the test after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a fresh database in the test cluster, already migrated, and answers its URL: a copy
/// of [`template_database`], which costs a file copy instead of running every migration again
/// (the server still runs its migrator at start, and finds nothing to do).
pub async fn fresh_database() -> String {
    let admin = std::env::var(DATABASE_ENV)
        .unwrap_or_else(|_| panic!("{DATABASE_ENV} is not set: run the tests through infra/test.sh"));
    let template = template_database(&admin).await;
    let name = format!("gofer_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    database_url(&admin, &name)
}

fn database_url(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// The name of the migrated template, made once per run of the tests: its name carries the
/// migrations' versions and checksums, so a changed migration makes a new one, and an advisory
/// lock makes test processes running side by side build it once between them.
static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// An arbitrary key for the lock that serialises building the template.
const TEMPLATE_LOCK: i64 = 0x6f66_6572_7465_6d70;

async fn template_database(admin: &str) -> String {
    TEMPLATE
        .get_or_init(|| async {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            for migration in gofer_db::MIGRATOR.iter() {
                (migration.version, &migration.checksum[..]).hash(&mut hasher);
            }
            let name = format!("gofer_template_{:016x}", hasher.finish());
            let mut conn = PgConnection::connect(admin).await.expect("connect to the test cluster");
            sqlx::query("SELECT pg_advisory_lock($1)").bind(TEMPLATE_LOCK).execute(&mut conn).await.expect("lock");
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .expect("look for the template");
            if !exists {
                // Built under another name and renamed when complete: a run that dies halfway
                // leaves no half-migrated template behind.
                let building = format!("gofer_building_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the template");
                let mut target =
                    PgConnection::connect(&database_url(admin, &building)).await.expect("connect to the template");
                gofer_db::MIGRATOR.run(&mut target).await.expect("migrate the template");
                target.close().await.expect("disconnect from the template");
                sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("name the template");
            }
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(TEMPLATE_LOCK).execute(&mut conn).await.expect("unlock");
            name
        })
        .await
        .clone()
}

/// A config that the test can adjust before the server starts.
pub fn test_config(database_url: String, state_dir: &std::path::Path) -> gofer_api::Config {
    let mut config = gofer_api::Config {
        listen: "127.0.0.1:0".into(),
        database_url: database_url.into(),
        database_max_connections: 8,
        state_dir: state_dir.to_path_buf(),
        bootstrap_token: Some(format!("gofer_test_operator_{}", uuid::Uuid::new_v4().simple()).into()),
        ..gofer_api::Config::default()
    };
    // Tests poll hard from one address: only the rate-limit tests set real limits.
    config.rate_limits.per_token_per_minute = 1_000_000;
    config.rate_limits.anonymous_per_minute = 1_000_000;
    config.rate_limits.start_runs_per_minute = 1_000_000;
    // A trial's proof of work costs a few hundred hashes in tests (debug builds hash slowly).
    config.trial.proof_of_work_bits = 8;
    // Many tests change tokens, tenants and plans straight in the database and expect the very
    // next request to see it; the cache would see it only when the NOTIFY arrives (about a
    // millisecond later). tests/tests/it/token_cache.rs turns the cache on and tests exactly that.
    config.auth.token_cache_ttl_s = 0;
    // Likewise the complete-run cache: tests/tests/it/token_cache.rs tests it.
    config.run_cache_ttl_s = 0;
    // Fast loops keep tests quick; NOTIFY does most of the waking anyway.
    config.engine.poll_interval_ms = 200;
    config.engine.monitor_interval_ms = 50;
    config
}

/// The S3 server the tests run against; `infra/test.sh` starts s3s-fs and sets this.
pub const S3_ENV: &str = "GOFER_TEST_S3_ENDPOINT";

/// The test S3 server, in a bucket of its own (created at start-up).
pub fn test_s3() -> gofer_objects::S3Settings {
    let endpoint =
        std::env::var(S3_ENV).unwrap_or_else(|_| panic!("{S3_ENV} is not set: run the tests through infra/test.sh"));
    gofer_objects::S3Settings {
        endpoint: Some(endpoint),
        bucket: format!("gofer-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        access_key_id: Some(std::env::var("GOFER_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "AKIDTEST".into())),
        secret_access_key: Some(
            std::env::var("GOFER_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "SECRETTEST".into()).into(),
        ),
        path_style: true,
        ..gofer_objects::S3Settings::default()
    }
}

/// Points `config` at the test S3 server ([`test_s3`]).
pub fn use_test_s3(config: &mut gofer_api::Config) {
    config.object_store = gofer_objects::ObjectStoreSettings::S3(test_s3());
}

/// Starts the real server on port 0 with a fresh database and state dir.
pub async fn spawn_app() -> TestApp {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(fresh_database().await, state_dir.path());
    spawn_with(config, state_dir).await
}

/// Starts the real server with a given config.
pub async fn spawn_with(config: gofer_api::Config, state_dir: tempfile::TempDir) -> TestApp {
    spawn_replica(config, state_dir, None).await
}

/// Starts the real server with a given config and, optionally, a given scheduler.
pub async fn spawn_replica(
    config: gofer_api::Config,
    state_dir: tempfile::TempDir,
    scheduler: Option<Arc<dyn gofer_core::scheduler::Scheduler>>,
) -> TestApp {
    gofer_api::telemetry::init(gofer_api::config::LogFormat::Pretty, "warn");
    let database_url = config.database_url.expose_secret().to_owned();
    let operator_token =
        config.bootstrap_token.as_ref().expect("tests preset the bootstrap token").expose_secret().to_owned();
    let app = gofer_api::Application::build_with_scheduler(config, scheduler).await.expect("server builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.server_handle();
    let hub = app.event_hub();
    let running = tokio::spawn(app.run_until_stopped());
    let db = PgPool::connect(&database_url).await.expect("connect to the test database");
    // Tests poll hard with tenant tokens too: plans' request rates only where a test sets them.
    sqlx::query("UPDATE plans SET requests_per_minute = 1000000 WHERE id IN ('default', 'trial')")
        .execute(&db)
        .await
        .expect("lift plan request rates");
    TestApp {
        address,
        operator_token,
        db,
        http: reqwest::Client::new(),
        state_dir,
        server,
        running: Some(running),
        hub,
    }
}

impl TestApp {
    /// Stops this replica abruptly as far as the queue can tell: the HTTP server stops and the
    /// engine drops every task it watches without recording anything, so their leases expire and
    /// another replica must take them over.
    pub async fn kill(&mut self) {
        self.server.stop(false).await;
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    /// Sends a request with an optional token and JSON body.
    pub async fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "text": text }));
        Answer { status, content_type, body }
    }

    /// Creates a tenant as the operator and answers a client holding its admin token.
    pub async fn tenant(&self, id: &str) -> TenantClient<'_> {
        let answer = self
            .request(
                "POST",
                "/api/v1/tenants",
                Some(&self.operator_token),
                Some(&serde_json::json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        let token = answer.body["token"].as_str().expect("token").to_owned();
        TenantClient { app: self, tenant: TenantId::parse(id).expect("valid id"), token }
    }

    /// A typed SDK client with `token`.
    pub fn sdk(&self, token: &str) -> gofer_sdk::Client {
        gofer_sdk::Client::new(&self.address, token)
    }
}

/// The API path of a pipeline: `/api/v1/namespaces/{namespace}/pipelines/{pipeline}`.
pub fn pipeline_path(namespace: &str, pipeline: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pipelines/{pipeline}")
}

/// A tenant's admin seen from the test.
pub struct TenantClient<'a> {
    /// The app.
    pub app: &'a TestApp,
    /// The tenant.
    pub tenant: TenantId,
    /// Its admin token.
    pub token: String,
}

impl TenantClient<'_> {
    /// Sends a request with this tenant's token.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.app.request(method, path, Some(&self.token), body).await
    }

    /// The SDK client of this tenant.
    pub fn sdk(&self) -> gofer_sdk::Client {
        self.app.sdk(&self.token)
    }

    /// Creates a namespace.
    pub async fn namespace(&self, id: &str) -> NamespaceId {
        let answer = self.request("POST", "/api/v1/namespaces", Some(&serde_json::json!({"id": id, "name": id}))).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        NamespaceId::parse(id).expect("valid id")
    }

    /// Registers a config and answers its version.
    pub async fn register(&self, namespace: &str, pipeline: &str, config: Value) -> i64 {
        let path = format!("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs");
        let answer = self.request("POST", &path, Some(&config)).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.body["version"].as_i64().expect("version")
    }

    /// Registers `pipeline` in `namespace` with a single task `task` running `command` in
    /// `debian:12`, the set-up most tests share; answers the version.
    pub async fn register_one_task(&self, namespace: &str, pipeline: &str, task: &str, command: &[&str]) -> i64 {
        self.register_one_task_in_image(namespace, pipeline, task, "debian:12", command).await
    }

    /// [`Self::register_one_task`] with the task's image.
    pub async fn register_one_task_in_image(
        &self,
        namespace: &str,
        pipeline: &str,
        task: &str,
        image: &str,
        command: &[&str],
    ) -> i64 {
        let config = serde_json::json!({"name": pipeline, "tasks": [{"id": task, "image": image, "command": command}]});
        self.register(namespace, pipeline, config).await
    }

    /// Starts a run and answers its id.
    pub async fn start_run(&self, namespace: &str, pipeline: &str) -> RunId {
        let path = format!("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs");
        let answer = self.request("POST", &path, Some(&serde_json::json!({"variables": {}}))).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        RunId::from_i64(answer.body["run"]["id"].as_i64().expect("run id"))
    }

    /// Registers a config with `?deploy=` and answers the raw answer (201 new, 200 deduplicated).
    pub async fn register_with(&self, namespace: &str, pipeline: &str, config: &Value, deploy: bool) -> Answer {
        let path = format!("{}/configs?deploy={deploy}", pipeline_path(namespace, pipeline));
        self.request("POST", &path, Some(config)).await
    }

    /// Starts a deployment with `body` and answers the raw answer.
    pub async fn deploy(&self, namespace: &str, pipeline: &str, body: Value) -> Answer {
        self.request("POST", &format!("{}/deployments", pipeline_path(namespace, pipeline)), Some(&body)).await
    }

    /// Reads a deployment, failing the test when it cannot.
    pub async fn deployment(&self, namespace: &str, pipeline: &str, id: i64) -> Value {
        let answer =
            self.request("GET", &format!("{}/deployments/{id}", pipeline_path(namespace, pipeline)), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["deployment"].clone()
    }

    /// Reads a pipeline, failing the test when it cannot.
    pub async fn pipeline(&self, namespace: &str, pipeline: &str) -> Value {
        let answer = self.request("GET", &pipeline_path(namespace, pipeline), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["pipeline"].clone()
    }

    /// Starts a run, waits until it is complete and answers it.
    pub async fn run_to_completion(&self, namespace: &str, pipeline: &str, timeout: Duration) -> Run {
        let run = self.start_run(namespace, pipeline).await;
        self.wait_for_run(namespace, pipeline, run, timeout).await
    }

    /// Polls the run until it is complete, failing the test after `timeout`.
    pub async fn wait_for_run(&self, namespace: &str, pipeline: &str, run: RunId, timeout: Duration) -> Run {
        let sdk = self.sdk();
        let (ns, p) = (NamespaceId::parse(namespace).expect("ns"), PipelineId::parse(pipeline).expect("p"));
        let deadline = Instant::now() + timeout;
        loop {
            let current = sdk.get_run(&ns, &p, run).await.expect("get run");
            if current.state == RunState::Complete {
                return current;
            }
            assert!(Instant::now() < deadline, "run {run} not complete after {timeout:?}: {current:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl TestApp {
    /// Asserts the queue holds nothing unfinished: no task execution is waiting, queued or running.
    pub async fn assert_queue_drained(&self) {
        let stuck: Vec<(String, i64, String, String)> =
            sqlx::query_as("SELECT pipeline_id, run_id, task_id, state FROM task_executions WHERE state <> 'complete'")
                .fetch_all(&self.db)
                .await
                .expect("query queue");
        assert!(stuck.is_empty(), "task executions left unfinished: {stuck:?}");
    }
}

impl TestApp {
    /// The event ids `tenant` sees, made with the server's key (stored in the database at start),
    /// to compare what the API shows with the rows of `events`.
    pub async fn event_ids(&self, tenant: &str) -> gofer_api::event_ids::TenantEventIds {
        let ids = gofer_api::event_ids::EventIds::load(&self.db).await.expect("the event id key");
        ids.tenant(&gofer_core::TenantId::parse(tenant).expect("a tenant id"))
    }

    /// Polls until the server has exactly `n` open event streams and log follows, failing the
    /// test after `timeout`.
    pub async fn wait_for_open_streams(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.hub.open_streams() != n {
            assert!(
                Instant::now() < deadline,
                "{} streams open after {timeout:?}, expected {n}",
                self.hub.open_streams()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TenantClient<'_> {
    /// Every event of the tenant visible now, through the SDK's history pages.
    pub async fn history(&self) -> Vec<Event> {
        let sdk = self.sdk();
        let mut events: Vec<Event> = Vec::new();
        loop {
            let after = events.last().map(|e| e.id.clone());
            let page = sdk.list_events(after.as_ref(), 500).await.expect("list events");
            let last_page = page.next_cursor.is_none();
            events.extend(page.items);
            if last_page {
                return events;
            }
        }
    }

    /// Polls the history until an event satisfies `done`, failing the test after `timeout`; answers
    /// the whole history then.
    pub async fn wait_for_event(&self, timeout: Duration, done: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.history().await;
            if events.iter().any(&done) {
                return events;
            }
            assert!(Instant::now() < deadline, "no such event after {timeout:?}: {events:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tenant's events of `kind`, once at least `count` of them are visible (failing the test
    /// after `timeout`). An event is recorded in the transaction of the change it describes, but
    /// the history shows only events below the visibility horizon: the oldest transaction still in
    /// flight anywhere (a lease renewal, a background job). So right after a request answers, its
    /// events may not be readable yet; a test that checks them waits for them.
    pub async fn events_of_kind(&self, kind: EventKind, count: usize, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events: Vec<Event> = self.history().await.into_iter().filter(|e| e.kind == kind).collect();
            if events.len() >= count {
                return events;
            }
            assert!(Instant::now() < deadline, "{} {kind:?} events after {timeout:?}, expected {count}", events.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `GET /api/v1/events?<query>` as a raw Server-Sent Events connection.
    pub async fn open_sse(&self, query: &str, last_event_id: Option<&str>) -> SseConnection {
        let mut request = self
            .app
            .http
            .get(format!("{}/api/v1/events?{query}", self.app.address))
            .bearer_auth(&self.token)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        SseConnection::from(request.send().await.expect("stream opened"))
    }
}

/// A raw Server-Sent Events connection, read frame by frame.
pub struct SseConnection {
    /// The answer; its body is read by [`SseConnection::next_frame`].
    pub response: reqwest::Response,
    buffer: Vec<u8>,
}

/// One frame of an SSE stream: its lines, without the blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame(pub String);

impl SseFrame {
    /// The value of the first `field:` line.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.0.lines().find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(": ")))
    }

    /// Whether the frame is only a comment.
    pub fn is_comment(&self) -> bool {
        self.0.lines().all(|l| l.starts_with(':'))
    }

    /// The event in the `data:` line, when the frame carries one.
    pub fn event(&self) -> Option<Event> {
        self.field("data").map(|data| serde_json::from_str(data).expect("data is an Event"))
    }
}

impl From<reqwest::Response> for SseConnection {
    fn from(response: reqwest::Response) -> Self {
        Self { response, buffer: Vec::new() }
    }
}

impl SseConnection {
    /// The next frame, failing the test when none arrives within `timeout`; `None` when the
    /// server ended the stream.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<SseFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(SseFrame(String::from_utf8(frame[..end].to_vec()).expect("frames are UTF-8")));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no frame within {timeout:?}"))
                .expect("stream readable")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event, skipping comments, failing the test when none arrives within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next_frame(left).await.expect("the stream stays open");
            if let Some(event) = frame.event() {
                return event;
            }
        }
    }
}

/// The body of `POST /api/v1/trial` that pays for a trial: `challenge` (the answer of
/// `POST /api/v1/trial/challenges`) solved.
pub fn solved(challenge: &Value) -> Value {
    let text = challenge["challenge"].as_str().expect("challenge");
    let bits = u8::try_from(challenge["bits"].as_u64().expect("bits")).expect("bits fit");
    let nonce = gofer_core::proof_of_work::solve(text, bits, |_| true).expect("a solution");
    serde_json::json!({"challenge": text, "nonce": nonce})
}

/// A run-token signing key the test knows: set it in a server's config (every replica of one
/// service shares it), and mint or sign with it as the server does.
#[derive(Clone)]
pub struct KnownRunTokenKey(String);

impl KnownRunTokenKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(gofer_tenants::run_tokens::RunTokenKeys::generate_secret())
    }

    /// Makes it the server's one run-token key.
    pub fn configure(&self, config: &mut gofer_api::Config) {
        config.run_tokens.keys = [("test".to_owned(), self.0.clone().into())].into();
        config.run_tokens.active_kid = Some("test".into());
    }

    /// The keys as the server holds them.
    pub fn keys(&self) -> gofer_tenants::run_tokens::RunTokenKeys {
        gofer_tenants::run_tokens::RunTokenKeys::new(&[("test".to_owned(), self.0.clone())].into(), "test")
            .expect("a generated key is valid")
    }
}

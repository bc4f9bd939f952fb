//! Whole processes: two `gofer service start` replicas on one database, one of them SIGKILLed in
//! the middle of runs; and a Postgres restart under a running replica.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A `gofer service start` child process.
struct Replica {
    child: Child,
    address: String,
}

impl Replica {
    /// Starts a replica and waits for the line that says where it listens.
    fn start(database_url: &str, state_dir: &Path, token: &str) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gofer"))
            .args(["service", "start"])
            .env("GOFER_LISTEN", "127.0.0.1:0")
            .env("GOFER_DATABASE_URL", database_url)
            .env("GOFER_STATE_DIR", state_dir)
            .env("GOFER_BOOTSTRAP_TOKEN", token)
            .env("GOFER_LOG_FORMAT", "json")
            .env("GOFER_LOG_LEVEL", "warn")
            .env("GOFER_ENGINE__LEASE_S", "2")
            .env("GOFER_ENGINE__POLL_INTERVAL_MS", "200")
            .env("GOFER_ENGINE__MONITOR_INTERVAL_MS", "100")
            .env("GOFER_ENGINE__RETRY_BACKOFF_MS", "100")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gofer binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines.next().expect("the replica printed its address").expect("stdout is text");
            if let Some(rest) = line.strip_prefix("Gofer is listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Replica { child, address }
    }

    fn kill(&mut self) {
        // SIGKILL: no chance to clean anything up.
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method, format!("{address}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_state(http: &reqwest::Client, address: &str, token: &str, run: i64) -> Value {
    call(http, address, token, "GET", &format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}"), None).await["run"]
        .clone()
}

/// Sets up a tenant, a namespace and a pipeline of two sandboxed tasks; answers the tenant token.
async fn set_up(http: &reqwest::Client, address: &str, operator: &str, sleep_s: u32) -> String {
    let tenant =
        call(http, address, operator, "POST", "/api/v1/tenants", Some(json!({"id": "acme", "name": "Acme"}))).await;
    let token = tenant["token"].as_str().expect("token").to_owned();
    call(http, address, &token, "POST", "/api/v1/namespaces", Some(json!({"id": "builds", "name": "Builds"}))).await;
    let config = json!({"name": "Long", "tasks": [
        {"id": "first", "image": "debian:12", "command": ["sh", "-c", format!("echo attempt $GOFER_TASK_ATTEMPT; sleep {sleep_s}")]},
        {"id": "second", "image": "debian:12", "command": ["sh", "-c", "echo second"], "depends_on": {"first": "success"}}
    ]});
    call(http, address, &token, "POST", "/api/v1/namespaces/builds/pipelines/long/configs", Some(config)).await;
    token
}

#[tokio::test]
async fn a_sigkilled_replica_hands_its_runs_over_and_nothing_runs_twice_at_once() {
    let database_url = gofer_tests::fresh_database().await;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let operator = format!("gofer_test_operator_{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::new();

    let mut a = Replica::start(&database_url, state_dir.path(), &operator);
    let token = set_up(&http, &a.address, &operator, 4).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run =
            call(&http, &a.address, &token, "POST", "/api/v1/namespaces/builds/pipelines/long/runs", Some(json!({})))
                .await;
        runs.push(run["run"]["id"].as_i64().expect("run id"));
    }
    let db = sqlx::PgPool::connect(&database_url).await.expect("db");
    wait_for("replica A to run every first task", Duration::from_secs(30), async || {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM task_executions WHERE task_id = 'first' AND state = 'running' AND waiting_reason IS NULL",
        )
        .fetch_one(&db)
        .await
        .expect("count");
        running == 3
    })
    .await;
    // The sandboxes of A's tasks, by the pid bwrap reported.
    let pids: Vec<u32> = std::fs::read_dir(state_dir.path().join("sandbox"))
        .expect("sandbox dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("info.json")).ok())
        .filter_map(|info| serde_json::from_str::<Value>(&info).ok()?["child-pid"].as_u64())
        .map(|pid| pid as u32)
        .collect();
    assert_eq!(pids.len(), 3, "three sandboxes run");

    let b = Replica::start(&database_url, state_dir.path(), &operator);
    a.kill();
    // The killed replica's sandboxes die with it (bwrap --die-with-parent).
    wait_for("A's sandboxes to end", Duration::from_secs(10), async || {
        pids.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    })
    .await;

    for run in &runs {
        wait_for("the run to complete through replica B", Duration::from_secs(60), async || {
            run_state(&http, &b.address, &token, *run).await["state"] == "complete"
        })
        .await;
        let state = run_state(&http, &b.address, &token, *run).await;
        assert_eq!(state["status"], "successful", "{state}");
        let path = format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}/tasks/first/attempts");
        let attempts = call(&http, &b.address, &token, "GET", &path, None).await;
        let attempts = attempts["items"].as_array().expect("items").clone();
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0]["status_reason"]["reason"], "orphaned");
        assert_eq!(
            (attempts[0]["retried"].as_bool(), attempts[1]["status"].as_str()),
            (Some(true), Some("successful"))
        );
        assert!(attempts[0]["ended"].as_str() <= attempts[1]["started"].as_str(), "attempts never overlap");
        let path = format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}/tasks/first/logs");
        let log = call(&http, &b.address, &token, "GET", &path, None).await;
        assert_eq!(log, Value::String("attempt 2\n".into()));
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM events WHERE run_id = $1 ORDER BY id")
            .bind(run)
            .fetch_all(&db)
            .await
            .expect("events");
        for expected in
            ["run_created", "run_started", "task_taken_over", "task_retrying", "task_completed", "run_completed"]
        {
            assert!(kinds.iter().any(|k| k == expected), "event {expected} missing in {kinds:?}");
        }
        assert_eq!(kinds.iter().filter(|k| *k == "run_completed").count(), 1);
    }
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM task_executions WHERE state <> 'complete'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(unfinished, 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn postgres(action: &str, dir: &Path, port: u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/postgres.sh");
    let status = Command::new(script)
        .arg(action)
        .args(["--dir", dir.to_str().expect("utf-8 path"), "--port", &port.to_string(), "--fast"])
        .stdout(Stdio::null())
        .status()
        .expect("infra/postgres.sh runs");
    assert!(status.success(), "postgres {action}");
}

#[tokio::test]
async fn a_run_completes_across_a_postgres_restart() {
    let pg_dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    postgres("start", pg_dir.path(), port);
    let database_url = format!("postgres://postgres@127.0.0.1:{port}/gofer");
    let state_dir = tempfile::tempdir().expect("temp dir");
    let operator = format!("gofer_test_operator_{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    let replica = Replica::start(&database_url, state_dir.path(), &operator);
    let token = set_up(&http, &replica.address, &operator, 4).await;
    let path = "/api/v1/namespaces/builds/pipelines/long/runs";
    let run = call(&http, &replica.address, &token, "POST", path, Some(json!({}))).await;
    let run = run["run"]["id"].as_i64().expect("run id");
    wait_for("the first task to run", Duration::from_secs(30), async || {
        run_state(&http, &replica.address, &token, run).await["state"] == "running"
    })
    .await;

    postgres("stop", pg_dir.path(), port);
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres("start", pg_dir.path(), port);

    let url = format!("{}{path}/{run}", replica.address);
    wait_for("the run to complete after the restart", Duration::from_secs(60), async || {
        match http.get(&url).bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => {
                r.json::<Value>().await.map(|v| v["run"]["state"] == "complete").unwrap_or(false)
            }
            _ => false,
        }
    })
    .await;
    let state = run_state(&http, &replica.address, &token, run).await;
    assert_eq!(state["status"], "successful", "{state}");
    let ready = http.get(format!("{}/ready", replica.address)).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    drop(replica);
    postgres("stop", pg_dir.path(), port);
}

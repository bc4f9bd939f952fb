//! Faults, each ending with every run accounted for: the right final status, no task run twice,
//! every event and log present. (A killed replica and a Postgres restart are in cli/tests/it/replicas.rs.)

use std::sync::Arc;
use std::time::Duration;

use gofer_core::RunId;
use gofer_tests::fake_scheduler::{FakeScheduler, FlakyScheduler};
use gofer_tests::tcp_proxy::TcpProxy;
use gofer_tests::{TenantClient, TestApp, fresh_database, spawn_replica, test_config, test_s3, wait_until};
use serde_json::json;

fn fast_config(database_url: String, state_dir: &std::path::Path) -> gofer_api::Config {
    let mut config = test_config(database_url, state_dir);
    config.engine.lease_s = 5;
    config.engine.monitor_interval_ms = 50;
    config.engine.retry_backoff_ms = 20;
    config
}

const RUNS: usize = 12;
const TASKS: [&str; 3] = ["fetch", "build", "ship"];

/// A three-task chain of fake tasks.
fn chain() -> serde_json::Value {
    chain_with_env(json!({}))
}

/// The chain with `env` on every task.
fn chain_with_env(env: serde_json::Value) -> serde_json::Value {
    json!({"name": "Chain", "tasks": [
        {"id": "fetch", "image": "debian:12", "command": ["sleep", "0.1"], "env": env},
        {"id": "build", "image": "debian:12", "command": ["sleep", "0.1"], "depends_on": {"fetch": "success"}, "env": env},
        {"id": "ship", "image": "debian:12", "command": ["exit", "0"], "depends_on": {"build": "success"}, "env": env},
    ]})
}

/// Registers `config` (when given) as pipeline `chain` and starts `RUNS` runs of it.
async fn start_runs(acme: &TenantClient<'_>, config: Option<serde_json::Value>) -> Vec<RunId> {
    if let Some(config) = config {
        acme.register("builds", "chain", config).await;
    }
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(acme.start_run("builds", "chain").await);
    }
    runs
}

/// Waits for every run; asserts each is accounted for: successful, each task completed once with
/// one `task_completed` event, attempts = 1 + retries (each retry with its `task_retrying`
/// event), the last attempt's output in the task's log, and no job started twice. Answers the
/// number of retried attempts.
async fn account(acme: &TenantClient<'_>, fake: &FakeScheduler, runs: &[RunId], timeout: Duration) -> i64 {
    let mut retried = 0;
    for &run in runs {
        let done = acme.wait_for_run("builds", "chain", run, timeout).await;
        assert_eq!(done.status, gofer_core::RunStatus::Successful, "run {run}: {done:?}");
        for task in TASKS {
            let attempts: Vec<(i32, String, bool)> = sqlx::query_as(
                "SELECT attempt, status, retried FROM task_attempts
                 WHERE pipeline_id = 'chain' AND run_id = $1 AND task_id = $2 ORDER BY attempt",
            )
            .bind(run.get())
            .bind(task)
            .fetch_all(&acme.app.db)
            .await
            .expect("attempts");
            let last = attempts.last().expect("an attempt").clone();
            assert_eq!((&last.1[..], last.2), ("successful", false), "run {run} task {task}: {attempts:?}");
            assert!(
                attempts
                    .iter()
                    .enumerate()
                    .all(|(i, a)| a.0 == i as i32 + 1 && (a == &last || (a.2 && a.1 == "failed"))),
                "run {run} task {task}: attempts {attempts:?}"
            );
            let events: Vec<(String, i64)> = sqlx::query_as(
                "SELECT kind, count(*) FROM events WHERE pipeline_id = 'chain' AND run_id = $1 AND task_id = $2
                 GROUP BY kind ORDER BY kind",
            )
            .bind(run.get())
            .bind(task)
            .fetch_all(&acme.app.db)
            .await
            .expect("events");
            let count = |kind: &str| events.iter().find(|e| e.0 == kind).map_or(0, |e| e.1);
            assert_eq!(count("task_completed"), 1, "run {run} task {task}: {events:?}");
            assert_eq!(count("task_retrying"), attempts.len() as i64 - 1, "run {run} task {task}: {events:?}");
            retried += attempts.len() as i64 - 1;
            let path = format!("/api/v1/namespaces/builds/pipelines/chain/runs/{run}/tasks/{task}/logs");
            let log = acme.request("GET", &path, None).await;
            assert_eq!(log.status, 200, "{log:?}");
            let wanted = format!("attempt {}\n", last.0);
            assert!(log.body.to_string().contains(&wanted.replace('\n', "\\n")), "run {run} task {task} log: {log:?}");
            for (attempt, ..) in &attempts {
                let job = format!("acme~builds~chain~{run}~{task}~{attempt}");
                assert!(fake.starts(&job) <= 1, "{job} started {} times", fake.starts(&job));
            }
        }
        let run_events: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE pipeline_id = 'chain' AND run_id = $1 AND kind = 'run_completed'",
        )
        .bind(run.get())
        .fetch_one(&acme.app.db)
        .await
        .expect("run events");
        assert_eq!(run_events, 1, "run {run}");
    }
    acme.app.assert_queue_drained().await;
    retried
}

async fn app_with(
    scheduler: Arc<dyn gofer_core::scheduler::Scheduler>,
    adjust: impl FnOnce(&mut gofer_api::Config),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = fast_config(fresh_database().await, dir.path());
    adjust(&mut config);
    spawn_replica(config, dir, Some(scheduler)).await
}

#[tokio::test]
async fn every_run_completes_when_the_scheduler_fails_thirty_percent_of_calls() {
    let seed = std::env::var("GOFER_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("GOFER_FAULT_SEED={seed}");
    let flaky = Arc::new(FlakyScheduler::new(FakeScheduler::default(), 30, seed));
    let app = app_with(flaky.clone(), |c| {
        // Every failed start is an attempt of its own, retried by the engine, rather than a start
        // retried in place: so the attempts are recorded.
        c.engine.scheduler_outage_tolerance_s = 0;
        c.engine.infra_retries = 40;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let runs = start_runs(&acme, Some(chain())).await;
    let retried = account(&acme, &flaky.inner, &runs, Duration::from_secs(90)).await;
    let (failed_starts, starts) = flaky.failures("start");
    let (failed_observes, observes) = flaky.failures("observe");
    let (failed_reads, reads) = flaky.failures("read_logs");
    eprintln!(
        "{RUNS} runs: {retried} attempts retried; failed on purpose: {failed_starts}/{starts} starts, \
         {failed_observes}/{observes} observes, {failed_reads}/{reads} log reads"
    );
    assert!(failed_starts > 0 && failed_observes > 0 && failed_reads > 0);
    assert_eq!(retried, failed_starts as i64, "each failed start is one retried attempt");
}

/// A small tmpfs mounted over a directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `2m`) at `dir`; `None` (and a loud notice) when mounting is
    /// not permitted here.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(Self(dir.to_owned())),
            other => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs at {} ({other:?}); the disk-full test needs root",
                    dir.display()
                );
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_full_object_store_refuses_puts_cleanly_and_works_again_once_space_frees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(_disk) = SmallDisk::mount(&dir.path().join("objects"), "2m") else { return };
    let config = fast_config(fresh_database().await, dir.path());
    let app = spawn_replica(config, dir, Some(Arc::new(FakeScheduler::default()))).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "chain", chain()).await;
    let objects = "/api/v1/namespaces/builds/pipelines/chain/objects";
    let put = |key: String, fill: u8| {
        let request = app
            .http
            .put(format!("{}{objects}/{key}", app.address))
            .bearer_auth(&acme.token)
            .header("Content-Type", "application/octet-stream")
            .body(vec![fill; 300 * 1024]);
        async move { request.send().await.expect("answered, not dropped") }
    };
    // 300 KiB objects of distinct content until the 2 MiB disk is full.
    let mut stored = Vec::new();
    let refused = loop {
        let key = format!("blob-{}", stored.len());
        let answer = put(key.clone(), stored.len() as u8).await;
        if answer.status() == 507 {
            break (key, answer);
        }
        assert_eq!(answer.status(), 201, "{key}: {:?}", answer.text().await);
        stored.push(key);
        assert!(stored.len() < 20, "the 2 MiB disk never filled");
    };
    let (refused_key, answer) = refused;
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = answer.json().await.expect("problem");
    assert_eq!(problem["code"], "insufficient_storage", "{problem}");
    eprintln!("disk full after {} objects of 300 KiB", stored.len());

    // Nothing of the refused object: no row, no readable object, no temp file left behind.
    let missing = acme.request("GET", &format!("{objects}/{refused_key}"), None).await;
    assert_eq!((missing.status, missing.code()), (404, "object_not_found"), "{missing:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM objects").fetch_one(&app.db).await.expect("rows");
    assert_eq!(rows, stored.len() as i64);
    let store = app.state_dir.path().join("objects");
    let temps: Vec<_> = files_under(&store.join("tmp"));
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    // Every stored object reads back whole.
    for (i, key) in stored.iter().enumerate() {
        let body = app
            .http
            .get(format!("{}{objects}/{key}", app.address))
            .bearer_auth(&acme.token)
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert!(body.len() == 300 * 1024 && body.iter().all(|b| *b == i as u8), "{key} damaged");
    }
    // Space freed: the store takes objects again.
    for key in &stored[..2] {
        assert_eq!(acme.request("DELETE", &format!("{objects}/{key}"), None).await.status, 204);
    }
    let again = put(refused_key.clone(), 0xAB).await;
    assert_eq!(again.status(), 201, "{:?}", again.text().await);
    let listed = acme.request("GET", objects, None).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(stored.len() - 1), "{listed:?}");
}

/// The `host:port` of an `http://host:port` address.
fn host_port(address: &str) -> String {
    address.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_owned()
}

/// Infrastructure retries of each task, in order of attempts, as (attempt, status_reason).
async fn retry_reasons(app: &TestApp) -> Vec<(i32, Option<String>)> {
    sqlx::query_as("SELECT attempt, status_reason FROM task_attempts WHERE retried ORDER BY run_id, task_id, attempt")
        .fetch_all(&app.db)
        .await
        .expect("attempts")
}

#[tokio::test]
async fn runs_wait_through_an_openbao_outage_and_then_all_succeed() {
    let (Ok(addr), Ok(token)) = (std::env::var("GOFER_TEST_VAULT_ADDR"), std::env::var("GOFER_TEST_VAULT_TOKEN"))
    else {
        eprintln!(
            "\n!!!!! SKIPPED: GOFER_TEST_VAULT_ADDR / GOFER_TEST_VAULT_TOKEN are not set; run through infra/test.sh !!!!!\n"
        );
        return;
    };
    let proxy = TcpProxy::start(&host_port(&addr)).await;
    let fake = Arc::new(FakeScheduler::default());
    let app = app_with(fake.clone(), |c| {
        c.secret_store = gofer_secrets::SecretStoreSettings::Vault(gofer_secrets::VaultSettings {
            addr: format!("http://{}", proxy.address),
            token: Some(token.into()),
            prefix: format!("gofer-test-{}/", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        });
        c.engine.infra_retries = 40;
        c.engine.retry_backoff_ms = 100;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "chain", chain_with_env(json!({"TOKEN": "secret{{ TOKEN }}"}))).await;
    let secret = acme
        .request("PUT", "/api/v1/namespaces/builds/pipelines/chain/secrets/TOKEN", Some(&json!({"value": "t0k3n"})))
        .await;
    assert_eq!(secret.status, 201, "{secret:?}");

    proxy.cut().await;
    let runs = start_runs(&acme, None).await;
    // While OpenBao is away, no run fails: tasks wait as infrastructure failures.
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(8) {
        let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'complete'")
            .fetch_one(&app.db)
            .await
            .expect("runs");
        assert_eq!(failed, 0, "a run ended while OpenBao was away");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The secret routes say the store is unavailable, cleanly.
    let during = acme
        .request("PUT", "/api/v1/namespaces/builds/pipelines/chain/secrets/OTHER", Some(&json!({"value": "x"})))
        .await;
    assert_eq!(
        (during.status, during.code(), &during.content_type[..]),
        (503, "unavailable", "application/problem+json"),
        "{during:?}"
    );
    proxy.restore().await;

    let retried = account(&acme, &fake, &runs, Duration::from_secs(120)).await;
    let reasons = retry_reasons(&app).await;
    eprintln!("OpenBao away 8 s: {retried} attempts retried: {reasons:?}");
    assert!(retried >= RUNS as i64, "each run's first task waited: {reasons:?}");
    assert!(
        reasons.iter().all(|(_, r)| r.as_deref() == Some("secret_store_unavailable")),
        "an unreachable OpenBao is a secret store outage, not a scheduler error: {reasons:?}"
    );
}

#[tokio::test]
async fn s3_away_for_twenty_seconds_loses_no_log_and_no_object() {
    let Ok(endpoint) = std::env::var(gofer_tests::S3_ENV) else {
        eprintln!("\n!!!!! SKIPPED: {} is not set; run through infra/test.sh !!!!!\n", gofer_tests::S3_ENV);
        return;
    };
    let proxy = TcpProxy::start(&host_port(&endpoint)).await;
    let fake = Arc::new(FakeScheduler::default());
    let app = app_with(fake.clone(), |c| {
        let s3 = gofer_objects::S3Settings { endpoint: Some(format!("http://{}", proxy.address)), ..test_s3() };
        c.object_store = gofer_objects::ObjectStoreSettings::S3(s3);
        c.logs.archive_after_s = 0;
        c.objects.expiry_interval_s = 1;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let objects = "/api/v1/namespaces/builds/pipelines/chain/objects";
    let runs = start_runs(&acme, Some(chain())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.cut().await;
    let outage = std::time::Instant::now();
    let during = put_object(&app, &acme.token, &format!("{objects}/during"), "during the outage").await;
    eprintln!("object put while S3 is away answered {} {} in {:?}", during.status, during.code(), outage.elapsed());
    assert_eq!(
        (during.status, during.code(), &during.content_type[..]),
        (503, "unavailable", "application/problem+json"),
        "a put while S3 is away: {during:?}"
    );
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(outage.elapsed())).await;
    proxy.restore().await;

    account(&acme, &fake, &runs, Duration::from_secs(60)).await;
    wait_until("every log archived to S3", Duration::from_secs(30), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM task_attempts WHERE log_archived_at IS NULL")
            .fetch_one(&app.db)
            .await
            .expect("attempts");
        left == 0
    })
    .await;
    // Read again, now from S3: every log is there.
    account(&acme, &fake, &runs, Duration::from_secs(5)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM objects").fetch_one(&app.db).await.expect("rows");
    assert_eq!(rows, 0, "the refused put left a row");
    let after = put_object(&app, &acme.token, &format!("{objects}/after"), "after the outage").await;
    assert_eq!(after.status, 201, "{after:?}");
    let read = acme.request("GET", &format!("{objects}/after"), None).await;
    assert_eq!(read.status, 200, "{read:?}");
}

/// PUTs an object's bytes; answers status, content type and the parsed body.
async fn put_object(app: &TestApp, token: &str, path: &str, body: &'static str) -> gofer_tests::Answer {
    let response = app
        .http
        .put(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("answered, not dropped");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    gofer_tests::Answer { status, content_type, body }
}

/// A real OpenBao keeping its data on disk (`infra/openbao.sh start --file`: raft storage,
/// initialised, unsealed, KV v2 at `secret/`, token `root`), in a directory of its own. Stopped
/// when dropped.
struct DiskOpenBao {
    dir: tempfile::TempDir,
    port: u16,
}

impl DiskOpenBao {
    async fn script(&self, command: &str, file: bool) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/openbao.sh");
        let mut args = vec![command.to_owned(), "--dir".into(), self.dir.path().display().to_string()];
        args.extend(["--port".into(), self.port.to_string(), "--token".into(), "root".into()]);
        if file {
            args.push("--file".into());
        }
        let out = tokio::process::Command::new(script).args(&args).output().await.expect("infra/openbao.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(out.status.success(), "openbao.sh {command}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// Starts it (the first time: initialises it), waits until it is unsealed; answers the address.
    async fn start(&self) -> String {
        self.script("start", true).await
    }

    /// SIGKILL: a crash, nothing flushed or released cleanly.
    async fn kill(&self) {
        self.script("kill", false).await;
    }
}

impl Drop for DiskOpenBao {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/openbao.sh");
        let _ = std::process::Command::new(script).arg("stop").arg("--dir").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn runs_using_secrets_survive_a_real_openbao_crash_and_restart() {
    if std::env::var("GOFER_TEST_VAULT_ADDR").is_err() {
        eprintln!(
            "\n!!!!! SKIPPED: GOFER_TEST_VAULT_ADDR is not set (OpenBao not installed); run through infra/test.sh !!!!!\n"
        );
        return;
    }
    // A free port (and the one above it, raft's cluster port, is very likely free too).
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let bao = DiskOpenBao { dir: tempfile::tempdir().expect("temp dir"), port };
    let began = std::time::Instant::now();
    let addr = bao.start().await;
    eprintln!("disk-backed OpenBao initialised and unsealed in {:?}", began.elapsed());
    let fake = Arc::new(FakeScheduler::default());
    let app = app_with(fake.clone(), |c| {
        c.secret_store = gofer_secrets::SecretStoreSettings::Vault(gofer_secrets::VaultSettings {
            addr,
            token: Some("root".into()),
            ..Default::default()
        });
        c.engine.infra_retries = 40;
        c.engine.retry_backoff_ms = 100;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let print_token = json!({"TOKEN": "secret{{ TOKEN }}"});
    let mut config = chain_with_env(print_token);
    for task in config["tasks"].as_array_mut().expect("tasks") {
        task["command"] = json!(["lines", "0.2", "token=$TOKEN"]);
    }
    acme.register("builds", "chain", config).await;
    let secret = acme
        .request("PUT", "/api/v1/namespaces/builds/pipelines/chain/secrets/TOKEN", Some(&json!({"value": "t0k3n"})))
        .await;
    assert_eq!(secret.status, 201, "{secret:?}");

    let runs = start_runs(&acme, None).await;
    // Mid-run: some tasks done, most still to resolve their secret.
    wait_until("the first tasks to complete", Duration::from_secs(30), || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM task_executions WHERE state = 'complete'")
            .fetch_one(&app.db)
            .await
            .expect("tasks");
        done >= 2
    })
    .await;
    bao.kill().await;
    let down = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'failed'").fetch_one(&app.db).await.expect("runs");
    assert_eq!(failed, 0, "a run failed while OpenBao was down");
    bao.start().await;
    eprintln!("OpenBao down (killed, restarted, unsealed) for {:?}", down.elapsed());

    let retried = account(&acme, &fake, &runs, Duration::from_secs(60)).await;
    let reasons = retry_reasons(&app).await;
    let most = reasons.iter().map(|(attempt, _)| *attempt).max().unwrap_or(0);
    eprintln!("{retried} attempts retried (at most {most} for one task)");
    assert!(retried > 0, "some task resolved its secret while OpenBao was down");
    assert!(
        reasons.iter().all(|(_, r)| r.as_deref() == Some("secret_store_unavailable")),
        "every retry says the secret store was unavailable: {reasons:?}"
    );
    // The API shows the retried attempt's reason.
    let (run, task): (i64, String) = sqlx::query_as("SELECT run_id, task_id FROM task_attempts WHERE retried LIMIT 1")
        .fetch_one(&app.db)
        .await
        .expect("a retried attempt");
    let path = format!("/api/v1/namespaces/builds/pipelines/chain/runs/{run}/tasks/{task}/attempts");
    let attempts = acme.request("GET", &path, None).await;
    assert_eq!(attempts.body["items"][0]["status_reason"]["reason"], "secret_store_unavailable", "{attempts:?}");
    // Every task printed its secret, masked.
    for &run in &runs {
        for task in TASKS {
            let path = format!("/api/v1/namespaces/builds/pipelines/chain/runs/{run}/tasks/{task}/logs");
            let log = acme.request("GET", &path, None).await.body.to_string();
            assert!(log.contains("token=***") && !log.contains("t0k3n"), "run {run} task {task}: {log}");
        }
    }
}

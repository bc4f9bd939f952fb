//! Whole pipelines through the real engine with the Nomad scheduler, against the Nomad API double
//! (tests/src/nomad_double.rs): every request it got must fit Nomad's OpenAPI spec.

use std::time::{Duration, Instant};

use gofer_api::config::SchedulerKind;
use gofer_core::scheduler::{Scheduler, TaskObservation, TaskSpec};
use gofer_core::{NamespaceId, PipelineId, RunId, RunStatus, StatusReason, TaskId, TaskStatus};
use gofer_scheduler_nomad::{Client, NomadConfig, NomadScheduler, job};
use gofer_tests::nomad_double::{NomadDouble, OutageKind, Recorded};
use gofer_tests::{TenantClient, TestApp, fresh_database, spawn_with, test_config};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

async fn double() -> NomadDouble {
    NomadDouble::start(Duration::from_millis(500)).await
}

async fn nomad_app(double: &NomadDouble, tweak: impl FnOnce(&mut gofer_api::Config)) -> TestApp {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.scheduler = SchedulerKind::Nomad;
    config.nomad.addr = double.address.clone();
    config.nomad.token = Some(double.token.clone());
    config.nomad.request_timeout_s = 2;
    tweak(&mut config);
    spawn_with(config, state_dir).await
}

fn ids(ns: &str, p: &str) -> (NamespaceId, PipelineId) {
    (NamespaceId::parse(ns).expect("valid"), PipelineId::parse(p).expect("valid"))
}

async fn task_of(acme: &TenantClient<'_>, p: &str, run: RunId, task: &str) -> gofer_core::model::TaskExecution {
    let (ns, p) = ids("builds", p);
    acme.sdk().get_task(&ns, &p, run, &TaskId::parse(task).expect("valid")).await.expect("the task")
}

async fn logs(acme: &TenantClient<'_>, p: &str, run: RunId, task: &str) -> String {
    let path = format!("/api/v1/namespaces/builds/pipelines/{p}/runs/{run}/tasks/{task}/logs");
    let answer = acme
        .app
        .http
        .get(format!("{}{path}", acme.app.address))
        .bearer_auth(&acme.token)
        .send()
        .await
        .expect("logs answer");
    answer.text().await.expect("logs body")
}

fn registered(requests: &[Recorded], task: &str) -> Value {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/jobs")
        .filter_map(|r| r.body.as_ref())
        .find(|b| b["Job"]["Meta"]["gofer.task"] == task)
        .unwrap_or_else(|| panic!("no job registered for {task}"))["Job"]
        .clone()
}

fn deletes(requests: &[Recorded], job_id: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == format!("/v1/job/{job_id}"))
        .map(|r| r.query.iter().find(|(k, _)| k == "purge").map(|(_, v)| v.clone()).unwrap_or_default())
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_within_spec(double: &NomadDouble) {
    assert_eq!(double.violations(), Vec::<String>::new(), "requests outside Nomad's API spec");
}

#[tokio::test]
async fn a_dag_runs_on_nomad_through_dropped_streams_and_errors() {
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "dag",
        json!({"name": "DAG", "tasks": [
            {"id": "fetch", "image": "alpine:3", "command": ["echo", "fetched", "sources"]},
            {"id": "build", "image": "alpine:3", "command": ["sleep", "0.5"], "depends_on": {"fetch": "success"}},
            {"id": "lint", "image": "alpine:3", "command": ["echo", "lint", "ok"], "depends_on": {"fetch": "success"}},
            {"id": "ship", "image": "alpine:3", "command": ["echo", "shipped"], "depends_on": {"build": "success", "lint": "success"}}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "dag").await;
    // Nomad misbehaves a little: a few 500s, and the event stream drops twice.
    double.fail_next(3);
    double.drop_streams();
    tokio::time::sleep(Duration::from_millis(300)).await;
    double.drop_streams();
    let done = acme.wait_for_run("builds", "dag", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    for task in ["fetch", "build", "lint", "ship"] {
        let t = task_of(&acme, "dag", run, task).await;
        assert_eq!((t.status, t.attempt, t.exit_code), (TaskStatus::Successful, 1, Some(0)), "{task}");
        assert_eq!(t.node.as_deref(), Some("default-node-1"), "{task}: the node is recorded");
    }
    assert_eq!(logs(&acme, "dag", run, "fetch").await, "fetched sources\n");
    assert_eq!(logs(&acme, "dag", run, "ship").await, "shipped\n");
    assert_eq!(double.namespaces(), ["gofer-acme"]);
    // Every job is purged once its result is recorded.
    wait_until("jobs purged", RUN_TIMEOUT, async || double.jobs().is_empty()).await;
    let requests = double.requests();
    let ship = registered(&requests, "ship");
    assert_eq!(deletes(&requests, ship["ID"].as_str().unwrap()), ["true"]);
    assert!(requests.iter().any(|r| r.path == "/v1/event/stream"), "the event stream was followed");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn task_failures_in_nomad_fail_the_run_with_their_reason() {
    let double = double().await;
    let app = nomad_app(&double, |c| c.engine.infra_retries = 0).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "bad",
        json!({"name": "Bad", "tasks": [
            {"id": "exits", "image": "alpine:3", "command": ["exit", "3"]},
            {"id": "pull", "image": "registry.example.com/does-not-exist:1", "command": ["echo"]},
            {"id": "oom", "image": "alpine:3", "command": ["oom"]},
            {"id": "after", "image": "alpine:3", "command": ["echo"], "depends_on": {"exits": "success"}}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "bad").await;
    let done = acme.wait_for_run("builds", "bad", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed);
    let exits = task_of(&acme, "bad", run, "exits").await;
    assert_eq!((exits.status, exits.exit_code), (TaskStatus::Failed, Some(3)));
    assert_eq!(exits.status_reason.unwrap().reason, StatusReason::AbnormalExit);
    assert_eq!(logs(&acme, "bad", run, "exits").await, "exiting with 3\n", "stderr reaches the log");
    let pull = task_of(&acme, "bad", run, "pull").await;
    let reason = pull.status_reason.unwrap();
    assert_eq!((pull.status, reason.reason), (TaskStatus::Failed, StatusReason::SchedulerError));
    assert!(
        reason.description.contains("could not be pulled") && reason.description.contains("manifest unknown"),
        "{reason:?}"
    );
    let oom = task_of(&acme, "bad", run, "oom").await;
    assert_eq!((oom.status, oom.status_reason.unwrap().reason), (TaskStatus::Failed, StatusReason::OutOfMemory));
    assert_eq!(task_of(&acme, "bad", run, "after").await.status, TaskStatus::Skipped);
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_timeout_stops_the_job_and_a_cancel_deregisters_it() {
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "slow",
        json!({"name": "Slow", "tasks": [{"id": "wait", "image": "alpine:3", "command": ["sleep", "30"], "timeout_s": 1}]}),
    )
    .await;
    let run = acme.start_run("builds", "slow").await;
    let done = acme.wait_for_run("builds", "slow", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed);
    let wait = task_of(&acme, "slow", run, "wait").await;
    assert_eq!((wait.status, wait.status_reason.unwrap().reason), (TaskStatus::Failed, StatusReason::Timeout));
    let requests = double.requests();
    let job = registered(&requests, "wait");
    assert_eq!(job["TaskGroups"][0]["MaxRunDuration"], 1_000_000_000u64, "Nomad enforces the timeout too");
    wait_until("the timed-out job purged", RUN_TIMEOUT, async || double.jobs().is_empty()).await;

    acme.register_one_task_in_image("builds", "long", "wait", "alpine:3", &["sleep", "60"]).await;
    let run = acme.start_run("builds", "long").await;
    wait_until("the task runs in Nomad", RUN_TIMEOUT, async || {
        task_of(&acme, "long", run, "wait").await.node.is_some()
    })
    .await;
    let answer =
        acme.request("POST", &format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}/cancel"), None).await;
    assert!(answer.status < 300, "{answer:?}");
    let done = acme.wait_for_run("builds", "long", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Cancelled);
    let wait = task_of(&acme, "long", run, "wait").await;
    assert_eq!(wait.status, TaskStatus::Cancelled);
    let job_id = wait.scheduler_id.unwrap();
    // Deregistered (stop) while running, then purged once the result was recorded.
    assert_eq!(deletes(&double.requests(), &job_id), ["false", "true"]);
    assert!(double.jobs().is_empty());
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_nomad_outage_in_the_middle_of_runs_loses_nothing() {
    // The issue asks for 20 s; GOFER_TEST_NOMAD_OUTAGE_S shortens it for quick local runs.
    let outage =
        Duration::from_secs(std::env::var("GOFER_TEST_NOMAD_OUTAGE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "chain",
        json!({"name": "Chain", "tasks": [
            {"id": "first", "image": "alpine:3", "command": ["sleep", "1"]},
            {"id": "second", "image": "alpine:3", "command": ["echo", "after", "the", "outage"], "depends_on": {"first": "success"}}
        ]}),
    )
    .await;
    let before = acme.start_run("builds", "chain").await;
    wait_until("the first task runs", RUN_TIMEOUT, async || {
        task_of(&acme, "chain", before, "first").await.node.is_some()
    })
    .await;
    let began = Instant::now();
    double.outage(outage, OutageKind::Errors);
    // A run started during the outage: its dispatch waits for Nomad instead of failing.
    let during = acme.start_run("builds", "chain").await;
    for run in [before, during] {
        let done = acme.wait_for_run("builds", "chain", run, outage + RUN_TIMEOUT).await;
        assert_eq!(done.status, RunStatus::Successful, "{done:?}");
        for task in ["first", "second"] {
            let t = task_of(&acme, "chain", run, task).await;
            assert_eq!((t.status, t.attempt), (TaskStatus::Successful, 1), "run {run} {task}: no attempt lost");
        }
        assert_eq!(logs(&acme, "chain", run, "first").await, "sleeping 1\n");
        assert_eq!(logs(&acme, "chain", run, "second").await, "after the outage\n");
    }
    assert!(began.elapsed() >= outage, "the runs could only finish after the outage");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_trial_tenants_job_is_hardened_field_by_field() {
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    let op = Some(app.operator_token.as_str());
    let assigned = app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "trial"}))).await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    assert_eq!(
        (assigned.body["plan"]["node_pool"].clone(), assigned.body["plan"]["allow_network"].clone()),
        (json!("gofer-trial"), json!(false))
    );
    acme.namespace("builds").await;
    // Driver options are not part of a task: a pipeline cannot smuggle them in.
    let smuggled = acme
        .register_with(
            "builds",
            "sneaky",
            &json!({"name": "S", "tasks": [{"id": "root", "image": "alpine:3", "command": ["id"], "config": {"privileged": true}}]}),
            true,
        )
        .await;
    assert_eq!(smuggled.status, 400, "{smuggled:?}");
    acme.register(
        "builds",
        "trial",
        json!({"name": "Trial", "run_timeout_s": 120, "tasks": [{"id": "hello", "image": "alpine:3", "command": ["echo", "hi"],
                                           "cpu": 250, "memory_mb": 64, "timeout_s": 30, "env": {"GREETING": "hi"}}]}),
    )
    .await;
    let run = acme.start_run("builds", "trial").await;
    let done = acme.wait_for_run("builds", "trial", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    let hello = task_of(&acme, "trial", run, "hello").await;
    assert_eq!(hello.node.as_deref(), Some("gofer-trial-node-1"), "placed in the trial pool");

    let job = registered(&double.requests(), "hello");
    let job_id = hello.scheduler_id.unwrap();
    assert_eq!(job["ID"], job_id);
    assert_eq!(job["Name"], job_id);
    assert_eq!(job["Type"], "batch");
    assert_eq!(job["Namespace"], "gofer-acme");
    assert_eq!(job["NodePool"], "gofer-trial");
    assert_eq!(job["Datacenters"], json!(["*"]));
    let meta = json!({"gofer.tenant": "acme", "gofer.namespace": "builds", "gofer.pipeline": "trial",
                      "gofer.run": run.to_string(), "gofer.task": "hello", "gofer.attempt": "1"});
    assert_eq!(job["Meta"], meta);
    let groups = job["TaskGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let group = &groups[0];
    assert_eq!(group["Count"], 1);
    assert_eq!(group["RestartPolicy"]["Attempts"], 0);
    assert_eq!(group["RestartPolicy"]["Mode"], "fail");
    assert_eq!(group["ReschedulePolicy"], json!({"Attempts": 0, "Unlimited": false}));
    assert_eq!(group["MaxRunDuration"], 30_000_000_000u64);
    assert!(group.get("Volumes").is_none() && group.get("Networks").is_none(), "no host volumes, no group network");
    assert_eq!(group["EphemeralDisk"], json!({"SizeMB": 296}), "the trial plan's 256 MiB and 40 MiB of logs");
    let tasks = group["Tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task["Driver"], "docker");
    assert_eq!(task["User"], "65534:65534", "not root");
    assert_eq!(task["Resources"], json!({"CPU": 250, "MemoryMB": 64}));
    assert_eq!(task["KillTimeout"], 10_000_000_000u64);
    assert_eq!(task["Meta"], meta);
    assert!(task.get("VolumeMounts").is_none() && task.get("Templates").is_none());
    assert_eq!(task["Env"]["GREETING"], "hi");
    assert_eq!(task["Env"]["GOFER_TASK_ID"], "hello");
    assert_eq!(task["Env"]["HOME"], "/local", "the writable work directory");
    let config = task["Config"].as_object().unwrap();
    let mut keys: Vec<&str> = config.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "args",
            "cap_drop",
            "command",
            "image",
            "mount",
            "network_mode",
            "pids_limit",
            "privileged",
            "readonly_rootfs",
            "security_opt",
            "storage_opt",
            "ulimit",
            "work_dir"
        ],
        "only the driver options Gofer sets: no volumes, devices, host mounts or caps added"
    );
    assert_eq!(config["image"], "alpine:3");
    assert_eq!((config["command"].clone(), config["args"].clone()), (json!("echo"), json!(["hi"])));
    assert_eq!(config["privileged"], false);
    assert_eq!(config["cap_drop"], json!(["ALL"]));
    assert_eq!(config["security_opt"], json!(["no-new-privileges", "seccomp=/etc/gofer/seccomp.json"]));
    assert_eq!(config["pids_limit"], 512);
    assert_eq!(config["network_mode"], "none", "trial tasks have no network");
    assert_eq!(config["readonly_rootfs"], true);
    assert_eq!(config["work_dir"], "/local");
    let mib_256 = 256u64 << 20;
    assert_eq!(config["ulimit"], json!([{"nofile": "8192:8192", "fsize": format!("{mib_256}:{mib_256}")}]));
    assert_eq!(
        config["mount"],
        json!([{"type": "tmpfs", "target": "/tmp", "tmpfs_options": [{"size": mib_256, "mode": 0o1777}]}])
    );
    assert_eq!(config["storage_opt"], json!([{"size": "256M"}]));
    assert_within_spec(&double);
}

#[tokio::test]
async fn a_networked_task_joins_the_egress_network_and_registries_on_private_addresses_are_refused() {
    let double = double().await;
    let app = nomad_app(&double, |c| {
        c.engine.infra_retries = 0;
        // Any public registry, and one private mirror the operator names.
        c.nomad.allowed_registries = vec!["*".into(), "10.0.0.5:5000".into()];
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "net",
        json!({"name": "Net", "tasks": [
            {"id": "online", "image": "alpine:3", "command": ["echo", "online"]},
            {"id": "mirror", "image": "10.0.0.5:5000/team/app:1", "command": ["echo", "mirrored"]},
            {"id": "loopback", "image": "127.0.0.1:5000/x", "command": ["echo"]},
            {"id": "named", "image": "localhost:5000/x", "command": ["echo"]},
            {"id": "metadata", "image": "[::ffff:169.254.169.254]:80/x", "command": ["echo"]},
            {"id": "lan", "image": "10.0.0.6:5000/x", "command": ["echo"]}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "net").await;
    let done = acme.wait_for_run("builds", "net", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    assert_eq!(logs(&acme, "net", run, "online").await, "online\n");
    assert_eq!(logs(&acme, "net", run, "mirror").await, "mirrored\n", "a registry the operator names is allowed");

    let requests = double.requests();
    let online = registered(&requests, "online");
    let group = &online["TaskGroups"][0];
    assert_eq!(group["Networks"], json!([{"Mode": "cni/gofer-egress"}]), "the CNI network with the egress rules");
    assert!(group["Tasks"][0]["Config"].get("network_mode").is_none(), "it joins the group's network");
    assert_eq!(group["EphemeralDisk"], json!({"SizeMB": 10280}), "the default plan's 10 GiB and the logs");

    for (task, registry, why) in [
        ("loopback", "127.0.0.1:5000", "loopback"),
        ("named", "localhost:5000", "loopback"),
        ("metadata", "[::ffff:169.254.169.254]:80", "cloud metadata"),
        ("lan", "10.0.0.6:5000", "private"),
    ] {
        let t = task_of(&acme, "net", run, task).await;
        let reason = t.status_reason.clone().expect("a reason");
        assert_eq!((t.status, reason.reason), (TaskStatus::Failed, StatusReason::SchedulerError), "{task}");
        assert!(reason.description.contains(&format!("images from {registry} are not allowed")), "{task}: {reason:?}");
        assert!(reason.description.contains(why), "{task}: {reason:?}");
        let posted = requests.iter().filter(|r| r.method == "POST" && r.path == "/v1/jobs");
        assert!(
            !posted.filter_map(|r| r.body.as_ref()).any(|b| b["Job"]["Meta"]["gofer.task"] == task),
            "{task}: never registered"
        );
    }
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_wrong_nomad_token_is_refused_and_said_so() {
    let double = double().await;
    let app = nomad_app(&double, |c| {
        c.nomad.token = Some("not-the-token".into());
        c.engine.scheduler_outage_tolerance_s = 1;
        c.engine.infra_retries = 0;
    })
    .await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "pipe", "tsk", "alpine:3", &["echo"]).await;
    let run = acme.start_run("builds", "pipe").await;
    let done = acme.wait_for_run("builds", "pipe", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed);
    let reason = task_of(&acme, "pipe", run, "tsk").await.status_reason.unwrap();
    assert_eq!(reason.reason, StatusReason::SchedulerError);
    assert!(reason.description.contains("ACL token not found"), "{reason:?}");
    assert!(double.jobs().is_empty());
    assert_within_spec(&double);
}

#[tokio::test]
async fn a_nomad_that_stops_answering_only_delays_the_task() {
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "hung", "work", "alpine:3", &["sleep", "1"]).await;
    let run = acme.start_run("builds", "hung").await;
    wait_until("the task runs", RUN_TIMEOUT, async || task_of(&acme, "hung", run, "work").await.node.is_some()).await;
    // Calls hang past the client's 2 s timeout, and the event stream goes silent.
    double.outage(Duration::from_secs(5), OutageKind::Hang);
    let done = acme.wait_for_run("builds", "hung", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    let work = task_of(&acme, "hung", run, "work").await;
    assert_eq!((work.status, work.attempt), (TaskStatus::Successful, 1));
    assert_eq!(logs(&acme, "hung", run, "work").await, "sleeping 1\n");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn private_images_pull_with_the_registry_auth_secret_never_stored_in_the_job() {
    const PASSWORD: &str = "s3cret-pull-pass";
    let double = double().await;
    double.require_registry_login("robot", PASSWORD);
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let image = "ghcr.io/private/app:1";
    acme.register(
        "builds",
        "private",
        json!({"name": "Private", "tasks": [
            {"id": "own", "image": image, "command": ["echo", "own"], "registry_auth": "REGISTRY"},
            {"id": "shared", "image": image, "command": ["echo", "shared"], "registry_auth": "GLOBAL_REG"}
        ]}),
    )
    .await;
    acme.register(
        "builds",
        "broken",
        json!({"name": "Broken", "tasks": [
            {"id": "nope", "image": image, "command": ["echo"], "registry_auth": "NOPE"},
            {"id": "ungranted", "image": image, "command": ["echo"], "registry_auth": "OPS_REG"}
        ]}),
    )
    .await;
    let put = async |path: String, body: Value| {
        let answer = acme.request("PUT", &path, Some(&body)).await;
        assert!(answer.status == 201, "{path}: {answer:?}");
    };
    let creds = json!({"username": "robot", "password": PASSWORD}).to_string();
    put(format!("{}/secrets/REGISTRY", gofer_tests::pipeline_path("builds", "private")), json!({"value": creds})).await;
    let global = json!({"value": format!("robot:{PASSWORD}"), "namespaces": ["build*"]});
    put("/api/v1/secrets/GLOBAL_REG".into(), global).await;
    put("/api/v1/secrets/OPS_REG".into(), json!({"value": format!("robot:{PASSWORD}"), "namespaces": ["ops"]})).await;

    let run = acme.start_run("builds", "private").await;
    let done = acme.wait_for_run("builds", "private", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    assert_eq!(logs(&acme, "private", run, "own").await, "own\n");
    let pulls = double.pulls();
    let with_login = Some(("robot".to_owned(), PASSWORD.to_owned()));
    assert_eq!(pulls, vec![(image.to_owned(), with_login.clone()), (image.to_owned(), with_login)], "{pulls:?}");

    let requests = double.requests();
    for task in ["own", "shared"] {
        let job = registered(&requests, task);
        let text = job.to_string();
        assert!(!text.contains(PASSWORD), "the stored job holds the password in clear: {text}");
        let job_id = job["ID"].as_str().unwrap().to_owned();
        let config = &job["TaskGroups"][0]["Tasks"][0]["Config"];
        assert_eq!(
            config["auth"],
            json!({"username": "${GOFER_REGISTRY_USERNAME}", "password": "${GOFER_REGISTRY_PASSWORD}"})
        );
        // The credentials went to Nomad once, as the job's Nomad Variable in the tenant's namespace …
        let var_path = format!("/v1/var/nomad/jobs/{job_id}");
        let written: Vec<&Recorded> = requests.iter().filter(|r| r.method == "PUT" && r.path == var_path).collect();
        assert_eq!(written.len(), 1, "{task}");
        assert_eq!(written[0].query, vec![("namespace".to_owned(), "gofer-acme".to_owned())]);
        assert_eq!(written[0].body.as_ref().unwrap()["Items"], json!({"username": "robot", "password": PASSWORD}));
        // … and the variable is deleted with the job.
        wait_until("the variable is deleted", RUN_TIMEOUT, async || {
            double.variable("gofer-acme", &format!("nomad/jobs/{job_id}")).is_none()
        })
        .await;
    }
    let elsewhere = requests.iter().filter(|r| !r.path.starts_with("/v1/var/"));
    assert!(elsewhere.filter_map(|r| r.body.as_ref()).all(|b| !b.to_string().contains(PASSWORD)));

    // A missing or ungranted registry_auth secret fails the task before it starts, naming the key.
    let run = acme.start_run("builds", "broken").await;
    let done = acme.wait_for_run("builds", "broken", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    for (task, key) in [("nope", "NOPE"), ("ungranted", "OPS_REG")] {
        let t = task_of(&acme, "broken", run, task).await;
        let reason = t.status_reason.clone().expect("a reason");
        assert_eq!(reason.reason, StatusReason::SecretUnavailable, "{task}: {reason:?}");
        assert!(reason.description.contains(key), "{task}: {reason:?}");
        assert_eq!(t.attempt, 1, "{task}: not retried");
    }
    let registered_tasks: Vec<Value> = double
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/jobs")
        .filter_map(|r| r.body.as_ref().map(|b| b["Job"]["Meta"]["gofer.pipeline"].clone()))
        .collect();
    assert!(!registered_tasks.contains(&json!("broken")), "never dispatched: {registered_tasks:?}");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

/// The log reads the double got for `kind`: (follow, offset) in order.
fn log_reads(requests: &[Recorded], kind: &str) -> Vec<(bool, u64)> {
    let value =
        |r: &Recorded, k: &str| r.query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone()).unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.path.starts_with("/v1/client/fs/logs/") && value(r, "type") == kind)
        .map(|r| (value(r, "follow") == "true", value(r, "offset").parse().unwrap_or(0)))
        .collect()
}

fn counted(n: u32) -> String {
    (1..=n).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test]
async fn logs_come_through_held_streams_that_resume_at_their_offset_when_dropped() {
    let double = double().await;
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "chatty", "talk", "alpine:3", &["count", "40", "0.05"]).await;
    let run = acme.start_run("builds", "chatty").await;
    wait_until("the log streams", RUN_TIMEOUT, async || {
        log_reads(&double.requests(), "stdout").iter().any(|(follow, _)| *follow)
    })
    .await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        double.drop_log_streams();
    }
    let done = acme.wait_for_run("builds", "chatty", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    assert_eq!(logs(&acme, "chatty", run, "talk").await, counted(40), "nothing repeated, nothing lost");
    let reads = log_reads(&double.requests(), "stdout");
    let follows: Vec<u64> = reads.iter().filter(|(follow, _)| *follow).map(|(_, offset)| *offset).collect();
    assert!(follows.len() >= 4, "one stream and a reconnection per drop: {reads:?}");
    assert_eq!(follows[0], 0);
    assert!(follows[1..].iter().any(|o| *o > 0), "reconnections resume at the offset reached: {reads:?}");
    assert!(follows.windows(2).all(|w| w[0] <= w[1]), "{reads:?}");
    let polls = reads.iter().filter(|(follow, _)| !follow).count();
    assert!(polls <= 6, "polled only to finish once the task was dead, not every interval: {reads:?}");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn logs_are_polled_when_streams_cannot_be_held() {
    let double = double().await;
    double.refuse_log_follow();
    let app = nomad_app(&double, |_| {}).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "chatty", "talk", "alpine:3", &["count", "20", "0.05"]).await;
    let run = acme.start_run("builds", "chatty").await;
    let done = acme.wait_for_run("builds", "chatty", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    assert_eq!(logs(&acme, "chatty", run, "talk").await, counted(20));
    let reads = log_reads(&double.requests(), "stdout");
    let follows = reads.iter().filter(|(follow, _)| *follow).count();
    assert!((1..=3).contains(&follows), "gave up following after 3 refusals: {reads:?}");
    assert!(reads.iter().any(|(follow, _)| !follow), "{reads:?}");
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

/// A job as some other client of the cluster would register it (not through Gofer): `job_id` in
/// Nomad namespace `namespace`, its `Meta` naming the execution `owner` (tenant, namespace,
/// pipeline, run), running `command`.
async fn plant(double: &NomadDouble, namespace: &str, job_id: &str, owner: [&str; 4], command: &[&str]) {
    let config = NomadConfig { addr: double.address.clone(), token: Some(double.token.clone()), ..Default::default() };
    let [tenant, ns, pipeline, run] = owner;
    let spec = TaskSpec {
        job_id: job_id.to_owned(),
        tenant: tenant.parse().expect("valid"),
        namespace: ns.parse().expect("valid"),
        pipeline: pipeline.parse().expect("valid"),
        run: RunId::parse(run).expect("valid"),
        task: TaskId::parse("build").expect("valid"),
        attempt: 1,
        image: "alpine:3".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        entrypoint: None,
        env: Default::default(),
        timeout: Duration::from_secs(60),
        cpu_millis: 100,
        memory_mb: 64,
        disk_mb: 64,
        registry_auth: None,
        allow_network: false,
        untrusted: false,
        node_pool: None,
        gofer_cli: false,
    };
    let mut planted = job::job_spec(&spec, &config);
    planted["Namespace"] = json!(namespace);
    let client = Client::new(&config).expect("a Nomad client");
    client.upsert_namespace(namespace, tenant).await.expect("namespace created");
    assert!(client.register(namespace, planted).await.expect("job planted"), "{job_id} was new");
}

#[tokio::test]
async fn a_job_of_the_same_id_recorded_for_another_execution_or_namespace_is_never_adopted() {
    let double = double().await;
    let app = nomad_app(&double, |c| c.engine.infra_retries = 0).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "hello", "build", "alpine:3", &["echo", "own-output"]).await;

    // Run 1's id is taken in acme's own namespace by a job whose Meta names another execution.
    let first = "acme~builds~hello~1~build~1";
    plant(&double, "gofer-acme", first, ["acme-labs", "builds", "hello", "1"], &["sleep", "30"]).await;
    let run = acme.start_run("builds", "hello").await;
    let done = acme.wait_for_run("builds", "hello", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    let build = task_of(&acme, "hello", run, "build").await;
    let reason = build.status_reason.expect("a reason");
    assert_eq!(reason.reason, StatusReason::SchedulerError);
    assert!(reason.description.contains("already exists for another task execution"), "{reason:?}");
    assert!(!reason.description.contains("acme-labs"), "nothing of the other owner: {reason:?}");
    assert_eq!(logs(&acme, "hello", run, "build").await, "", "nothing of the other job's output");
    // The other job is left alone: neither stopped nor purged.
    assert!(deletes(&double.requests(), first).is_empty());
    assert!(double.jobs().contains(&("gofer-acme".into(), first.into(), false)));

    // Run 2's id exists, with acme's very Meta, in a namespace that is not acme's: a replica
    // that knows nothing of it (after a restart) does not find it, and the run gets its own job.
    let second = "acme~builds~hello~2~build~1";
    plant(&double, "gofer-intruder", second, ["acme", "builds", "hello", "2"], &["sleep", "30"]).await;
    let config = NomadConfig {
        addr: double.address.clone(),
        token: Some(double.token.clone()),
        event_stream: false,
        ..Default::default()
    };
    let restarted = NomadScheduler::new(config).expect("a scheduler");
    assert_eq!(restarted.observe(second).await.expect("observed"), TaskObservation::Unknown);
    let run = acme.start_run("builds", "hello").await;
    let done = acme.wait_for_run("builds", "hello", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    assert_eq!(logs(&acme, "hello", run, "build").await, "own-output\n");
    assert!(double.jobs().contains(&("gofer-intruder".into(), second.into(), false)), "left alone");
    assert!(
        !double.requests().iter().any(|r| r.method == "DELETE" && r.query.iter().any(|(_, v)| v == "gofer-intruder")),
        "nothing was deleted in the other namespace"
    );
    assert_within_spec(&double);
    app.assert_queue_drained().await;
}

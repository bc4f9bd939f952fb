//! Hostile tenants against the real server and the local sandbox (issue 18): each test performs
//! the attack as a tenant would, asserts it fails, and checks that a bystander tenant's run still
//! succeeds. The attacks are bounded by design (see docs/security.md, "Threat table").

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::{RunStatus, StatusReason};
use gofer_tests::{TestApp, spawn_app};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A bystander tenant's one-task run, which must succeed whatever the attacker did.
async fn bystander_succeeds(app: &TestApp) {
    let bystander = app.tenant("bystander").await;
    bystander.namespace("work").await;
    bystander.register_one_task("work", "calm", "echo", &["sh", "-c", "echo fine"]).await;
    let run = bystander.run_to_completion("work", "calm", WAIT).await;
    assert_eq!(run.status, RunStatus::Successful, "the bystander's run: {run:?}");
}

#[tokio::test]
async fn loader_variables_are_refused_in_task_env_and_run_variables_naming_the_variable() {
    let app = spawn_app().await;
    let attacker = app.tenant("mallory").await;
    attacker.namespace("builds").await;

    // LD_PRELOAD pointing at the task's own /job would run the tenant's library in any host
    // process that inherited it (the attach helper did): refused at registration.
    let config = json!({"name": "evil", "tasks": [{"id": "build", "image": "debian:12", "command": ["true"],
        "env": {"LD_PRELOAD": "/job/evil.so"}}]});
    let refused = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/evil/configs", Some(&config)).await;
    assert_eq!((refused.status, refused.code()), (422, "invalid_field"), "{refused:?}");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("tasks[0].env.LD_PRELOAD"), "the variable is named: {detail}");

    // The same family as run variables, on a pipeline that is otherwise fine.
    attacker.register_one_task("builds", "plain", "build", &["true"]).await;
    for variable in ["LD_AUDIT", "GLIBC_TUNABLES", "GCONV_PATH", "MALLOC_CHECK_"] {
        let body = json!({"variables": {variable: "/job/evil.so"}});
        let refused = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/plain/runs", Some(&body)).await;
        assert_eq!((refused.status, refused.code()), (422, "invalid_field"), "{variable}: {refused:?}");
        assert!(refused.body["detail"].as_str().unwrap().contains(variable), "{variable} is named: {refused:?}");
    }
    // Nothing was started by the refused requests.
    let runs = attacker.request("GET", "/api/v1/namespaces/builds/pipelines/plain/runs", None).await;
    assert_eq!(runs.body["items"].as_array().unwrap().len(), 0, "{runs:?}");

    // LD_LIBRARY_PATH is an ordinary build setting: allowed, and seen by the task.
    let body = json!({"variables": {"LD_LIBRARY_PATH": "/job/lib"}});
    let config = json!({"name": "libs", "tasks": [{"id": "build", "image": "debian:12",
        "command": ["sh", "-c", "test \"$LD_LIBRARY_PATH\" = /job/lib"]}]});
    attacker.register("builds", "libs", config).await;
    let started = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/libs/runs", Some(&body)).await;
    assert_eq!(started.status, 201, "{started:?}");
    let run = gofer_core::RunId::from_i64(started.body["run"]["id"].as_i64().unwrap());
    let run = attacker.wait_for_run("builds", "libs", run, WAIT).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");

    bystander_succeeds(&app).await;
}

#[tokio::test]
async fn tenants_whose_names_ran_together_in_job_ids_never_share_a_job() {
    use gofer_core::{NamespaceId, PipelineId, TaskId};
    let app = spawn_app().await;
    // Under `{tenant}-{namespace}-…` both got `acme-labs-builds-hello-1-build-1`, and the second
    // start adopted the first tenant's job: its output, secrets included, and its exit status.
    let victim = app.tenant("acme").await;
    victim.namespace("labs-builds").await;
    let attacker = app.tenant("acme-labs").await;
    attacker.namespace("builds").await;
    let secret = format!("victim-secret-{}", uuid::Uuid::new_v4());
    let script = format!("echo {secret}; sleep 1; echo victim-done");
    victim.register_one_task("labs-builds", "hello", "build", &["sh", "-c", &script]).await;
    attacker.register_one_task("builds", "hello", "build", &["sh", "-c", "echo attacker-ran"]).await;

    let (victim_run, attacker_run) =
        tokio::join!(victim.start_run("labs-builds", "hello"), attacker.start_run("builds", "hello"));
    let (victim_done, attacker_done) = tokio::join!(
        victim.wait_for_run("labs-builds", "hello", victim_run, WAIT),
        attacker.wait_for_run("builds", "hello", attacker_run, WAIT)
    );
    assert_eq!(victim_done.status, RunStatus::Successful, "{victim_done:?}");
    assert_eq!(attacker_done.status, RunStatus::Successful, "{attacker_done:?}");

    let build = TaskId::parse("build").unwrap();
    let hello = PipelineId::parse("hello").unwrap();
    let (victim_ns, attacker_ns) = (NamespaceId::parse("labs-builds").unwrap(), NamespaceId::parse("builds").unwrap());
    let victim_log = victim.sdk().task_logs(&victim_ns, &hello, victim_run, &build).await.unwrap();
    let attacker_log = attacker.sdk().task_logs(&attacker_ns, &hello, attacker_run, &build).await.unwrap();
    assert_eq!(victim_log, format!("{secret}\nvictim-done\n"));
    assert_eq!(attacker_log, "attacker-ran\n");
    assert!(!attacker_log.contains(&secret), "the victim's secret reached the attacker");

    let victim_task = victim.sdk().get_task(&victim_ns, &hello, victim_run, &build).await.unwrap();
    let attacker_task = attacker.sdk().get_task(&attacker_ns, &hello, attacker_run, &build).await.unwrap();
    assert_eq!(victim_task.scheduler_id.as_deref(), Some("acme~labs-builds~hello~1~build~1"));
    assert_eq!(attacker_task.scheduler_id.as_deref(), Some("acme-labs~builds~hello~1~build~1"));
    bystander_succeeds(&app).await;
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_memory_hog_in_several_processes_ends_out_of_memory_and_a_bystander_runs() {
    let app = spawn_app().await;
    let attacker = app.tenant("hoggy").await;
    attacker.namespace("builds").await;
    // Four processes of 60 MiB under 128 MiB: each would fit a per-process limit, together they
    // do not (240 MiB at most, whatever the defence). The parent fails when a child is killed.
    let hog = "import os, sys, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n        \
               kids = None\n        break\n    kids.append(pid)\nb = bytearray(60 * 1024 * 1024)\n\
               for i in range(0, len(b), 4096):\n    b[i] = 1\ntime.sleep(3)\nif kids is None:\n    os._exit(0)\n\
               sys.exit(1 if [p for p in kids if os.waitpid(p, 0)[1] != 0] else 0)";
    let config = json!({"name": "hog", "tasks": [{"id": "eat", "image": "debian:12", "command": ["python3", "-c", hog],
        "memory_mb": 128, "timeout_s": 20}]});
    attacker.register("builds", "hog", config).await;
    let run = attacker.run_to_completion("builds", "hog", WAIT).await;
    if run.status == RunStatus::Successful {
        // Only possible with per-process limits: a host without usable cgroups (not root).
        assert!(!running_as_root(), "as root the memory cgroup must hold the whole task");
        eprintln!(
            "a_memory_hog_in_several_processes_ends_out_of_memory_and_a_bystander_runs: no cgroups here (not root)"
        );
    } else {
        let sdk = attacker.sdk();
        let (ns, p) = ("builds".parse().unwrap(), "hog".parse().unwrap());
        let task = sdk.get_task(&ns, &p, run.id, &"eat".parse().unwrap()).await.unwrap();
        assert_eq!(task.status_reason.as_ref().map(|r| r.reason), Some(StatusReason::OutOfMemory), "{task:?}");
    }
    bystander_succeeds(&app).await;
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().next() == Some("0"))
}

#[tokio::test]
async fn a_task_fills_no_more_than_its_plans_disk() {
    let app = spawn_app().await;
    // The operator gives the default plan 32 MiB of disk.
    let op = Some(app.operator_token.as_str());
    let mut plan = app.request("GET", "/api/v1/plans/default", op, None).await.body["plan"].clone();
    plan["max_disk_mb"] = json!(32);
    let updated = app.request("PUT", "/api/v1/plans/default", op, Some(&plan)).await;
    assert_eq!((updated.status, updated.body["plan"]["max_disk_mb"].clone()), (200, json!(32)), "{updated:?}");

    let attacker = app.tenant("filler").await;
    attacker.namespace("builds").await;
    // Twice the disk, bounded by design; the write fails, the task goes on and reports the size.
    let script = "head -c $((64 << 20)) /dev/zero > /job/fill 2>/dev/null; echo size=$(stat -c %s /job/fill)";
    attacker.register_one_task("builds", "fill", "fill", &["sh", "-c", script]).await;
    let run = attacker.run_to_completion("builds", "fill", WAIT).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    let sdk = attacker.sdk();
    let (ns, p) = ("builds".parse().unwrap(), "fill".parse().unwrap());
    let log = sdk.task_logs(&ns, &p, run.id, &"fill".parse().unwrap()).await.unwrap();
    let size: u64 = log.trim().strip_prefix("size=").unwrap().parse().unwrap();
    assert!(size <= 32 << 20 && size > 16 << 20, "{log}");
    bystander_succeeds(&app).await;
}

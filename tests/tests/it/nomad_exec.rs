//! Exec through the Nomad scheduler against the Nomad API double's exec websocket: the scheduler
//! on its own, then attach end to end through the API. Every request and every client frame must
//! fit Nomad's API (the double records what does not).

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use gofer_api::config::SchedulerKind;
use gofer_core::id::RunId;
use gofer_core::scheduler::{
    ExecInput, ExecOutput, ExecRequest, ExecSession, Scheduler, SchedulerError, TaskObservation, TaskSpec, TerminalSize,
};
use gofer_core::{NamespaceId, PipelineId, TaskId, TaskState};
use gofer_scheduler_nomad::{NomadConfig, NomadScheduler};
use gofer_sdk::{AttachEvent, AttachOptions};
use gofer_tests::nomad_double::NomadDouble;
use gofer_tests::{fresh_database, spawn_with, test_config, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn spec(job_id: &str) -> TaskSpec {
    TaskSpec {
        job_id: job_id.to_owned(),
        tenant: "acme".parse().unwrap(),
        namespace: "builds".parse().unwrap(),
        pipeline: "sleepy".parse().unwrap(),
        run: RunId::from_i64(1),
        task: "nap".parse().unwrap(),
        attempt: 1,
        image: "debian:12".into(),
        command: vec!["sleep".into(), "60".into()],
        entrypoint: None,
        env: BTreeMap::new(),
        timeout: Duration::from_secs(120),
        cpu_millis: 500,
        memory_mb: 256,
        disk_mb: 1024,
        registry_auth: None,
        allow_network: true,
        untrusted: false,
        node_pool: None,
        gofer_cli: false,
    }
}

fn request(job_id: &str, command: &[&str], tty: bool) -> ExecRequest {
    ExecRequest {
        job_id: job_id.to_owned(),
        task: "nap".parse().unwrap(),
        command: command.iter().map(|s| s.to_string()).collect(),
        tty,
        size: tty.then_some(TerminalSize { cols: 120, rows: 40 }),
        env: BTreeMap::new(),
    }
}

async fn finish(mut session: ExecSession) -> (String, String, ExecOutput) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let last = tokio::time::timeout(WAIT, async {
        loop {
            match session.output.next().await.expect("an exit before the end") {
                ExecOutput::Stdout(b) => stdout.extend(b),
                ExecOutput::Stderr(b) => stderr.extend(b),
                last => return last,
            }
        }
    })
    .await
    .expect("the exec ends in time");
    (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap(), last)
}

fn scheduler(double: &NomadDouble, token: &str) -> NomadScheduler {
    NomadScheduler::new(NomadConfig {
        addr: double.address.clone(),
        token: Some(token.to_owned()),
        request_timeout_s: 2,
        ..NomadConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn exec_speaks_nomads_alloc_exec_websocket() {
    let double = NomadDouble::start(Duration::from_millis(500)).await;
    let nomad = scheduler(&double, &double.token);
    nomad.start(&spec("job-exec")).await.unwrap();
    wait_until("the allocation runs", WAIT, || async {
        nomad.observe("job-exec").await.unwrap() == TaskObservation::Running
    })
    .await;

    let session = nomad.exec(&request("job-exec", &["echo", "hello"], false)).await.unwrap();
    assert_eq!(finish(session).await, ("hello\n".into(), String::new(), ExecOutput::Exited(0)));
    let session = nomad.exec(&request("job-exec", &["exit", "3"], false)).await.unwrap();
    assert_eq!(finish(session).await, (String::new(), "exiting with 3\n".into(), ExecOutput::Exited(3)));

    let session = nomad.exec(&request("job-exec", &["cat"], false)).await.unwrap();
    session.input.send(ExecInput::Stdin(b"through nomad\n".to_vec())).await.unwrap();
    session.input.send(ExecInput::CloseStdin).await.unwrap();
    assert_eq!(finish(session).await.0, "through nomad\n");

    // The initial size goes first as a tty_size frame.
    let session = nomad.exec(&request("job-exec", &["stty", "size"], true)).await.unwrap();
    assert_eq!(finish(session).await.0, "40 120\r\n");

    // The request carried the task, the command as JSON and the job's namespace.
    let exec = double.requests().into_iter().find(|r| r.path.ends_with("/exec")).expect("an exec request");
    let q = |k: &str| exec.query.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
    assert_eq!(q("task").as_deref(), Some("main"));
    assert_eq!(q("command").as_deref(), Some(r#"["echo","hello"]"#));
    assert_eq!(q("namespace").as_deref(), Some("gofer-acme"));
    assert_eq!(q("tty").as_deref(), Some("false"));

    // An unknown job is not running; a wrong token is Nomad's 403, kept as unavailable.
    assert!(matches!(nomad.exec(&request("job-none", &["true"], false)).await, Err(SchedulerError::NotFound(_))));
    let stranger = scheduler(&double, "wrong-token");
    let refused = stranger.exec(&request("job-exec", &["true"], false)).await.expect_err("refused");
    assert!(matches!(&refused, SchedulerError::Unavailable(m) if m.contains("ACL token not found")), "{refused:?}");
    assert_eq!(double.violations(), Vec::<String>::new(), "requests or frames outside Nomad's API");
    nomad.stop("job-exec", Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn attach_goes_through_the_nomad_scheduler() {
    let double = NomadDouble::start(Duration::from_millis(500)).await;
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.scheduler = SchedulerKind::Nomad;
    config.nomad.addr = double.address.clone();
    config.nomad.token = Some(double.token.clone());
    config.nomad.request_timeout_s = 2;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let config = json!({"name": "Sleepy", "tasks": [{"id": "nap", "image": "debian:12", "command": ["sleep", "60"]}]});
    acme.register("builds", "sleepy", config).await;
    let run = acme.start_run("builds", "sleepy").await;
    let (ns, p, t) =
        (NamespaceId::parse("builds").unwrap(), PipelineId::parse("sleepy").unwrap(), TaskId::parse("nap").unwrap());
    let sdk = acme.sdk();
    wait_until("the task runs", WAIT, || {
        let (sdk, ns, p, t) = (sdk.clone(), ns.clone(), p.clone(), t.clone());
        async move { sdk.get_task(&ns, &p, run, &t).await.unwrap().state == TaskState::Running }
    })
    .await;
    let options = AttachOptions { command: vec!["echo".into(), "hello".into()], ..Default::default() };
    let event = tokio::time::timeout(WAIT, async {
        // The allocation may still be pending in Nomad: until it runs, attach says so.
        loop {
            let (_, mut reader) = sdk.attach(&ns, &p, run, &t, &options).await.unwrap();
            let mut out = Vec::new();
            loop {
                match reader.next().await.unwrap().unwrap() {
                    AttachEvent::Stdout(b) => out.extend(b),
                    AttachEvent::Error { code, .. } if code == "task_not_running" => break,
                    last => return (String::from_utf8(out).unwrap(), last),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("attach answered in time");
    assert_eq!(event, ("hello\n".to_owned(), AttachEvent::Exit(0)));
    assert_eq!(double.violations(), Vec::<String>::new());
    sdk.cancel_run(&ns, &p, run).await.unwrap();
}

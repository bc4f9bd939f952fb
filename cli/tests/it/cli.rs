//! The real `gofer` binary against a spawned server: every test runs commands as a user would,
//! parses `--output json` back, and checks exit codes (0 ok, 1 run unsuccessful, 2 usage, 3 API).

use std::process::Stdio;

use gofer_tests::{TenantClient, TestApp, spawn_app};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// What a `gofer` invocation printed and how it exited.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs `gofer` with `args`, optional stdin, and the host and token of `tenant`, in namespace
/// `builds`, with no config file of the user's.
async fn gofer_as(host: &str, token: &str, args: &[&str], stdin: Option<&str>) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(args)
        .env("GOFER_HOST", host)
        .env("GOFER_TOKEN", token)
        .env("GOFER_NAMESPACE", "builds")
        .env("GOFER_CLI_CONFIG", dir.path().join("config.json"))
        .env_remove("GOFER_API_URL")
        .env_remove("GOFER_API_TOKEN")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gofer binary starts");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).await.expect("write stdin");
        drop(input);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("gofer finished in time")
        .expect("gofer ran");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn gofer(acme: &TenantClient<'_>, args: &[&str]) -> Outcome {
    gofer_as(&acme.app.address, &acme.token, args, None).await
}

fn config(name: &str, script: &str) -> String {
    json!({
        "name": name,
        "tasks": [
            {"id": "build", "image": "debian:12", "command": ["sh", "-c", "echo building $TARGET"],
             "env": {"TARGET": "release", "DEPLOY_PASSWORD": "hunter2-not-for-dumps"}},
            {"id": "test", "image": "debian:12", "command": ["sh", "-c", script], "depends_on": {"build": "success"}}
        ]
    })
    .to_string()
}

async fn setup(app: &TestApp) -> TenantClient<'_> {
    let acme = app.tenant("acme").await;
    let created = gofer(&acme, &["namespace", "create", "builds", "-o", "json"]).await;
    assert_eq!(created.code, 0, "{created:?}");
    acme
}

#[tokio::test]
async fn usage_errors_exit_2_and_api_errors_exit_3() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let missing = gofer(&acme, &["run", "start"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    let bad_var = gofer(&acme, &["run", "start", "ship", "--var", "novalue"]).await;
    assert_eq!(bad_var.code, 2, "{bad_var:?}");
    let bad_id = gofer(&acme, &["run", "get", "ship", "not-a-number"]).await;
    assert_eq!(bad_id.code, 2, "{bad_id:?}");
    let invalid_config =
        gofer_as(&app.address, &acme.token, &["pipeline", "register", "ship", "--file", "-"], Some("{}")).await;
    assert_eq!(invalid_config.code, 2, "{invalid_config:?}");

    let not_found = gofer(&acme, &["pipeline", "get", "nothing-here"]).await;
    assert_eq!(not_found.code, 3, "{not_found:?}");
    assert!(not_found.stderr.contains("not_found"), "the problem code is shown: {not_found:?}");
    let bad_token = gofer_as(&app.address, "gofer_wrong", &["namespace", "list"], None).await;
    assert_eq!(bad_token.code, 3, "{bad_token:?}");
    let unreachable = gofer_as("http://127.0.0.1:9", &acme.token, &["namespace", "list"], None).await;
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
}

#[tokio::test]
async fn json_output_is_exactly_the_api_objects() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let listed = gofer(&acme, &["namespace", "list", "--output", "json"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let api = acme.request("GET", "/api/v1/namespaces", None).await;
    assert_eq!(listed.json(), api.body["items"]);

    let registered = gofer_as(
        &app.address,
        &acme.token,
        &["pipeline", "register", "ship", "--file", "-", "-o", "json"],
        Some(&config("CI", "true")),
    )
    .await;
    assert_eq!(registered.code, 0, "{registered:?}");
    assert_eq!(registered.json()["version"], 1);
    let pipeline = gofer(&acme, &["pipeline", "get", "ship", "-o", "json"]).await;
    assert_eq!(pipeline.json(), acme.pipeline("builds", "ship").await);

    let table = gofer(&acme, &["namespace", "list"]).await;
    assert!(table.stdout.starts_with("ID"), "{table:?}");
    assert!(table.stdout.contains("builds"), "{table:?}");
}

#[tokio::test]
async fn a_watched_run_exits_with_its_status_and_its_timeline_and_dump_read_back() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let host = app.address.clone();
    let ok = gofer_as(
        &host,
        &acme.token,
        &["pipeline", "register", "ship", "--file", "-"],
        Some(&config("CI", "echo ok $GREETING")),
    )
    .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("version 1"), "{ok:?}");

    let watched = gofer(&acme, &["run", "start", "ship", "--var", "GREETING=hello", "--watch"]).await;
    assert_eq!(watched.code, 0, "{watched:?}");
    assert!(watched.stdout.contains("test"), "the view shows the tasks: {watched:?}");
    assert!(watched.stdout.contains("successful"), "{watched:?}");

    let run = gofer(&acme, &["run", "get", "ship", "1", "-o", "json"]).await;
    let api = acme.request("GET", "/api/v1/namespaces/builds/pipelines/ship/runs/1", None).await;
    assert_eq!(run.json(), api.body["run"]);
    assert_eq!(run.json()["variables"]["GREETING"], "hello");

    let logs = gofer(&acme, &["logs", "ship", "1", "test"]).await;
    assert_eq!((logs.code, logs.stdout.as_str()), (0, "ok hello\n"), "{logs:?}");
    let followed = gofer(&acme, &["logs", "ship", "1", "build", "--follow"]).await;
    assert_eq!(followed.stdout, "building release\n", "{followed:?}");

    let timeline = gofer(&acme, &["run", "timeline", "ship", "1"]).await;
    assert_eq!(timeline.code, 0, "{timeline:?}");
    assert!(timeline.stdout.contains("critical path: build -> test"), "{timeline:?}");
    let data = gofer(&acme, &["run", "timeline", "ship", "1", "-o", "json"]).await.json();
    assert_eq!(data["critical_path"], json!(["build", "test"]));
    assert!(data["tasks"][1]["queue_wait_s"].is_number(), "{data}");

    let dump = gofer(&acme, &["debug", "dump", "run", "ship", "1"]).await;
    assert_eq!(dump.code, 0, "{dump:?}");
    assert!(!dump.stdout.contains("hunter2"), "no secret values in a dump");
    let doc = dump.json();
    assert_eq!(doc["run"], api.body["run"]);
    let tasks = doc["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["attempts"][0]["attempt"]["attempt"], 1, "{doc}");
    assert_eq!(tasks[0]["scheduler"]["job_ids"][0], "acme~builds~ship~1~build~1");
    assert!(doc["events"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(doc["quota"]["plan"]["id"], "default", "{doc}");
    assert_eq!(doc["config_version"]["config"]["tasks"][0]["env"]["DEPLOY_PASSWORD"], "<redacted>");
    let task_dump = gofer(&acme, &["debug", "dump", "task", "ship", "1", "test"]).await.json();
    assert_eq!(task_dump["tasks"][0]["attempts"][0]["last_log_lines"], json!(["ok hello"]));

    // Version 2 fails its test task: the watch exits 1, and the diff names the change.
    let failing = config("CI", "echo failing; exit 7");
    let v2 = gofer_as(&host, &acme.token, &["pipeline", "register", "ship", "--file", "-"], Some(&failing)).await;
    assert_eq!(v2.code, 0, "{v2:?}");
    let failed = gofer(&acme, &["run", "start", "ship", "--watch"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stdout.contains("abnormal_exit"), "the reason is shown: {failed:?}");
    let rewatch = gofer(&acme, &["run", "watch", "ship", "2", "-o", "json"]).await;
    assert_eq!(rewatch.code, 1, "{rewatch:?}");
    assert_eq!(rewatch.json()["status"], "failed");

    let diff = gofer(&acme, &["pipeline", "diff", "ship", "1", "2"]).await;
    assert_eq!(diff.code, 0, "{diff:?}");
    assert!(diff.stdout.contains("~ tasks.test.command"), "{diff:?}");
    let versions = gofer(&acme, &["pipeline", "versions", "ship", "-o", "json"]).await.json();
    assert_eq!(versions.as_array().map(Vec::len), Some(2));
}

#[test]
fn docs_cli_md_names_every_command() {
    use clap::CommandFactory;
    let docs = include_str!("../../../docs/cli.md");
    let mut missing = Vec::new();
    fn walk(command: &clap::Command, prefix: &str, docs: &str, missing: &mut Vec<String>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{prefix} {}", sub.get_name());
            if sub.get_subcommands().next().is_none() && !docs.contains(&format!("`{path}")) {
                missing.push(path.clone());
            }
            walk(sub, &path, docs, missing);
        }
    }
    walk(&gofer_cli::Cli::command(), "gofer", docs, &mut missing);
    assert!(missing.is_empty(), "docs/cli.md does not document: {missing:#?}");
}

#[tokio::test]
async fn every_resource_has_working_commands() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let op = |args: &'static [&'static str]| gofer_as(&app.address, &app.operator_token, args, None);

    let globex = op(&["tenant", "create", "globex", "-o", "json"]).await;
    assert_eq!(globex.json()["tenant"]["id"], "globex", "{globex:?}");
    assert!(globex.json()["token"].as_str().is_some_and(|t| !t.is_empty()));
    let tenants = op(&["tenant", "list", "-o", "json"]).await.json();
    assert!(tenants.as_array().expect("array").iter().any(|t| t["id"] == "globex"));
    assert!(op(&["tenant", "suspend", "globex", "-o", "json"]).await.json()["suspended"].is_string());
    assert!(op(&["tenant", "resume", "globex", "-o", "json"]).await.json()["suspended"].is_null());
    assert_eq!(op(&["tenant", "set-plan", "globex", "trial", "-o", "json"]).await.json()["id"], "trial");
    assert_eq!(op(&["plan", "get", "trial", "-o", "json"]).await.json()["id"], "trial");
    let forbidden = gofer(&acme, &["plan", "list"]).await;
    assert_eq!(forbidden.code, 3, "{forbidden:?}");
    assert!(forbidden.stderr.contains("forbidden"), "{forbidden:?}");

    assert_eq!(gofer(&acme, &["whoami", "-o", "json"]).await.json()["kind"], "tenant");
    let token = gofer(&acme, &["token", "create", "--role", "read", "--description", "ci", "-o", "json"]).await.json();
    assert_eq!(token["metadata"]["role"], "read", "{token}");
    let id = token["metadata"]["id"].as_str().expect("id").to_owned();
    let tokens = gofer(&acme, &["token", "list", "-o", "json"]).await.json();
    assert!(tokens.as_array().expect("array").iter().any(|t| t["id"] == id.as_str()));
    assert!(gofer(&acme, &["token", "revoke", &id, "-o", "json"]).await.json()["revoked"].is_string());
    let described =
        gofer(&acme, &["namespace", "update", "builds", "--description", "team builds", "-o", "json"]).await;
    assert_eq!(described.json()["description"], "team builds");

    let slow = json!({"name": "Slow", "tasks": [{"id": "wait", "image": "debian:12", "command": ["sleep", "30"]}]});
    let args = ["pipeline", "register", "ship", "--file", "-", "--no-deploy", "-o", "json"];
    let registered = gofer_as(&app.address, &acme.token, &args, Some(&slow.to_string())).await.json();
    assert_ne!(registered["state"], "live", "{registered}");
    let deployed = gofer(&acme, &["pipeline", "deploy", "ship", "1", "-o", "json"]).await.json();
    assert_eq!(deployed["to_version"], 1, "{deployed}");
    assert_eq!(
        gofer(&acme, &["pipeline", "deployments", "ship", "-o", "json"]).await.json().as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(gofer(&acme, &["pipeline", "disable", "ship", "-o", "json"]).await.json()["state"], "disabled");
    let refused = gofer(&acme, &["run", "start", "ship"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("pipeline_disabled"), "{refused:?}");
    assert_eq!(gofer(&acme, &["pipeline", "enable", "ship", "-o", "json"]).await.json()["state"], "active");

    let run = gofer(&acme, &["run", "start", "ship", "-o", "json"]).await.json();
    assert_eq!(run["id"], 1, "{run}");
    assert_eq!(
        gofer(&acme, &["task", "list", "ship", "1", "-o", "json"]).await.json().as_array().map(Vec::len),
        Some(1)
    );
    let cancelled = gofer(&acme, &["run", "cancel", "ship", "1", "-o", "json"]).await;
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    let watched = gofer(&acme, &["run", "watch", "ship", "1"]).await;
    assert_eq!(watched.code, 1, "a cancelled run is not a success: {watched:?}");
    assert!(watched.stdout.contains("cancelled"), "{watched:?}");
    let events = gofer(&acme, &["event", "list", "--pipeline", "ship", "-o", "json"]).await.json();
    let events = events.as_array().expect("array");
    assert!(events.iter().any(|e| e["kind"] == "run_completed"));
    // Event ids are opaque strings (issue 19 item 6); `--after` takes one back, and refuses a number.
    let first = events[0]["id"].as_str().expect("ids are strings");
    let rest = gofer(&acme, &["event", "list", "--pipeline", "ship", "--after", first, "-o", "json"]).await.json();
    assert_eq!(rest.as_array().map(Vec::len), Some(events.len() - 1), "{rest}");
    assert_eq!(rest[0]["id"], events[1]["id"]);
    assert_eq!(gofer(&acme, &["event", "list", "--after", "5"]).await.code, 2);
    // For people: a table under a header.
    let human = gofer(&acme, &["event", "list", "--pipeline", "ship"]).await;
    let header = human.stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with("ID") && header.contains("KIND") && header.contains("SUBJECT"), "{human:?}");

    assert_eq!(gofer(&acme, &["pipeline", "delete", "ship", "--delete-runs", "--yes"]).await.code, 0);
    assert_eq!(gofer(&acme, &["pipeline", "get", "ship"]).await.code, 3);
    assert_eq!(gofer(&acme, &["namespace", "delete", "builds", "--yes"]).await.code, 0);
}

#[tokio::test]
async fn inside_a_task_the_injected_url_token_and_namespace_are_enough() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["pipeline", "list", "-o", "json"])
        .env_clear()
        .env("HOME", dir.path())
        .env("GOFER_API_URL", &app.address)
        .env("GOFER_API_TOKEN", &acme.token)
        .env("GOFER_NAMESPACE_ID", "builds")
        .output()
        .await
        .expect("gofer ran");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).expect("json"), json!([]));
}

#[tokio::test]
async fn secrets_objects_stats_usage_ip_blocks_and_trials_have_working_commands() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let op = |args: &'static [&'static str]| gofer_as(&app.address, &app.operator_token, args, None);
    let config = config("Ship", "true");
    let registered = gofer_as(&app.address, &acme.token, &["pipeline", "register", "ship", "-f", "-"], Some(&config));
    assert_eq!(registered.await.code, 0);

    // Secrets: the value from stdin (trailing newline dropped) or --value; never printed back.
    let args = ["secret", "set", "DB_PASS", "--pipeline", "ship", "-o", "json"];
    let set = gofer_as(&app.address, &acme.token, &args, Some("hunter2\n")).await;
    assert_eq!(set.json()["pipeline_id"], "ship", "{set:?}");
    assert!(!set.stdout.contains("hunter2"), "{set:?}");
    let global =
        gofer(&acme, &["secret", "set", "REGISTRY", "--value", "v", "--namespace-glob", "build*", "-o", "json"]);
    assert_eq!(global.await.json()["namespaces"], json!(["build*"]));
    let listed = gofer(&acme, &["secret", "list", "-o", "json"]).await.json();
    assert_eq!(listed.as_array().map(|a| a.iter().map(|s| s["key"].clone()).collect()), Some(vec![json!("REGISTRY")]));
    let got = gofer(&acme, &["secret", "get", "DB_PASS", "-p", "ship", "-o", "json"]).await.json();
    assert_eq!(got["key"], "DB_PASS");
    assert!(got.get("value").is_none(), "{got}");
    assert_eq!(gofer(&acme, &["secret", "delete", "DB_PASS", "-p", "ship"]).await.code, 0);
    assert_eq!(gofer(&acme, &["secret", "get", "DB_PASS", "-p", "ship"]).await.code, 3);
    let misplaced = gofer(&acme, &["secret", "set", "X", "-p", "ship", "--value", "v", "--namespace-glob", "a"]).await;
    assert_eq!(misplaced.code, 2, "{misplaced:?}");

    // Objects: put from a file, read back to stdout and to a file, list, delete.
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.bin");
    let content: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &content).expect("write input");
    let input = input.to_str().expect("utf-8 path");
    let put = gofer(&acme, &["object", "put", "ship", "cache/deps.bin", "-f", input, "-o", "json"]).await.json();
    assert_eq!(put["size"], 70_000, "{put}");
    let output = dir.path().join("out.bin");
    let output = output.to_str().expect("utf-8 path");
    assert_eq!(gofer(&acme, &["object", "get", "ship", "cache/deps.bin", "-f", output]).await.code, 0);
    assert_eq!(std::fs::read(output).expect("read output"), content);
    // Not a terminal (a pipe, as in scripts): no progress bar, in tables or JSON.
    for format in ["table", "json"] {
        let put = gofer(&acme, &["object", "put", "ship", "cache/deps.bin", "-f", input, "-o", format]).await;
        let get = gofer(&acme, &["object", "get", "ship", "cache/deps.bin", "-f", output, "-o", format]).await;
        for out in [put, get] {
            assert_eq!(out.code, 0, "{out:?}");
            let printed = format!("{}{}", out.stdout, out.stderr);
            assert!(!printed.contains(['\r', '\x1b', '=']) && !printed.contains("uploading"), "{format}: {out:?}");
        }
    }
    let text = gofer_as(&app.address, &acme.token, &["object", "put", "ship", "note", "-f", "-"], Some("hello")).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert_eq!(gofer(&acme, &["object", "get", "ship", "note"]).await.stdout, "hello");
    let objects = gofer(&acme, &["object", "list", "ship", "-o", "json"]).await.json();
    assert_eq!(objects.as_array().map(Vec::len), Some(2), "{objects}");
    assert_eq!(gofer(&acme, &["object", "delete", "ship", "note"]).await.code, 0);
    assert_eq!(gofer(&acme, &["object", "get", "ship", "note"]).await.code, 3);
    assert_eq!(gofer(&acme, &["object", "list", "ship", "--run", "1"]).await.code, 3, "no run 1 yet");

    let stats = gofer(&acme, &["pipeline", "stats", "ship", "-o", "json"]).await.json();
    assert_eq!(stats["last_7_days"]["runs"], 0, "{stats}");
    let usage = gofer(&acme, &["usage", "--group-by", "pipeline", "-o", "json"]).await.json();
    assert_eq!(usage["group_by"], "pipeline", "{usage}");
    assert_eq!(usage["this_month"]["plan"], "default", "{usage}");
    let csv = op(&["usage", "--tenant", "acme", "--csv"]).await;
    assert!(csv.stdout.starts_with("tenant,group_by,key,"), "{csv:?}");

    let block = op(&["ip-block", "add", "203.0.113.9", "--duration", "60", "--reason", "test", "-o", "json"]).await;
    assert_eq!(block.json()["address"], "203.0.113.9", "{block:?}");
    assert_eq!(block.json()["scope"], "anonymous", "the default scope: {block:?}");
    let all = op(&["ip-block", "add", "203.0.113.10", "--scope", "all", "-o", "json"]).await;
    assert_eq!(all.json()["scope"], "all", "{all:?}");
    assert_eq!(op(&["ip-block", "add", "203.0.113.11", "--scope", "most"]).await.code, 2, "a scope clap refuses");
    let blocks = op(&["ip-block", "list", "-o", "json"]).await.json();
    assert!(blocks.as_array().expect("array").iter().any(|b| b["reason"] == "test"), "{blocks}");
    let table = op(&["ip-block", "list"]).await.stdout;
    assert!(table.contains("SCOPE") && table.contains(" all "), "{table}");
    assert_eq!(op(&["ip-block", "remove", "203.0.113.9"]).await.code, 0);
    assert_eq!(op(&["ip-block", "remove", "203.0.113.10"]).await.code, 0);

    let trial = gofer_as(&app.address, "", &["trial", "-o", "json"], None).await.json();
    let tenant = trial["tenant"]["id"].as_str().expect("trial tenant id").to_owned();
    assert!(trial["token"].as_str().is_some_and(|t| !t.is_empty()), "{trial}");
    let args = ["tenant", "convert", tenant.as_str(), "default", "-o", "json"];
    let converted = gofer_as(&app.address, &app.operator_token, &args, None).await.json();
    assert_eq!(converted["id"], tenant.as_str(), "{converted}");
}

#[tokio::test]
async fn attach_runs_a_command_in_a_running_task_once_and_exits_with_its_code() {
    let app = spawn_app().await;
    let acme = setup(&app).await;
    let config = json!({"name": "Sleepy", "tasks": [
        {"id": "nap", "image": "debian:12", "command": ["sh", "-c", "echo ready; sleep 60"]}
    ]});
    acme.register("builds", "sleepy", config).await;
    let run_id = acme.start_run("builds", "sleepy").await;
    let run = run_id.to_string();
    gofer_tests::wait_until("the task is ready", std::time::Duration::from_secs(30), || async {
        gofer(&acme, &["logs", "sleepy", &run, "nap"]).await.stdout.contains("ready")
    })
    .await;

    // stdin is not a terminal here: pipes, stdout and stderr apart, each byte exactly once.
    let hello = gofer(&acme, &["attach", "sleepy", &run, "nap", "--", "echo", "hello"]).await;
    assert_eq!((hello.code, hello.stdout.as_str(), hello.stderr.as_str()), (0, "hello\n", ""), "{hello:?}");
    let failing = gofer(&acme, &["attach", "sleepy", &run, "nap", "--", "sh", "-c", "echo no >&2; exit 5"]).await;
    assert_eq!((failing.code, failing.stdout.as_str(), failing.stderr.as_str()), (5, "", "no\n"), "{failing:?}");
    let piped =
        gofer_as(&acme.app.address, &acme.token, &["attach", "sleepy", &run, "nap", "--", "cat"], Some("piped in\n"))
            .await;
    assert_eq!((piped.code, piped.stdout.as_str()), (0, "piped in\n"), "{piped:?}");

    // A task that is over cannot be attached to: an API error, exit 3.
    assert_eq!(gofer(&acme, &["run", "cancel", "sleepy", &run]).await.code, 0);
    acme.wait_for_run("builds", "sleepy", run_id, std::time::Duration::from_secs(30)).await;
    let over = gofer(&acme, &["attach", "sleepy", &run, "nap", "--", "true"]).await;
    assert_eq!(over.code, 3, "{over:?}");
    assert!(over.stderr.contains("task_not_running"), "{over:?}");
}

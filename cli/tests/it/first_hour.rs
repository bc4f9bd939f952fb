//! A new user's first hour with the CLI (issue 20): a host given without a scheme works, a server
//! that cannot be reached is named with the reason, piping into `head` ends quietly, and
//! deletions that cannot be undone are confirmed.

use std::process::Stdio;

use gofer_tests::{TenantClient, spawn_app};
use tokio::io::AsyncReadExt;

/// Runs `gofer` against `host` with `tenant`'s token and no config file of the user's; answers
/// the exit code and stderr.
async fn gofer_at(host: &str, tenant: &TenantClient<'_>, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(args)
        .env("GOFER_HOST", host)
        .env("GOFER_TOKEN", &tenant.token)
        .env("GOFER_CLI_CONFIG", dir.path().join("config.json"))
        .env_remove("GOFER_API_URL")
        .env_remove("GOFER_API_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("gofer ran");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_host_without_a_scheme_works_and_an_unreachable_one_is_named_with_the_reason() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let bare = app.address.trim_start_matches("http://");
    assert!(!bare.contains("://"), "{bare}");
    let (code, stderr) = gofer_at(bare, &acme, &["whoami"]).await;
    assert_eq!(code, 0, "{stderr}");

    // Port 1 on loopback: nothing listens there.
    let (code, stderr) = gofer_at("127.0.0.1:1", &acme, &["whoami"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach http://127.0.0.1:1: connection refused: is the server running"),
        "{stderr}"
    );

    let (code, stderr) = gofer_at("ftp://127.0.0.1:8080", &acme, &["whoami"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("host: `ftp://127.0.0.1:8080` has the scheme ftp") && stderr.contains("http://"),
        "{stderr}"
    );
}

#[tokio::test]
async fn piping_a_long_output_into_a_reader_that_stops_ends_quietly() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    // About 590 KB of log: far more than a pipe holds, so the CLI is still writing when the reader
    // goes away, as under `gofer logs … | head`.
    acme.register_one_task("builds", "chatty", "talk", &["seq", "1", "100000"]).await;
    let run = acme.run_to_completion("builds", "chatty", std::time::Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["logs", "chatty", &run.id.to_string(), "talk"])
        .env("GOFER_HOST", &app.address)
        .env("GOFER_TOKEN", &acme.token)
        .env("GOFER_NAMESPACE", "builds")
        .env("GOFER_CLI_CONFIG", dir.path().join("config.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gofer binary starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut head = [0u8; 16];
    stdout.read_exact(&mut head).await.expect("the log starts");
    assert_eq!(&head[..8], b"1\n2\n3\n4\n");
    drop(stdout);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("gofer ends once its reader is gone")
        .expect("gofer ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr, no panic: {stderr}");
}

#[tokio::test]
async fn deleting_a_namespace_needs_yes_off_a_terminal_and_errors_name_cli_flags() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "slow", "wait", &["sleep", "60"]).await;
    acme.start_run("builds", "slow").await;

    let (code, stderr) = gofer_at(&app.address, &acme, &["namespace", "delete", "builds"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("every pipeline, run, log, secret and object in it") && stderr.contains("pass --yes"),
        "{stderr}"
    );
    let still = acme.request("GET", "/api/v1/namespaces/builds", None).await;
    assert_eq!(still.status, 200, "nothing was deleted");

    // Confirmed, but runs are live: the refusal says the CLI's flag, not the API's query string.
    let (code, stderr) = gofer_at(&app.address, &acme, &["namespace", "delete", "builds", "--yes"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("namespace_busy") && stderr.contains("--force") && !stderr.contains("?force"), "{stderr}");

    let (code, stderr) = gofer_at(&app.address, &acme, &["namespace", "delete", "builds", "--force", "-y"]).await;
    assert_eq!(code, 0, "{stderr}");
    let gone = acme.request("GET", "/api/v1/namespaces/builds", None).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn completion_scripts_cover_the_commands_for_each_shell() {
    for (shell, marker) in [("bash", "_gofer()"), ("zsh", "#compdef gofer"), ("fish", "complete -c gofer")] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
            .args(["completion", shell])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("gofer ran");
        let script = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{shell}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(script.contains(marker), "{shell}: no {marker}");
        for command in ["namespace", "pipeline", "logs", "attach"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
}

#[tokio::test]
async fn latest_stands_for_the_newest_run_wherever_a_run_id_goes() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "hello", "greet", &["echo", "hello from the latest run"]).await;
    let gofer_ns = |args: &'static [&'static str]| {
        let (host, token) = (app.address.clone(), acme.token.clone());
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            tokio::process::Command::new(env!("CARGO_BIN_EXE_gofer"))
                .args(args)
                .env("GOFER_HOST", host)
                .env("GOFER_TOKEN", token)
                .env("GOFER_NAMESPACE", "builds")
                .env("GOFER_CLI_CONFIG", dir.path().join("config.json"))
                .stdin(Stdio::null())
                .output()
                .await
                .expect("gofer ran")
        }
    };
    let none = gofer_ns(&["run", "get", "hello", "latest"]).await;
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("latest: pipeline hello has no runs yet"));

    acme.run_to_completion("builds", "hello", std::time::Duration::from_secs(60)).await;
    let newest = acme.run_to_completion("builds", "hello", std::time::Duration::from_secs(60)).await;
    let got = gofer_ns(&["run", "get", "hello", "latest", "-o", "json"]).await;
    assert_eq!(got.status.code(), Some(0), "{}", String::from_utf8_lossy(&got.stderr));
    let run: serde_json::Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(run["id"].as_i64(), Some(newest.id.get()));
    let logs = gofer_ns(&["logs", "hello", "latest", "greet"]).await;
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello from the latest run\n");
}

#[tokio::test]
async fn a_global_secret_no_namespace_may_use_is_set_with_a_warning() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let (code, stderr) = gofer_at(&app.address, &acme, &["secret", "set", "SHARED", "--value", "s3cret"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: no namespace may use global secret SHARED") && stderr.contains("--namespace-glob"),
        "{stderr}"
    );
    let (code, stderr) =
        gofer_at(&app.address, &acme, &["secret", "set", "SHARED", "--value", "s3cret", "--namespace-glob", "team-*"])
            .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[tokio::test]
async fn one_and_two_character_names_are_ids_like_any_other() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let (code, stderr) = gofer_at(&app.address, &acme, &["namespace", "create", "ci"]).await;
    assert_eq!(code, 0, "{stderr}");
    acme.register_one_task("ci", "go", "qa", &["echo", "short names"]).await;
    let run = acme.run_to_completion("ci", "go", std::time::Duration::from_secs(60)).await;
    assert_eq!(run.status, gofer_core::RunStatus::Successful);
    let (code, stderr) = gofer_at(&app.address, &acme, &["namespace", "create", "9"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must start with a lowercase letter"), "{stderr}");
}

//! Attach end to end: the real server, the websocket route, the engine's checks and the local
//! sandbox scheduler's exec into a running bubblewrap sandbox, against real Postgres.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, TaskId, TaskState};
use gofer_sdk::{AttachEvent, AttachOptions, AttachReader, AttachWriter};
use gofer_tests::{TenantClient, TestApp, spawn_app, spawn_with, test_config, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn ids() -> (NamespaceId, PipelineId, TaskId) {
    (NamespaceId::parse("builds").unwrap(), PipelineId::parse("sleepy").unwrap(), TaskId::parse("nap").unwrap())
}

/// A run whose task prints `ready` then sleeps; answers once the task is running and ready.
async fn sleeping_task(client: &TenantClient<'_>) -> RunId {
    client.namespace("builds").await;
    let config = json!({"name": "Sleepy", "tasks": [
        {"id": "nap", "image": "debian:12", "command": ["sh", "-c", "echo ready; sleep 60"],
         "env": {"VISIBLE": "plain", "HIDDEN": "secret{{ API_KEY }}"}}
    ]});
    client.register("builds", "sleepy", config).await;
    let secret = "/api/v1/namespaces/builds/pipelines/sleepy/secrets/API_KEY";
    assert_eq!(client.request("PUT", secret, Some(&json!({"value": "s3cr3t-value"}))).await.status, 201);
    let run = client.start_run("builds", "sleepy").await;
    let sdk = client.sdk();
    let (ns, p, t) = ids();
    wait_until("the task runs and is ready", WAIT, || {
        let sdk = sdk.clone();
        let (ns, p, t) = (ns.clone(), p.clone(), t.clone());
        async move {
            let task = sdk.get_task(&ns, &p, run, &t).await.unwrap();
            task.state == TaskState::Running
                && sdk.task_logs(&ns, &p, run, &t).await.is_ok_and(|log| log.contains("ready"))
        }
    })
    .await;
    run
}

async fn attach(client: &TenantClient<'_>, run: RunId, command: &[&str]) -> (AttachWriter, AttachReader) {
    let (ns, p, t) = ids();
    let options = AttachOptions { command: command.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    client.sdk().attach(&ns, &p, run, &t, &options).await.expect("the websocket opens")
}

/// Everything the server sends until the session ends: (stdout, stderr, the last event).
async fn drain(mut reader: AttachReader) -> (String, String, AttachEvent) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let last = tokio::time::timeout(WAIT, async {
        loop {
            match reader.next().await.expect("a message before the close").expect("a readable message") {
                AttachEvent::Stdout(b) => stdout.extend(b),
                AttachEvent::Stderr(b) => stderr.extend(b),
                last => return last,
            }
        }
    })
    .await
    .expect("the session ends in time");
    // After the exit or the error, a clean close.
    assert!(reader.next().await.is_none(), "the server closes after the last message");
    (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap(), last)
}

async fn error_code(client: &TenantClient<'_>, run: RunId) -> String {
    let (_, reader) = attach(client, run, &["true"]).await;
    match drain(reader).await.2 {
        AttachEvent::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn cancel(client: &TenantClient<'_>, run: RunId) {
    let (ns, p, _) = ids();
    client.sdk().cancel_run(&ns, &p, run).await.unwrap();
}

#[tokio::test]
async fn attach_runs_a_command_inside_the_running_task_and_passes_its_exit_code_through() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;

    let (_, reader) = attach(&acme, run, &["echo", "hello"]).await;
    assert_eq!(drain(reader).await, ("hello\n".into(), String::new(), AttachEvent::Exit(0)));

    // Inside the task's sandbox, with its plain env only: secrets are not passed to attach.
    let script = "echo $VISIBLE/$HIDDEN/$GOFER_TASK_ID; pwd; id -u; echo oops >&2; exit 7";
    let (_, reader) = attach(&acme, run, &["sh", "-c", script]).await;
    assert_eq!(drain(reader).await, ("plain//nap\n/job\n65534\n".into(), "oops\n".into(), AttachEvent::Exit(7)));

    // Input goes to the command.
    let (mut writer, reader) = attach(&acme, run, &["cat"]).await;
    writer.stdin(b"typed\n").await.unwrap();
    writer.close_stdin().await.unwrap();
    assert_eq!(drain(reader).await, ("typed\n".into(), String::new(), AttachEvent::Exit(0)));

    // Each attach is audited with the token and the command, never the input.
    let attached = acme.events_of_kind(EventKind::TaskAttached, 3, Duration::from_secs(10)).await;
    assert_eq!(attached.len(), 3);
    assert_eq!(attached[0].payload["command"], json!(["echo", "hello"]));
    assert_eq!(attached[2].payload["command"], json!(["cat"]));
    assert!(attached[0].payload["token_id"].as_str().is_some_and(|t| t.len() == 36));
    assert!(!attached.iter().any(|e| e.payload.to_string().contains("typed")));
    cancel(&acme, run).await;
}

#[tokio::test]
async fn only_running_tasks_of_ones_own_tenant_can_be_attached_by_tokens_that_start_runs() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let (ns, p, t) = ids();

    // A read token may not attach: refused before the upgrade.
    let read = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let reader = app.sdk(read.body["token"].as_str().unwrap());
    let refused = reader.attach(&ns, &p, run, &t, &AttachOptions::default()).await.err().expect("refused");
    assert_eq!((refused.status(), refused.code()), (Some(403), Some("forbidden")));

    // Another tenant's run looks missing.
    let umbrella = app.tenant("umbrella").await;
    umbrella.namespace("builds").await;
    assert_eq!(error_code(&umbrella, run).await, "pipeline_not_found");

    // A plain HTTP request (no upgrade) answers problem details.
    let path = format!("/api/v1/namespaces/builds/pipelines/sleepy/runs/{run}/tasks/nap/attach");
    let plain = acme.request("GET", &path, None).await;
    assert_eq!((plain.status, plain.code()), (400, "websocket_required"));
    let plain = umbrella.request("GET", &path, None).await;
    assert_eq!((plain.status, plain.code()), (404, "pipeline_not_found"));

    // Once the task is over, attach answers task_not_running.
    cancel(&acme, run).await;
    acme.wait_for_run("builds", "sleepy", run, WAIT).await;
    assert_eq!(error_code(&acme, run).await, "task_not_running");
}

#[tokio::test]
async fn a_plan_without_attach_refuses_it() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let op = Some(app.operator_token.as_str());
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await;
    assert_eq!(trial.body["plan"]["allow_attach"], json!(false), "trials never attach");
    let mut plan = app.request("GET", "/api/v1/plans/default", op, None).await.body["plan"].clone();
    assert_eq!(plan["allow_attach"], json!(true));
    plan["allow_attach"] = json!(false);
    assert_eq!(app.request("PUT", "/api/v1/plans/default", op, Some(&plan)).await.status, 200);
    assert_eq!(error_code(&acme, run).await, "attach_not_allowed");
    cancel(&acme, run).await;
}

#[tokio::test]
async fn the_operator_can_disable_attach_for_everyone() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(gofer_tests::fresh_database().await, state_dir.path());
    config.attach.enabled = false;
    let app: TestApp = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    assert_eq!(error_code(&acme, run).await, "attach_disabled");
    cancel(&acme, run).await;
}

#[tokio::test]
async fn with_the_local_scheduler_an_attach_through_another_replica_reaches_the_replica_running_the_task() {
    // Replica A alone starts the task, so its local sandbox runs in A; B starts afterwards.
    let database = gofer_tests::fresh_database().await;
    let dir_a = tempfile::tempdir().unwrap();
    let key = gofer_tests::KnownRunTokenKey::generate();
    let a = spawn_with(with_shared_keys(&key, test_config(database.clone(), dir_a.path())), dir_a).await;
    let acme = a.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let dir_b = tempfile::tempdir().unwrap();
    let b = spawn_with(with_shared_keys(&key, test_config(database, dir_b.path())), dir_b).await;
    let through_b = TenantClient { app: &b, tenant: acme.tenant.clone(), token: acme.token.clone() };

    // Through B: forwarded to A, the command runs in the task's sandbox, its output arrives once.
    let (_, reader) = attach(&through_b, run, &["sh", "-c", "echo hello from $GOFER_TASK_ID"]).await;
    assert_eq!(drain(reader).await, ("hello from nap\n".into(), String::new(), AttachEvent::Exit(0)));
    let (mut writer, reader) = attach(&through_b, run, &["cat"]).await;
    writer.stdin(b"typed through b\n").await.unwrap();
    writer.close_stdin().await.unwrap();
    assert_eq!(drain(reader).await, ("typed through b\n".into(), String::new(), AttachEvent::Exit(0)));
    // Through A itself, as before.
    let (_, reader) = attach(&acme, run, &["echo", "direct"]).await;
    assert_eq!(drain(reader).await, ("direct\n".into(), String::new(), AttachEvent::Exit(0)));

    // Each attach is audited once, by the replica that ran it, whichever one it arrived at.
    let attached = acme.events_of_kind(EventKind::TaskAttached, 3, Duration::from_secs(10)).await;
    assert_eq!(attached.len(), 3, "{attached:?}");

    // Errors decided by A come back through B as messages: once the task ends, B answers itself.
    cancel(&acme, run).await;
    wait_until("the task ends", WAIT, || async {
        let (ns, p, t) = ids();
        acme.sdk().get_task(&ns, &p, run, &t).await.unwrap().state == TaskState::Complete
    })
    .await;
    assert_eq!(error_code(&through_b, run).await, "task_not_running");
}

/// `config` with `key` as its run-token key: replicas of one service share it (it signs their
/// forwarding assertions too).
fn with_shared_keys(key: &gofer_tests::KnownRunTokenKey, mut config: gofer_api::Config) -> gofer_api::Config {
    key.configure(&mut config);
    config
}

/// A CA and a certificate for `localhost` signed by it, made with the openssl CLI: (CA PEM path,
/// leaf certificate PEM path, leaf key PEM path).
fn test_certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let script = "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=gofer-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile leaf.ext 2>/dev/null";
    let status = std::process::Command::new("sh").args(["-c", script]).current_dir(dir).status().expect("openssl runs");
    assert!(status.success(), "making test certificates failed (is openssl installed?)");
    (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"))
}

/// A TLS-terminating proxy on `listener` in front of `upstream` (plain HTTP), as a replica's
/// TLS sidecar would be; records each connection's request head.
fn tls_proxy(
    listener: tokio::net::TcpListener,
    certificate: &std::path::Path,
    key: &std::path::Path,
    upstream: String,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain = CertificateDer::pem_file_iter(certificate).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, heads) = (acceptor.clone(), upstream.clone(), heads.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                if plain.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    recorded
}

#[tokio::test]
async fn a_forwarded_attach_goes_over_tls_with_a_signed_assertion_never_the_users_token() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, leaf, leaf_key) = test_certificates(certs.path());
    // Replica A is reached by the others only through its TLS sidecar: its replica URL is https.
    let sidecar = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sidecar_port = sidecar.local_addr().unwrap().port();
    let database = gofer_tests::fresh_database().await;
    let dir_a = tempfile::tempdir().unwrap();
    let key = gofer_tests::KnownRunTokenKey::generate();
    let mut config_a = with_shared_keys(&key, test_config(database.clone(), dir_a.path()));
    config_a.replica_url = Some(format!("https://localhost:{sidecar_port}"));
    let a = spawn_with(config_a, dir_a).await;
    let heads = tls_proxy(sidecar, &leaf, &leaf_key, a.address.trim_start_matches("http://").to_owned());
    let acme = a.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let dir_b = tempfile::tempdir().unwrap();
    let mut config_b = with_shared_keys(&key, test_config(database, dir_b.path()));
    config_b.attach.replica_ca_file = Some(ca);
    let b = spawn_with(config_b, dir_b).await;
    let through_b = TenantClient { app: &b, tenant: acme.tenant.clone(), token: acme.token.clone() };

    let (_, reader) = attach(&through_b, run, &["echo", "over tls"]).await;
    assert_eq!(drain(reader).await, ("over tls\n".into(), String::new(), AttachEvent::Exit(0)));
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "B reached A through the TLS sidecar once: {heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(head.contains("gofer-attach-assertion: "), "{head}");
    // Before: B relayed the user's bearer token to A (over plain HTTP).
    assert!(!head.contains("authorization:") && !head.contains(&acme.token.to_ascii_lowercase()), "{head}");

    // A accepts an assertion only as the replicas sign it, unexpired, and for the task it names.
    let path = format!("/api/v1/namespaces/builds/pipelines/sleepy/runs/{}/tasks/nap/attach", run.get());
    let claims = |task: &str| {
        json!({"tenant": "acme", "token_id": uuid::Uuid::nil(), "namespace": "builds", "pipeline": "sleepy",
               "run": run.get(), "task": task, "by": "a-replica"})
    };
    let soon = time::OffsetDateTime::now_utc() + Duration::from_secs(30);
    let keys = key.keys();
    let sign = |audience: &str, task: &str, expires| keys.sign_assertion(audience, claims(task), expires).unwrap();
    // Another secret under the same key id: only the signature tells them apart.
    let other_key = gofer_tests::KnownRunTokenKey::generate()
        .keys()
        .sign_assertion("gofer-attach-forward", claims("nap"), soon)
        .unwrap();
    let send = |assertion: String| {
        let url = format!("{}{path}?command=true", a.address);
        async move {
            let response =
                reqwest::Client::new().get(url).header("gofer-attach-assertion", assertion).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    // Accepted: a plain GET then fails only for not being a websocket.
    assert_eq!(send(sign("gofer-attach-forward", "nap", soon)).await, (400, "websocket_required".into()));
    for (what, assertion) in [
        ("garbage", "not-an-assertion".to_owned()),
        ("another task", sign("gofer-attach-forward", "other", soon)),
        ("another audience", sign("gofer-trial-challenge", "nap", soon)),
        ("expired", sign("gofer-attach-forward", "nap", time::OffsetDateTime::now_utc() - Duration::from_secs(5))),
        ("another key", other_key.clone()),
    ] {
        assert_eq!(send(assertion).await, (401, "unauthorized".into()), "{what}");
    }
    cancel(&acme, run).await;
}

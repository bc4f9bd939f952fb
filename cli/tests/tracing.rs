//! OpenTelemetry: a `gofer service start` process exporting OTLP/HTTP (JSON) to a small receiver
//! in this test; one run's spans form one trace, from the HTTP request that started the run down
//! through the engine's task execution to the scheduler calls.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// Every span the receiver got, flattened: (trace id, span id, parent span id, name, attributes).
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: Value,
}

fn spans_of(export: &Value) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    trace: span["traceId"].as_str().unwrap_or_default().to_owned(),
                    id: span["spanId"].as_str().unwrap_or_default().to_owned(),
                    parent: span["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    attributes: span["attributes"].clone(),
                });
            }
        }
    }
    spans
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let value = &a["value"];
        value["stringValue"].as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
    })
}

async fn call(http: &reqwest::Client, address: &str, token: &str, method: &str, path: &str, body: Value) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = http.request(method, format!("{address}{path}")).bearer_auth(token).json(&body).send().await;
    let response = response.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test]
async fn a_runs_spans_form_one_trace_from_the_request_to_the_scheduler() {
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    let receiver = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().app_data(web::PayloadConfig::new(16 << 20)).route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                let sink = sink.clone();
                async move {
                    let export: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().expect("lock").extend(spans_of(&export));
                    HttpResponse::Ok().json(json!({}))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let collector = format!("http://{}", receiver.addrs()[0]);
    let receiver = receiver.run();
    let stop = receiver.handle();
    tokio::spawn(receiver);

    let database_url = gofer_tests::fresh_database().await;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let operator = format!("gofer_test_operator_{}", uuid::Uuid::new_v4().simple());
    let mut child = Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["service", "start"])
        .env("GOFER_LISTEN", "127.0.0.1:0")
        .env("GOFER_DATABASE_URL", &database_url)
        .env("GOFER_STATE_DIR", state_dir.path())
        .env("GOFER_BOOTSTRAP_TOKEN", &operator)
        .env("GOFER_LOG_FORMAT", "json")
        .env("GOFER_LOG_LEVEL", "info")
        .env("GOFER_ENGINE__MONITOR_INTERVAL_MS", "50")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gofer binary starts");
    let address = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let address = loop {
            let line = lines.next().expect("the server printed its address").expect("text");
            if let Some(rest) = line.strip_prefix("Gofer is listening on ") {
                break rest.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        address
    };

    let http = reqwest::Client::new();
    let tenant =
        call(&http, &address, &operator, "POST", "/api/v1/tenants", json!({"id": "acme", "name": "Acme"})).await;
    let token = tenant["token"].as_str().expect("token").to_owned();
    call(&http, &address, &token, "POST", "/api/v1/namespaces", json!({"id": "builds", "name": "Builds"})).await;
    let config = json!({"name": "Hello", "tasks": [{"id": "say", "image": "debian:12", "command": ["true"]}]});
    call(&http, &address, &token, "POST", "/api/v1/namespaces/builds/pipelines/hello/configs", config).await;
    let run = call(&http, &address, &token, "POST", "/api/v1/namespaces/builds/pipelines/hello/runs", json!({})).await;
    let run_id = run["run"]["id"].as_i64().expect("run id");

    // Wait until the purge of the finished job (the last scheduler call) has been exported.
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans = received.lock().expect("lock").clone();
        if spans.iter().any(|s| s.name == "scheduler.purge") {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduler.purge span arrived; got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    stop.stop(false).await;

    let by_id = |id: &str| spans.iter().find(|s| s.id == id);
    let execution = spans.iter().find(|s| s.name == "task_execution").expect("a task_execution span");
    assert_eq!(attribute(execution, "tenant").as_deref(), Some("acme"));
    assert_eq!(attribute(execution, "namespace").as_deref(), Some("builds"));
    assert_eq!(attribute(execution, "pipeline").as_deref(), Some("hello"));
    assert_eq!(attribute(execution, "run").as_deref(), Some(run_id.to_string().as_str()));
    assert_eq!(attribute(execution, "task").as_deref(), Some("say"));
    // Its parent is a span of the request that started the run, in the same trace.
    let request = by_id(&execution.parent).expect("the task execution's parent span was exported");
    assert_eq!(request.trace, execution.trace);
    let mut root = request;
    while let Some(parent) = by_id(&root.parent) {
        root = parent;
    }
    assert!(root.parent.is_empty(), "the trace's root span was exported");
    assert!(
        attribute(root, "http.method").or_else(|| attribute(root, "http.request.method")).as_deref() == Some("POST"),
        "the trace starts at the POST that started the run: {root:?}"
    );
    assert!(
        attribute(root, "http.route").is_some_and(|r| r.ends_with("/runs")),
        "the root span names the runs route: {root:?}"
    );
    for call in ["scheduler.start", "engine.conclude", "scheduler.purge"] {
        let span = spans.iter().find(|s| s.name == call).unwrap_or_else(|| panic!("no {call} span"));
        assert_eq!(span.parent, execution.id, "{call} is a child of the task execution");
        assert_eq!(span.trace, execution.trace);
    }
}

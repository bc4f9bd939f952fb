//! OpenTelemetry: a `gofer service start` process exporting OTLP/HTTP to a small receiver in this
//! test. One run's spans (JSON) form one trace, from the HTTP request that started the run down
//! through the engine's task execution to the scheduler calls; its metrics (protobuf, the default
//! protocol) arrive with the same names and labels as `/metrics`.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message as _;
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

/// One exported metric point, flattened: name, attributes (`key=value`, sorted), and its value
/// (a sum's or gauge's value, a histogram's count).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    name: String,
    attributes: Vec<String>,
    value: f64,
}

fn points_of(export: &ExportMetricsServiceRequest) -> Vec<Point> {
    let mut points = Vec::new();
    let metrics = export.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
    for m in metrics {
        let attributes = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            let mut attributes: Vec<String> = kvs
                .iter()
                .map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(v)) => format!("{}={v}", kv.key),
                    other => format!("{}={other:?}", kv.key),
                })
                .collect();
            attributes.sort();
            attributes
        };
        let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            Some(number_data_point::Value::AsDouble(v)) => v,
            None => f64::NAN,
        };
        let name = m.name.clone();
        match &m.data {
            Some(metric::Data::Sum(sum)) => points.extend(sum.data_points.iter().map(|p| Point {
                name: name.clone(),
                attributes: attributes(&p.attributes),
                value: number(p),
            })),
            Some(metric::Data::Gauge(gauge)) => points.extend(gauge.data_points.iter().map(|p| Point {
                name: name.clone(),
                attributes: attributes(&p.attributes),
                value: number(p),
            })),
            Some(metric::Data::Histogram(histogram)) => points.extend(histogram.data_points.iter().map(|p| Point {
                name: name.clone(),
                attributes: attributes(&p.attributes),
                value: p.count as f64,
            })),
            _ => {}
        }
    }
    points
}

/// What the receiver got: spans (OTLP/JSON) and metric points (OTLP/protobuf), in arrival order.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    points: Vec<Point>,
    /// Every metric export's resource attributes.
    resources: Vec<Vec<String>>,
}

/// A small OTLP/HTTP receiver; answers its base URL, what it received, and its handle.
fn receiver() -> (String, Arc<Mutex<Received>>, actix_web::dev::ServerHandle) {
    let received: Arc<Mutex<Received>> = Arc::default();
    let sink = received.clone();
    let server = HttpServer::new(move || {
        let (traces, metrics) = (sink.clone(), sink.clone());
        App::new()
            .app_data(web::PayloadConfig::new(16 << 20))
            .route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let sink = traces.clone();
                    async move {
                        let export: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        sink.lock().expect("lock").spans.extend(spans_of(&export));
                        HttpResponse::Ok().json(json!({}))
                    }
                }),
            )
            .route(
                "/v1/metrics",
                web::post().to(move |body: web::Bytes| {
                    let sink = metrics.clone();
                    async move {
                        let Ok(export) = ExportMetricsServiceRequest::decode(body) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        let mut sink = sink.lock().expect("lock");
                        sink.points.extend(points_of(&export));
                        for resource in export.resource_metrics.iter().filter_map(|r| r.resource.as_ref()) {
                            sink.resources.push(points_of_resource(resource));
                        }
                        HttpResponse::Ok().content_type("application/x-protobuf").body(Vec::<u8>::new())
                    }
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let collector = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (collector, received, handle)
}

fn points_of_resource(resource: &opentelemetry_proto::tonic::resource::v1::Resource) -> Vec<String> {
    resource
        .attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(v) => Some(format!("{}={v}", kv.key)),
            _ => None,
        })
        .collect()
}

/// A `gofer service start` exporting to `collector`: traces as JSON, metrics as protobuf every
/// 200 ms. Answers the process (kill it), its address and the operator token.
async fn start_gofer(collector: &str, state_dir: &std::path::Path) -> (Child, String, String) {
    let database_url = gofer_tests::fresh_database().await;
    let operator = format!("gofer_test_operator_{}", uuid::Uuid::new_v4().simple());
    let mut child = Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["service", "start"])
        .env("GOFER_LISTEN", "127.0.0.1:0")
        .env("GOFER_DATABASE_URL", &database_url)
        .env("GOFER_STATE_DIR", state_dir)
        .env("GOFER_BOOTSTRAP_TOKEN", &operator)
        .env("GOFER_LOG_FORMAT", "json")
        .env("GOFER_LOG_LEVEL", "info")
        .env("GOFER_ENGINE__MONITOR_INTERVAL_MS", "50")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
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
    (child, address, operator)
}

/// Creates tenant `acme`, namespace `builds` and pipeline `hello` (one task), starts a run;
/// answers the tenant's token and the run's id.
async fn start_hello_run(http: &reqwest::Client, address: &str, operator: &str) -> (String, i64) {
    let tenant = call(http, address, operator, "POST", "/api/v1/tenants", json!({"id": "acme", "name": "Acme"})).await;
    let token = tenant["token"].as_str().expect("token").to_owned();
    call(http, address, &token, "POST", "/api/v1/namespaces", json!({"id": "builds", "name": "Builds"})).await;
    let config = json!({"name": "Hello", "tasks": [{"id": "say", "image": "debian:12", "command": ["true"]}]});
    call(http, address, &token, "POST", "/api/v1/namespaces/builds/pipelines/hello/configs", config).await;
    let run = call(http, address, &token, "POST", "/api/v1/namespaces/builds/pipelines/hello/runs", json!({})).await;
    (token, run["run"]["id"].as_i64().expect("run id"))
}

#[tokio::test]
async fn a_runs_spans_form_one_trace_from_the_request_to_the_scheduler() {
    let (collector, received, stop) = receiver();
    let state_dir = tempfile::tempdir().expect("temp dir");
    let (mut child, address, operator) = start_gofer(&collector, state_dir.path()).await;
    let http = reqwest::Client::new();
    let (_, run_id) = start_hello_run(&http, &address, &operator).await;

    // Wait until the purge of the finished job (the last scheduler call) has been exported.
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans = received.lock().expect("lock").spans.clone();
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

#[tokio::test]
async fn a_runs_metrics_arrive_over_otlp_with_the_labels_of_the_prometheus_ones() {
    let (collector, received, stop) = receiver();
    let state_dir = tempfile::tempdir().expect("temp dir");
    let (mut child, address, operator) = start_gofer(&collector, state_dir.path()).await;
    let http = reqwest::Client::new();
    start_hello_run(&http, &address, &operator).await;
    // A refused request, counted by its problem code.
    let refused = http.get(format!("{address}/api/v1/namespaces")).bearer_auth("nope").send().await.expect("answer");
    assert_eq!(refused.status(), 401);

    let runs_route = "route=/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs";
    let wanted = [
        ("gofer_http_requests_total", vec!["method=POST", runs_route, "status=201"]),
        ("gofer_http_request_duration_seconds", vec!["method=POST", runs_route]),
        ("gofer_problem_responses_total", vec!["code=unauthorized"]),
        ("gofer_task_outcomes_total", vec!["status=successful"]),
        ("gofer_dispatch_latency_seconds", vec![]),
        ("gofer_queue_depth", vec!["reason=waiting_for_capacity"]),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let (points, resources) = loop {
        let (points, resources) = {
            let received = received.lock().expect("lock");
            (received.points.clone(), received.resources.clone())
        };
        let arrived = |(name, attributes): &(&str, Vec<&str>)| {
            points.iter().any(|p| p.name == *name && p.attributes == *attributes && p.value >= 1.0)
                || (*name == "gofer_queue_depth"
                    && points.iter().any(|p| p.name == *name && p.attributes == *attributes))
        };
        if wanted.iter().all(arrived) {
            break (points, resources);
        }
        assert!(
            Instant::now() < deadline,
            "missing {:?}; got {points:?}",
            wanted.iter().filter(|w| !arrived(w)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    stop.stop(false).await;

    // One task, one successful outcome (sums are cumulative: the last export has the total).
    let outcome = points.iter().rev().find(|p| p.name == "gofer_task_outcomes_total").expect("an outcome");
    assert_eq!((outcome.attributes.clone(), outcome.value), (vec!["status=successful".to_owned()], 1.0));
    // Route patterns, never concrete paths.
    assert!(
        points
            .iter()
            .filter(|p| p.name == "gofer_http_requests_total")
            .all(|p| !p.attributes.iter().any(|a| a.contains("/acme") || a.contains("/builds/"))),
        "{points:?}"
    );
    assert!(resources.iter().all(|r| r.contains(&"service.name=gofer".to_owned())), "{resources:?}");
}

#[tokio::test]
async fn a_collector_that_never_answers_blocks_no_request_and_no_run() {
    // Accepts connections and never reads or answers them: every export hangs until its timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let collector = format!("http://{}", black_hole.local_addr().expect("address"));
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    std::thread::spawn(move || {
        for stream in black_hole.incoming().flatten() {
            holding.lock().expect("lock").push(stream);
        }
    });
    let state_dir = tempfile::tempdir().expect("temp dir");
    let (mut child, address, operator) = start_gofer(&collector, state_dir.path()).await;
    let http = reqwest::Client::new();
    let (token, run_id) = start_hello_run(&http, &address, &operator).await;

    // Poll the run through the API until it completes, timing every request.
    let path = format!("/api/v1/namespaces/builds/pipelines/hello/runs/{run_id}");
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = Instant::now();
        let response = http.get(format!("{address}{path}")).bearer_auth(&token).send().await.expect("answer");
        let run: Value = response.json().await.expect("json");
        slowest = slowest.max(started.elapsed());
        if run["run"]["state"] == "complete" {
            assert_eq!(run["run"]["status"], "successful", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "the run did not complete with the collector hanging: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!held.lock().expect("lock").is_empty(), "the exporters did try the collector");
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?} while the collector hung");
}

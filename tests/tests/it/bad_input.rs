//! Bad input, driven from docs/openapi.json so every route is covered: broken JSON bodies
//! (oversized, invalid UTF-8, deep nesting, huge arrays, wrong types, missing fields) and hostile
//! path parameters (traversal, NUL, SQL meta-characters, CRLF). Every answer must be a 4xx
//! `application/problem+json` with a stable code (never a 5xx, never a dropped connection), and
//! nothing is stored from a refused request: the row count of every table is the same afterwards.
//!
//! Requests go over a raw TCP socket so the test controls every byte (the URL crate would
//! normalize `..` and percent-encodings away, and refuses invalid UTF-8).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gofer_tests::fake_scheduler::FakeScheduler;
use gofer_tests::{TestApp, fresh_database, spawn_replica, test_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).expect("file")
}

/// One route of the OpenAPI document with what the test needs to call it.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    path: String,
    /// The permission named in docs/permissions.md.
    permission: String,
    /// The JSON body schema, resolved, when the route takes JSON.
    body: Option<Value>,
}

fn routes() -> Vec<Route> {
    let doc: Value = serde_json::from_str(&repo_file("docs/openapi.json")).expect("json");
    let permissions: BTreeMap<(String, String), String> = repo_file("docs/permissions.md")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            (cells.len() == 3 && ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&cells[0]))
                .then(|| ((cells[0].to_owned(), cells[1].to_owned()), cells[2].to_owned()))
        })
        .collect();
    let mut out = Vec::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            let method = method.to_uppercase();
            let body =
                op["requestBody"]["content"]["application/json"]["schema"].as_object().map(|schema| {
                    match schema.get("$ref").and_then(Value::as_str) {
                        Some(r) => doc["components"]["schemas"][r.rsplit('/').next().expect("ref")].clone(),
                        None => Value::Object(schema.clone()),
                    }
                });
            let permission =
                permissions.get(&(method.clone(), path.clone())).cloned().expect("route in permissions.md");
            out.push(Route { method, path: path.clone(), permission, body });
        }
    }
    out
}

/// Ids that exist for the seeded tenant.
fn valid_param(route: &str, name: &str) -> &'static str {
    match name {
        "tenant" => "acme",
        "plan" => "default",
        "namespace" => "builds",
        "pipeline" => "demo",
        "task" => "work",
        "key" if route.contains("/objects/") => "dist/app",
        "key" => "API_KEY",
        "address" => "192.0.2.1",
        "id" => "00000000-0000-4000-8000-000000000000",
        _ => "1",
    }
}

fn params(route: &str) -> Vec<String> {
    route.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(n, _)| n.to_owned())).collect()
}

/// The route with every parameter valid except `bad`, which gets `value` (raw, already encoded).
fn fill(route: &str, bad: Option<(&str, &str)>) -> String {
    let mut path = route.to_owned();
    for name in params(route) {
        let value = match bad {
            Some((b, v)) if b == name => v.to_owned(),
            _ => valid_param(route, &name).to_owned(),
        };
        path = path.replace(&format!("{{{name}}}"), &value);
    }
    path
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// A body with every required field filled with a plausible value of its type.
fn plausible(schema: &Value, string: &str) -> Value {
    let mut body = serde_json::Map::new();
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let value = match types(prop).first().copied() {
            Some("string") => json!(string),
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => continue,
        };
        body.insert(name.clone(), value);
    }
    Value::Object(body)
}

/// A value of the wrong type for a property.
fn wrong_type(prop: &Value) -> Option<Value> {
    let t = types(prop);
    Some(if t.contains(&"string") {
        json!(12345)
    } else if t.contains(&"integer") || t.contains(&"number") {
        json!("not a number")
    } else if t.contains(&"boolean") {
        json!("yes")
    } else if t.contains(&"array") || t.contains(&"object") {
        json!(true)
    } else {
        return None;
    })
}

/// An HTTP answer read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The body of a request: content type, bytes, and whether to send it chunked (no length).
struct Body<'a> {
    content_type: &'a str,
    bytes: Vec<u8>,
    chunked: bool,
}

impl<'a> Body<'a> {
    fn json(bytes: impl Into<Vec<u8>>) -> Self {
        Self { content_type: "application/json", bytes: bytes.into(), chunked: false }
    }
}

/// Sends one request over a fresh connection and reads the whole answer; `Err` when the server
/// drops the connection without a complete answer.
async fn raw(
    app: &TestApp,
    method: &str,
    path: &[u8],
    token: Option<&str>,
    body: Option<Body<'_>>,
) -> Result<Raw, String> {
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path);
    head.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").as_bytes());
    if let Some(token) = token {
        head.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    let payload = match body {
        Some(body) => {
            head.extend_from_slice(format!("Content-Type: {}\r\n", body.content_type).as_bytes());
            if body.chunked {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                let mut framed = Vec::new();
                for chunk in body.bytes.chunks(16 * 1024) {
                    framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                }
                framed.extend_from_slice(b"0\r\n\r\n");
                framed
            } else {
                head.extend_from_slice(format!("Content-Length: {}\r\n", body.bytes.len()).as_bytes());
                body.bytes
            }
        }
        None if matches!(method, "POST" | "PUT" | "PATCH") => {
            head.extend_from_slice(b"Content-Length: 0\r\n");
            Vec::new()
        }
        None => Vec::new(),
    };
    head.extend_from_slice(b"\r\n");
    let (mut reader, mut writer) = stream.split();
    // The server may answer (413) before reading the whole body: write and read at once, and
    // ignore a write cut short once the answer is in.
    let write = async {
        let _ = writer.write_all(&head).await;
        let _ = writer.write_all(&payload).await;
    };
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer));
    let ((), read) = tokio::join!(write, read);
    match read {
        Err(_) => return Err("no answer within 20 s".into()),
        Ok(Err(e)) if answer.is_empty() => return Err(format!("connection dropped: {e}")),
        Ok(_) => {}
    }
    parse(&answer)
}

fn parse(answer: &[u8]) -> Result<Raw, String> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("connection dropped before a full head")?;
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or("no status")?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut rest = answer[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunked body cut")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            body.extend_from_slice(rest.get(start..start + size).ok_or("chunked body cut")?);
            rest.drain(..start + size + 2);
        }
        rest = body;
    } else if let Some(len) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        let len: usize = len.1.parse().map_err(|_| "bad content-length")?;
        if rest.len() < len {
            return Err(format!("body cut at {} of {len} bytes", rest.len()));
        }
        rest.truncate(len);
    }
    Ok(Raw { status, headers, body: rest })
}

/// Asserts a refusal: a 4xx problem+json with a stable code; answers the code.
fn assert_problem(what: &str, answer: Result<Raw, String>) -> String {
    let answer = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!((400..500).contains(&answer.status), "{what}: status {} {text}", answer.status);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{what}: {text}");
    let problem: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let code = problem["code"].as_str().unwrap_or_default().to_owned();
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "{what}: unstable code: {text}"
    );
    assert_eq!(problem["status"].as_u64(), Some(u64::from(answer.status)), "{what}: {text}");
    for (name, value) in &answer.headers {
        assert!(!name.eq_ignore_ascii_case("set-cookie") && !value.contains('\r'), "{what}: injected header {name}");
    }
    code
}

/// The row count of every table, through the owner connection (no row security).
async fn row_counts(app: &TestApp) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.db)
    .await
    .expect("tables");
    let mut counts = BTreeMap::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{table}\"")))
            .fetch_one(&app.db)
            .await
            .expect("count");
        counts.insert(table, count);
    }
    counts
}

/// A server with the fake scheduler and tenant "acme": namespace, pipeline, secret, object and a
/// completed run. Answers the app and acme's admin token.
async fn seeded() -> (TestApp, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(fresh_database().await, dir.path());
    let app = spawn_replica(config, dir, Some(Arc::new(FakeScheduler::default()))).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "demo", "work", &["exit", "0"]).await;
    let secret = acme
        .request("PUT", "/api/v1/namespaces/builds/pipelines/demo/secrets/API_KEY", Some(&json!({"value": "v"})))
        .await;
    assert_eq!(secret.status, 201, "{secret:?}");
    let run = acme.start_run("builds", "demo").await;
    acme.wait_for_run("builds", "demo", run, Duration::from_secs(30)).await;
    app.assert_queue_drained().await;
    let token = acme.token.clone();
    (app, token)
}

fn token_for<'a>(app: &'a TestApp, admin: &'a str, route: &Route) -> Option<&'a str> {
    match route.permission.as_str() {
        "public" => None,
        "operator" => Some(&app.operator_token),
        _ => Some(admin),
    }
}

/// Hostile values for a path parameter, raw on the wire.
const HOSTILE: &[&str] = &[
    "..",
    "%2E%2E",
    "..%2F..%2Fetc%2Fpasswd",
    "..%5C..%5Cwindows",
    "a%00b",
    "%00",
    "%27%3B%20DROP%20TABLE%20runs%3B--",
    "%27%20OR%20%271%27%3D%271",
    "%25",
    "%5C",
    "a%0D%0ASet-Cookie:%20x=1",
    "%0D%0A%0D%0AHTTP/1.1%20200%20OK",
    "%FF%FE",
    "-1",
    "0",
    "99999999999999999999999",
    "%E2%80%AE",
];

#[tokio::test]
async fn hostile_path_parameters_are_refused_on_every_route_and_store_nothing() {
    let (app, admin) = seeded().await;
    let before = row_counts(&app).await;
    let mut refusals = 0;
    let mut requests = Vec::new();
    let long = "a".repeat(5000);
    for route in routes() {
        let token = token_for(&app, &admin, &route);
        for name in params(&route.path) {
            for value in HOSTILE.iter().copied().chain([long.as_str()]) {
                // Numbers are valid object and secret keys (and missing run ids, which answer 404).
                if name == "key" && value.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    continue;
                }
                let path = fill(&route.path, Some((&name, value)));
                let body = route.body.as_ref().map(|schema| Body::json(plausible(schema, "x").to_string()));
                let body = body.or_else(|| {
                    (route.method == "PUT").then(|| Body {
                        content_type: "application/octet-stream",
                        bytes: b"data".to_vec(),
                        chunked: false,
                    })
                });
                requests.push((route.method.clone(), path, token, body));
            }
        }
    }
    // Sixteen at a time: thousands of requests stay a matter of seconds.
    let answers: Vec<(String, Result<Raw, String>)> = futures_util::stream::iter(requests)
        .map(|(method, path, token, body)| {
            let app = &app;
            async move { (format!("{method} {path}"), raw(app, &method, path.as_bytes(), token, body).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (what, answer) in answers {
        assert_problem(&what, answer);
        refusals += 1;
    }
    // `_` is a valid secret and object key: reading one that does not exist finds nothing (no
    // LIKE pattern matched API_KEY or dist/app).
    for path in [
        "/api/v1/namespaces/builds/pipelines/demo/secrets/_",
        "/api/v1/namespaces/builds/pipelines/demo/objects/_",
        "/api/v1/secrets/_",
    ] {
        let code = assert_problem(path, raw(&app, "GET", path.as_bytes(), Some(&admin), None).await);
        assert!(code.ends_with("_not_found"), "GET {path}: {code}");
    }
    app.assert_queue_drained().await;
    assert_eq!(row_counts(&app).await, before, "a refused request stored something");
    assert!(refusals > 500, "only {refusals} requests tried");
    eprintln!("{refusals} hostile path requests refused");
}

/// Bodies every JSON route must refuse: (what, content type, bytes, chunked).
fn broken_bodies(max_body: usize) -> Vec<(String, Body<'static>)> {
    let deep = |n: usize| "[".repeat(n);
    let mut bodies = vec![
        ("oversized".to_owned(), Body::json(format!("{{\"name\":\"{}\"}}", "x".repeat(max_body + 1)))),
        (
            "oversized, chunked".to_owned(),
            Body { chunked: true, ..Body::json(format!("{{\"name\":\"{}\"}}", "x".repeat(max_body * 3))) },
        ),
        ("invalid UTF-8".to_owned(), Body::json(b"{\"id\":\"\xff\xfe\xfd\",\"name\":\"\xc3\x28\"}".to_vec())),
        ("invalid UTF-8 key".to_owned(), Body::json(b"{\"\xff\":1}".to_vec())),
        ("100k nested arrays".to_owned(), Body::json(deep(100_000))),
        ("60k nested arrays (under the size limit)".to_owned(), Body::json(deep(60_000))),
        ("nested objects".to_owned(), Body::json("{\"a\":".repeat(10_000))),
        ("huge array".to_owned(), Body::json(format!("[{}0]", "0,".repeat(30_000)))),
        ("empty".to_owned(), Body::json(Vec::new())),
        ("truncated".to_owned(), Body::json("{\"name\": \"x")),
        ("null".to_owned(), Body::json("null")),
        ("a number".to_owned(), Body::json("42")),
        ("a string".to_owned(), Body::json("\"x\"")),
        ("an array".to_owned(), Body::json("[]")),
        ("trailing garbage".to_owned(), Body::json("{} {}")),
        ("NUL byte".to_owned(), Body::json(b"{\"id\":\"a\x00b\"}".to_vec())),
        ("lone surrogate".to_owned(), Body::json("{\"name\":\"\\ud800\"}")),
        ("huge number".to_owned(), Body::json(format!("{{\"version\":1{}}}", "0".repeat(400)))),
        ("not JSON".to_owned(), Body { content_type: "text/plain", bytes: b"name=x".to_vec(), chunked: false }),
    ];
    bodies.push((
        "form".to_owned(),
        Body { content_type: "application/x-www-form-urlencoded", bytes: b"a=1".to_vec(), chunked: false },
    ));
    bodies
}

#[tokio::test]
async fn broken_json_bodies_are_refused_on_every_json_route_and_store_nothing() {
    let (app, admin) = seeded().await;
    let max_body = gofer_api::Config::default().max_body_bytes;
    let before = row_counts(&app).await;
    let mut refusals = 0;
    for route in routes().into_iter().filter(|r| r.body.is_some()) {
        let schema = route.body.clone().expect("json route");
        let path = fill(&route.path, None);
        let token = token_for(&app, &admin, &route);
        let mut cases = broken_bodies(max_body);
        // Missing fields: the plausible body without each required field in turn.
        for field in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let mut body = plausible(&schema, "x");
            body.as_object_mut().expect("object").remove(field);
            cases.push((format!("missing {field}"), Body::json(body.to_string())));
        }
        // Wrong types: each property in turn, the rest plausible.
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(wrong) = wrong_type(prop) {
                let mut body = plausible(&schema, "x");
                body[field] = wrong;
                cases.push((format!("{field} of the wrong type"), Body::json(body.to_string())));
            }
        }
        let mut unknown = plausible(&schema, "x");
        unknown["no_such_field"] = json!(1);
        cases.push(("an unknown field".to_owned(), Body::json(unknown.to_string())));
        for (what, body) in cases {
            let what = format!("{} {path} with {what}", route.method);
            assert_problem(&what, raw(&app, &route.method, path.as_bytes(), token, Some(body)).await);
            refusals += 1;
        }
    }
    app.assert_queue_drained().await;
    assert_eq!(row_counts(&app).await, before, "a refused request stored something");
    eprintln!("{refusals} broken bodies refused");
}

/// SQL meta-characters in every string field of every JSON route: a value may be refused (4xx) or
/// stored verbatim, never a 5xx, and the tables are all still there afterwards.
#[tokio::test]
async fn sql_meta_characters_in_every_string_field_are_inert() {
    let (app, admin) = seeded().await;
    let metas = ["'; DROP TABLE runs;--", "%", "_", "\\", "' OR '1'='1", "$1", "\u{0}"];
    for route in routes().into_iter().filter(|r| r.body.is_some()) {
        let schema = route.body.clone().expect("json route");
        let path = fill(&route.path, None);
        let token = token_for(&app, &admin, &route);
        for meta in metas {
            let body = Body::json(plausible(&schema, meta).to_string());
            let what = format!("{} {path} with strings {meta:?}", route.method);
            let answer = raw(&app, &route.method, path.as_bytes(), token, Some(body))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if answer.status >= 400 {
                assert_problem(&what, Ok(answer));
            } else {
                assert!(answer.status < 300, "{what}: {answer:?}");
            }
        }
    }
    let counts = row_counts(&app).await;
    assert!(counts.contains_key("runs") && counts.contains_key("tenants"), "{counts:?}");
    let run = app.request("GET", "/api/v1/namespaces/builds/pipelines/demo/runs/1", Some(&admin), None).await;
    assert_eq!(run.status, 200, "{run:?}");
}

#[tokio::test]
async fn a_known_path_with_an_undeclared_method_answers_405_with_allow() {
    let app = gofer_tests::spawn_app().await;
    let acme = app.tenant("acme").await;
    let response = app
        .http
        .patch(format!("{}/api/v1/namespaces", app.address))
        .bearer_auth(&acme.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET, POST"));
    let body: serde_json::Value = response.json().await.expect("problem");
    assert_eq!(body["code"], "method_not_allowed");
    // A literal path that a route with a parameter would also take: still its own methods.
    let whoami = app.request("DELETE", "/api/v1/tokens/whoami", Some(&acme.token), None).await;
    assert_eq!((whoami.status, whoami.code()), (405, "method_not_allowed"), "{whoami:?}");
    let unknown = app.request("GET", "/api/v1/no/such/route", Some(&acme.token), None).await;
    assert_eq!((unknown.status, unknown.code()), (404, "route_not_found"));
}

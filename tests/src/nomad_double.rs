//! A Nomad HTTP API double — **test code only**. Nomad cannot be installed on these machines, so
//! this stands in for a Nomad cluster in the end-to-end tests of the Nomad scheduler.
//!
//! (a) Every request is checked against `tests/specs/nomad-openapi.yaml` (see `spec.rs`, which
//! also lists the newer endpoints and fields the old spec lacks): an unknown path, method, query
//! parameter or body field is answered 400 and recorded in [`NomadDouble::violations`], which
//! the tests assert empty.
//!
//! (b) It behaves like Nomad (shapes from shared/notes/protocols.md §1): namespaces, job register
//! (check-and-set, nonexistent namespace, restart-policy validation), read, deregister and purge,
//! one allocation per job moving pending → running → complete/failed with task events, an NDJSON
//! event stream with `{}` heartbeats and index resume, framed logs (read once, or held with
//! `follow=true`: frames as the task writes, `{}` heartbeats, closed once the task is dead and
//! everything was sent), variables, plain-text errors, and 403 for a missing or wrong ACL token.
//! Like Nomad, it validates a job's `EphemeralDisk` (at least 10 MB, more than a task's log
//! storage) and network modes.
//!
//! (c) Every registered job must carry Gofer's hardening (`hardening.rs`): a job without it is
//! registered all the same but recorded in [`NomadDouble::violations`].
//!
//! Faults: the next N calls fail with 500, an outage window (every call 500s or hangs, streams
//! drop), dropped event streams, dropped log streams (cut in the middle of a frame), log follows
//! refused (as by a proxy that cannot stream).
//!
//! What a task "does" comes from its driver config, as the fake scheduler reads commands:
//! `["echo", words…]` prints them and exits 0, `["sleep", "<s>"]` runs that long and exits 0,
//! `["exit", "<code>"]` exits with it (a line on stderr), `["oom"]` is OOM-killed,
//! `["count", "<n>", "<s>"]` prints `line 1` … `line <n>` one every `<s>` seconds then exits 0; an
//! image naming `does-not-exist` fails to pull, and one under `private/` needs the login set with
//! [`NomadDouble::require_registry_login`]. Nodes are named `<node pool>-node-1`. Exec (the
//! `/v1/client/allocation/:id/exec` websocket) runs a few commands of its own: see `exec.rs`.

mod exec;
mod hardening;
mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use spec::Spec;

/// How calls fail during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// 500 `No cluster leader`.
    Errors,
    /// No answer until the outage ends (clients time out).
    Hang,
}

#[derive(Debug, Clone)]
struct Alloc {
    id: String,
    job: String,
    namespace: String,
    node: String,
    created: Instant,
    create_index: u64,
    modify_index: u64,
    desired: String,
    client: String,
    description: String,
    events: Vec<Value>,
    started: Option<Instant>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

struct Job {
    spec: Value,
    stop: bool,
    modify_index: u64,
    alloc: Alloc,
}

#[derive(Default)]
struct State {
    index: u64,
    namespaces: Vec<String>,
    jobs: HashMap<(String, String), Job>,
    variables: HashMap<(String, String), Value>,
    /// Every allocation event, for index resume.
    events: Vec<(u64, Value)>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    fail_next: u32,
    outage_until: Option<(Instant, OutageKind)>,
    stream_generation: u64,
    /// The login images under `private/` need; `None`: any pull of them is refused.
    registry_login: Option<(String, String)>,
    /// Every image pull the client driver attempted: (image, credentials it used).
    pulls: Vec<(String, Option<(String, String)>)>,
    /// Bumped to drop every open log stream.
    log_generation: u64,
    /// Answer `follow=true` log reads with 500.
    refuse_log_follow: bool,
}

/// A request as the double received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query pairs.
    pub query: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<Value>,
}

struct Shared {
    state: Mutex<State>,
    spec: Spec,
    token: String,
    heartbeat: Duration,
    events: broadcast::Sender<(u64, Value)>,
}

/// A running double.
pub struct NomadDouble {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The ACL token it accepts.
    pub token: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for NomadDouble {
    fn drop(&mut self) {
        self.ticker.abort();
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl NomadDouble {
    /// Starts the double on a free port; event stream heartbeats every `heartbeat`.
    pub async fn start(heartbeat: Duration) -> NomadDouble {
        let token = format!("nomad-{}", uuid::Uuid::new_v4());
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            spec: Spec::load(),
            token: token.clone(),
            heartbeat,
            events,
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/client/allocation/{alloc}/exec", web::get().to(exec::exec))
                .default_service(web::to(handle))
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .expect("the Nomad double binds");
        let address = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let ticking = shared.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tick(&ticking);
            }
        });
        NomadDouble { address, token, shared, server: handle, ticker }
    }

    /// Requests that broke the spec.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// The stored job spec (as registered), if the job exists (not purged).
    pub fn job(&self, namespace: &str, job_id: &str) -> Option<Value> {
        lock(&self.shared).jobs.get(&(namespace.to_owned(), job_id.to_owned())).map(|j| j.spec.clone())
    }

    /// Ids of the jobs that exist, with their namespace and whether they were stopped.
    pub fn jobs(&self) -> Vec<(String, String, bool)> {
        lock(&self.shared).jobs.iter().map(|((ns, id), j)| (ns.clone(), id.clone(), j.stop)).collect()
    }

    /// Namespaces created.
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.shared).namespaces.clone()
    }

    /// The next `n` calls answer 500.
    pub fn fail_next(&self, n: u32) {
        lock(&self.shared).fail_next = n;
    }

    /// Every call fails (or hangs) for `length`; open event streams drop. Tasks keep running.
    pub fn outage(&self, length: Duration, kind: OutageKind) {
        let mut state = lock(&self.shared);
        state.outage_until = Some((Instant::now() + length, kind));
        state.stream_generation += 1;
    }

    /// Makes images under `private/` pullable only with this login (as a private registry would).
    pub fn require_registry_login(&self, username: &str, password: &str) {
        lock(&self.shared).registry_login = Some((username.to_owned(), password.to_owned()));
    }

    /// Every image pull attempted: the image and the credentials the driver's `auth` block
    /// rendered to (from the task's template over the Nomad Variable), as a client would.
    pub fn pulls(&self) -> Vec<(String, Option<(String, String)>)> {
        lock(&self.shared).pulls.clone()
    }

    /// A Nomad Variable's items, while it exists.
    pub fn variable(&self, namespace: &str, path: &str) -> Option<Value> {
        let state = lock(&self.shared);
        state.variables.get(&(namespace.to_owned(), path.to_owned())).map(|v| v["Items"].clone())
    }

    /// Drops every open `follow=true` log stream, each in the middle of a frame when it had one to send.
    pub fn drop_log_streams(&self) {
        lock(&self.shared).log_generation += 1;
    }

    /// Refuses `follow=true` log reads from now on (500), as a proxy that cannot stream would.
    pub fn refuse_log_follow(&self) {
        lock(&self.shared).refuse_log_follow = true;
    }

    /// Closes every open event stream.
    pub fn drop_streams(&self) {
        lock(&self.shared).stream_generation += 1;
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn event(kind: &str, extra: Value) -> Value {
    let mut e = json!({"Type": kind, "Time": now_ns() as u64, "Message": "", "DisplayMessage": kind, "Details": {}});
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    e
}

fn alloc_json(a: &Alloc) -> Value {
    let finished = matches!(a.client.as_str(), "complete" | "failed" | "lost");
    let state = match a.client.as_str() {
        "pending" => "pending",
        "running" => "running",
        _ => "dead",
    };
    json!({
        "ID": a.id, "EvalID": uuid::Uuid::new_v4().to_string(), "Name": format!("{}.task[0]", a.job),
        "Namespace": a.namespace, "NodeID": format!("{}-id", a.node), "NodeName": a.node, "JobID": a.job,
        "TaskGroup": "task", "DesiredStatus": a.desired, "DesiredDescription": "", "ClientStatus": a.client,
        "ClientDescription": a.description,
        "TaskStates": {"main": {"State": state, "Failed": a.client == "failed", "Restarts": 0,
                                "FinishedAt": if finished { "2026-11-25T00:00:01Z" } else { "0001-01-01T00:00:00Z" },
                                "Events": a.events}},
        "CreateIndex": a.create_index, "ModifyIndex": a.modify_index,
        "CreateTime": now_ns() as u64, "ModifyTime": now_ns() as u64,
    })
}

/// Announces an allocation change on the event stream.
fn publish(shared: &Shared, state: &mut State, job: &(String, String)) {
    state.index += 1;
    let index = state.index;
    let Some(j) = state.jobs.get_mut(job) else { return };
    j.alloc.modify_index = index;
    let alloc = alloc_json(&j.alloc);
    let line = json!({"Index": index, "Events": [{
        "Topic": "Allocation", "Type": "AllocationUpdated", "Key": j.alloc.id, "Namespace": j.alloc.namespace,
        "FilterKeys": [j.alloc.job], "Index": index, "Payload": {"Allocation": alloc}}]});
    state.events.push((index, line.clone()));
    let _ = shared.events.send((index, line));
}

/// What the task's driver config asks for: (runs for, exit code or OOM, stdout, stderr).
fn behaviour(spec: &Value) -> (Duration, Option<i32>, Vec<u8>, Vec<u8>) {
    let config = &spec["TaskGroups"][0]["Tasks"][0]["Config"];
    let command = config["command"].as_str().unwrap_or_default();
    let args: Vec<String> =
        config["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect();
    match command {
        "echo" => (Duration::ZERO, Some(0), format!("{}\n", args.join(" ")).into_bytes(), Vec::new()),
        "sleep" => {
            let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            (Duration::from_secs_f64(secs), Some(0), format!("sleeping {secs}\n").into_bytes(), Vec::new())
        }
        "exit" => {
            let code = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
            (Duration::ZERO, Some(code), Vec::new(), format!("exiting with {code}\n").into_bytes())
        }
        "oom" => (Duration::from_millis(50), None, b"allocating\n".to_vec(), Vec::new()),
        // The lines appear over time (see `counted_output`).
        "count" => {
            let (n, every) = count_args(&args);
            (every * n, Some(0), Vec::new(), Vec::new())
        }
        _ => (Duration::ZERO, Some(0), Vec::new(), Vec::new()),
    }
}

/// The credentials a Nomad client would pull the task's image with: its `Templates` rendered over
/// the Nomad Variables (`{{ with nomadVar "path" }}NAME={{ .item }}…{{ end }}`, into the env since
/// `Envvars` is set), then `${NAME}` in the driver's `auth` block interpolated from that env.
fn pull_credentials(
    variables: &HashMap<(String, String), Value>,
    namespace: &str,
    spec: &Value,
) -> Option<(String, String)> {
    let task = &spec["TaskGroups"][0]["Tasks"][0];
    let auth = task["Config"].get("auth")?;
    let mut env: HashMap<String, String> = HashMap::new();
    for template in task["Templates"].as_array().into_iter().flatten() {
        let text = template["EmbeddedTmpl"].as_str().unwrap_or_default();
        let Some(path) = text.split("nomadVar \"").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
        let items = variables.get(&(namespace.to_owned(), path.to_owned())).map(|v| &v["Items"]);
        let body = text.split("}}").skip(1).collect::<Vec<_>>().join("}}");
        for line in body.lines() {
            let Some((name, value)) = line.split_once('=') else { continue };
            let item = value.trim().trim_start_matches("{{").trim_end_matches("}}").trim().trim_start_matches('.');
            let rendered = items.and_then(|i| i[item].as_str()).unwrap_or_default();
            env.insert(name.trim().to_owned(), rendered.to_owned());
        }
    }
    let interpolate = |field: &str| {
        let raw = auth[field].as_str().unwrap_or_default();
        match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            Some(name) => env.get(name).cloned().unwrap_or_default(),
            None => raw.to_owned(),
        }
    };
    Some((interpolate("username"), interpolate("password")))
}

fn count_args(args: &[String]) -> (u32, Duration) {
    let n = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let every = Duration::from_secs_f64(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.1));
    (n, every)
}

/// What a `count` task has printed after running for `ran`.
fn counted_output(spec: &Value, ran: Duration) -> Option<Vec<u8>> {
    let config = &spec["TaskGroups"][0]["Tasks"][0]["Config"];
    if config["command"] != "count" {
        return None;
    }
    let args: Vec<String> =
        config["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect();
    let (n, every) = count_args(&args);
    let printed =
        if every.is_zero() { n } else { u32::try_from(ran.as_nanos() / every.as_nanos()).unwrap_or(n).min(n) };
    Some((1..=printed).map(|i| format!("line {i}\n")).collect::<String>().into_bytes())
}

/// Moves every allocation along its life.
fn tick(shared: &Shared) {
    let mut state = lock(shared);
    let keys: Vec<(String, String)> = state.jobs.keys().cloned().collect();
    for key in keys {
        let credentials = state.jobs.get(&key).and_then(|j| pull_credentials(&state.variables, &key.0, &j.spec));
        let login = state.registry_login.clone();
        let Some(job) = state.jobs.get_mut(&key) else { continue };
        let a = &mut job.alloc;
        let group = &job.spec["TaskGroups"][0];
        let changed = match a.client.as_str() {
            "pending" if a.created.elapsed() >= Duration::from_millis(60) => {
                let image = group["Tasks"][0]["Config"]["image"].as_str().unwrap_or_default().to_owned();
                a.events.push(event("Task Setup", json!({"Message": "Building Task Directory"})));
                let refused = image.contains("private/") && (login.is_none() || credentials != login);
                state.pulls.push((image.clone(), credentials));
                let Some(job) = state.jobs.get_mut(&key) else { continue };
                let a = &mut job.alloc;
                if refused {
                    let error = format!(
                        "Failed to pull `{image}`: Error response from daemon: unauthorized: authentication required"
                    );
                    a.events.push(event("Driver Failure", json!({"DriverError": error, "FailsTask": true})));
                    a.events.push(event("Not Restarting", json!({"DisplayMessage": "Error was unrecoverable"})));
                    a.client = "failed".into();
                } else if image.contains("does-not-exist") {
                    let error = format!("Failed to pull `{image}`: Error response from daemon: manifest unknown");
                    a.events.push(event("Driver Failure", json!({"DriverError": error, "FailsTask": true})));
                    a.events.push(event("Not Restarting", json!({"DisplayMessage": "Error was unrecoverable"})));
                    a.client = "failed".into();
                } else {
                    a.events.push(event("Driver", json!({"DriverMessage": format!("Downloading image {image}")})));
                    a.events.push(event("Started", json!({"DisplayMessage": "Task started by client"})));
                    a.client = "running".into();
                    a.started = Some(Instant::now());
                    let (_, _, out, err) = behaviour(&job.spec);
                    a.stdout.extend(out);
                    a.stderr.extend(err);
                }
                true
            }
            "running" => {
                let (runs_for, exit, _, _) = behaviour(&job.spec);
                let ran = a.started.map(|s| s.elapsed()).unwrap_or_default();
                if let Some(out) = counted_output(&job.spec, ran).filter(|out| out.len() > a.stdout.len()) {
                    a.stdout = out;
                }
                let max_run = group["MaxRunDuration"].as_u64().map(Duration::from_nanos);
                if max_run.is_some_and(|m| ran >= m) {
                    a.events.push(event("Killing", json!({"DisplayMessage": "Sent interrupt"})));
                    a.events.push(event("Terminated", json!({"ExitCode": 143, "Details": {"exit_code": "143"}})));
                    a.events.push(event("Killed", json!({"DisplayMessage": "Task successfully killed"})));
                    a.client = "complete".into();
                    a.description = "allocation exceeded max_run_duration".into();
                    true
                } else if ran >= runs_for {
                    match exit {
                        Some(code) => {
                            a.events.push(event(
                                "Terminated",
                                json!({"ExitCode": code, "Details": {"exit_code": code.to_string()}}),
                            ));
                            if code == 0 {
                                a.client = "complete".into();
                            } else {
                                a.events.push(event(
                                    "Not Restarting",
                                    json!({"DisplayMessage": "Policy allows no restarts"}),
                                ));
                                a.client = "failed".into();
                            }
                        }
                        None => {
                            a.events.push(event(
                                "Terminated",
                                json!({"ExitCode": 137, "Message": "OOM Killed", "Details": {"oom_killed": "true", "exit_code": "137"}}),
                            ));
                            a.client = "failed".into();
                        }
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if changed {
            publish(shared, &mut state, &key);
        }
    }
}

fn text(status: u16, body: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::IM_A_TEAPOT),
    )
    .content_type("text/plain; charset=utf-8")
    .body(body.to_owned())
}

fn ok_json(index: u64, body: Value) -> HttpResponse {
    HttpResponse::Ok().insert_header(("X-Nomad-Index", index.to_string())).json(body)
}

async fn handle(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let query: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let json_body: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    if !body.is_empty() && json_body.is_none() {
        return text(400, "invalid character in request body");
    }
    // Faults first: the cluster is away, whatever the request.
    let outage = {
        let mut state = lock(&shared);
        state.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: json_body.clone(),
        });
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return text(500, "No cluster leader");
        }
        state.outage_until.filter(|(until, _)| Instant::now() < *until)
    };
    if let Some((until, kind)) = outage {
        if kind == OutageKind::Hang {
            tokio::time::sleep_until(until.into()).await;
        }
        return text(500, "No cluster leader");
    }
    if let Err(violation) = shared.spec.check(&method, &path, &query, json_body.as_ref()) {
        lock(&shared).violations.push(violation.clone());
        return text(400, &format!("Nomad double: request outside the API spec: {violation}"));
    }
    match req.headers().get("X-Nomad-Token").and_then(|t| t.to_str().ok()) {
        Some(t) if t == shared.token => {}
        Some(_) => return text(403, "ACL token not found"),
        None => return text(403, "Permission denied"),
    }
    let q = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let namespace = q("namespace").unwrap_or_else(|| "default".into());
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["namespace", name]) => {
            let mut state = lock(&shared);
            if !state.namespaces.iter().any(|n| n == name) {
                state.namespaces.push((*name).to_owned());
            }
            state.index += 1;
            HttpResponse::Ok().insert_header(("X-Nomad-Index", state.index.to_string())).finish()
        }
        ("POST" | "PUT", ["jobs"]) => register(&shared, json_body.unwrap_or_default(), q("namespace")),
        ("GET", ["jobs"]) => {
            let prefix = q("prefix").unwrap_or_default();
            let state = lock(&shared);
            let stubs: Vec<Value> = state
                .jobs
                .iter()
                .filter(|((ns, id), _)| (namespace == "*" || *ns == namespace) && id.starts_with(&prefix))
                .map(|((ns, id), j)| {
                    json!({"ID": id, "Namespace": ns, "Type": "batch", "Stop": j.stop,
                                            "Status": if j.stop { "dead" } else { "running" }})
                })
                .collect();
            ok_json(state.index, json!(stubs))
        }
        ("GET", ["job", id]) => {
            let state = lock(&shared);
            match state.jobs.get(&(namespace.clone(), (*id).to_owned())) {
                Some(j) => {
                    let mut spec = j.spec.clone();
                    spec["Stop"] = json!(j.stop);
                    spec["Status"] = json!(if j.stop || matches!(j.alloc.client.as_str(), "complete" | "failed") {
                        "dead"
                    } else {
                        "running"
                    });
                    spec["JobModifyIndex"] = json!(j.modify_index);
                    ok_json(state.index, spec)
                }
                None => text(404, "job not found"),
            }
        }
        ("GET", ["job", id, "allocations"]) => {
            let state = lock(&shared);
            let allocs: Vec<Value> = state
                .jobs
                .get(&(namespace.clone(), (*id).to_owned()))
                .map(|j| vec![alloc_json(&j.alloc)])
                .unwrap_or_default();
            ok_json(state.index, json!(allocs))
        }
        ("DELETE", ["job", id]) => deregister(&shared, &namespace, id, q("purge").as_deref() == Some("true")),
        ("PUT" | "POST", ["var", ..]) => {
            let var_path = segments[1..].join("/");
            let mut state = lock(&shared);
            state.index += 1;
            state.variables.insert((namespace, var_path), json_body.unwrap_or_default());
            ok_json(state.index, json!({}))
        }
        ("DELETE", ["var", ..]) => {
            let var_path = segments[1..].join("/");
            let mut state = lock(&shared);
            state.variables.remove(&(namespace, var_path));
            state.index += 1;
            ok_json(state.index, json!({}))
        }
        ("GET", ["client", "fs", "logs", alloc]) => logs(&shared, alloc, &q),
        ("GET", ["event", "stream"]) => event_stream(&shared, q("index").and_then(|i| i.parse().ok()).unwrap_or(0)),
        _ => text(405, "Invalid method"),
    }
}

/// Nomad's checks of a group's `EphemeralDisk` against its tasks' log storage.
fn disk_problem(group: &Value) -> Option<String> {
    let size = group["EphemeralDisk"]["SizeMB"].as_u64()?;
    if size < 10 {
        return Some(format!("minimum DiskMB value is 10; got {size}"));
    }
    group["Tasks"].as_array().into_iter().flatten().find_map(|task| {
        let logs = &task["LogConfig"];
        // Nomad's defaults: 10 files of 10 MB.
        let usage = logs["MaxFiles"].as_u64().unwrap_or(10) * logs["MaxFileSizeMB"].as_u64().unwrap_or(10);
        (size <= usage)
            .then(|| format!("log storage ({usage} MB) must be less than requested disk capacity ({size} MB)"))
    })
}

/// Nomad's network modes: `host`, `bridge`, `none`, `cni/<network>` (or unset).
fn network_problem(group: &Value) -> Option<String> {
    group["Networks"].as_array().into_iter().flatten().find_map(|network| {
        let mode = network["Mode"].as_str().unwrap_or_default();
        let known =
            matches!(mode, "" | "host" | "bridge" | "none") || mode.strip_prefix("cni/").is_some_and(|n| !n.is_empty());
        (!known).then(|| format!("invalid network mode {mode:?}"))
    })
}

fn register(shared: &Shared, body: Value, query_namespace: Option<String>) -> HttpResponse {
    let Some(job) = body.get("Job").cloned() else { return text(400, "Job must be specified") };
    let Some(id) = job["ID"].as_str().map(str::to_owned) else { return text(400, "Job ID hasn't been provided") };
    let namespace =
        query_namespace.or_else(|| job["Namespace"].as_str().map(str::to_owned)).unwrap_or_else(|| "default".into());
    let mut state = lock(shared);
    if namespace != "default" && !state.namespaces.contains(&namespace) {
        return text(500, &format!("job \"{id}\" is in nonexistent namespace \"{namespace}\""));
    }
    for group in job["TaskGroups"].as_array().into_iter().flatten() {
        let restart = &group["RestartPolicy"];
        let mode = restart["Mode"].as_str().unwrap_or("fail");
        let problem = if !matches!(mode, "delay" | "fail") {
            Some(format!("Unsupported restart mode: {mode:?}"))
        } else if restart["Interval"].as_u64().is_some_and(|i| i < 5_000_000_000) {
            Some("Interval can not be less than 5s".to_owned())
        } else if restart["Attempts"] == 0 && mode != "fail" {
            Some("Restart policy 'delay' mode with zero attempts is ambiguous".to_owned())
        } else if group["ReschedulePolicy"]["Attempts"].as_u64().unwrap_or(0) > 0
            && group["ReschedulePolicy"]["Unlimited"] == true
        {
            Some("Reschedule Policy with Attempts and Unlimited set".to_owned())
        } else {
            disk_problem(group).or_else(|| network_problem(group))
        };
        if let Some(problem) = problem {
            return text(
                500,
                &format!("1 error occurred:\n\t* Task group {} validation failed: {problem}", group["Name"]),
            );
        }
    }
    for problem in hardening::problems(&job) {
        state.violations.push(format!("job {id} is not hardened: {problem}"));
    }
    let key = (namespace.clone(), id.clone());
    if body["EnforceIndex"] == true
        && let Some(existing) = state.jobs.get(&key)
    {
        let wanted = body["JobModifyIndex"].as_u64().unwrap_or(0);
        return text(
            500,
            &if wanted == 0 {
                "Enforcing job modify index 0: job already exists".to_owned()
            } else {
                format!(
                    "Enforcing job modify index {wanted}: job exists with conflicting job modify index: {}",
                    existing.modify_index
                )
            },
        );
    }
    state.index += 1;
    let index = state.index;
    let pool = job["NodePool"].as_str().unwrap_or("default").to_owned();
    let alloc = Alloc {
        id: uuid::Uuid::new_v4().to_string(),
        job: id,
        namespace,
        node: format!("{pool}-node-1"),
        created: Instant::now(),
        create_index: index,
        modify_index: index,
        desired: "run".into(),
        client: "pending".into(),
        description: String::new(),
        events: vec![event("Received", json!({"DisplayMessage": "Task received by client"}))],
        started: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    state.jobs.insert(key.clone(), Job { spec: job, stop: false, modify_index: index, alloc });
    publish(shared, &mut state, &key);
    ok_json(
        index,
        json!({"EvalID": uuid::Uuid::new_v4().to_string(), "EvalCreateIndex": index, "JobModifyIndex": index,
                          "Warnings": "", "Index": index, "LastContact": 0, "KnownLeader": true}),
    )
}

fn deregister(shared: &Shared, namespace: &str, id: &str, purge: bool) -> HttpResponse {
    let mut state = lock(shared);
    let key = (namespace.to_owned(), id.to_owned());
    let Some(job) = state.jobs.get_mut(&key) else {
        // Nomad answers 200 with an empty EvalID for an unknown job.
        return ok_json(
            state.index,
            json!({"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "Index": state.index}),
        );
    };
    job.stop = true;
    let a = &mut job.alloc;
    let was_live = matches!(a.client.as_str(), "pending" | "running");
    a.desired = "stop".into();
    if was_live {
        a.events.push(event("Killing", json!({"DisplayMessage": "Sent interrupt. Waiting 10s before force killing"})));
        if a.client == "running" {
            a.events.push(event("Terminated", json!({"ExitCode": 143, "Details": {"exit_code": "143"}})));
        }
        a.events.push(event("Killed", json!({"DisplayMessage": "Task successfully killed"})));
        a.client = "complete".into();
    }
    publish(shared, &mut state, &key);
    if purge {
        state.jobs.remove(&key);
    }
    state.index += 1;
    ok_json(
        state.index,
        json!({"EvalID": uuid::Uuid::new_v4().to_string(), "EvalCreateIndex": state.index,
                                "JobModifyIndex": state.index, "Index": state.index}),
    )
}

fn log_frame(kind: &str, data: &[u8], offset: usize) -> Vec<u8> {
    json!({"Data": base64::engine::general_purpose::STANDARD.encode(data),
           "File": format!("alloc/logs/main.{kind}.0"), "Offset": offset})
    .to_string()
    .into_bytes()
}

/// 64 KiB frames, as Nomad sends them.
const LOG_FRAME_BYTES: usize = 64 * 1024;

fn logs(shared: &web::Data<Shared>, alloc: &str, q: &dyn Fn(&str) -> Option<String>) -> HttpResponse {
    let Some(task) = q("task") else { return text(400, "must provide task name") };
    let kind = match q("type").as_deref() {
        Some(k @ ("stdout" | "stderr")) => k.to_owned(),
        _ => return text(400, "must provide log type (stdout/stderr)"),
    };
    if q("origin").is_some_and(|o| o != "start" && o != "end") {
        return text(400, "origin must be start or end");
    }
    let offset: usize = q("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let state = lock(shared);
    let Some(job) = state.jobs.values().find(|j| j.alloc.id == alloc) else { return text(404, "alloc not found") };
    if task != "main" {
        return text(400, &format!("unknown task name {task:?}"));
    }
    if q("follow").as_deref() == Some("true") {
        if state.refuse_log_follow {
            return text(500, "streaming responses are not supported here");
        }
        drop(state);
        return follow_logs(shared, alloc.to_owned(), kind, offset);
    }
    let data = if kind == "stdout" { &job.alloc.stdout } else { &job.alloc.stderr };
    let mut body = Vec::new();
    let from = offset.min(data.len());
    // Frames with a heartbeat between, as Nomad streams them.
    for (i, chunk) in data[from..].chunks(LOG_FRAME_BYTES).enumerate() {
        body.extend(log_frame(&kind, chunk, from + i * LOG_FRAME_BYTES));
        body.extend(b"{}");
    }
    HttpResponse::Ok().content_type("application/json").body(body)
}

/// A held log stream: frames as the output grows, heartbeats while it does not, the end once the
/// allocation is dead (or purged) and everything was sent; a dropped stream ends mid-frame.
fn follow_logs(shared: &web::Data<Shared>, alloc: String, kind: String, offset: usize) -> HttpResponse {
    struct Follow {
        shared: web::Data<Shared>,
        alloc: String,
        kind: String,
        sent: usize,
        generation: u64,
        beat: Instant,
        done: bool,
    }
    let generation = lock(shared).log_generation;
    let follow =
        Follow { shared: shared.clone(), alloc, kind, sent: offset, generation, beat: Instant::now(), done: false };
    let body = futures_util::stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let (next, dead, dropped) = {
                let state = lock(&f.shared);
                let job = state.jobs.values().find(|j| j.alloc.id == f.alloc);
                let data = job.map(|j| if f.kind == "stdout" { &j.alloc.stdout } else { &j.alloc.stderr });
                let from = f.sent.min(data.map_or(0, Vec::len));
                let next: Vec<u8> =
                    data.map(|d| d[from..].iter().take(LOG_FRAME_BYTES).copied().collect()).unwrap_or_default();
                let dead = job.is_none_or(|j| !matches!(j.alloc.client.as_str(), "pending" | "running"));
                (next, dead, state.log_generation != f.generation)
            };
            if dropped {
                f.done = true;
                if next.is_empty() {
                    return None;
                }
                let frame = log_frame(&f.kind, &next, f.sent);
                return Some((Ok::<_, std::io::Error>(Bytes::from(frame[..frame.len() / 2].to_vec())), f));
            }
            if !next.is_empty() {
                let frame = log_frame(&f.kind, &next, f.sent);
                f.sent += next.len();
                return Some((Ok(Bytes::from(frame)), f));
            }
            if dead {
                return None;
            }
            if f.beat.elapsed() >= f.shared.heartbeat {
                f.beat = Instant::now();
                return Some((Ok(Bytes::from_static(b"{}")), f));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    HttpResponse::Ok().content_type("application/json").streaming(body)
}

fn event_stream(shared: &web::Data<Shared>, from: u64) -> HttpResponse {
    let (backlog, receiver, generation) = {
        let state = lock(shared);
        let backlog: Vec<Value> = state.events.iter().filter(|(i, _)| *i >= from).map(|(_, e)| e.clone()).collect();
        (backlog, shared.events.subscribe(), state.stream_generation)
    };
    struct Stream {
        shared: web::Data<Shared>,
        backlog: std::collections::VecDeque<Value>,
        receiver: broadcast::Receiver<(u64, Value)>,
        generation: u64,
        from: u64,
    }
    let stream = Stream { shared: shared.clone(), backlog: backlog.into(), receiver, generation, from };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        if let Some(line) = s.backlog.pop_front() {
            return Some((Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n"))), s));
        }
        if lock(&s.shared).stream_generation != s.generation {
            return None;
        }
        let heartbeat = s.shared.heartbeat;
        // Check for dropped streams at least every 100 ms.
        let wait = heartbeat.min(Duration::from_millis(100));
        let started = Instant::now();
        while started.elapsed() < heartbeat {
            match tokio::time::timeout(wait, s.receiver.recv()).await {
                Ok(Ok((index, line))) if index >= s.from => {
                    return Some((Ok(Bytes::from(format!("{line}\n"))), s));
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
            if lock(&s.shared).stream_generation != s.generation {
                return None;
            }
        }
        Some((Ok(Bytes::from_static(b"{}\n")), s))
    });
    HttpResponse::Ok().content_type("application/json").streaming(body)
}

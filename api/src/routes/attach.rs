//! Attach: a websocket to a command running inside a running task execution, through the
//! scheduler's exec (docs/attach.md).
//!
//! Authentication and the token's permission are checked before the upgrade (401/403 as problem
//! details). Everything after that — the task not found, attach disabled or not allowed, the task
//! not running, the scheduler refusing — is sent on the websocket as an `{"error":{…}}` message
//! followed by a clean close, so a client always learns why. A request that is not a websocket
//! upgrade gets the same checks answered as problem details, then 400 `websocket_required`.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, web};
use actix_ws::{CloseCode, CloseReason};
use base64::Engine as _;
use futures_util::StreamExt;
use gofer_core::keys::TaskKey;
use gofer_core::scheduler::{ExecInput, ExecOutput, ExecRequest, ExecSession, TerminalSize};
use gofer_engine::attach::AttachTarget;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::auth::{Attach, TenantAccess};
use crate::error::ApiError;
use crate::routes::runs::TaskPath;
use crate::state::AppState;

/// The command run when the request names none.
const DEFAULT_COMMAND: &str = "/bin/sh";

/// Largest websocket message accepted from a client.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Carries an attach one replica forwards to another: a short-lived assertion, signed by the
/// forwarding replica with the run-token keys every replica shares, that it authenticated and
/// authorised this attach (tenant, token id, task). The user's bearer token never leaves the
/// replica it was sent to. The receiving replica runs the attach itself and never forwards it.
const FORWARDED_HEADER: &str = "gofer-attach-assertion";

/// The audience of forwarding assertions.
const FORWARD_AUDIENCE: &str = "gofer-attach-forward";

/// How long a forwarding assertion is valid: enough to open the websocket, too short to reuse.
const FORWARD_ASSERTION_TTL: Duration = Duration::from_secs(30);

/// What a forwarding assertion asserts: who attaches to which task, and which replica vouches.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ForwardClaims {
    tenant: String,
    token_id: uuid::Uuid,
    namespace: String,
    pipeline: String,
    run: i64,
    task: String,
    by: String,
}

impl ForwardClaims {
    fn of(access: &AttachAccess, key: &TaskKey, by: &str) -> Self {
        Self::of_key(access.tenant.as_str(), access.token_id, key, by)
    }

    /// Whether the assertion is about this task.
    fn names(&self, key: &TaskKey) -> bool {
        self == &Self::of_key(&self.tenant, self.token_id, key, &self.by)
    }

    fn of_key(tenant: &str, token_id: uuid::Uuid, key: &TaskKey, by: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            token_id,
            namespace: key.run.pipeline.namespace.to_string(),
            pipeline: key.run.pipeline.pipeline.to_string(),
            run: key.run.run.get(),
            task: key.task.to_string(),
            by: by.to_owned(),
        }
    }
}

/// Who attaches: a token that authenticated here with the `runs:attach` permission, or one
/// another replica vouches for with a forwarding assertion ([`FORWARDED_HEADER`]).
pub(crate) struct AttachAccess {
    /// The tenant.
    pub(crate) tenant: gofer_core::TenantId,
    /// The token's id (recorded in the audit event).
    pub(crate) token_id: uuid::Uuid,
    /// Whether another replica forwarded it.
    forwarded: bool,
}

impl actix_web::FromRequest for AttachAccess {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let Some(assertion) = req.headers().get(FORWARDED_HEADER) else {
            let access = TenantAccess::<Attach>::from_request(req, payload);
            return Box::pin(async move {
                let access = access.await?;
                Ok(AttachAccess { tenant: access.tenant, token_id: access.token_id, forwarded: false })
            });
        };
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let assertion = assertion.to_str().map(str::to_owned);
        let path = web::Path::<TaskPath>::extract(req).into_inner().map(web::Path::into_inner);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let refused = || {
                tracing::warn!("a forwarded attach with an invalid, expired or mismatched assertion was refused");
                ApiError::Unauthorized
            };
            let (claims, _) = assertion
                .ok()
                .and_then(|a| state.run_tokens.verify_assertion::<ForwardClaims>(FORWARD_AUDIENCE, &a))
                .ok_or_else(refused)?;
            let tenant = gofer_core::TenantId::parse(&claims.tenant).map_err(|_| refused())?;
            let key = path.map_err(|_| refused())?.key(&tenant)?;
            if !claims.names(&key) {
                return Err(refused());
            }
            // The forwarding replica checked the token a moment ago; suspension is checked again.
            if state.tenants.suspended(&tenant).await? != Some(false) {
                return Err(ApiError::Forbidden { code: "tenant_suspended", detail: "the tenant is suspended".into() });
            }
            Ok(AttachAccess { tenant, token_id: claims.token_id, forwarded: true })
        })
    }
}

/// Query parameters of an attach (documentation; the query is parsed by [`AttachQuery::parse`]
/// because `command` repeats).
#[derive(Debug, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttachQuery {
    /// The argv to run, one non-empty `command=` per argument in order, or one JSON array of
    /// strings (`command=["sh","-c",""]`, the form for an empty argument). Default `/bin/sh`.
    #[param(value_type = Option<Vec<String>>, explode = true)]
    command: Vec<String>,
    /// Run under a pseudo-terminal (stderr then arrives merged into stdout). Default false.
    #[param(value_type = Option<bool>)]
    tty: bool,
    /// Initial terminal width, with `tty`.
    #[param(value_type = Option<u16>, minimum = 1)]
    cols: Option<u16>,
    /// Initial terminal height, with `tty`.
    #[param(value_type = Option<u16>, minimum = 1)]
    rows: Option<u16>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { code: "invalid_attach_query", detail: detail.into() }
}

impl AttachQuery {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query).map_err(|e| invalid(e.to_string()))?;
        let mut parsed = AttachQuery::default();
        for (name, value) in pairs.into_inner() {
            match name.as_str() {
                "command" => parsed.command.push(value),
                "tty" => {
                    parsed.tty = value.parse().map_err(|_| invalid("tty must be true or false"))?;
                }
                "cols" | "rows" => {
                    let size = value.parse::<u16>().ok().filter(|v| *v > 0);
                    let size = size.ok_or_else(|| invalid(format!("{name} must be an integer from 1 to 65535")))?;
                    *(if name == "cols" { &mut parsed.cols } else { &mut parsed.rows }) = Some(size);
                }
                other => return Err(invalid(format!("unknown query parameter {other:?}"))),
            }
        }
        if parsed.command.iter().any(String::is_empty) {
            return Err(invalid("command: an argument is empty (give an empty argument in the JSON form)"));
        }
        // One value that reads as a JSON array of strings is the JSON form; any other value is
        // itself the program, also one such as `[` (the test program).
        if let [single] = parsed.command.as_slice()
            && let Ok(argv) = serde_json::from_str::<Vec<String>>(single)
        {
            parsed.command = argv;
        }
        if parsed.command.is_empty() {
            parsed.command.push(DEFAULT_COMMAND.to_owned());
        }
        if parsed.command[0].is_empty() {
            return Err(invalid("command: the program (its first argument) is empty"));
        }
        Ok(parsed)
    }

    fn size(&self) -> Option<TerminalSize> {
        match (self.cols, self.rows) {
            (Some(cols), Some(rows)) => Some(TerminalSize { cols, rows }),
            _ => None,
        }
    }
}

/// What is checked before a session starts.
struct Prepared {
    key: TaskKey,
    target: AttachTarget,
    query: AttachQuery,
}

async fn prepare(state: &AppState, access: &AttachAccess, path: TaskPath, query: &str) -> Result<Prepared, ApiError> {
    let key = path.key(&access.tenant)?;
    let query = AttachQuery::parse(query)?;
    if !state.config.attach.enabled {
        return Err(ApiError::Forbidden {
            code: "attach_disabled",
            detail: "attaching to tasks is disabled on this service".into(),
        });
    }
    if !state.billing.tenant_plan(&access.tenant).await?.allow_attach {
        return Err(ApiError::Forbidden {
            code: "attach_not_allowed",
            detail: "the tenant's plan does not allow attaching to tasks".into(),
        });
    }
    let target = gofer_engine::attach::target(&state.pool, &key, &state.api_url).await?;
    Ok(Prepared { key, target, query })
}

fn is_websocket(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Runs a command inside a running task execution, over a websocket.
///
/// Upgrade with `Connection: Upgrade`, `Upgrade: websocket` (HTTP/1.1). Then every message is a
/// JSON text frame. Client → server: `{"stdin":"<base64>"}`, `{"stdin_close":true}`,
/// `{"resize":{"cols":80,"rows":24}}`. Server → client: `{"stdout":"<base64>"}`,
/// `{"stderr":"<base64>"}`, then `{"exit":{"code":N}}` and a normal close; or
/// `{"error":{"code":"…","detail":"…"}}` and a close (codes: `task_not_found` and the other
/// `*_not_found`, `attach_disabled`, `attach_not_allowed`, `task_not_running`,
/// `attach_unsupported`, `invalid_attach_query`, `invalid_command`, `invalid_message`,
/// `attach_timeout`, `exec_failed`, `unavailable`). Only a running task can be attached to; each
/// attach records a `task_attached` event (token id and command, never input).
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("task" = String, Path, description = "Task id"), AttachQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching Protocols: the websocket session described above"),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json",
            description = "Not a websocket upgrade (`websocket_required`), or a bad query"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json",
            description = "Without `runs:attach`; `attach_disabled`; `attach_not_allowed`"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json",
            description = "`task_not_running`"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json",
            description = "`too_many_streams`: the tenant holds its plan's `max_concurrent_streams`"),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/attach")]
pub(crate) async fn attach(
    access: AttachAccess,
    state: web::Data<AppState>,
    path: web::Path<TaskPath>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A session holds one of its tenant's stream slots (plan `max_concurrent_streams`) until it ends.
    let slot = state.streams.take_under_plan(&state.pool, &access.tenant).await?;
    let prepared = prepare(&state, &access, path.into_inner(), req.query_string()).await;
    if !is_websocket(&req) {
        prepared?;
        return Err(ApiError::InvalidParameter {
            code: "websocket_required",
            detail: "attach is a websocket: send Connection: Upgrade and Upgrade: websocket".into(),
        });
    }
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::InvalidParameter { code: "websocket_required", detail: e.to_string() })?;
    let messages = messages.max_frame_size(MAX_FRAME_BYTES).aggregate_continuations();
    let state = state.into_inner();
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    actix_web::rt::spawn(async move {
        let _slot = slot;
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return refuse(session, &e).await,
        };
        // The local scheduler's sandboxes live in the process that started them: an attach
        // arriving at another replica goes on to that one, which checks and records it itself.
        if let Some(owner) = &prepared.target.owner
            && owner.id != state.replica.id
            && state.scheduler.exec_needs_starting_replica()
            && !access.forwarded
        {
            let url = format!("{}{path_and_query}", owner.url);
            let claims = ForwardClaims::of(&access, &prepared.key, &state.replica.id.to_string());
            let expires = time::OffsetDateTime::now_utc() + FORWARD_ASSERTION_TTL;
            let assertion = match state.run_tokens.sign_assertion(FORWARD_AUDIENCE, claims, expires) {
                Ok(assertion) => assertion,
                Err(e) => return refuse(session, &ApiError::internal(e.to_string())).await,
            };
            return forward(&state, url, assertion, session, messages).await;
        }
        let exec = match start(&state, access.token_id, &prepared).await {
            Ok(exec) => exec,
            Err(e) => return refuse(session, &e).await,
        };
        let limit = Duration::from_secs(state.config.attach.max_session_s);
        relay(exec, session, messages, limit).await;
    });
    Ok(response)
}

/// Relays the session, message for message, to the same attach on the replica at `url` (which
/// runs the task): what either side sends reaches the other unchanged, until one closes.
async fn forward(
    state: &AppState,
    url: String,
    assertion: String,
    mut session: actix_ws::Session,
    mut messages: actix_ws::AggregatedMessageStream,
) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let unreachable = |detail: String| {
        tracing::warn!(%url, %detail, "forwarding an attach to the replica running the task failed");
        ApiError::Unavailable("the replica running the task cannot be reached; try again".into())
    };
    let ws_url = url.replacen("http", "ws", 1);
    let mut request = match ws_url.as_str().into_client_request() {
        Ok(request) => request,
        Err(e) => return refuse(session, &unreachable(e.to_string())).await,
    };
    let Ok(assertion) = assertion.parse() else {
        return refuse(session, &ApiError::internal("a forwarding assertion is not a header value")).await;
    };
    request.headers_mut().insert(FORWARDED_HEADER, assertion);
    let connector = state.replica_tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let upstream = match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
        Ok((upstream, _)) => upstream,
        Err(e) => return refuse(session, &unreachable(e.to_string())).await,
    };
    let (mut to_owner, mut from_owner) = upstream.split();
    loop {
        tokio::select! {
            message = from_owner.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if session.text(text.as_str().to_owned()).await.is_err() {
                        let _ = to_owner.send(Message::Close(None)).await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if session.binary(bytes).await.is_err() {
                        let _ = to_owner.send(Message::Close(None)).await;
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| CloseReason {
                        code: u16::from(f.code).into(),
                        description: Some(f.reason.as_str().to_owned()).filter(|d| !d.is_empty()),
                    });
                    let _ = session.close(reason).await;
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return refuse(session, &unreachable(e.to_string())).await,
                None => {
                    let _ = session.close(None).await;
                    return;
                }
            },
            message = messages.recv() => {
                let sent = match message {
                    Some(Ok(actix_ws::AggregatedMessage::Text(text))) => to_owner.send(Message::text(text.to_string())).await,
                    Some(Ok(actix_ws::AggregatedMessage::Binary(bytes))) => to_owner.send(Message::binary(bytes)).await,
                    Some(Ok(actix_ws::AggregatedMessage::Ping(bytes))) => {
                        let _ = session.pong(&bytes).await;
                        Ok(())
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => Ok(()),
                    // The client left: so does the forwarded session (which ends the command).
                    Some(Ok(actix_ws::AggregatedMessage::Close(_)) | Err(_)) | None => {
                        let _ = to_owner.send(Message::Close(None)).await;
                        let _ = session.close(None).await;
                        return;
                    }
                };
                if let Err(e) = sent {
                    return refuse(session, &unreachable(e.to_string())).await;
                }
            }
        }
    }
}

/// Records the audit event, then starts the command.
async fn start(state: &AppState, token_id: uuid::Uuid, prepared: &Prepared) -> Result<ExecSession, ApiError> {
    let Prepared { key, target, query } = prepared;
    gofer_engine::attach::record(&state.pool, key, target.attempt, token_id, &query.command, query.tty).await?;
    let request = ExecRequest {
        job_id: target.job_id.clone(),
        task: key.task.clone(),
        command: query.command.clone(),
        tty: query.tty,
        size: query.size(),
        env: target.env.clone(),
    };
    tracing::info!(job_id = %target.job_id, command = ?query.command, tty = query.tty, "attaching to a task");
    Ok(state.scheduler.exec(&request).await?)
}

fn error_message(error: &ApiError) -> String {
    let problem = error.problem();
    json!({"error": {"code": problem.code, "detail": problem.detail}}).to_string()
}

/// Sends the error as a message, then closes cleanly.
async fn refuse(mut session: actix_ws::Session, error: &ApiError) {
    if matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        tracing::warn!(%error, "attach failed");
    }
    let _ = session.text(error_message(error)).await;
    let reason = CloseReason { code: CloseCode::Normal, description: Some(error.code().to_owned()) };
    let _ = session.close(Some(reason)).await;
}

/// A client message: any combination of the fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    /// Bytes for stdin, base64.
    stdin: Option<String>,
    /// End of stdin.
    #[serde(default)]
    stdin_close: bool,
    /// The terminal's new size.
    resize: Option<Resize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    cols: u16,
    rows: u16,
}

fn decode_client(text: &str) -> Result<Vec<ExecInput>, String> {
    let message: ClientMessage = serde_json::from_str(text).map_err(|e| format!("not an attach message: {e}"))?;
    let mut inputs = Vec::new();
    if let Some(data) = message.stdin {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| "stdin must be base64".to_owned())?;
        inputs.push(ExecInput::Stdin(bytes));
    }
    if message.stdin_close {
        inputs.push(ExecInput::CloseStdin);
    }
    if let Some(Resize { cols, rows }) = message.resize {
        inputs.push(ExecInput::Resize(TerminalSize { cols: cols.max(1), rows: rows.max(1) }));
    }
    Ok(inputs)
}

fn output_message(output: &ExecOutput) -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    match output {
        ExecOutput::Stdout(bytes) => json!({"stdout": b64(bytes)}),
        ExecOutput::Stderr(bytes) => json!({"stderr": b64(bytes)}),
        ExecOutput::Exited(code) => json!({"exit": {"code": code}}),
        ExecOutput::Failed(detail) => json!({"error": {"code": "exec_failed", "detail": detail}}),
    }
}

/// Moves messages both ways until the command exits, the client leaves or the time is up.
async fn relay(
    exec: ExecSession,
    mut session: actix_ws::Session,
    mut messages: actix_ws::AggregatedMessageStream,
    limit: Duration,
) {
    let ExecSession { input, mut output } = exec;
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            item = output.next() => {
                let Some(item) = item else {
                    let error = ApiError::Internal("the exec session ended without an exit code".into());
                    return refuse(session, &error).await;
                };
                let last = matches!(item, ExecOutput::Exited(_) | ExecOutput::Failed(_));
                if session.text(output_message(&item).to_string()).await.is_err() {
                    return;
                }
                if last {
                    let _ = session.close(Some(CloseCode::Normal.into())).await;
                    return;
                }
            }
            message = messages.recv() => match message {
                Some(Ok(actix_ws::AggregatedMessage::Text(text))) => match decode_client(&text) {
                    Ok(inputs) => {
                        for item in inputs {
                            // A failed send means the command is over: its exit is on the way.
                            let _ = input.send(item).await;
                        }
                    }
                    Err(detail) => {
                        let error = ApiError::InvalidParameter { code: "invalid_message", detail };
                        if session.text(error_message(&error)).await.is_err() {
                            return;
                        }
                    }
                },
                Some(Ok(actix_ws::AggregatedMessage::Binary(bytes))) => {
                    let _ = input.send(ExecInput::Stdin(bytes.to_vec())).await;
                }
                Some(Ok(actix_ws::AggregatedMessage::Ping(bytes))) => {
                    let _ = session.pong(&bytes).await;
                }
                Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => {}
                // The client closed or broke the connection: dropping the exec ends the command.
                Some(Ok(actix_ws::AggregatedMessage::Close(_)) | Err(_)) | None => {
                    let _ = session.close(None).await;
                    return;
                }
            },
            () = &mut deadline => {
                let error = ApiError::Conflict { code: "attach_timeout", detail: format!("attach sessions last at most {}s", limit.as_secs()) };
                return refuse(session, &error).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_repeats_or_is_json_and_defaults_to_a_shell() {
        let parse = |q: &str| AttachQuery::parse(q).map(|q| (q.command, q.tty)).map_err(|e| e.code());
        assert_eq!(parse(""), Ok((vec!["/bin/sh".to_owned()], false)));
        assert_eq!(parse("command=echo&command=hello&tty=true"), Ok((vec!["echo".into(), "hello".into()], true)));
        assert_eq!(
            parse("command=%5B%22sh%22%2C%22-c%22%2C%22echo%20hi%22%5D"),
            Ok((vec!["sh".into(), "-c".into(), "echo hi".into()], false))
        );
        assert_eq!(parse("tty=yes"), Err("invalid_attach_query"));
        assert_eq!(parse("command=%5B1%5D"), Ok((vec!["[1]".into()], false)), "not an array of strings: a program");
        assert_eq!(parse("command=%5B"), Ok((vec!["[".into()], false)));
        assert_eq!(parse("command="), Err("invalid_attach_query"));
        assert_eq!(parse("command=sh&command="), Err("invalid_attach_query"));
        assert_eq!(parse("command=%5B%22%22%5D"), Err("invalid_attach_query"), "an empty program");
        assert_eq!(parse("shell=bash"), Err("invalid_attach_query"));
        assert_eq!(parse("cols=0"), Err("invalid_attach_query"));
    }

    #[test]
    fn client_messages_decode_to_inputs() {
        assert_eq!(
            decode_client(r#"{"stdin":"aGk=","stdin_close":true,"resize":{"cols":80,"rows":24}}"#),
            Ok(vec![
                ExecInput::Stdin(b"hi".to_vec()),
                ExecInput::CloseStdin,
                ExecInput::Resize(TerminalSize { cols: 80, rows: 24 })
            ])
        );
        assert!(decode_client(r#"{"stdin":"***"}"#).is_err());
        assert!(decode_client(r#"{"bogus":1}"#).is_err());
    }
}

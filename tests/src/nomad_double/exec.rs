//! Test code only: the double's `GET /v1/client/allocation/{alloc}/exec` websocket (protocols.md
//! §1.6). The request is checked like every other (spec, token), the allocation must be running,
//! and every client frame must be one Nomad knows ([`super::spec::check_exec_frame`]); what does
//! not fit is recorded as a violation.
//!
//! Commands it "runs": `echo words…` (stdout, exit 0), `exit <code>` (a line on stderr, that
//! code), `cat` (stdin back to stdout until stdin closes, exit 0), `stty size` (the last
//! `tty_size` as `rows cols`, exit 0); anything else exits 127 with `not found` on stderr.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Recorded, Shared, lock, text};

pub(super) async fn exec(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
    alloc: web::Path<String>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let query: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    lock(&shared).requests.push(Recorded {
        method: "GET".into(),
        path: path.clone(),
        query: query.clone(),
        body: None,
    });
    if let Err(violation) = shared.spec.check("GET", &path, &query, None) {
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
    let status = {
        let state = lock(&shared);
        state
            .jobs
            .iter()
            .find(|((ns, _), j)| *ns == namespace && j.alloc.id == *alloc)
            .map(|(_, j)| j.alloc.client.clone())
    };
    match status.as_deref() {
        None => return text(404, "Unknown allocation"),
        Some("running") => {}
        Some(_) => return text(400, "task is not running"),
    }
    if q("task").is_none() {
        return text(400, "missing task parameter");
    }
    let Some(command) = q("command").and_then(|c| serde_json::from_str::<Vec<String>>(&c).ok()) else {
        return text(400, "command is not a JSON array");
    };
    let Ok((response, session, messages)) = actix_ws::handle(&req, body) else {
        return text(400, "exec needs a websocket upgrade");
    };
    actix_web::rt::spawn(run(shared.into_inner(), session, messages, command));
    response
}

fn data(stream: &str, bytes: &[u8]) -> String {
    json!({ stream: {"data": base64::engine::general_purpose::STANDARD.encode(bytes)} }).to_string()
}

/// The next client frame, checked; `None` when the client closed.
async fn next_frame(shared: &Shared, messages: &mut actix_ws::MessageStream) -> Option<Value> {
    loop {
        match messages.next().await? {
            Ok(actix_ws::Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Err(violation) = super::spec::check_exec_frame(&frame) {
                    lock(shared).violations.push(violation);
                }
                return Some(frame);
            }
            Ok(actix_ws::Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn run(
    shared: std::sync::Arc<Shared>,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    command: Vec<String>,
) {
    // A heartbeat first, as Nomad sends when idle: clients must skip it.
    let _ = session.text("{}").await;
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let code = match args.as_slice() {
        ["echo", words @ ..] => {
            let _ = session.text(data("stdout", format!("{}\n", words.join(" ")).as_bytes())).await;
            0
        }
        ["exit", code] => {
            let _ = session.text(data("stderr", format!("exiting with {code}\n").as_bytes())).await;
            code.parse().unwrap_or(1)
        }
        ["cat"] => {
            while let Some(frame) = next_frame(&shared, &mut messages).await {
                if frame.pointer("/stdin/close") == Some(&json!(true)) {
                    break;
                }
                if let Some(bytes) = frame
                    .pointer("/stdin/data")
                    .and_then(Value::as_str)
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                {
                    let _ = session.text(data("stdout", &bytes)).await;
                }
            }
            0
        }
        ["stty", "size"] => {
            let size = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(frame) = next_frame(&shared, &mut messages).await {
                    if let Some(size) = frame.get("tty_size") {
                        return Some(format!("{} {}\r\n", size["height"], size["width"]));
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "no tty\r\n".into());
            let _ = session.text(data("stdout", size.as_bytes())).await;
            0
        }
        _ => {
            let _ = session.text(data("stderr", b"not found\n")).await;
            127
        }
    };
    let _ = session.text(json!({"exited": true, "result": {"exit_code": code}}).to_string()).await;
    let _ = session.close(None).await;
}

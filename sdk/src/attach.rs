//! Attach: a websocket to a command inside a running task (`…/tasks/{task}/attach`, docs/attach.md).

use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::routes::ATTACH_TASK;
use crate::{Client, Error, Problem};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What to run and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// The argv; empty: the server's default shell.
    pub command: Vec<String>,
    /// Run under a pseudo-terminal.
    pub tty: bool,
    /// Initial terminal size (columns, rows), with `tty`.
    pub size: Option<(u16, u16)>,
}

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachEvent {
    /// Command output (with a tty: the terminal's output).
    Stdout(Vec<u8>),
    /// Command error output.
    Stderr(Vec<u8>),
    /// The command ended with this code; the session is over.
    Exit(i32),
    /// The server refused or ended the session; it is over.
    Error {
        /// Stable code (`task_not_running`, `attach_disabled`, …).
        code: String,
        /// What went wrong.
        detail: String,
    },
}

/// The sending half of an attach session.
pub struct AttachWriter(SplitSink<Socket, Message>);

/// The receiving half of an attach session.
pub struct AttachReader(SplitStream<Socket>);

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::Decode(format!("attach websocket: {e}"))
}

impl AttachWriter {
    async fn send_json(&mut self, value: Value) -> Result<(), Error> {
        self.0.send(Message::text(value.to_string())).await.map_err(ws_error)
    }

    /// Sends bytes to the command's stdin.
    pub async fn stdin(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.send_json(json!({"stdin": base64::engine::general_purpose::STANDARD.encode(bytes)})).await
    }

    /// Ends the command's stdin (with a tty: sends the terminal's end-of-file character).
    pub async fn close_stdin(&mut self) -> Result<(), Error> {
        self.send_json(json!({"stdin_close": true})).await
    }

    /// Tells the command's terminal its new size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), Error> {
        self.send_json(json!({"resize": {"cols": cols, "rows": rows}})).await
    }

    /// Closes the websocket (the command is ended if still running).
    pub async fn close(&mut self) -> Result<(), Error> {
        self.0.close().await.map_err(ws_error)
    }
}

impl AttachReader {
    /// The next message; `None` once the server closed the session.
    pub async fn next(&mut self) -> Option<Result<AttachEvent, Error>> {
        loop {
            let message = match self.0.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(ws_error(e))),
            };
            match message {
                Message::Text(text) => return Some(decode_event(text.as_str())),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }
}

fn decode_event(text: &str) -> Result<AttachEvent, Error> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Decode(e.to_string()))?;
    let bytes = |v: &Value| {
        let text = v.as_str().ok_or_else(|| Error::Decode("output is not a string".into()))?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| Error::Decode(e.to_string()))
    };
    if let Some(v) = value.get("stdout") {
        return Ok(AttachEvent::Stdout(bytes(v)?));
    }
    if let Some(v) = value.get("stderr") {
        return Ok(AttachEvent::Stderr(bytes(v)?));
    }
    if let Some(code) = value.pointer("/exit/code").and_then(Value::as_i64) {
        return Ok(AttachEvent::Exit(i32::try_from(code).unwrap_or(-1)));
    }
    if let Some(error) = value.get("error") {
        let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Ok(AttachEvent::Error { code: field("code"), detail: field("detail") });
    }
    Err(Error::Decode(format!("unknown attach message: {text}")))
}

impl Client {
    /// `GET …/runs/{run}/tasks/{task}/attach` as a websocket: runs a command inside the running
    /// task. A refusal before the session starts (401, 403, 404 …) is an [`Error::Api`]; later
    /// ones arrive as [`AttachEvent::Error`].
    pub async fn attach(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        run: RunId,
        task: &TaskId,
        options: &AttachOptions,
    ) -> Result<(AttachWriter, AttachReader), Error> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.base, ATTACH_TASK.fill(&[ns, p, &run, task])))
            .map_err(|e| Error::Decode(format!("bad server URL: {e}")))?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| Error::Decode("bad server URL scheme".into()))?;
        {
            let mut query = url.query_pairs_mut();
            if !options.command.is_empty() {
                query.append_pair("command", &serde_json::to_string(&options.command).unwrap_or_default());
            }
            query.append_pair("tty", if options.tty { "true" } else { "false" });
            if let Some((cols, rows)) = options.size {
                query.append_pair("cols", &cols.to_string()).append_pair("rows", &rows.to_string());
            }
        }
        let mut request = url.as_str().into_client_request().map_err(ws_error)?;
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| Error::Decode("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let (socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.body().clone().unwrap_or_default();
                return Err(Error::Api(serde_json::from_slice(&body).unwrap_or_else(|_| Problem {
                    code: format!("http_{status}"),
                    detail: String::from_utf8_lossy(&body).chars().take(500).collect(),
                    status,
                })));
            }
            Err(e) => return Err(ws_error(e)),
        };
        let (sink, stream) = socket.split();
        Ok((AttachWriter(sink), AttachReader(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_decode() {
        assert_eq!(decode_event(r#"{"stdout":"aGk="}"#).ok(), Some(AttachEvent::Stdout(b"hi".to_vec())));
        assert_eq!(decode_event(r#"{"exit":{"code":3}}"#).ok(), Some(AttachEvent::Exit(3)));
        assert_eq!(
            decode_event(r#"{"error":{"code":"task_not_running","detail":"no"}}"#).ok(),
            Some(AttachEvent::Error { code: "task_not_running".into(), detail: "no".into() })
        );
        assert!(decode_event(r#"{"what":1}"#).is_err());
    }
}

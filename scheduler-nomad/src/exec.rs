//! Exec into a running allocation: Nomad's websocket `/v1/client/allocation/:alloc/exec`
//! (shared/notes/protocols.md §1.6), bridged to a [`ExecSession`].
//!
//! Query: `task`, `command` (a JSON array), `tty`, `namespace` (and `region`); the ACL token goes
//! in `X-Nomad-Token` (the service token needs `alloc-exec` in the tenants' namespaces). Frames,
//! all JSON text: to Nomad `{"stdin":{"data":"<b64>"}}`, `{"stdin":{"close":true}}`,
//! `{"tty_size":{"height":H,"width":W}}`; from Nomad `{"stdout":{"data":"<b64>"}}`,
//! `{"stderr":{"data":"<b64>"}}` (or `{"…":{"close":true}}`), `{"exited":true,"result":{"exit_code":N}}`,
//! and `{}` heartbeats. The command runs with the task's own environment and user, as Nomad's
//! driver execs it (the request's `env` is not used).

use std::sync::Arc;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use gofer_core::scheduler::{
    BoxFuture, ExecInput, ExecInputSink, ExecOutput, ExecRequest, ExecSession, SchedulerError, TerminalSize,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{NomadSetupError, encode};
use crate::config::NomadConfig;

/// Messages buffered each way.
const CHANNEL_DEPTH: usize = 64;

/// How to reach Nomad's exec websocket: the base URL as `ws(s)://`, the token, TLS.
#[derive(Clone)]
pub(crate) struct ExecClient {
    base: String,
    token: Option<String>,
    region: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn tls_error(path: &std::path::Path, detail: impl std::fmt::Display) -> NomadSetupError {
    NomadSetupError::Tls { path: path.display().to_string(), detail: detail.to_string() }
}

/// rustls settings for `wss://`: the configured CA (else the public roots) and the client certificate.
fn tls_config(config: &NomadConfig) -> Result<Arc<rustls::ClientConfig>, NomadSetupError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls.ca_cert {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error(ca, e))? {
                roots.add(cert.map_err(|e| tls_error(ca, e))?).map_err(|e| tls_error(ca, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NomadSetupError::Client(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match (&config.tls.client_cert, &config.tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls_error(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_error(cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| tls_error(cert, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(tls))
}

impl ExecClient {
    /// From the settings; `base` is Nomad's `http(s)://` address.
    pub(crate) fn new(config: &NomadConfig, base: &str) -> Result<Self, NomadSetupError> {
        let (base, tls) = match base.strip_prefix("https://") {
            Some(rest) => (format!("wss://{rest}"), Some(tls_config(config)?)),
            None => (format!("ws://{}", base.trim_start_matches("http://")), None),
        };
        Ok(Self { base, token: config.token.clone(), region: config.region.clone(), tls })
    }

    /// Opens the exec websocket of `alloc` and starts relaying.
    pub(crate) async fn exec(
        &self,
        namespace: &str,
        alloc: &str,
        task: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession, SchedulerError> {
        let command = serde_json::to_string(&request.command).unwrap_or_default();
        let mut query = vec![
            ("task", task.to_owned()),
            ("command", command),
            ("tty", request.tty.to_string()),
            ("namespace", namespace.to_owned()),
        ];
        query.extend(self.region.clone().map(|r| ("region", r)));
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let url = format!("{}/v1/client/allocation/{}/exec?{}", self.base, encode(alloc), query.join("&"));
        let mut ws_request = url.into_client_request().map_err(|e| SchedulerError::Rejected(e.to_string()))?;
        if let Some(token) = &self.token {
            let value =
                token.parse().map_err(|_| SchedulerError::Rejected("the Nomad token is not a header value".into()))?;
            ws_request.headers_mut().insert("X-Nomad-Token", value);
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let (socket, _) = match tokio_tungstenite::connect_async_tls_with_config(ws_request, None, false, connector)
            .await
        {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let message = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).trim().to_owned();
                return Err(crate::client::NomadError::Status { status, message }.into());
            }
            Err(e) => return Err(SchedulerError::Unavailable(format!("Nomad exec websocket: {e}"))),
        };
        let (mut sink, mut stream) = socket.split();
        if request.tty
            && let Some(size) = request.size
        {
            sink.send(Message::text(tty_size(size).to_string()))
                .await
                .map_err(|e| SchedulerError::Unavailable(format!("Nomad exec websocket: {e}")))?;
        }
        let (input_tx, mut input_rx) = mpsc::channel::<ExecInput>(CHANNEL_DEPTH);
        let (output_tx, output_rx) = mpsc::channel::<ExecOutput>(CHANNEL_DEPTH);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = stream.next() => {
                        let output = match frame {
                            Some(Ok(Message::Text(text))) => decode_frame(text.as_str()),
                            Some(Ok(Message::Close(_))) | None => {
                                Some(ExecOutput::Failed("Nomad closed the exec session without an exit code".into()))
                            }
                            Some(Ok(_)) => None,
                            Some(Err(e)) => Some(ExecOutput::Failed(format!("Nomad exec websocket: {e}"))),
                        };
                        let Some(output) = output else { continue };
                        let last = matches!(output, ExecOutput::Exited(_) | ExecOutput::Failed(_));
                        if output_tx.send(output).await.is_err() || last {
                            let _ = sink.close().await;
                            return;
                        }
                    }
                    input = input_rx.recv() => {
                        let frame = match input {
                            Some(input) => encode_input(&input),
                            // The caller went away: closing the websocket ends the command in Nomad.
                            None => {
                                let _ = sink.close().await;
                                return;
                            }
                        };
                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                            let _ = output_tx.send(ExecOutput::Failed("Nomad exec websocket closed".into())).await;
                            return;
                        }
                    }
                }
            }
        });
        let output = futures_util::stream::unfold(output_rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) });
        Ok(ExecSession { input: Box::new(ChannelSink(input_tx)), output: Box::pin(output) })
    }
}

struct ChannelSink(mpsc::Sender<ExecInput>);

impl ExecInputSink for ChannelSink {
    fn send(&self, input: ExecInput) -> BoxFuture<'_, Result<(), SchedulerError>> {
        Box::pin(async move {
            self.0.send(input).await.map_err(|_| SchedulerError::NotFound("the exec session has ended".into()))
        })
    }
}

fn tty_size(size: TerminalSize) -> Value {
    json!({"tty_size": {"height": size.rows, "width": size.cols}})
}

fn encode_input(input: &ExecInput) -> Value {
    match input {
        ExecInput::Stdin(bytes) => json!({"stdin": {"data": base64::engine::general_purpose::STANDARD.encode(bytes)}}),
        ExecInput::CloseStdin => json!({"stdin": {"close": true}}),
        ExecInput::Resize(size) => tty_size(*size),
    }
}

/// One frame from Nomad; `None` for heartbeats and stream closes.
fn decode_frame(text: &str) -> Option<ExecOutput> {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return Some(ExecOutput::Failed(format!("unreadable Nomad exec frame: {text}")));
    };
    if frame.get("exited").and_then(Value::as_bool) == Some(true) {
        let code = frame.pointer("/result/exit_code").and_then(Value::as_i64).unwrap_or(0);
        return Some(ExecOutput::Exited(i32::try_from(code).unwrap_or(-1)));
    }
    let data = |stream: &str| {
        let data = frame.get(stream)?.get("data")?.as_str()?;
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    };
    if let Some(bytes) = data("stdout") {
        return Some(ExecOutput::Stdout(bytes));
    }
    data("stderr").map(ExecOutput::Stderr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_nomads_protocol() {
        assert_eq!(decode_frame(r#"{"stdout":{"data":"aGk="}}"#), Some(ExecOutput::Stdout(b"hi".to_vec())));
        assert_eq!(decode_frame(r#"{"stderr":{"data":"aGk="}}"#), Some(ExecOutput::Stderr(b"hi".to_vec())));
        assert_eq!(decode_frame(r#"{"exited":true,"result":{"exit_code":3}}"#), Some(ExecOutput::Exited(3)));
        assert_eq!(decode_frame("{}"), None);
        assert_eq!(decode_frame(r#"{"stdout":{"close":true}}"#), None);
        assert_eq!(encode_input(&ExecInput::CloseStdin), json!({"stdin": {"close": true}}));
        assert_eq!(
            encode_input(&ExecInput::Resize(TerminalSize { cols: 80, rows: 24 })),
            json!({"tty_size": {"height": 24, "width": 80}})
        );
    }
}

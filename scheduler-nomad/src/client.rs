//! The few Nomad HTTP API calls the scheduler makes, with Nomad's plain-text errors kept in typed errors.

use std::time::Duration;

use base64::Engine as _;
use gofer_core::scheduler::SchedulerError;
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::NomadConfig;
use crate::state::Allocation;

/// A failed Nomad call.
#[derive(Debug, thiserror::Error)]
pub enum NomadError {
    /// Nomad answered with an error status; `message` is its plain-text body.
    #[error("Nomad answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Nomad's message, as sent.
        message: String,
    },
    /// Nomad could not be reached, or did not answer in time.
    #[error("Nomad could not be reached: {0}")]
    Transport(String),
    /// Nomad's answer could not be read.
    #[error("Nomad sent an answer that could not be read: {0}")]
    Decode(String),
}

impl NomadError {
    /// Whether Nomad said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NomadError::Status { status: 404, .. })
    }
}

impl From<NomadError> for SchedulerError {
    fn from(e: NomadError) -> Self {
        match &e {
            NomadError::Status { status: 400, message } => SchedulerError::Rejected(format!("Nomad: {message}")),
            NomadError::Status { status: 403, message } => SchedulerError::Unavailable(format!(
                "Nomad refused the service token (check its ACL policy, docs/nomad.md): {message}"
            )),
            NomadError::Status { status: 404, message } => SchedulerError::NotFound(message.clone()),
            // Job validation failures come back as 500 with a multierror text; retrying cannot help.
            NomadError::Status { status: 500, message } if message.contains("validation failed") => {
                SchedulerError::Rejected(format!("Nomad: {message}"))
            }
            _ => SchedulerError::Unavailable(e.to_string()),
        }
    }
}

/// Why a client could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum NomadSetupError {
    /// A TLS file could not be read or parsed.
    #[error("cannot use the Nomad TLS file {path}: {detail}")]
    Tls {
        /// The configured path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the Nomad HTTP client: {0}")]
    Client(String),
    /// A setting is invalid.
    #[error("invalid Nomad setting: {0}")]
    Invalid(String),
}

/// A job stub from `GET /v1/jobs` or the job from `GET /v1/job/:id` (the fields we read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobStub {
    /// Job id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its namespace.
    #[serde(rename = "Namespace")]
    pub namespace: String,
    /// Whether it was stopped (deregistered without purge).
    #[serde(rename = "Stop")]
    pub stop: bool,
    /// `pending`, `running` or `dead`.
    #[serde(rename = "Status")]
    pub status: String,
    /// The job's `Meta` (from `GET /v1/job/:id`; list stubs may leave it out): who it belongs to.
    #[serde(rename = "Meta")]
    pub meta: Option<std::collections::BTreeMap<String, String>>,
}

/// One frame of `/v1/client/fs/logs`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogFrame {
    #[serde(rename = "Data")]
    data: Option<String>,
}

/// The Nomad HTTP client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Without an overall timeout, for the event stream.
    streaming: reqwest::Client,
    base: String,
    token: Option<String>,
    region: Option<String>,
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, NomadSetupError> {
    std::fs::read(path).map_err(|e| NomadSetupError::Tls { path: path.display().to_string(), detail: e.to_string() })
}

fn builder(config: &NomadConfig) -> Result<reqwest::ClientBuilder, NomadSetupError> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &config.tls.ca_cert {
        let cert = reqwest::Certificate::from_pem(&read_pem(ca)?)
            .map_err(|e| NomadSetupError::Tls { path: ca.display().to_string(), detail: e.to_string() })?;
        b = b.add_root_certificate(cert);
    }
    match (&config.tls.client_cert, &config.tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read_pem(cert)?;
            pem.push(b'\n');
            pem.extend(read_pem(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| NomadSetupError::Tls { path: cert.display().to_string(), detail: e.to_string() })?;
            b = b.identity(identity);
        }
        (None, None) => {}
        _ => return Err(NomadSetupError::Invalid("tls.client_cert and tls.client_key go together".into())),
    }
    Ok(b)
}

impl Client {
    /// Builds the client from the settings (reads the TLS files).
    pub fn new(config: &NomadConfig) -> Result<Self, NomadSetupError> {
        let base = config.addr.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(NomadSetupError::Invalid(format!("addr must be an http:// or https:// URL, not {base:?}")));
        }
        let http = builder(config)?
            .timeout(Duration::from_secs(config.request_timeout_s.max(1)))
            .build()
            .map_err(|e| NomadSetupError::Client(e.to_string()))?;
        let streaming = builder(config)?.build().map_err(|e| NomadSetupError::Client(e.to_string()))?;
        Ok(Self { http, streaming, base, token: config.token.clone(), region: config.region.clone() })
    }

    fn request(&self, client: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        let mut rb = client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            rb = rb.header("X-Nomad-Token", token);
        }
        if let Some(region) = &self.region {
            rb = rb.query(&[("region", region)]);
        }
        rb
    }

    async fn send(rb: RequestBuilder) -> Result<Response, NomadError> {
        let response = rb.send().await.map_err(|e| NomadError::Transport(gofer_core::with_sources(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let message = response.text().await.unwrap_or_default().trim().to_owned();
        Err(NomadError::Status { status: status.as_u16(), message })
    }

    async fn json<T: serde::de::DeserializeOwned>(rb: RequestBuilder) -> Result<T, NomadError> {
        let body =
            Self::send(rb).await?.bytes().await.map_err(|e| NomadError::Transport(gofer_core::with_sources(&e)))?;
        serde_json::from_slice(&body).map_err(|e| NomadError::Decode(e.to_string()))
    }

    /// Creates or updates a namespace (`POST /v1/namespace/:name`).
    pub async fn upsert_namespace(&self, name: &str, tenant: &str) -> Result<(), NomadError> {
        let body =
            json!({"Name": name, "Description": format!("Gofer tenant {tenant}"), "Meta": {"gofer.tenant": tenant}});
        let path = format!("/v1/namespace/{name}");
        Self::send(self.request(&self.http, Method::POST, &path).json(&body)).await.map(drop)
    }

    /// Registers a new job; a job with this id that already exists is left alone (`Ok(false)`).
    pub async fn register(&self, namespace: &str, job: Value) -> Result<bool, NomadError> {
        // Check-and-set with index 0: only a new job is registered, so a repeated start never
        // re-runs a finished job.
        let body = json!({"Job": job, "EnforceIndex": true, "JobModifyIndex": 0});
        let rb = self.request(&self.http, Method::POST, "/v1/jobs").query(&[("namespace", namespace)]).json(&body);
        match Self::send(rb).await {
            Ok(_) => Ok(true),
            Err(NomadError::Status { status: 500, message }) if message.contains("already exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads a job; `None` when Nomad has no such job.
    pub async fn job(&self, namespace: &str, job_id: &str) -> Result<Option<JobStub>, NomadError> {
        let rb = self
            .request(&self.http, Method::GET, &format!("/v1/job/{}", encode(job_id)))
            .query(&[("namespace", namespace)]);
        match Self::json(rb).await {
            Ok(job) => Ok(Some(job)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Finds the namespace of a job by its id, in every namespace the token may read.
    pub async fn find_job(&self, job_id: &str) -> Result<Option<JobStub>, NomadError> {
        let rb = self.request(&self.http, Method::GET, "/v1/jobs").query(&[("prefix", job_id), ("namespace", "*")]);
        let jobs: Vec<JobStub> = Self::json(rb).await?;
        Ok(jobs.into_iter().find(|j| j.id == job_id))
    }

    /// The job's allocations, with their task states.
    pub async fn allocations(&self, namespace: &str, job_id: &str) -> Result<Vec<Allocation>, NomadError> {
        let path = format!("/v1/job/{}/allocations", encode(job_id));
        Self::json(self.request(&self.http, Method::GET, &path).query(&[("namespace", namespace)])).await
    }

    /// Deregisters a job (stopping its allocation); with `purge` Nomad forgets it too.
    pub async fn deregister(&self, namespace: &str, job_id: &str, purge: bool) -> Result<(), NomadError> {
        let path = format!("/v1/job/{}", encode(job_id));
        let rb = self
            .request(&self.http, Method::DELETE, &path)
            .query(&[("namespace", namespace), ("purge", if purge { "true" } else { "false" })]);
        Self::send(rb).await.map(drop)
    }

    /// Writes a Nomad Variable (encrypted at rest, readable by the job's workload identity).
    pub async fn put_variable(&self, namespace: &str, path: &str, items: Value) -> Result<(), NomadError> {
        let body = json!({"Namespace": namespace, "Path": path, "Items": items});
        let rb = self
            .request(&self.http, Method::PUT, &format!("/v1/var/{path}"))
            .query(&[("namespace", namespace)])
            .json(&body);
        Self::send(rb).await.map(drop)
    }

    /// Deletes a Nomad Variable; a missing one is fine.
    pub async fn delete_variable(&self, namespace: &str, path: &str) -> Result<(), NomadError> {
        let rb =
            self.request(&self.http, Method::DELETE, &format!("/v1/var/{path}")).query(&[("namespace", namespace)]);
        match Self::send(rb).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// `GET /v1/client/fs/logs/:alloc` for a task's `stdout` or `stderr` from `offset`.
    fn logs_request(&self, alloc: &str, task: &str, kind: &str, offset: u64, follow: bool) -> RequestBuilder {
        // A held stream must not be cut by the per-call timeout.
        let client = if follow { &self.streaming } else { &self.http };
        self.request(client, Method::GET, &format!("/v1/client/fs/logs/{}", encode(alloc))).query(&[
            ("task", task),
            ("type", kind),
            ("origin", "start"),
            ("offset", offset.to_string().as_str()),
            ("follow", if follow { "true" } else { "false" }),
        ])
    }

    /// Reads a task's `stdout` or `stderr` from `offset` to its current end, decoding Nomad's
    /// concatenated JSON frames.
    pub async fn logs(&self, alloc: &str, task: &str, kind: &str, offset: u64) -> Result<Vec<u8>, NomadError> {
        let response = Self::send(self.logs_request(alloc, task, kind, offset, false)).await?;
        let body = response.bytes().await.map_err(|e| NomadError::Transport(gofer_core::with_sources(&e)))?;
        decode_frames(&body)
    }

    /// Opens a held `follow=true` stream of a task's `stdout` or `stderr` from `offset`: Nomad
    /// sends frames as the task writes (heartbeats `{}` between) until the task is dead.
    pub async fn follow_logs(&self, alloc: &str, task: &str, kind: &str, offset: u64) -> Result<Response, NomadError> {
        Self::send(self.logs_request(alloc, task, kind, offset, true)).await
    }

    /// Opens `/v1/event/stream` for allocation events of every namespace, from `index`.
    pub async fn event_stream(&self, index: u64) -> Result<Response, NomadError> {
        let index = index.to_string();
        let rb = self.request(&self.streaming, Method::GET, "/v1/event/stream").query(&[
            ("topic", "Allocation"),
            ("namespace", "*"),
            ("index", index.as_str()),
        ]);
        Self::send(rb).await
    }
}

/// Decodes concatenated log frames (`{"Data":"<base64>",…}{…}`, heartbeats `{}`) into bytes.
pub fn decode_frames(body: &[u8]) -> Result<Vec<u8>, NomadError> {
    let mut decoder = FrameDecoder::default();
    let out = decoder.push(body)?;
    if decoder.buffer.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(NomadError::Decode("log frame: truncated".into()));
    }
    Ok(out)
}

/// Decodes log frames as they arrive in pieces of a stream: a frame split between two pieces
/// waits for the rest; a stream that drops mid-frame loses only that incomplete frame, whose bytes
/// are then not counted (the reconnection asks for them again).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    /// Adds a piece of the stream; answers the data of every frame it completed.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, NomadError> {
        self.buffer.extend_from_slice(piece);
        let mut out = Vec::new();
        let mut frames = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<LogFrame>();
        let mut consumed = 0;
        loop {
            match frames.next() {
                None => break,
                Some(Ok(frame)) => {
                    consumed = frames.byte_offset();
                    if let Some(data) = frame.data {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .map_err(|e| NomadError::Decode(format!("log frame data: {e}")))?;
                        out.extend(bytes);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(NomadError::Decode(format!("log frame: {e}"))),
            }
        }
        self.buffer.drain(..consumed);
        Ok(out)
    }
}

/// Job ids are made of identifier characters and digits, but encode anyway: a path segment must
/// never carry a `/` or `?` through.
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_and_heartbeats_are_skipped() {
        let body = br#"{"Data":"aGVsbG8g","File":"alloc/logs/main.stdout.0","Offset":0}{}{"Data":"d29ybGQK","Offset":6}{"FileEvent":"file deleted"}"#;
        assert_eq!(decode_frames(body).unwrap(), b"hello world\n");
        assert!(decode_frames(b"{\"Data\":\"!!\"}").is_err());
        assert!(decode_frames(b"").unwrap().is_empty());
    }

    #[test]
    fn frames_split_anywhere_decode_once_complete() {
        let body = br#"{"Data":"aGVsbG8g","Offset":0}{}{"Data":"d29ybGQK","Offset":6}"#;
        for cut in 0..body.len() {
            let mut decoder = FrameDecoder::default();
            let mut out = decoder.push(&body[..cut]).unwrap();
            out.extend(decoder.push(&body[cut..]).unwrap());
            assert_eq!(out, b"hello world\n", "cut at {cut}");
        }
        // A stream dropped mid-frame: only the complete frames count.
        let mut decoder = FrameDecoder::default();
        assert_eq!(decoder.push(&body[..40]).unwrap(), b"hello ");
        assert!(decode_frames(&body[..40]).is_err(), "a whole body must not end mid-frame");
    }

    #[test]
    fn nomad_errors_map_to_scheduler_errors_with_the_message_kept() {
        let e = |status, message: &str| SchedulerError::from(NomadError::Status { status, message: message.into() });
        assert!(
            matches!(e(400, "Job ID hasn't been provided"), SchedulerError::Rejected(m) if m.contains("Job ID hasn't"))
        );
        assert!(
            matches!(e(403, "Permission denied"), SchedulerError::Unavailable(m) if m.contains("Permission denied"))
        );
        assert!(matches!(e(404, "job not found"), SchedulerError::NotFound(_)));
        assert!(matches!(
            e(500, "1 error occurred:\n\t* Task group task validation failed: x"),
            SchedulerError::Rejected(_)
        ));
        assert!(
            matches!(e(500, "No cluster leader"), SchedulerError::Unavailable(m) if m.contains("No cluster leader"))
        );
        assert!(matches!(
            SchedulerError::from(NomadError::Transport("refused".into())),
            SchedulerError::Unavailable(_)
        ));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("acme-b_1.x"), "acme-b_1.x");
        assert_eq!(encode("a/b?c"), "a%2Fb%3Fc");
    }
}

//! A typed async client for the Gofer API. Errors carry the problem `code` the server answered.

use std::collections::BTreeMap;
use std::pin::Pin;

pub use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use gofer_core::model::{Event, Namespace, Page, Run, TaskExecution, Tenant};
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TenantId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An RFC 9457 problem detail as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable detail.
    pub detail: String,
    /// HTTP status.
    pub status: u16,
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a problem.
    #[error("{} ({}): {}", .0.code, .0.status, .0.detail)]
    Api(Problem),
    /// The request did not complete, or the answer could not be read.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// A streamed answer held something this client cannot read.
    #[error("unreadable stream data: {0}")]
    Decode(String),
}

impl Error {
    /// The problem code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(p) => Some(&p.code),
            Error::Transport(_) | Error::Decode(_) => None,
        }
    }
}

/// A new tenant and its first admin token.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// The admin token's secret.
    pub token: String,
}

/// Answer of a config registration.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigRegistered {
    /// The version holding the config: new, or an existing one with the same canonical hash.
    pub version: i64,
    /// Canonical hash of the config.
    pub config_hash: String,
    /// Whether a new version was created.
    #[serde(default)]
    pub created: bool,
    /// The version's state (`live` unless registered with `?deploy=false`).
    #[serde(default)]
    pub state: Option<gofer_core::ConfigState>,
}

#[derive(Deserialize)]
struct NamespaceEnvelope {
    namespace: Namespace,
}

#[derive(Deserialize)]
struct RunEnvelope {
    run: Run,
}

#[derive(Deserialize)]
struct TaskEnvelope {
    task: TaskExecution,
}

/// Which of the tenant's events to read; a narrower scope needs its parents (the server answers
/// `invalid_filter` otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events inside this namespace.
    pub namespace: Option<NamespaceId>,
    /// Only events of this pipeline.
    pub pipeline: Option<PipelineId>,
    /// Only events of this run.
    pub run: Option<RunId>,
}

impl EventFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        query.extend(self.namespace.as_ref().map(|n| ("namespace", n.to_string())));
        query.extend(self.pipeline.as_ref().map(|p| ("pipeline", p.to_string())));
        query.extend(self.run.map(|r| ("run", r.to_string())));
        query
    }
}

/// Chunks of a followed log, as the server sends them.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// A live stream of events (Server-Sent Events). It does not end by itself; after a failure,
/// follow again from [`EventStream::last_event_id`] to miss nothing.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>,
    buffer: Vec<u8>,
    last_event_id: i64,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse_frame(&frame) {
                    return Some(event);
                }
            }
            match self.body.next().await? {
                // Line ends may be CRLF; the JSON in data lines never holds a raw CR.
                Ok(chunk) => self.buffer.extend(chunk.iter().filter(|b| **b != b'\r')),
                Err(e) => return Some(Err(Error::Transport(e))),
            }
        }
    }

    /// The id of the last event received (or the one the stream started after).
    pub fn last_event_id(&self) -> i64 {
        self.last_event_id
    }

    /// One frame: comments and frames without data (`retry:`) are skipped.
    fn parse_frame(&mut self, frame: &[u8]) -> Option<Result<Event, Error>> {
        let text = match std::str::from_utf8(frame) {
            Ok(text) => text,
            Err(e) => return Some(Err(Error::Decode(e.to_string()))),
        };
        let mut data = String::new();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if data.is_empty() {
            return None;
        }
        match serde_json::from_str::<Event>(&data) {
            Ok(event) => {
                self.last_event_id = event.id;
                Some(Ok(event))
            }
            Err(e) => Some(Err(Error::Decode(e.to_string()))),
        }
    }
}

/// A client bound to one server and token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) authenticating with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_owned(), token: token.into(), http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Error> {
        let response = request.bearer_auth(&self.token).send().await?;
        if response.status().is_success() {
            Ok(response.json().await?)
        } else {
            Err(Error::Api(response.json().await?))
        }
    }

    /// `POST /tenants` (operator).
    pub async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<TenantCreated, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            id: &'a TenantId,
            name: &'a str,
        }
        self.send(self.http.post(self.url("/tenants")).json(&Body { id, name })).await
    }

    /// `POST /namespaces`.
    pub async fn create_namespace(&self, id: &NamespaceId, name: &str) -> Result<Namespace, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            id: &'a NamespaceId,
            name: &'a str,
        }
        let e: NamespaceEnvelope = self.send(self.http.post(self.url("/namespaces")).json(&Body { id, name })).await?;
        Ok(e.namespace)
    }

    /// `GET /namespaces`, one page.
    pub async fn list_namespaces(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Namespace>, Error> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(cursor.map(|c| ("cursor", c.to_owned())));
        self.send(self.http.get(self.url("/namespaces")).query(&query)).await
    }

    /// `POST …/configs` with a config as JSON.
    pub async fn register_config(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        config: &serde_json::Value,
    ) -> Result<ConfigRegistered, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/configs"));
        self.send(self.http.post(url).json(config)).await
    }

    /// `POST …/runs`.
    pub async fn start_run(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        variables: &BTreeMap<String, String>,
    ) -> Result<Run, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs"));
        let e: RunEnvelope =
            self.send(self.http.post(url).json(&serde_json::json!({ "variables": variables }))).await?;
        Ok(e.run)
    }

    /// `GET …/runs/{run}`.
    pub async fn get_run(&self, namespace: &NamespaceId, pipeline: &PipelineId, run: RunId) -> Result<Run, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}"));
        let e: RunEnvelope = self.send(self.http.get(url)).await?;
        Ok(e.run)
    }

    /// `GET …/runs/{run}/tasks`, every page.
    pub async fn list_tasks(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
    ) -> Result<Vec<TaskExecution>, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks"));
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            query.extend(cursor.map(|c| ("cursor", c)));
            let page: Page<TaskExecution> = self.send(self.http.get(&url).query(&query)).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// `GET …/runs/{run}/tasks/{task}`.
    pub async fn get_task(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        task: &TaskId,
    ) -> Result<TaskExecution, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}"));
        let e: TaskEnvelope = self.send(self.http.get(url)).await?;
        Ok(e.task)
    }

    /// `GET …/runs/{run}/tasks/{task}/logs` as text.
    pub async fn task_logs(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        task: &TaskId,
    ) -> Result<String, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/logs"));
        let response = self.http.get(url).bearer_auth(&self.token).send().await?;
        if response.status().is_success() {
            Ok(response.text().await?)
        } else {
            Err(Error::Api(response.json().await?))
        }
    }

    /// `GET /events`: one page of the tenant's events after the event `after` (0: from the
    /// first), oldest first. Resume with the last item's id; `next_cursor` is null on the last
    /// page available now.
    pub async fn list_events(&self, after: i64, limit: u32) -> Result<Page<Event>, Error> {
        self.list_events_filtered(&EventFilter::default(), after, limit).await
    }

    /// `GET /events` narrowed to a namespace, pipeline or run.
    pub async fn list_events_filtered(
        &self,
        filter: &EventFilter,
        after: i64,
        limit: u32,
    ) -> Result<Page<Event>, Error> {
        let mut query = filter.query();
        query.extend([("after", after.to_string()), ("limit", limit.to_string())]);
        self.send(self.http.get(self.url("/events")).query(&query)).await
    }

    /// `GET /events` as a live stream of the events after `after` (0: from the first).
    pub async fn follow_events(&self, filter: &EventFilter, after: i64) -> Result<EventStream, Error> {
        let mut query = filter.query();
        query.push(("after", after.to_string()));
        let request = self.http.get(self.url("/events")).query(&query).header("Accept", "text/event-stream");
        let response = self.streaming(request).await?;
        Ok(EventStream { body: Box::pin(response.bytes_stream()), buffer: Vec::new(), last_event_id: after })
    }

    /// `GET …/runs/{run}/tasks/{task}/logs?follow=true`: the log from byte `offset` as the task
    /// writes it, in chunks; the stream ends once the task execution is complete and all was sent.
    pub async fn follow_logs(
        &self,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        task: &TaskId,
        offset: u64,
    ) -> Result<LogStream, Error> {
        let url = self.url(&format!("/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/logs"));
        let query = [("follow", "true".to_owned()), ("offset", offset.to_string())];
        let response = self.streaming(self.http.get(url).query(&query)).await?;
        Ok(Box::pin(response.bytes_stream().map(|chunk| chunk.map_err(Error::Transport))))
    }

    /// Sends a request whose successful answer is read as a stream.
    async fn streaming(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = request.bearer_auth(&self.token).send().await?;
        if response.status().is_success() { Ok(response) } else { Err(Error::Api(response.json().await?)) }
    }
}

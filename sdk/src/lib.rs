//! A typed async client for the Gofer API. Errors carry the problem `code` the server answered.

use std::collections::BTreeMap;

use gofer_core::model::{Namespace, Page, Run, TaskExecution, Tenant};
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
}

impl Error {
    /// The problem code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(p) => Some(&p.code),
            Error::Transport(_) => None,
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
}

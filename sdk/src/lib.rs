//! A typed async client for the Gofer API (every route of `docs/openapi.json`, see [`routes`]),
//! with pagination helpers, typed errors carrying the problem `code`, live event and log streams,
//! and a pipeline builder that validates locally with the server's own validator.

use std::fmt::Display;

pub use bytes::Bytes;
pub use gofer_core as core;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod attach;
mod billing;
pub mod builder;
pub mod objects;
mod pagination;
mod pipelines;
pub mod routes;
mod runs;
mod secrets;
mod stream;
mod tenancy;

pub use attach::{AttachEvent, AttachOptions, AttachReader, AttachWriter};
pub use billing::{
    MonthToDate, TrialChallenge, TrialProof, UsageGroupBy, UsageQuery, UsageReport, solve_trial_challenge,
};
pub use builder::{Pipeline, Task};
pub use gofer_core::Condition;
pub use objects::ObjectDownload;
pub use pagination::{PageOptions, all_pages, pages};
pub use pipelines::{Canary, ConfigRegistered, CreateDeployment};
pub use runs::EventFilter;
pub use stream::{ByteStream, EventStream, LogStream};
pub use tenancy::{CreateToken, Health, TenantCreated, TokenCreated, UpdateNamespace};

use routes::Route;

/// An RFC 9457 problem detail as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
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
    /// A trial's proof-of-work challenge could not be solved (an unknown scheme, or no solution).
    #[error("the trial challenge could not be solved: {0}")]
    ProofOfWork(String),
}

impl Error {
    /// The problem code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(p) => Some(&p.code),
            Error::Transport(_) | Error::Decode(_) | Error::ProofOfWork(_) => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(p) => Some(p.status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            Error::Decode(_) | Error::ProofOfWork(_) => None,
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

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request for `route` with its placeholders filled by `args`.
    fn request(&self, route: Route, args: &[&dyn Display]) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).expect("route methods are valid");
        self.http.request(method, format!("{}{}", self.base, route.fill(args))).bearer_auth(&self.token)
    }

    /// Sends a request; a successful answer is returned as is.
    async fn raw(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await?;
        // A proxy (or a route the server does not know) may answer without a problem body.
        Err(Error::Api(serde_json::from_slice(&body).unwrap_or_else(|_| Problem {
            code: format!("http_{}", status.as_u16()),
            detail: String::from_utf8_lossy(&body).chars().take(500).collect(),
            status: status.as_u16(),
        })))
    }

    /// Sends a request and reads the answer as `T`.
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Error> {
        Ok(self.raw(request).await?.json().await?)
    }

    /// Sends a request whose answer wraps the object in one field (`{"run": {…}}`).
    async fn one<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder, field: &str) -> Result<T, Error> {
        let mut envelope: serde_json::Map<String, serde_json::Value> = self.send(request).await?;
        let value = envelope.remove(field).ok_or_else(|| Error::Decode(format!("answer has no `{field}`")))?;
        serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Sends a request whose answer has no body worth reading (204).
    async fn empty(&self, request: reqwest::RequestBuilder) -> Result<(), Error> {
        self.raw(request).await.map(drop)
    }
}

/// `limit`/`cursor` as query parameters.
fn page_query(page: &PageOptions) -> Vec<(&'static str, String)> {
    let mut query = vec![("limit", page.limit.to_string())];
    query.extend(page.cursor.clone().map(|c| ("cursor", c)));
    query
}

//! Pipelines, their config versions and deployments.

use gofer_core::model::{ConfigDetail, ConfigDiff, ConfigSummary, Deployment, Page, Pipeline, PipelineStats};
use gofer_core::{ConfigState, DeploymentId, NamespaceId, PipelineId, PipelineState};
use serde::{Deserialize, Serialize};

use crate::routes::*;
use crate::{Client, Error, PageOptions, page_query};

/// Answer of a config registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRegistered {
    /// The version holding the config: new, or an existing one with the same canonical hash.
    pub version: i64,
    /// Canonical hash of the config.
    pub config_hash: String,
    /// Whether a new version was created.
    pub created: bool,
    /// The version's state now.
    pub state: ConfigState,
}

/// Body of `POST …/deployments`: an immediate deployment, or a canary when `canary` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateDeployment {
    /// The version to deploy.
    pub version: i64,
    /// Deploy as a canary with this policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// A canary's policy; the server's defaults fill what is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// Share of new runs sent to the version, in percent.
    pub percent: u32,
    /// Highest failure rate that still promotes it (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failure_rate: Option<f64>,
    /// Completed canary runs needed before promotion (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_runs: Option<u32>,
}

impl Client {
    /// `GET …/pipelines`, one page.
    pub async fn list_pipelines(&self, ns: &NamespaceId, page: PageOptions) -> Result<Page<Pipeline>, Error> {
        self.send(self.request(LIST_PIPELINES, &[ns]).query(&page_query(&page))).await
    }

    /// `GET …/pipelines/{pipeline}`.
    pub async fn get_pipeline(&self, ns: &NamespaceId, p: &PipelineId) -> Result<Pipeline, Error> {
        self.one(self.request(GET_PIPELINE, &[ns, p]), "pipeline").await
    }

    /// `PATCH …/pipelines/{pipeline}`: `disabled` refuses new runs, `active` accepts them again.
    pub async fn set_pipeline_state(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        state: PipelineState,
    ) -> Result<Pipeline, Error> {
        let body = serde_json::json!({ "state": state });
        self.one(self.request(UPDATE_PIPELINE, &[ns, p]).json(&body), "pipeline").await
    }

    /// `DELETE …/pipelines/{pipeline}`; `delete_runs` also deletes its finished runs.
    pub async fn delete_pipeline(&self, ns: &NamespaceId, p: &PipelineId, delete_runs: bool) -> Result<(), Error> {
        self.empty(self.request(DELETE_PIPELINE, &[ns, p]).query(&[("delete_runs", delete_runs)])).await
    }

    /// `GET …/pipelines/{pipeline}/stats`: success rate and durations over the last 7 and 30 days.
    pub async fn pipeline_stats(&self, ns: &NamespaceId, p: &PipelineId) -> Result<PipelineStats, Error> {
        self.one(self.request(PIPELINE_STATS, &[ns, p]), "stats").await
    }

    /// `POST …/configs` with a config as JSON; the new version goes live at once.
    pub async fn register_config(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        config: &serde_json::Value,
    ) -> Result<ConfigRegistered, Error> {
        self.register_config_with(ns, p, config, true).await
    }

    /// `POST …/configs?deploy=…`: with `deploy` false the version is only registered.
    pub async fn register_config_with(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        config: &serde_json::Value,
        deploy: bool,
    ) -> Result<ConfigRegistered, Error> {
        self.send(self.request(REGISTER_CONFIG, &[ns, p]).query(&[("deploy", deploy)]).json(config)).await
    }

    /// `GET …/configs`, one page.
    pub async fn list_configs(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        page: PageOptions,
    ) -> Result<Page<ConfigSummary>, Error> {
        self.send(self.request(LIST_CONFIGS, &[ns, p]).query(&page_query(&page))).await
    }

    /// `GET …/configs/{version}`.
    pub async fn get_config(&self, ns: &NamespaceId, p: &PipelineId, version: i64) -> Result<ConfigDetail, Error> {
        self.one(self.request(GET_CONFIG, &[ns, p, &version]), "config").await
    }

    /// `GET …/configs/{from}/diff/{to}`.
    pub async fn diff_configs(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        from: i64,
        to: i64,
    ) -> Result<ConfigDiff, Error> {
        self.send(self.request(DIFF_CONFIGS, &[ns, p, &from, &to])).await
    }

    /// `GET …/deployments`, one page.
    pub async fn list_deployments(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        page: PageOptions,
    ) -> Result<Page<Deployment>, Error> {
        self.send(self.request(LIST_DEPLOYMENTS, &[ns, p]).query(&page_query(&page))).await
    }

    /// `POST …/deployments`.
    pub async fn create_deployment(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        body: &CreateDeployment,
    ) -> Result<Deployment, Error> {
        self.one(self.request(CREATE_DEPLOYMENT, &[ns, p]).json(body), "deployment").await
    }

    /// `GET …/deployments/{deployment}`.
    pub async fn get_deployment(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        id: DeploymentId,
    ) -> Result<Deployment, Error> {
        self.one(self.request(GET_DEPLOYMENT, &[ns, p, &id]), "deployment").await
    }

    /// `POST …/deployments/{deployment}/rollback`: stops a running canary.
    pub async fn rollback_deployment(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        id: DeploymentId,
        reason: Option<&str>,
    ) -> Result<Deployment, Error> {
        let body = serde_json::json!({ "reason": reason });
        self.one(self.request(ROLLBACK_DEPLOYMENT, &[ns, p, &id]).json(&body), "deployment").await
    }
}

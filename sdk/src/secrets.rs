//! Secrets of a pipeline and global secrets of the tenant. Values are write-only: every answer is
//! the secret's metadata.

use gofer_core::model::Page;
use gofer_core::secrets::{SecretKey, SecretMetadata, SecretValue};
use gofer_core::{NamespaceId, PipelineId};

use crate::routes::*;
use crate::{Client, Error, PageOptions, page_query};

impl Client {
    /// `PUT …/pipelines/{pipeline}/secrets/{key}`: creates or replaces a pipeline secret.
    pub async fn put_pipeline_secret(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        key: &SecretKey,
        value: &SecretValue,
    ) -> Result<SecretMetadata, Error> {
        let body = serde_json::json!({ "value": value.expose() });
        self.one(self.request(PUT_PIPELINE_SECRET, &[ns, p, key]).json(&body), "secret").await
    }

    /// `GET …/pipelines/{pipeline}/secrets/{key}`: the secret's metadata (never its value).
    pub async fn get_pipeline_secret(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        key: &SecretKey,
    ) -> Result<SecretMetadata, Error> {
        self.one(self.request(GET_PIPELINE_SECRET, &[ns, p, key]), "secret").await
    }

    /// `DELETE …/pipelines/{pipeline}/secrets/{key}`.
    pub async fn delete_pipeline_secret(&self, ns: &NamespaceId, p: &PipelineId, key: &SecretKey) -> Result<(), Error> {
        self.empty(self.request(DELETE_PIPELINE_SECRET, &[ns, p, key])).await
    }

    /// `GET …/pipelines/{pipeline}/secrets`, one page.
    pub async fn list_pipeline_secrets(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        page: PageOptions,
    ) -> Result<Page<SecretMetadata>, Error> {
        self.send(self.request(LIST_PIPELINE_SECRETS, &[ns, p]).query(&page_query(&page))).await
    }

    /// `PUT /secrets/{key}`: creates or replaces a global secret; `namespaces` are the namespace
    /// globs (`team-*`) whose pipelines may use it (none: no namespace may).
    pub async fn put_global_secret(
        &self,
        key: &SecretKey,
        value: &SecretValue,
        namespaces: &[String],
    ) -> Result<SecretMetadata, Error> {
        let body = serde_json::json!({ "value": value.expose(), "namespaces": namespaces });
        self.one(self.request(PUT_GLOBAL_SECRET, &[key]).json(&body), "secret").await
    }

    /// `GET /secrets/{key}`: the secret's metadata (never its value).
    pub async fn get_global_secret(&self, key: &SecretKey) -> Result<SecretMetadata, Error> {
        self.one(self.request(GET_GLOBAL_SECRET, &[key]), "secret").await
    }

    /// `DELETE /secrets/{key}`.
    pub async fn delete_global_secret(&self, key: &SecretKey) -> Result<(), Error> {
        self.empty(self.request(DELETE_GLOBAL_SECRET, &[key])).await
    }

    /// `GET /secrets`, one page.
    pub async fn list_global_secrets(&self, page: PageOptions) -> Result<Page<SecretMetadata>, Error> {
        self.send(self.request(LIST_GLOBAL_SECRETS, &[]).query(&page_query(&page))).await
    }
}

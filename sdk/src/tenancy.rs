//! Tenants, plans, tokens and namespaces; health and the OpenAPI document.

use gofer_core::model::{Namespace, Page, Plan, Tenant, TokenMetadata, Whoami};
use gofer_core::{NamespaceId, TenantId};
use serde::{Deserialize, Serialize};

use crate::routes::*;
use crate::{Client, Error, PageOptions, page_query};

/// A new tenant and its first admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// The admin token's secret.
    pub token: String,
}

/// Answer of `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: String,
}

/// Body of `POST /tokens`; `None`/empty fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateToken {
    /// `tenant` or `operator`; defaults to the caller's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `admin`, `write` or `read` (tenant tokens), `operator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Namespace globs the token is limited to; empty means every namespace.
    pub namespaces: Vec<String>,
    /// Client networks (CIDRs) the token may be used from; empty means anywhere.
    pub allowed_cidrs: Vec<String>,
    /// Free text.
    pub description: String,
    /// Days until it expires; `None` uses the server's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A new token: its secret, shown once, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The secret.
    pub token: String,
    /// What it may do.
    pub metadata: TokenMetadata,
}

/// Body of `PATCH /namespaces/{namespace}`: fields left `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateNamespace {
    /// New display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Client {
    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, Error> {
        self.send(self.request(HEALTH, &[])).await
    }

    /// `GET /ready`.
    pub async fn ready(&self) -> Result<Health, Error> {
        self.send(self.request(READY, &[])).await
    }

    /// `GET /metrics` (operator): Prometheus text exposition of the replica that answered.
    pub async fn metrics(&self) -> Result<String, Error> {
        Ok(self.raw(self.request(METRICS, &[])).await?.text().await?)
    }

    /// `GET /api/v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.send(self.request(OPENAPI, &[])).await
    }

    /// `POST /tenants` (operator).
    pub async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<TenantCreated, Error> {
        let body = serde_json::json!({ "id": id, "name": name });
        self.send(self.request(CREATE_TENANT, &[]).json(&body)).await
    }

    /// `GET /tenants`, one page (operator).
    pub async fn list_tenants(&self, page: PageOptions) -> Result<Page<Tenant>, Error> {
        self.send(self.request(LIST_TENANTS, &[]).query(&page_query(&page))).await
    }

    /// `GET /tenants/{tenant}`.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        self.one(self.request(GET_TENANT, &[id]), "tenant").await
    }

    /// `DELETE /tenants/{tenant}`.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<(), Error> {
        self.empty(self.request(DELETE_TENANT, &[id])).await
    }

    /// `POST /tenants/{tenant}/suspend`.
    pub async fn suspend_tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        self.one(self.request(SUSPEND_TENANT, &[id]), "tenant").await
    }

    /// `POST /tenants/{tenant}/resume`.
    pub async fn resume_tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        self.one(self.request(RESUME_TENANT, &[id]), "tenant").await
    }

    /// `PUT /tenants/{tenant}/plan`: the plan now applying.
    pub async fn assign_plan(&self, id: &TenantId, plan: &str) -> Result<Plan, Error> {
        self.one(self.request(ASSIGN_PLAN, &[id]).json(&serde_json::json!({ "plan": plan })), "plan").await
    }

    /// `GET /plans`, one page.
    pub async fn list_plans(&self, page: PageOptions) -> Result<Page<Plan>, Error> {
        self.send(self.request(LIST_PLANS, &[]).query(&page_query(&page))).await
    }

    /// `POST /plans`.
    pub async fn create_plan(&self, plan: &Plan) -> Result<Plan, Error> {
        self.one(self.request(CREATE_PLAN, &[]).json(plan), "plan").await
    }

    /// `GET /plans/{plan}`.
    pub async fn get_plan(&self, id: &str) -> Result<Plan, Error> {
        self.one(self.request(GET_PLAN, &[&id]), "plan").await
    }

    /// `PUT /plans/{plan}`.
    pub async fn update_plan(&self, plan: &Plan) -> Result<Plan, Error> {
        self.one(self.request(UPDATE_PLAN, &[&plan.id]).json(plan), "plan").await
    }

    /// `DELETE /plans/{plan}`.
    pub async fn delete_plan(&self, id: &str) -> Result<(), Error> {
        self.empty(self.request(DELETE_PLAN, &[&id])).await
    }

    /// `POST /tokens`.
    pub async fn create_token(&self, body: &CreateToken) -> Result<TokenCreated, Error> {
        self.send(self.request(CREATE_TOKEN, &[]).json(body)).await
    }

    /// `GET /tokens`, one page.
    pub async fn list_tokens(&self, page: PageOptions) -> Result<Page<TokenMetadata>, Error> {
        self.send(self.request(LIST_TOKENS, &[]).query(&page_query(&page))).await
    }

    /// `GET /tokens/{id}`.
    pub async fn get_token(&self, id: &str) -> Result<TokenMetadata, Error> {
        self.one(self.request(GET_TOKEN, &[&id]), "token").await
    }

    /// `POST /tokens/{id}/revoke`: the revoked token (still listed, marked, until the purge).
    pub async fn revoke_token(&self, id: &str) -> Result<TokenMetadata, Error> {
        self.one(self.request(REVOKE_TOKEN, &[&id]), "token").await
    }

    /// `GET /tokens/whoami`.
    pub async fn whoami(&self) -> Result<Whoami, Error> {
        self.one(self.request(WHOAMI, &[]), "whoami").await
    }

    /// `POST /namespaces`.
    pub async fn create_namespace(&self, id: &NamespaceId, name: &str, description: &str) -> Result<Namespace, Error> {
        let body = serde_json::json!({ "id": id, "name": name, "description": description });
        self.one(self.request(CREATE_NAMESPACE, &[]).json(&body), "namespace").await
    }

    /// `GET /namespaces`, one page.
    pub async fn list_namespaces(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Namespace>, Error> {
        let page = PageOptions { limit, cursor: cursor.map(str::to_owned) };
        self.send(self.request(LIST_NAMESPACES, &[]).query(&page_query(&page))).await
    }

    /// `GET /namespaces/{namespace}`.
    pub async fn get_namespace(&self, id: &NamespaceId) -> Result<Namespace, Error> {
        self.one(self.request(GET_NAMESPACE, &[id]), "namespace").await
    }

    /// `PATCH /namespaces/{namespace}`.
    pub async fn update_namespace(&self, id: &NamespaceId, update: &UpdateNamespace) -> Result<Namespace, Error> {
        self.one(self.request(UPDATE_NAMESPACE, &[id]).json(update), "namespace").await
    }

    /// `DELETE /namespaces/{namespace}`; `force` cancels its live runs first.
    pub async fn delete_namespace(&self, id: &NamespaceId, force: bool) -> Result<(), Error> {
        self.empty(self.request(DELETE_NAMESPACE, &[id]).query(&[("force", force)])).await
    }
}

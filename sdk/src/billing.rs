//! Usage reports, trials and IP blocks.

use gofer_core::TenantId;
use gofer_core::model::{IpBlock, Page, Tenant};
pub use gofer_core::model::{MonthToDate, UsageReport};
pub use gofer_core::model::{TrialChallenge, TrialProof};
use serde::{Deserialize, Serialize};

use crate::routes::*;
use crate::tenancy::TenantCreated;
use crate::{Client, Error, PageOptions, page_query};

/// How usage is summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageGroupBy {
    /// Per UTC day.
    #[default]
    Day,
    /// Per pipeline (`namespace/pipeline`).
    Pipeline,
}

impl UsageGroupBy {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageGroupBy::Day => "day",
            UsageGroupBy::Pipeline => "pipeline",
        }
    }
}

/// Which usage to report: the period `[from, to)` (RFC 3339 or `YYYY-MM-DD`, UTC; by default
/// the start of this month to now) and the grouping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// Start of the period, inclusive.
    pub from: Option<String>,
    /// End of the period, exclusive.
    pub to: Option<String>,
    /// Per day (default) or per pipeline.
    pub group_by: UsageGroupBy,
}

impl UsageQuery {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("group_by", self.group_by.as_str().to_owned())];
        query.extend(self.from.clone().map(|f| ("from", f)));
        query.extend(self.to.clone().map(|t| ("to", t)));
        query
    }
}

impl Client {
    /// `GET /usage`: one page of the caller's tenant's usage.
    pub async fn usage(&self, query: &UsageQuery, page: PageOptions) -> Result<UsageReport, Error> {
        self.send(self.request(USAGE, &[]).query(&query.query()).query(&page_query(&page))).await
    }

    /// `GET /tenants/{tenant}/usage` (operator): one page of a tenant's usage.
    pub async fn tenant_usage(
        &self,
        tenant: &TenantId,
        query: &UsageQuery,
        page: PageOptions,
    ) -> Result<UsageReport, Error> {
        self.send(self.request(TENANT_USAGE, &[tenant]).query(&query.query()).query(&page_query(&page))).await
    }

    /// `GET /tenants/{tenant}/usage?format=csv` (operator): every group as CSV, header included.
    pub async fn tenant_usage_csv(&self, tenant: &TenantId, query: &UsageQuery) -> Result<String, Error> {
        let request = self.request(TENANT_USAGE, &[tenant]).query(&query.query()).query(&[("format", "csv")]);
        Ok(self.raw(request).await?.text().await?)
    }

    /// `POST /trial/challenges`: a proof-of-work challenge for one trial sign-up (no token needed;
    /// the client's own is not sent).
    pub async fn trial_challenge(&self) -> Result<TrialChallenge, Error> {
        self.send(self.http.post(format!("{}{}", self.base, TRIAL_CHALLENGE.fill(&[])))).await
    }

    /// `POST /trial` with a solved challenge: a new trial tenant and its token (no token needed;
    /// the client's own is not sent).
    pub async fn start_trial_with(&self, proof: &TrialProof) -> Result<TenantCreated, Error> {
        self.send(self.http.post(format!("{}{}", self.base, START_TRIAL.fill(&[]))).json(proof)).await
    }

    /// A new trial: asks for a challenge, solves it (about a second of one core at the service's
    /// default difficulty, off the async runtime's threads), and starts the trial with it.
    pub async fn start_trial(&self) -> Result<TenantCreated, Error> {
        let challenge = self.trial_challenge().await?;
        let proof = solve_trial_challenge(challenge).await?;
        self.start_trial_with(&proof).await
    }

    /// `POST /tenants/{tenant}/convert` (operator): moves a trial tenant to `plan`.
    pub async fn convert_tenant(&self, tenant: &TenantId, plan: &str) -> Result<Tenant, Error> {
        let body = serde_json::json!({ "plan": plan });
        self.one(self.request(CONVERT_TENANT, &[tenant]).json(&body), "tenant").await
    }

    /// `GET /ip-blocks`, one page (operator).
    pub async fn list_ip_blocks(&self, page: PageOptions) -> Result<Page<IpBlock>, Error> {
        self.send(self.request(LIST_IP_BLOCKS, &[]).query(&page_query(&page))).await
    }

    /// `POST /ip-blocks` (operator): refuses `address` (IPv6: its /64) for `duration_s` seconds;
    /// `reason` defaults to `operator`.
    pub async fn create_ip_block(
        &self,
        address: &str,
        duration_s: u64,
        reason: Option<&str>,
        scope: gofer_core::model::BlockScope,
    ) -> Result<IpBlock, Error> {
        let body =
            serde_json::json!({ "address": address, "duration_s": duration_s, "reason": reason, "scope": scope });
        self.one(self.request(CREATE_IP_BLOCK, &[]).json(&body), "block").await
    }

    /// `DELETE /ip-blocks/{address}` (operator).
    pub async fn delete_ip_block(&self, address: &str) -> Result<(), Error> {
        self.empty(self.request(DELETE_IP_BLOCK, &[&address])).await
    }
}

/// Solves a trial challenge on a blocking thread ([`gofer_core::proof_of_work::solve`]).
pub async fn solve_trial_challenge(challenge: TrialChallenge) -> Result<TrialProof, Error> {
    if challenge.algorithm != gofer_core::proof_of_work::ALGORITHM {
        return Err(Error::ProofOfWork(format!("unknown algorithm {:?}", challenge.algorithm)));
    }
    tokio::task::spawn_blocking(move || {
        let nonce = gofer_core::proof_of_work::solve(&challenge.challenge, challenge.bits, |_| true)
            .ok_or_else(|| Error::ProofOfWork("no nonce solves it".into()))?;
        Ok(TrialProof { challenge: challenge.challenge, nonce })
    })
    .await
    .map_err(|e| Error::ProofOfWork(e.to_string()))?
}

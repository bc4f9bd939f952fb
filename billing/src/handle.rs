//! The `Billing` handle: plans, usage, trials and IP blocks as the API uses them, with the trial
//! settings trials need, so that no caller passes the pool or converts settings along.

use std::net::IpAddr;

use gofer_core::TenantId;
use gofer_core::model::{BlockScope, IpBlock, PageRequest, Plan, Tenant, UsageGroup};
use gofer_tenants::TokenSecret;
use sqlx::PgPool;

use crate::trials::{NetworkCaps, SpentChallenge, TrialRules};
use crate::usage::UsageQuery;
use crate::{BillingError, TrialSettings, ip_blocks, trials, usage};

/// Plans, usage, trials and IP blocks over one pool, with the trial settings.
#[derive(Clone)]
pub struct Billing {
    pool: PgPool,
    trial: TrialSettings,
}

impl Billing {
    /// The handle over `pool`, with the `trial` settings.
    pub fn new(pool: PgPool, trial: TrialSettings) -> Self {
        Self { pool, trial }
    }

    /// The trial settings (whether trials are offered, their proof of work).
    pub fn trial_settings(&self) -> &TrialSettings {
        &self.trial
    }

    /// Starts a trial for `address` under the configured rules ([`trials::start`]).
    pub async fn start_trial(
        &self,
        address: IpAddr,
        challenge: Option<&SpentChallenge>,
    ) -> Result<(Tenant, TokenSecret), BillingError> {
        trials::start(&self.pool, address, &TrialRules::from(&self.trial), challenge).await
    }

    /// Records that a trial used up its task time ([`trials::mark_exhausted`]).
    pub async fn mark_trial_exhausted(&self, tenant: &TenantId) -> Result<(), BillingError> {
        trials::mark_exhausted(&self.pool, tenant).await
    }

    /// Records that a trial became a paying tenant ([`trials::mark_converted`]).
    pub async fn mark_trial_converted(&self, tenant: &TenantId) -> Result<(), BillingError> {
        trials::mark_converted(&self.pool, tenant).await
    }

    /// Creates a plan ([`crate::create`]).
    pub async fn create_plan(&self, plan: &Plan) -> Result<Plan, BillingError> {
        crate::create(&self.pool, plan).await
    }

    /// Lists plans ([`crate::list`]).
    pub async fn list_plans(&self, page: &PageRequest<String>) -> Result<(Vec<Plan>, Option<String>), BillingError> {
        crate::list(&self.pool, page).await
    }

    /// Reads a plan ([`crate::get`]).
    pub async fn get_plan(&self, id: &str) -> Result<Plan, BillingError> {
        crate::get(&self.pool, id).await
    }

    /// Replaces a plan ([`crate::update`]).
    pub async fn update_plan(&self, plan: &Plan) -> Result<Plan, BillingError> {
        crate::update(&self.pool, plan).await
    }

    /// Deletes a plan no tenant is on ([`crate::delete`]).
    pub async fn delete_plan(&self, id: &str) -> Result<(), BillingError> {
        crate::delete(&self.pool, id).await
    }

    /// Moves a tenant to a plan ([`crate::assign`]).
    pub async fn assign_plan(&self, tenant: &TenantId, plan: &str) -> Result<Plan, BillingError> {
        crate::assign(&self.pool, tenant, plan).await
    }

    /// The plan a tenant is on ([`crate::tenant_plan`]).
    pub async fn tenant_plan(&self, tenant: &TenantId) -> Result<Plan, BillingError> {
        crate::tenant_plan(&self.pool, tenant).await
    }

    /// Usage grouped as asked ([`usage::report`]).
    pub async fn usage(
        &self,
        query: &UsageQuery,
        page: &PageRequest<String>,
        scoped: bool,
    ) -> Result<(Vec<UsageGroup>, Option<String>), BillingError> {
        usage::report(&self.pool, query, page, scoped).await
    }

    /// Lists IP blocks ([`ip_blocks::list`]).
    pub async fn list_ip_blocks(
        &self,
        page: &PageRequest<String>,
    ) -> Result<(Vec<IpBlock>, Option<String>), BillingError> {
        ip_blocks::list(&self.pool, page).await
    }

    /// Blocks an address ([`ip_blocks::block`]).
    pub async fn block_ip(
        &self,
        address: &str,
        reason: &str,
        duration: time::Duration,
        scope: BlockScope,
    ) -> Result<IpBlock, BillingError> {
        ip_blocks::block(&self.pool, address, reason, duration, scope).await
    }

    /// Lifts an address's block ([`ip_blocks::unblock`]).
    pub async fn unblock_ip(&self, address: &str) -> Result<(), BillingError> {
        ip_blocks::unblock(&self.pool, address).await
    }
}

impl From<&TrialSettings> for TrialRules {
    fn from(settings: &TrialSettings) -> Self {
        let seconds = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        TrialRules {
            plan: settings.plan.clone(),
            lifetime: seconds(settings.lifetime_s),
            max_per_address_per_day: settings.max_per_address_per_day,
            network_caps: NetworkCaps {
                ipv4_24: settings.max_per_ipv4_24_per_day,
                ipv6_56: settings.max_per_ipv6_56_per_day,
                ipv6_48: settings.max_per_ipv6_48_per_day,
            },
            max_per_hour: settings.max_per_hour,
            exhausted_refusal: seconds(settings.exhausted_refusal_s),
        }
    }
}

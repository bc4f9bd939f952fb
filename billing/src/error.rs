//! The crate's error type.

use gofer_core::TenantId;

/// Everything that can go wrong with plans.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// No such plan.
    #[error("plan {0} does not exist")]
    PlanNotFound(String),
    /// A plan with this id exists.
    #[error("plan {0} already exists")]
    PlanExists(String),
    /// Tenants still use the plan.
    #[error("plan {0} is in use by {1} tenants; move them to another plan first")]
    PlanInUse(String, i64),
    /// No such tenant.
    #[error("tenant {0} does not exist")]
    TenantNotFound(TenantId),
    /// A plan breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// This client address may not start another trial now.
    #[error("trial limit {limit}: {reason}; no new trial from this address before {until}")]
    TrialRefused {
        /// The limit reached (its config field).
        limit: &'static str,
        /// Why.
        reason: String,
        /// Until when (RFC 3339).
        until: String,
        /// The address made too many trials: block it.
        abuse: bool,
    },
    /// The proof-of-work challenge bought a trial already.
    #[error("challenge: this challenge was spent already; ask for a new one")]
    ChallengeSpent,
    /// No block for this address.
    #[error("no block for address {0}")]
    IpBlockNotFound(String),
    /// Creating the trial tenant failed.
    #[error(transparent)]
    Tenants(#[from] gofer_tenants::TenantsError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl gofer_core::Classify for BillingError {
    fn kind(&self) -> gofer_core::ErrorKind {
        use gofer_core::ErrorKind as K;
        match self {
            BillingError::PlanNotFound(_) | BillingError::TenantNotFound(_) | BillingError::IpBlockNotFound(_) => {
                K::NotFound
            }
            BillingError::PlanExists(_) | BillingError::PlanInUse(..) | BillingError::ChallengeSpent => K::Conflict,
            BillingError::Invalid(_) => K::Invalid,
            BillingError::TrialRefused { .. } => K::Forbidden,
            BillingError::Tenants(e) => e.kind(),
            BillingError::Database(e) => gofer_db::kind_of(e),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            BillingError::PlanNotFound(_) => "plan_not_found",
            BillingError::TenantNotFound(_) => "tenant_not_found",
            BillingError::IpBlockNotFound(_) => "ip_block_not_found",
            BillingError::PlanExists(_) => "plan_exists",
            BillingError::PlanInUse(..) => "plan_in_use",
            BillingError::ChallengeSpent => "challenge_spent",
            BillingError::Invalid(_) => "invalid_field",
            BillingError::TrialRefused { .. } => "trial_refused",
            BillingError::Tenants(e) => e.code(),
            BillingError::Database(_) => "internal",
        }
    }
}

//! Trials: a small tenant on the trial plan for an anonymous visitor, limited per client address.

use gofer_core::TenantId;
use gofer_core::model::Tenant;
use gofer_tenants::{NewTenant, TokenSecret};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::BillingError;

/// Trial rules.
#[derive(Debug, Clone)]
pub struct TrialRules {
    /// The plan trials get.
    pub plan: String,
    /// How long a trial lasts.
    pub lifetime: time::Duration,
    /// Trials one client address may start per 24 hours.
    pub max_per_address_per_day: u32,
    /// How long an address whose trial used up its task-seconds is refused new trials.
    pub exhausted_refusal: time::Duration,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Starts a trial for the client `address` (its rate-limit key: IPv4, or IPv6 /64): a trial
/// tenant on the trial plan, its trial token, and the trial's record, in one transaction
/// serialised per address. Refused when the address used up a trial's task-seconds recently, or
/// started its day's trials (then `abuse` is set).
pub async fn start(pool: &PgPool, address: &str, rules: &TrialRules) -> Result<(Tenant, TokenSecret), BillingError> {
    let mut tx = pool.begin().await?;
    crate::db::lock_address(&mut tx, address).await?;
    if let Some(exhausted) = crate::db::last_exhausted_trial(&mut tx, address, rules.exhausted_refusal).await? {
        return Err(BillingError::TrialRefused {
            reason: "a trial from this address used up its task-seconds".into(),
            until: rfc3339(exhausted + rules.exhausted_refusal),
            abuse: false,
        });
    }
    let (count, oldest) = crate::db::trials_since(&mut tx, address, time::Duration::DAY).await?;
    if count >= i64::from(rules.max_per_address_per_day) {
        let until = oldest.unwrap_or_else(OffsetDateTime::now_utc) + time::Duration::DAY;
        return Err(BillingError::TrialRefused {
            reason: format!("this address started {count} trials in the last 24 hours"),
            until: rfc3339(until),
            abuse: true,
        });
    }
    let simple = uuid::Uuid::new_v4().simple().to_string();
    let id = TenantId::parse(format!("trial-{}", &simple[..12])).map_err(|e| BillingError::Invalid(e.to_string()))?;
    let expires = OffsetDateTime::now_utc() + rules.lifetime;
    let new = NewTenant { id: &id, name: "Trial", plan: Some(&rules.plan), trial_expires: Some(expires) };
    let created = gofer_tenants::create_tenant_in(&mut tx, &new).await?;
    crate::db::insert_trial(&mut tx, &id, address, expires).await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, client = address, "trial started");
    Ok(created)
}

/// Records that a trial's tenant ran out of task-seconds (its address is refused new trials).
pub async fn mark_exhausted(pool: &PgPool, tenant: &TenantId) -> Result<(), BillingError> {
    crate::db::mark_exhausted(pool, tenant).await?;
    Ok(())
}

/// Records that a trial became a paid tenant.
pub async fn mark_converted(pool: &PgPool, tenant: &TenantId) -> Result<(), BillingError> {
    crate::db::mark_converted(pool, tenant).await?;
    Ok(())
}

/// Trial tenants whose trial ended and that are not suspended yet.
pub async fn ended_unsuspended(pool: &PgPool, limit: i64) -> Result<Vec<TenantId>, BillingError> {
    Ok(crate::db::ended_trials(pool, None, limit).await?)
}

/// Trial tenants whose trial ended longer than `grace` ago: due for removal. Copies when their
/// task-seconds ran out into the trial's record, which outlives them.
pub async fn due_for_removal(pool: &PgPool, grace: time::Duration, limit: i64) -> Result<Vec<TenantId>, BillingError> {
    let due = crate::db::ended_trials(pool, Some(grace), limit).await?;
    for tenant in &due {
        crate::db::mark_removed(pool, tenant).await?;
    }
    Ok(due)
}

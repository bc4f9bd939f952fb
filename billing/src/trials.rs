//! Trials: a small tenant on the trial plan for an anonymous visitor, limited per client address,
//! per network around it (IPv4 /24; IPv6 /56 and /48) and by a global budget per hour, and paid
//! for with a proof of work (checked by the API; its challenge is spent here, once).

use std::net::IpAddr;

use gofer_core::TenantId;
use gofer_core::model::Tenant;
use gofer_tenants::{NewTenant, TokenSecret};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::error::BillingError;

/// Trial rules.
#[derive(Debug, Clone)]
pub struct TrialRules {
    /// The plan trials get.
    pub plan: String,
    /// How long a trial lasts.
    pub lifetime: time::Duration,
    /// Trials one client address may start per 24 hours.
    pub max_per_address_per_day: u32,
    /// Caps per network around the address, per 24 hours ([`NetworkCap`]; 0: none).
    pub network_caps: NetworkCaps,
    /// Trials the whole service may start per hour (0: no cap).
    pub max_per_hour: u32,
    /// How long an address whose trial used up its task-seconds is refused new trials.
    pub exhausted_refusal: time::Duration,
}

/// Trials per 24 hours allowed in the networks around an address (0: no cap).
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkCaps {
    /// Per IPv4 /24.
    pub ipv4_24: u32,
    /// Per IPv6 /56.
    pub ipv6_56: u32,
    /// Per IPv6 /48.
    pub ipv6_48: u32,
}

/// One cap on the trials of a network around the client: its name (the config field), the
/// network and how many trials it may start per 24 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkCap {
    /// The config field that sets it, named in refusals.
    pub limit: &'static str,
    /// The network.
    pub network: ipnet::IpNet,
    /// Trials per 24 hours.
    pub max: u32,
}

/// The network caps that apply to a client `address` (its rate-limit key: an IPv4 address or
/// an IPv6 /64), narrowest first; caps set to 0 are left out.
pub fn network_caps(address: IpAddr, caps: NetworkCaps) -> Vec<NetworkCap> {
    let wanted: &[(&'static str, u8, u32)] = match address {
        IpAddr::V4(_) => &[("max_per_ipv4_24_per_day", 24, caps.ipv4_24)],
        IpAddr::V6(_) => {
            &[("max_per_ipv6_56_per_day", 56, caps.ipv6_56), ("max_per_ipv6_48_per_day", 48, caps.ipv6_48)]
        }
    };
    wanted
        .iter()
        .filter(|(_, _, max)| *max > 0)
        .filter_map(|&(limit, prefix, max)| {
            let network = ipnet::IpNet::new(address, prefix).ok()?.trunc();
            Some(NetworkCap { limit, network, max })
        })
        .collect()
}

/// A proof-of-work challenge being spent on a trial: its id, and when it expires (until then
/// its record refuses it a second time).
#[derive(Debug, Clone)]
pub struct SpentChallenge {
    /// The challenge's unique id.
    pub id: String,
    /// When it expires.
    pub expires: OffsetDateTime,
}

/// When a cap of `max` trials per `window` lifts, if the `count` trials of the window (the oldest
/// started at `oldest`) have reached it: the oldest then leaves the window.
fn cap_lifts(count: i64, oldest: Option<OffsetDateTime>, max: u32, window: time::Duration) -> Option<OffsetDateTime> {
    (count >= i64::from(max)).then(|| oldest.unwrap_or_else(OffsetDateTime::now_utc) + window)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Starts a trial for the client `address` (its rate-limit key: IPv4, or IPv6 /64): a trial
/// tenant on the trial plan, its trial token, the trial's record and the spent challenge, in one
/// transaction. Trials are serialised (sign-ups are rare and paid for with work), so the caps
/// are exact. Refused when the challenge was spent already, the address used up a trial's
/// task-seconds recently, started its day's trials (then `abuse` is set), or a network cap or
/// the hourly budget is reached; each refusal names its limit and when it lifts.
pub async fn start(
    pool: &PgPool,
    address: IpAddr,
    rules: &TrialRules,
    challenge: Option<&SpentChallenge>,
) -> Result<(Tenant, TokenSecret), BillingError> {
    let key = address.to_string();
    let mut tx = pool.begin().await?;
    crate::db::lock_trials(&mut tx).await?;
    if let Some(challenge) = challenge
        && !crate::db::spend_challenge(&mut tx, &challenge.id, challenge.expires).await?
    {
        return Err(BillingError::ChallengeSpent);
    }
    if let Some(exhausted) = crate::db::last_exhausted_trial(&mut tx, &key, rules.exhausted_refusal).await? {
        return Err(BillingError::TrialRefused {
            limit: "exhausted_refusal_s",
            reason: "a trial from this address used up its task-seconds".into(),
            until: rfc3339(exhausted + rules.exhausted_refusal),
            abuse: false,
        });
    }
    let (count, oldest) = crate::db::trials_since(&mut tx, &key, time::Duration::DAY).await?;
    if let Some(until) = cap_lifts(count, oldest, rules.max_per_address_per_day, time::Duration::DAY) {
        return Err(BillingError::TrialRefused {
            limit: "max_per_address_per_day",
            reason: format!("this address started {count} trials in the last 24 hours"),
            until: rfc3339(until),
            abuse: true,
        });
    }
    for cap in network_caps(address, rules.network_caps) {
        let (count, oldest) = crate::db::network_trials_since(&mut tx, &cap.network, time::Duration::DAY).await?;
        if let Some(until) = cap_lifts(count, oldest, cap.max, time::Duration::DAY) {
            return Err(BillingError::TrialRefused {
                limit: cap.limit,
                reason: format!("the network {} started {count} trials in the last 24 hours", cap.network),
                until: rfc3339(until),
                abuse: false,
            });
        }
    }
    if rules.max_per_hour > 0 {
        let (count, oldest) = crate::db::all_trials_since(&mut tx, time::Duration::HOUR).await?;
        if let Some(until) = cap_lifts(count, oldest, rules.max_per_hour, time::Duration::HOUR) {
            return Err(BillingError::TrialRefused {
                limit: "max_per_hour",
                reason: format!("the service started its {count} trials of the last hour"),
                until: rfc3339(until),
                abuse: false,
            });
        }
    }
    let simple = uuid::Uuid::new_v4().simple().to_string();
    let id = TenantId::parse(format!("trial-{}", &simple[..12])).map_err(|e| BillingError::Invalid(e.to_string()))?;
    let expires = OffsetDateTime::now_utc() + rules.lifetime;
    let new = NewTenant { id: &id, name: "Trial", plan: Some(&rules.plan), trial_expires: Some(expires) };
    let created = gofer_tenants::create_tenant_in(&mut tx, &new).await?;
    crate::db::insert_trial(&mut tx, &id, &key, expires).await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, client = %key, "trial started");
    Ok(created)
}

/// Forgets spent challenges that expired (they are refused as expired anyway); answers how many.
pub async fn forget_expired_challenges(pool: &PgPool) -> Result<u64, BillingError> {
    Ok(crate::db::forget_expired_challenges(pool).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> NetworkCaps {
        NetworkCaps { ipv4_24: 10, ipv6_56: 10, ipv6_48: 20 }
    }

    #[test]
    fn an_ipv4_client_is_capped_in_its_24_and_an_ipv6_one_in_its_56_and_48() {
        let v4 = network_caps("203.0.113.77".parse().unwrap(), caps());
        assert_eq!(v4.len(), 1);
        assert_eq!(
            (v4[0].limit, v4[0].network.to_string(), v4[0].max),
            ("max_per_ipv4_24_per_day", "203.0.113.0/24".into(), 10)
        );
        let v6 = network_caps("2001:db8:1:2a3::".parse().unwrap(), caps());
        let shown: Vec<(&str, String)> = v6.iter().map(|c| (c.limit, c.network.to_string())).collect();
        assert_eq!(
            shown,
            [
                ("max_per_ipv6_56_per_day", "2001:db8:1:200::/56".to_owned()),
                ("max_per_ipv6_48_per_day", "2001:db8:1::/48".to_owned())
            ]
        );
    }

    #[test]
    fn a_cap_of_zero_is_no_cap() {
        let none = NetworkCaps::default();
        assert!(network_caps("203.0.113.77".parse().unwrap(), none).is_empty());
        let only_48 = NetworkCaps { ipv6_48: 5, ..NetworkCaps::default() };
        assert_eq!(network_caps("2001:db8::".parse().unwrap(), only_48).len(), 1);
    }
}

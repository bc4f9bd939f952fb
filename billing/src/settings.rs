//! The settings of trials and IP blocks (`[trial]` and `[ip_blocks]` in the server config;
//! docs/config.md).

use serde::{Deserialize, Serialize};

/// Anonymous trials (`POST /api/v1/trial`, [billing.md](billing.md#trials)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrialSettings {
    /// Whether `POST /api/v1/trial` creates trials (off: 404 `route_not_found`).
    pub enabled: bool,
    /// The plan trial tenants get.
    pub plan: String,
    /// How long a trial lasts, in seconds; then it is suspended.
    pub lifetime_s: u64,
    /// How long a suspended (ended) trial is kept before it is removed with all its data, in
    /// seconds; convert it before then to keep it.
    pub removal_grace_s: u64,
    /// Trials one client address (IPv6: /64) may start per 24 hours; asking for one more blocks
    /// the address.
    pub max_per_address_per_day: u32,
    /// Trials one IPv4 /24 may start per 24 hours (403 `trial_refused`; 0: no cap).
    pub max_per_ipv4_24_per_day: u32,
    /// Trials one IPv6 /56 may start per 24 hours (0: no cap).
    pub max_per_ipv6_56_per_day: u32,
    /// Trials one IPv6 /48 may start per 24 hours (0: no cap).
    pub max_per_ipv6_48_per_day: u32,
    /// Trials the whole service starts per hour, from all addresses together (0: no cap).
    ///
    /// Production: size to the trials you can host
    pub max_per_hour: u32,
    /// The proof of work a sign-up pays: leading zero bits of SHA-256, about 2^bits hashes (24:
    /// about a second of one core; each bit doubles it; at most 40; 0: none asked)
    /// ([billing.md](billing.md#trials)).
    pub proof_of_work_bits: u8,
    /// How long a sign-up challenge may be answered, in seconds.
    pub challenge_ttl_s: u64,
    /// How long an address whose trial used up its task-seconds is refused new trials (403
    /// `trial_refused`), in seconds.
    pub exhausted_refusal_s: u64,
    /// How often ended trials are suspended and removed, in seconds.
    pub job_interval_s: u64,
}

impl Default for TrialSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            plan: "trial".into(),
            lifetime_s: 24 * 3600,
            removal_grace_s: 24 * 3600,
            max_per_address_per_day: 3,
            max_per_ipv4_24_per_day: 10,
            max_per_ipv6_56_per_day: 10,
            max_per_ipv6_48_per_day: 20,
            max_per_hour: 100,
            proof_of_work_bits: 24,
            challenge_ttl_s: 300,
            exhausted_refusal_s: 7 * 24 * 3600,
            job_interval_s: 60,
        }
    }
}

/// Blocking abusive client addresses (403 `ip_blocked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IpBlockSettings {
    /// How long an address over its daily trials is blocked (403 `ip_blocked`), in seconds.
    pub trial_abuse_block_s: u64,
    /// Rate-limited (429) answers an address may get per minute before it is blocked; 0 never
    /// blocks.
    pub rate_limited_per_minute: u32,
    /// How long an address that keeps hitting rate limits is blocked, in seconds.
    pub rate_limit_block_s: u64,
    /// How often each replica reloads blocks from Postgres besides `NOTIFY gofer_ip_blocks` (and
    /// deletes ended ones), in milliseconds.
    pub refresh_interval_ms: u64,
}

impl Default for IpBlockSettings {
    fn default() -> Self {
        Self {
            trial_abuse_block_s: 24 * 3600,
            rate_limited_per_minute: 60,
            rate_limit_block_s: 3600,
            refresh_interval_ms: 30_000,
        }
    }
}

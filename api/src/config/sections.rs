//! The config sections that belong to the api crate itself: HTTP-side limits, logs, events,
//! attach, and the choices of log format and scheduler.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Attaching to running tasks (`…/tasks/{task}/attach`, docs/attach.md).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttachSettings {
    /// Whether `…/tasks/{task}/attach` (`gofer attach`) is offered; `false` answers 403
    /// `attach_disabled` to every tenant (docs/attach.md).
    pub enabled: bool,
    /// An attach session is ended (error `attach_timeout`, then a close) after this many seconds.
    pub max_session_s: u64,
    /// The CA (PEM) that replicas' `https://` URLs (`replica_url`) are checked against when an
    /// attach is forwarded; unset: the public roots ([attach.md](attach.md)).
    ///
    /// Production: with TLS between replicas under a private CA
    pub replica_ca_file: Option<PathBuf>,
}

impl Default for AttachSettings {
    fn default() -> Self {
        Self { enabled: true, max_session_s: 3600, replica_ca_file: None }
    }
}

/// Request rate limits. A tenant token is limited at its plan's `requests_per_minute` once it
/// has authenticated; these apply to operator tokens and a token's first request on a replica.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Whether requests are rate limited (off only to measure the limiter's cost; IP blocks still
    /// apply).
    ///
    /// Production: keep on
    pub enabled: bool,
    /// Requests per minute per operator token, and per tenant token until its first
    /// authentication on this replica; after that a tenant token is limited at its plan's
    /// `requests_per_minute` ([billing.md](billing.md)).
    ///
    /// Production: tune
    pub per_token_per_minute: u32,
    /// Requests per minute per client address (IPv6: per /64) without a token, or with one not yet
    /// seen to authenticate (counted in its own bucket as well).
    pub anonymous_per_minute: u32,
    /// Run starts per minute per token (or address), on top of the general limit.
    pub start_runs_per_minute: u32,
    /// `POST /api/v1/trial` per minute per client address, on top of the anonymous limit.
    pub trial_signups_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_token_per_minute: 1200,
            anonymous_per_minute: 120,
            start_runs_per_minute: 120,
            trial_signups_per_minute: 3,
        }
    }
}

/// Authentication abuse limits and the verified-token cache.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Failed authentications one client address (IPv6: /64) may make per minute.
    pub failures_per_minute: u32,
    /// How long an address over that budget is refused (429), in seconds.
    pub failure_block_s: u64,
    /// How long a replica remembers a verified API token, in seconds, so a request costs no token
    /// lookup in Postgres; never past the token's expiry; 0 turns the cache off. Revocation,
    /// deletion, expiry edits, tenant suspension, deletion, conversion and plan changes evict on
    /// every replica at once (triggers NOTIFY `gofer_auth`; see docs/security.md), so the TTL only
    /// bounds what a lost notification could cost (while the replica's listener is down nothing
    /// is cached).
    pub token_cache_ttl_s: u64,
    /// Most tokens one replica remembers (about 300 bytes each); when full, new tokens are checked
    /// in Postgres on every request until entries expire.
    pub token_cache_max_entries: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { failures_per_minute: 20, failure_block_s: 300, token_cache_ttl_s: 30, token_cache_max_entries: 10_000 }
    }
}

/// Task execution logs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Bytes of output kept per task execution: the first half and the last half, with a
    /// `[gofer: <N> bytes cut]` line between them; disk use per execution is at most about 1.5×
    /// this.
    ///
    /// Production: tune
    pub max_bytes_per_task: u64,
    /// How long logs of finished task attempts are kept, in seconds; the store job
    /// (`objects.expiry_interval_s`) then removes them and reads answer 410 `logs_expired`; 0
    /// keeps them forever.
    ///
    /// Production: tune
    pub retention_s: u64,
    /// Seconds after an attempt ends before its log moves from `<state_dir>/logs` to the object
    /// store (live follows have ended by then).
    pub archive_after_s: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            max_bytes_per_task: gofer_engine::logs::DEFAULT_MAX_BYTES_PER_TASK,
            retention_s: 30 * 24 * 3600,
            archive_after_s: 30,
        }
    }
}

/// Event streams (SSE) and their safety nets.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// How often a tenant's event feed (one reader shared by the tenant's event streams and log
    /// follows; a follow also re-reads its task's state this often) looks for news when no
    /// `NOTIFY` arrives, in milliseconds: the safety net for notifications missed while the
    /// listener reconnects, and for events that become visible only when an older transaction
    /// ends.
    pub poll_interval_ms: u64,
    /// How often an idle event stream sends a `: keepalive` comment, in seconds (keeps proxies
    /// from closing it, and finds clients that left).
    ///
    /// Production: below your proxies' idle timeout
    pub keepalive_s: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { poll_interval_ms: 1000, keepalive_s: 15 }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// The scheduler that runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// The embedded bubblewrap sandbox on this host.
    Local,
    /// A Nomad cluster (the `nomad` section).
    Nomad,
}

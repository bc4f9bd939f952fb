//! The state every handler shares. Apart from `wiring` (which builds it), so that a module that
//! needs the state does not depend on the wiring, nor the wiring on every module through it.

use std::sync::Arc;

use gofer_core::scheduler::Scheduler;
use gofer_engine::LogStore;
use gofer_tenants::run_tokens::RunTokenKeys;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::config::Config;
use crate::limits::{AuthFailures, RequestLimits};
use crate::live::EventHub;

/// Shared state of every handler.
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Runs: starting, reading, cancelling, with the engine's settings they need.
    pub runs: gofer_engine::runs::Runs,
    /// Pipelines and their config versions.
    pub pipelines: gofer_engine::Pipelines,
    /// Tenants, namespaces and API tokens, with the token settings.
    pub tenants: gofer_tenants::Tenants,
    /// Plans, usage, trials and IP blocks, with the trial settings.
    pub billing: gofer_billing::Billing,
    /// Where task logs are kept.
    pub logs: LogStore,
    /// The shared events listener that wakes live streams.
    pub hub: EventHub,
    /// The configuration the server started with.
    pub config: Config,
    /// The migrations this build knows (readiness compares them with the database).
    pub migrator: &'static Migrator,
    /// Failed authentications per client.
    pub auth_failures: Arc<AuthFailures>,
    /// Run token keys.
    pub run_tokens: Arc<RunTokenKeys>,
    /// TLS for forwarding attaches to replicas with `https://` URLs signed by the configured CA
    /// (`attach.replica_ca_file`); `None`: the public roots.
    pub replica_tls: Option<Arc<rustls::ClientConfig>>,
    /// Request rate limits.
    pub request_limits: Arc<RequestLimits>,
    /// Secret metadata and the store holding the values.
    pub secrets: Arc<gofer_secrets::Secrets>,
    /// Blocked client addresses.
    pub ip_blocks: Arc<crate::blocks::IpBlocks>,
    /// Pipeline and run objects.
    pub objects: gofer_objects::Objects,
    /// The scheduler the engine runs tasks on (attach execs through it).
    pub scheduler: Arc<dyn Scheduler>,
    /// The API's URL as tasks see it (`GOFER_API_URL`).
    pub api_url: String,
    /// This replica: its engine's lease-owner id and its URL for the other replicas.
    pub replica: gofer_engine::attach::Replica,
    /// Verified API tokens, evicted on every auth change (NOTIFY).
    pub token_cache: Arc<gofer_tenants::cache::TokenCache>,
    /// Complete runs, which never change, evicted when runs are deleted (NOTIFY).
    pub complete_runs: Arc<crate::run_cache::CompleteRuns>,
    /// The key of the event ids tenants see.
    pub event_ids: crate::event_ids::EventIds,
    /// Long-lived streams open per tenant on this replica, under their plans' caps.
    pub streams: crate::streams::StreamSlots,
}

impl AppState {
    /// Forgets this replica's verified tokens of `tenant` (every tenant for `None`) right after
    /// a change that affects them committed, so that this replica refuses at once; the others
    /// evict when the change's NOTIFY reaches them.
    pub fn forget_tokens(&self, tenant: Option<&gofer_core::TenantId>) {
        self.token_cache.evict(tenant);
    }
}

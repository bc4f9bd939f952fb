//! Wire models: the objects the API answers with and the SDK reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::PipelineConfig;
use crate::deployment::{ConfigState, DeploymentKind, DeploymentState, DeploymentStatus, PipelineState};
use crate::diff::Change;
use crate::id::{DeploymentId, NamespaceId, PipelineId, RunId, TaskId, TenantId};
use crate::state::{RunState, RunStatus, StatusReason, TaskState, TaskStatus, WaitingReason};

/// A tenant: an isolated customer of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Tenant id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it was suspended: its tokens are refused and its runs were stopped. `null` when active.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub suspended: Option<OffsetDateTime>,
    /// Its plan's id.
    #[serde(default)]
    pub plan: String,
    /// For a trial tenant, when the trial ends (it is then suspended, and later removed with all
    /// its data); `null` for other tenants.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub trial_expires: Option<OffsetDateTime>,
}

/// A namespace: a group of pipelines inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Namespace {
    /// Namespace id, unique within the tenant.
    pub id: NamespaceId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub modified: OffsetDateTime,
}

/// A pipeline: a sequence of config versions, one of them live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pipeline {
    /// Pipeline id, unique within the namespace.
    pub id: PipelineId,
    /// Its namespace.
    pub namespace_id: NamespaceId,
    /// Whether new runs may start.
    pub state: PipelineState,
    /// The version new runs use; `null` until a version is deployed.
    pub live_version: Option<i64>,
    /// The newest registered version.
    pub latest_version: Option<i64>,
    /// When its first config was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When its state or live version last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub modified: OffsetDateTime,
}

/// One config version of a pipeline, without the config itself (as lists show it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigSummary {
    /// Version number, counted from 1 per pipeline.
    pub version: i64,
    /// SHA-256 of the canonical config.
    pub config_hash: String,
    /// Where the version is in its life.
    pub state: ConfigState,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered: OffsetDateTime,
    /// When it stopped being live (or was rolled back as a canary).
    #[serde(with = "time::serde::rfc3339::option")]
    pub deprecated: Option<OffsetDateTime>,
}

/// One config version of a pipeline with the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigDetail {
    /// Version number, counted from 1 per pipeline.
    pub version: i64,
    /// SHA-256 of the canonical config.
    pub config_hash: String,
    /// Where the version is in its life.
    pub state: ConfigState,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered: OffsetDateTime,
    /// When it stopped being live (or was rolled back as a canary).
    #[serde(with = "time::serde::rfc3339::option")]
    pub deprecated: Option<OffsetDateTime>,
    /// The config, with defaults filled in.
    pub config: PipelineConfig,
}

/// What changed from one config version to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigDiff {
    /// The old version.
    pub from: i64,
    /// The new version.
    pub to: i64,
    /// The differences, in a stable order (see docs/api.md).
    pub changes: Vec<Change>,
}

/// A switch of a pipeline's live version, immediate or through a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    /// Deployment number, counted from 1 per pipeline.
    pub id: DeploymentId,
    /// `immediate` or `canary`.
    #[serde(rename = "type")]
    pub kind: DeploymentKind,
    /// The live version when it started; `null` when the pipeline had none.
    pub from_version: Option<i64>,
    /// The version being deployed.
    pub to_version: i64,
    /// `running` while a canary routes runs, then `complete`.
    pub state: DeploymentState,
    /// How it ended.
    pub status: DeploymentStatus,
    /// Why it ended that way, with the numbers for a canary.
    pub status_reason: Option<String>,
    /// Canary: share of new runs sent to `to_version`, in percent.
    pub canary_percent: Option<u32>,
    /// Canary: highest failure rate of its runs that still promotes it.
    pub max_failure_rate: Option<f64>,
    /// Canary: completed canary runs needed before it is promoted.
    pub min_runs: Option<u32>,
    /// Canary: runs started while it ran.
    pub routed_runs: i64,
    /// Canary: of those, the runs sent to `to_version`.
    pub routed_to_canary: i64,
    /// Canary: completed canary runs counted (cancelled runs are not counted).
    pub canary_runs: i64,
    /// Canary: of those, the failed ones.
    pub canary_failures: i64,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    /// Its steps, oldest first.
    pub log: Vec<DeploymentLogEntry>,
}

/// One step of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentLogEntry {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What happened.
    pub message: String,
}

/// A machine-readable reason with a human description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    /// Stable code.
    pub reason: StatusReason,
    /// Human-readable detail.
    pub description: String,
}

/// One execution of a pipeline version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// Run number, counted from 1 per pipeline.
    pub id: RunId,
    /// Namespace of the pipeline.
    pub namespace_id: NamespaceId,
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// The config version this run executes.
    pub config_version: i64,
    /// Where the run is in its life.
    pub state: RunState,
    /// How it ended (`unknown` until complete).
    pub status: RunStatus,
    /// Why it ended that way, when it did not succeed.
    pub status_reason: Option<Reason>,
    /// Variables given at start; every task sees them as environment variables.
    pub variables: BTreeMap<String, String>,
    /// Who started it.
    pub initiator: Initiator,
    /// The runs that led to it, oldest first, when a task started it with its run token (a
    /// `kind: gofer` task): its parent's chain, then its parent (the `initiator`). Empty for a run
    /// a user started.
    #[serde(default)]
    pub ancestry: Vec<crate::chain::RunAncestor>,
    /// When it is stopped and failed with reason `timeout` if still unfinished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When its first task was dispatched.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
}

/// One task's execution within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskExecution {
    /// The run.
    pub run_id: RunId,
    /// The task of the pipeline config.
    pub task_id: TaskId,
    /// The image the task asked for.
    pub image: String,
    /// The current (or last) attempt, from 1. Earlier attempts are listed under `…/attempts`.
    pub attempt: u32,
    /// Where it is in its life.
    pub state: TaskState,
    /// Why it is not running yet, while it waits.
    pub waiting_reason: Option<WaitingReason>,
    /// How it ended (`unknown` until complete).
    pub status: TaskStatus,
    /// Why it ended that way, when it did not succeed.
    pub status_reason: Option<Reason>,
    /// The process exit code, when it ran to an exit.
    pub exit_code: Option<i32>,
    /// The scheduler's id for the job (deterministic, see DESIGN.md).
    pub scheduler_id: Option<String>,
    /// The node (host) the current attempt runs or ran on.
    pub node: Option<String>,
    /// Until it completes: when it will be stopped (its own timeout once dispatched, otherwise its
    /// run's deadline).
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// When the execution was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it was dispatched.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
}

/// Who started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Initiator {
    /// `token` (an API token), `run` (a task's run token), `extension` or `system`.
    pub kind: String,
    /// The token id, the parent run as `<namespace>/<pipeline>/<run>`, extension id, or system
    /// component.
    pub id: String,
}

impl Initiator {
    /// A run started with an API token.
    pub fn token(id: impl std::fmt::Display) -> Self {
        Self { kind: "token".into(), id: id.to_string() }
    }

    /// A run started by a task of another run, with that run's token (a `kind: gofer` task).
    pub fn run(namespace: &crate::NamespaceId, pipeline: &crate::PipelineId, run: crate::RunId) -> Self {
        Self { kind: "run".into(), id: format!("{namespace}/{pipeline}/{run}") }
    }
}

/// One attempt of a task execution: the engine runs a task again after an infrastructure failure,
/// or after its own failure when the config asks for `retries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskAttempt {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The scheduler's job id of this attempt.
    pub scheduler_id: String,
    /// The node it ran on.
    pub node: Option<String>,
    /// `running` or `complete`.
    pub state: TaskState,
    /// How it ended.
    pub status: TaskStatus,
    /// Why it ended that way.
    pub status_reason: Option<Reason>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Whether the engine ran the task again after this attempt.
    pub retried: bool,
    /// When it was dispatched.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
}

/// One page of a list. `next_cursor` is opaque; pass it back as `?cursor=` for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The default page size of every list.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// The largest page size a client may ask for.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// A request for one page, keyset-paginated: items strictly after `after` in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// How many items at most.
    pub limit: u32,
    /// The key of the last item of the previous page.
    pub after: Option<K>,
}

impl<K> PageRequest<K> {
    /// The first page with the default size.
    pub fn first() -> Self {
        Self { limit: DEFAULT_PAGE_LIMIT, after: None }
    }

    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that another page exists.
    pub fn finish<T>(&self, mut rows: Vec<T>, key_of: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(key_of);
            (rows, next)
        } else {
            (rows, None)
        }
    }
}

/// Something that happened in a tenant: a state change of a run, task execution, pipeline or deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Unique, opaque id (22 characters); resume a stream or history after it. Events come in
    /// stream order (the order in which they became final), which ids do not tell: they are made
    /// with a key of the tenant's own, so they say nothing about other tenants' events.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 22, max_length = 22,
        pattern = "^[A-Za-z0-9_-]{22}$", example = "q3ZkT0bX8yLm1VwPcR2sAg"))]
    pub id: crate::id::EventId,
    /// What happened.
    pub kind: crate::EventKind,
    /// The namespace, when the event is about something inside one.
    pub namespace_id: Option<NamespaceId>,
    /// The pipeline, when the event is about one.
    pub pipeline_id: Option<PipelineId>,
    /// The run, when the event is about one.
    pub run_id: Option<RunId>,
    /// The task, when the event is about one task execution.
    pub task_id: Option<TaskId>,
    /// Details that depend on the kind (statuses, reasons, versions).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub emitted: OffsetDateTime,
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenMetadata {
    /// Token id (use it to revoke the token).
    pub id: String,
    /// `operator` or `tenant`.
    pub kind: String,
    /// The tenant, for tenant tokens.
    pub tenant_id: Option<TenantId>,
    /// `operator`, `admin`, `write` or `read`.
    pub role: String,
    /// Namespace globs the token is limited to (`team-*`); empty means every namespace.
    pub namespaces: Vec<String>,
    /// Client networks the token may be used from (CIDRs); empty means anywhere.
    pub allowed_cidrs: Vec<String>,
    /// Free text.
    pub description: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it stops working; `null` never (only the bootstrap operator token).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

/// Who the presented token is (`GET /tokens/whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    /// `operator`, `tenant` or `run`.
    pub kind: String,
    /// The token's id.
    pub token_id: String,
    /// The tenant, for tenant tokens.
    pub tenant_id: Option<String>,
    /// The role.
    pub role: String,
    /// Namespace globs it is limited to; empty means every namespace.
    pub namespaces: Vec<String>,
}

/// A plan: what a tenant may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan id (`^[a-z][a-z0-9_-]{0,63}$`).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64))]
    pub id: String,
    /// Display name: 1 to 128 characters, not only spaces, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)
    )]
    pub name: String,
    /// Task executions of the tenant running at once.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_concurrent_tasks: u32,
    /// The longest timeout a task may have, in seconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_task_timeout_s: u32,
    /// The longest a run may take, in seconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_run_duration_s: u32,
    /// CPU ceiling per task, in millicores.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_cpu_millis: u32,
    /// Memory ceiling per task, in MiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_memory_mb: u32,
    /// Disk a task may write in its work directory (`/job`), in MiB. Default 10240.
    #[serde(default = "default_max_disk_mb")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_disk_mb: u32,
    /// Task-seconds per calendar month.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64))]
    pub task_seconds_per_month: u64,
    /// Object storage, in bytes: the total of all the tenant's pipeline objects.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64))]
    pub object_storage_bytes: u64,
    /// Pipeline objects one pipeline keeps; past it, its oldest are evicted. Default 1000.
    #[serde(default = "default_max_pipeline_objects")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub max_pipeline_objects: u32,
    /// Bytes one pipeline's pipeline objects hold together; past it, its oldest are evicted.
    /// Default 1 GiB.
    #[serde(default = "default_max_pipeline_object_bytes")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64))]
    pub max_pipeline_object_bytes: u64,
    /// API requests per minute per token.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_147_483_647))]
    pub requests_per_minute: u32,
    /// The scheduler's node pool for the tenant's tasks (Nomad `NodePool`); `null`: the
    /// scheduler's configured default pool.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,127}$"))]
    pub node_pool: Option<String>,
    /// Whether tasks may reach the network (false on the trial plan: Nomad `network_mode = "none"`).
    #[serde(default = "default_allow_network")]
    pub allow_network: bool,
    /// Whether the tenant's tokens may attach to running tasks (false on the trial plan).
    #[serde(default = "default_allow_attach")]
    pub allow_attach: bool,
    /// Long-lived streams (event streams, log follows, attach sessions) the tenant may hold open
    /// at once on each API replica; one more is refused with 429 `too_many_streams`. Default 20
    /// (the trial plan: 3).
    #[serde(default = "default_max_concurrent_streams")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2_147_483_647))]
    pub max_concurrent_streams: u32,
    /// Whether the plan's tenants are untrusted (anonymous trials: true on the trial plan). The
    /// local sandbox refuses their tasks on a host without per-task cgroups, unless the operator
    /// opts out (`sandbox.allow_untrusted_without_cgroups`). Default false.
    #[serde(default)]
    pub untrusted: bool,
}

fn default_allow_attach() -> bool {
    true
}

fn default_allow_network() -> bool {
    true
}

/// `max_concurrent_streams` of a plan that does not say.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 20;

fn default_max_concurrent_streams() -> u32 {
    DEFAULT_MAX_CONCURRENT_STREAMS
}

/// `max_disk_mb` of a plan that does not say (10 GiB).
pub const DEFAULT_MAX_DISK_MB: u32 = 10240;

fn default_max_disk_mb() -> u32 {
    DEFAULT_MAX_DISK_MB
}

/// `max_pipeline_objects` of a plan that does not say.
pub const DEFAULT_MAX_PIPELINE_OBJECTS: u32 = 1000;
/// `max_pipeline_object_bytes` of a plan that does not say (1 GiB).
pub const DEFAULT_MAX_PIPELINE_OBJECT_BYTES: u64 = 1 << 30;

fn default_max_pipeline_objects() -> u32 {
    DEFAULT_MAX_PIPELINE_OBJECTS
}

fn default_max_pipeline_object_bytes() -> u64 {
    DEFAULT_MAX_PIPELINE_OBJECT_BYTES
}

/// A proof-of-work challenge for a trial sign-up (`POST /api/v1/trial/challenges`): find a nonce
/// that [`crate::proof_of_work::meets`] it, then send both to `POST /api/v1/trial` before it
/// expires. Each challenge buys one trial, from the address that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialChallenge {
    /// The challenge, opaque: hash it as it is.
    pub challenge: String,
    /// The scheme: `sha256-leading-zero-bits` ([`crate::proof_of_work::ALGORITHM`]).
    pub algorithm: String,
    /// Leading zero bits the hash must have.
    pub bits: u8,
    /// When it stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// Body of `POST /api/v1/trial`: a challenge and the nonce that solves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrialProof {
    /// The challenge, as `POST /api/v1/trial/challenges` answered it.
    pub challenge: String,
    /// The nonce found.
    pub nonce: u64,
}

/// What an IP block refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BlockScope {
    /// Requests without a token, trial sign-ups, trial tenants' tokens and failed
    /// authentications; a paying tenant's or an operator's verified token passes (many people
    /// can share one address). Every automatic block, and operators' by default.
    #[default]
    Anonymous,
    /// Everyone (a hostile network), except the operator's own routes to list and lift blocks.
    All,
}

impl BlockScope {
    /// The scope's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockScope::Anonymous => "anonymous",
            BlockScope::All => "all",
        }
    }

    /// Parses `anonymous` or `all`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "anonymous" => Some(BlockScope::Anonymous),
            "all" => Some(BlockScope::All),
            _ => None,
        }
    }
}

/// A client address refused with 403 `ip_blocked` until the block expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IpBlock {
    /// The blocked client: an IPv4 address, or an IPv6 /64 as its network address.
    pub address: String,
    /// Why (`trial_signups`, `rate_limits`, `auth_failures`, or an operator's text).
    pub reason: String,
    /// What the block refuses.
    pub scope: BlockScope,
    /// When the block was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it ends by itself.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// Metered usage of one group (a day, or a pipeline) over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageGroup {
    /// The group: a UTC day (`2026-11-25`) or a pipeline (`namespace/pipeline`).
    pub key: String,
    /// Finished task attempts.
    pub attempts: i64,
    /// Wall-clock task time, in seconds.
    pub task_seconds: f64,
    /// Task time weighted by the CPU each task asked for, in core-seconds.
    pub cpu_core_seconds: f64,
    /// Task time weighted by the memory each task asked for, in MiB-seconds.
    pub memory_mb_seconds: f64,
}

/// What a run asks of its plan, task by task, with the server's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDemand {
    /// Per task: (task id, timeout s, cpu millicores, memory MiB).
    pub tasks: Vec<(TaskId, u32, u32, u32)>,
    /// The run's timeout, in seconds.
    pub run_timeout_s: u32,
}

/// A run its plan cannot admit: which limit, what was asked, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct QuotaExceeded {
    /// The limit's name (`max_task_timeout_s`, …).
    pub limit: &'static str,
    /// What asked (a task, or the run).
    pub subject: String,
    /// What was asked.
    pub requested: u64,
    /// What the plan allows.
    pub allowed: u64,
}

impl QuotaExceeded {
    /// The limit on task-seconds per month.
    pub const TASK_SECONDS: &'static str = "task_seconds_per_month";

    /// Refuses a run because the tenant used `used_s` of its `allowed_s` task-seconds this month.
    pub fn task_seconds(used_s: u64, allowed_s: u64) -> Self {
        Self { limit: Self::TASK_SECONDS, subject: "the tenant".into(), requested: used_s, allowed: allowed_s }
    }

    fn describe(&self) -> String {
        if self.limit == Self::TASK_SECONDS {
            format!(
                "{} used {} of the plan's {} task-seconds this month ({}); no task-seconds are left",
                self.subject, self.requested, self.allowed, self.limit
            )
        } else {
            format!("{} asks for {} {}, above the plan's {}", self.subject, self.limit, self.requested, self.allowed)
        }
    }
}

impl Plan {
    /// Admits a run or names the first limit it breaks.
    pub fn admit(&self, demand: &RunDemand) -> Result<(), QuotaExceeded> {
        let over = |limit, subject: String, requested: u32, allowed: u32| {
            (requested > allowed).then(|| QuotaExceeded {
                limit,
                subject,
                requested: u64::from(requested),
                allowed: u64::from(allowed),
            })
        };
        if let Some(e) = over("max_run_duration_s", "the run".into(), demand.run_timeout_s, self.max_run_duration_s) {
            return Err(e);
        }
        for (task, timeout, cpu, memory) in &demand.tasks {
            let subject = format!("task {task}");
            let broken = over("max_task_timeout_s", subject.clone(), *timeout, self.max_task_timeout_s)
                .or_else(|| over("max_cpu_millis", subject.clone(), *cpu, self.max_cpu_millis))
                .or_else(|| over("max_memory_mb", subject.clone(), *memory, self.max_memory_mb));
            if let Some(e) = broken {
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            id: "small".into(),
            name: "Small".into(),
            max_concurrent_tasks: 1,
            max_task_timeout_s: 60,
            max_run_duration_s: 300,
            max_cpu_millis: 500,
            max_memory_mb: 128,
            max_disk_mb: 256,
            task_seconds_per_month: 600,
            object_storage_bytes: 0,
            max_pipeline_objects: 10,
            max_pipeline_object_bytes: 0,
            requests_per_minute: 60,
            node_pool: None,
            allow_network: true,
            allow_attach: true,
            max_concurrent_streams: 3,
            untrusted: false,
        }
    }

    #[test]
    fn a_plan_admits_what_fits_and_names_the_first_limit_broken() {
        let task = |t: u32, c: u32, m: u32| (TaskId::parse("work").unwrap(), t, c, m);
        assert_eq!(plan().admit(&RunDemand { tasks: vec![task(60, 500, 128)], run_timeout_s: 300 }), Ok(()));
        let over = plan().admit(&RunDemand { tasks: vec![task(61, 500, 128)], run_timeout_s: 300 }).unwrap_err();
        assert_eq!((over.limit, over.requested, over.allowed), ("max_task_timeout_s", 61, 60));
        assert_eq!(over.to_string(), "task work asks for max_task_timeout_s 61, above the plan's 60");
        assert_eq!(
            QuotaExceeded::task_seconds(612, 600).to_string(),
            "the tenant used 612 of the plan's 600 task-seconds this month (task_seconds_per_month); \
             no task-seconds are left"
        );
        let run = plan().admit(&RunDemand { tasks: vec![], run_timeout_s: 301 }).unwrap_err();
        assert_eq!(run.limit, "max_run_duration_s");
        assert_eq!(
            plan().admit(&RunDemand { tasks: vec![task(1, 1, 129)], run_timeout_s: 1 }).unwrap_err().limit,
            "max_memory_mb"
        );
        assert_eq!(
            plan().admit(&RunDemand { tasks: vec![task(1, 501, 1)], run_timeout_s: 1 }).unwrap_err().limit,
            "max_cpu_millis"
        );
    }
}

/// How a pipeline's runs ended and how long they took, over the last 7 and 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineStats {
    /// Runs that ended today (UTC) or in the 6 days before.
    pub last_7_days: RunWindowStats,
    /// Runs that ended today (UTC) or in the 29 days before.
    pub last_30_days: RunWindowStats,
}

/// Run outcomes and durations over a window of days. Durations are measured from a run's start
/// to its end; percentiles are the upper bound of the duration bucket they fall in (buckets end at
/// 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600 and 7200 s; above that, the longest run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunWindowStats {
    /// Runs that completed in the window.
    pub runs: u64,
    /// Of which successful.
    pub successful: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which cancelled.
    pub cancelled: u64,
    /// `successful / runs`; null without runs.
    pub success_rate: Option<f64>,
    /// Mean duration in seconds; null without runs.
    pub duration_mean_s: Option<f64>,
    /// Median duration (bucket upper bound) in seconds; null without runs.
    pub duration_p50_s: Option<f64>,
    /// 95th percentile duration (bucket upper bound) in seconds; null without runs.
    pub duration_p95_s: Option<f64>,
    /// Longest run in seconds; null without runs.
    pub duration_max_s: Option<f64>,
}

/// Month-to-date task-seconds against the plan, running tasks included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonthToDate {
    /// The tenant's plan.
    pub plan: String,
    /// Task-seconds used this calendar month (UTC).
    pub task_seconds_used: f64,
    /// The plan's task-seconds per month.
    pub task_seconds_allowed: u64,
}

/// A page of usage groups, with the period asked and this month's total against the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// Groups, ordered by key.
    pub items: Vec<UsageGroup>,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
    /// Start of the period (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub from: time::OffsetDateTime,
    /// End of the period (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub to: time::OffsetDateTime,
    /// `day` or `pipeline`.
    pub group_by: String,
    /// This month so far.
    pub this_month: MonthToDate,
}

//! Every Postgres NOTIFY channel the service uses, in one place: a channel is a contract between
//! the code (or the migration's trigger) that notifies and every replica that listens, and a
//! name spelled twice could drift. Each crate that notifies or listens names its channel from
//! here (issue 21); they live in the database floor because a channel is a database fact.

/// New events; payload: the tenant id (`gofer_db::events`).
pub const EVENTS: &str = "gofer_events";

/// Queue changes: a task became ready, a slot was freed (`engine`).
pub const QUEUE: &str = "gofer_queue";

/// Cancelled runs (`engine::run::cancel`).
pub const CANCEL: &str = "gofer_cancel";

/// Runs deleted; payload: the tenant id (trigger of migration `notify_run_deletes`).
pub const RUNS_DELETED: &str = "gofer_runs_deleted";

/// Runs added; payload: the tenant id (trigger of migration `notify_run_inserts`).
pub const RUNS_ADDED: &str = "gofer_runs_added";

/// IP block changes (`billing::ip_blocks`).
pub const IP_BLOCKS: &str = "gofer_ip_blocks";

/// Token, tenant and plan changes that verified tokens depend on (triggers of migration
/// `notify_auth_changes`).
pub const AUTH: &str = "gofer_auth";

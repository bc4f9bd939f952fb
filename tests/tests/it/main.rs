//! The integration tests, one binary: the real server (spawned per test, each with a database
//! copied from a migrated template) driven through HTTP, the SDK, the sandbox and the Nomad
//! double. One binary with a module per area instead of one binary per file: every binary links
//! the whole stack, so one link instead of thirty-four, and one pool of test threads instead of a
//! queue of binaries each waiting for its slowest test (issue 21).

mod abuse;
mod api;
mod attach;
mod bad_input;
mod contract;
mod db_privileges;
mod deployments;
mod event_feeds;
mod events;
mod faults;
mod hostile_tasks;
mod logs;
mod metering;
mod nomad;
mod nomad_exec;
mod notify;
mod objects;
mod objects_large;
mod observability;
mod permissions;
mod plans;
mod queue;
mod rate_limits;
mod row_security;
mod run_chains;
mod run_tokens;
mod runs;
mod secrets;
mod snapshots;
mod stream_caps;
mod tenants;
mod token_cache;
mod tokens;
mod trials;
mod usage;

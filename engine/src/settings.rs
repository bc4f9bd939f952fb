//! The engine's settings (the `[engine]` section of the server config; docs/config.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Engine tuning. Defaults are the documented production values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Task executions one replica watches at once; unset: the scheduler's default, 16 with
    /// `local`, 64 with `nomad`. The local sandbox runs them on this host; with Nomad the cluster
    /// runs them and a replica only watches them (one observation and one log read each per
    /// `monitor_interval_ms`).
    ///
    /// Production: tune
    pub max_parallel_tasks: Option<usize>,
    /// How often to look for queued work when no NOTIFY arrives, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often a running task's state and logs are read, in milliseconds; also how often a log
    /// follow (`?follow=true`) reads the log store.
    pub monitor_interval_ms: u64,
    /// How long a claim on a task execution holds without a heartbeat, in seconds; a dead
    /// replica's tasks are taken over after it.
    pub lease_s: u64,
    /// Seconds a stopped task (cancel, run timeout) gets between SIGTERM and SIGKILL.
    pub stop_grace_s: u64,
    /// Timeout of a task that sets no `timeout_s`, in seconds.
    pub default_task_timeout_s: u32,
    /// The longest any task may run, in seconds (a task asking for more is stopped at this).
    pub max_task_timeout_s: u32,
    /// Timeout of a run whose pipeline sets no `run_timeout_s`, in seconds.
    pub default_run_timeout_s: u32,
    /// CPU of a task that sets none, in millicores.
    pub default_cpu_millis: u32,
    /// Memory of a task that sets none, in MiB.
    pub default_memory_mb: u32,
    /// Infrastructure failures retried per task execution (`scheduler_error`, `orphaned`,
    /// `secret_store_unavailable`).
    pub infra_retries: u32,
    /// First retry backoff in milliseconds, doubled per failure, capped at 60 s.
    pub retry_backoff_ms: u64,
    /// A cap on running task executions per tenant below every plan's `max_concurrent_tasks`,
    /// enforced in the queue; 0: the plan's limit only.
    pub tenant_max_running_tasks: u32,
    /// How many runs may stand before a run in a chain of runs started by runs (`kind: gofer`
    /// tasks with their run tokens): a user's run may start a run, which may start one, … down to
    /// a run with this many runs before it, which may start no more (409 `run_chain_too_deep`). A
    /// start whose pipeline is already in the chain is refused whatever the depth (409
    /// `run_chain_loop`). 0: runs start no runs.
    pub max_run_chain_depth: u32,
    /// How often each replica looks for tenants whose task-seconds ran out while their tasks
    /// run, and stops their runs (`quota_exhausted`), in milliseconds; a tenant can overrun its
    /// month by about this much per running task.
    pub quota_check_interval_ms: u64,
    /// How long a dispatch keeps retrying (with backoff, holding the task's lease) while the
    /// scheduler is unavailable before the attempt counts as an infrastructure failure, in
    /// seconds; 0: every unavailable start is a failed attempt. A running task is never failed by
    /// an unreachable scheduler: only by its outcome or its own deadline.
    pub scheduler_outage_tolerance_s: u64,
    /// The image `kind: gofer` tasks run in on Nomad (build it from `infra/images/gofer-cli`);
    /// stored configs keep the placeholder `gofer-cli`, so changing this changes no config hash.
    /// The local sandbox ignores images (see `sandbox.gofer_binary`).
    ///
    /// Production: your registry's `…/gofer-cli:<version>`
    pub gofer_cli_image: String,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_parallel_tasks: None,
            poll_interval_ms: 2000,
            monitor_interval_ms: 200,
            lease_s: 60,
            stop_grace_s: 10,
            default_task_timeout_s: 3600,
            max_task_timeout_s: 24 * 3600,
            default_run_timeout_s: 24 * 3600,
            default_cpu_millis: 1000,
            default_memory_mb: 2048,
            infra_retries: 3,
            retry_backoff_ms: 1000,
            tenant_max_running_tasks: 0,
            max_run_chain_depth: 5,
            quota_check_interval_ms: 5000,
            scheduler_outage_tolerance_s: 300,
            gofer_cli_image: gofer_core::config::GOFER_CLI_IMAGE.into(),
        }
    }
}

impl EngineSettings {
    /// `poll_interval_ms`.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// `monitor_interval_ms`.
    pub fn monitor_interval(&self) -> Duration {
        Duration::from_millis(self.monitor_interval_ms)
    }

    /// `lease_s`.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_s)
    }

    /// `stop_grace_s`.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_secs(self.stop_grace_s)
    }

    /// `default_task_timeout_s`.
    pub fn default_task_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.default_task_timeout_s))
    }

    /// `max_task_timeout_s`.
    pub fn max_task_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_task_timeout_s))
    }

    /// `default_run_timeout_s`.
    pub fn default_run_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.default_run_timeout_s))
    }

    /// `retry_backoff_ms`.
    pub fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }

    /// `quota_check_interval_ms`.
    pub fn quota_check_interval(&self) -> Duration {
        Duration::from_millis(self.quota_check_interval_ms)
    }

    /// `scheduler_outage_tolerance_s`.
    pub fn scheduler_outage_tolerance(&self) -> Duration {
        Duration::from_secs(self.scheduler_outage_tolerance_s)
    }
}

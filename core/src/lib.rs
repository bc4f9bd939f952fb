//! Gofer's domain: validated identifiers, the pipeline config model, DAG conditions,
//! run and task state machines, wire models, and the `Scheduler` and `SecretStore` traits. No IO, no async runtime.

pub mod chain;
pub mod config;
pub mod dag;
pub mod debug;
pub mod deployment;
pub mod diff;
pub mod egress;
pub mod error_kind;
pub mod id;
pub mod json;
pub mod keys;
pub mod model;
pub mod objects;
pub mod proof_of_work;
pub mod scheduler;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod timeline;
pub mod tokens;

pub use config::{ConfigError, PipelineConfig, TaskConfig, TaskKind, ValidConfig};
pub use dag::Condition;
pub use deployment::{CanaryPolicy, ConfigState, DeploymentKind, DeploymentState, DeploymentStatus, PipelineState};
pub use error_kind::{Classify, ErrorKind, with_sources};
pub use id::{DeploymentId, IdError, NamespaceId, PipelineId, RunId, TaskId, TenantId, Version};
pub use state::{EventKind, RunState, RunStatus, StatusReason, TaskState, TaskStatus, WaitingReason};

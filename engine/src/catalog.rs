//! The catalog: what can be run, as opposed to runs themselves. Pipelines (`pipelines.rs`), their
//! config versions (`versions.rs`, reached through `pipelines`), the deployments that decide which
//! version new runs get (`deployments.rs`), and the statistics read from completed runs
//! (`stats.rs`).

pub mod deployments;
pub mod pipelines;
pub mod stats;
mod versions;

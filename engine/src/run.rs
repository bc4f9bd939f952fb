//! Running task executions, one replica's share at a time: the engine loop (`worker.rs`) and the
//! shared context its monitors use (`context.rs`); claiming queued and expired work (`claim.rs`);
//! one monitor per claimed task (`monitor.rs`), which prepares its attempt (`prepare.rs`) and builds its spec (`spec.rs`, with
//! `references.rs` and `object_refs.rs` for env references), dispatches or re-attaches to it
//! (`dispatch.rs`), follows it (`follow.rs`, a pure decision; `backoff.rs` paces the waits),
//! copies its output (`capture.rs`) and concludes its attempt
//! (`conclude.rs`, deciding with `outcome.rs`; successes through `finisher.rs`); releasing
//! dependants and completing runs (`release.rs`); cancelling (`cancel.rs`, why with `cancel_reason.rs`); attaching to a running
//! task (`attach.rs`).

pub mod attach;
mod backoff;
pub(crate) mod cancel;
pub(crate) mod cancel_reason;
mod capture;
mod claim;
mod conclude;
mod context;
mod dispatch;
pub(crate) mod finisher;
mod follow;
mod monitor;
pub mod object_refs;
pub(crate) mod outcome;
mod prepare;
pub(crate) mod references;
pub(crate) mod release;
mod spec;
pub mod worker;

//! The CLI's tests, one binary: the real `gofer` binary (`CARGO_BIN_EXE_gofer`) against spawned
//! servers. One binary instead of one per file: each links the whole stack, so one link instead of
//! six (issue 21).

mod cli;
mod config_secrets;
mod first_hour;
mod gofer_tasks;
mod replicas;
mod run_chains;
mod trace_output;

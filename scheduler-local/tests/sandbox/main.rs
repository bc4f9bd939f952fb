//! Specification of the local sandbox scheduler, run against the real bubblewrap on this host.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

mod attach;

mod ending;
mod hostile;
mod identity;
mod isolation;
mod lifecycle;
mod network;
mod output;

//! The database floor (issue 21): what every crate that stores tenant data shares, written once.
//!
//! - **[`TenantTx`]**, the tenant-scoped transaction (row-level security). The convention is a
//!   type: a tenant-facing `db` function takes `&mut TenantTx`, so it cannot be called outside
//!   its tenant's transaction; a function that is cross-tenant by design (queue claiming,
//!   periodic sweeps, operators' listings) takes a bare `&mut PgConnection` or the pool, and says
//!   so. A function both kinds of callers share takes the bare connection (a `TenantTx`
//!   dereferences to one) with a line saying why.
//! - **[`BindKey`]**: a tenant-scoped key binds its columns in one call, in its columns' order.
//! - **[`channels`]**: every NOTIFY channel's name.
//! - **[`events`]**: the events writer (the row and its NOTIFY), used by every crate that records
//!   a transition.
//! - **[`MIGRATOR`]**: the schema migrations (`db/migrations/`).

pub mod bind;
pub mod channels;
mod error;
pub mod events;
pub mod plans;
mod tenant_tx;

pub use bind::{BindKey, KeyColumns};
pub use error::kind_of;
pub use tenant_tx::{TenantTx, scoped};

/// Schema migrations, embedded in the binary and applied at start-up. Their files must never
/// change once released: sqlx checksums each one against the database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

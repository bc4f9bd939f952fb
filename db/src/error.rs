//! What kind of failure a database error is, for every crate's error classification.

use gofer_core::ErrorKind;

/// A data exception (SQLSTATE class 22: a NUL character, which Postgres text and JSONB cannot
/// hold, a value out of its column's range or syntax) comes from a value in the request that
/// validation let through: [`ErrorKind::Unstorable`]. Anything else is internal.
pub fn kind_of(err: &sqlx::Error) -> ErrorKind {
    match err {
        sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("22")) => ErrorKind::Unstorable,
        _ => ErrorKind::Internal,
    }
}

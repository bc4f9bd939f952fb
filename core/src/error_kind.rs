//! The few kinds every crate's error sorts into (issue 21). Each crate says, next to its own error
//! enum, what kind each variant is and its stable code; the API maps kinds to HTTP answers in one
//! generic place (`api/src/error.rs`), so a new variant needs no new arm there.

/// What kind of failure an error is, as a client would need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist (or belongs to another tenant, which looks the same).
    NotFound,
    /// The request is valid but clashes with the current state (exists already, busy, in use).
    Conflict,
    /// A value in the request breaks a rule.
    Invalid,
    /// The request has the right shape but breaks a rule no schema states: a relation between
    /// fields, a reference to something that does not exist.
    Unprocessable,
    /// The caller may not do this (a limit of its plan or of its address).
    Forbidden,
    /// It existed, and its content is gone for good.
    Gone,
    /// The body is longer than the given number of bytes allowed.
    TooLarge(u64),
    /// The store is out of space.
    StorageFull,
    /// A backing service (named: `secret store`, `object store`) does not answer or fails; a
    /// retry may succeed. Its own answer goes to the log, never to the client.
    Unavailable(&'static str),
    /// The database refused a value of the request that validation let through (a NUL
    /// character, a number out of a column's range): the client's error, and a missing check.
    Unstorable,
    /// A bug or an infrastructure failure.
    Internal,
}

/// An error that knows its [`ErrorKind`] and its stable code (`pipeline_not_found`). The code
/// matters for the kinds a client acts on (`NotFound`, `Conflict`, `Invalid`, `Forbidden`,
/// `Gone`); the others have one code each, given by the API.
pub trait Classify: std::error::Error {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;
    /// The stable machine-readable code.
    fn code(&self) -> &'static str;
}

/// An error's message followed by each of its sources', joined by `: `. Libraries' errors often
/// say little at the top ("service error", "error sending request"); the chain says what happened,
/// so logs and messages show it whole.
pub fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_is_every_message_in_order() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(super::with_sources(&err), "outer: inner");
    }
}

//! Validated identifiers. Every id a user chooses goes through [`validate_identifier`], the one validator.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: {reason}")]
pub struct IdError {
    /// What kind of id it was meant to be ("tenant", "namespace", "pipeline", "task", "run").
    pub kind: &'static str,
    /// The refused value, truncated so an enormous input does not end up in error bodies.
    pub value: String,
    /// A human-readable reason.
    pub reason: &'static str,
}

/// Checks `^[a-z][a-z0-9_-]{0,63}$`: the rule for every identifier a user chooses.
pub fn validate_identifier(kind: &'static str, value: &str) -> Result<(), IdError> {
    let fail = |reason| Err(IdError { kind, value: value.chars().take(80).collect(), reason });
    let bytes = value.as_bytes();
    // One or two characters are the most common names of all (`ci`, `go`, `qa`).
    if bytes.is_empty() {
        return fail("must not be empty");
    }
    if bytes.len() > 64 {
        return fail("must be at most 64 characters");
    }
    if !bytes[0].is_ascii_lowercase() {
        return fail("must start with a lowercase letter a-z");
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-') {
        return fail("may only contain lowercase letters a-z, digits, '_' and '-'");
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[a-z][a-z0-9_-]{0,63}$"))]
        pub struct $name(String);

        impl $name {
            /// The kind of identifier, as named in errors.
            pub const KIND: &'static str = $kind;

            /// Validates and wraps an identifier.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate_identifier($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = String::deserialize(d)?;
                Self::parse(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A tenant: the unit of isolation.
    TenantId,
    "tenant"
);
identifier!(
    /// A namespace inside a tenant.
    NamespaceId,
    "namespace"
);
identifier!(
    /// A pipeline inside a namespace.
    PipelineId,
    "pipeline"
);
identifier!(
    /// A task inside a pipeline config.
    TaskId,
    "task"
);

/// A run number, counted from 1 per pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct RunId(i64);

impl RunId {
    /// Parses a run number as typed by a user: a positive integer.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        match value.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Self(n)),
            _ => Err(IdError {
                kind: "run",
                value: value.chars().take(80).collect(),
                reason: "must be a positive integer",
            }),
        }
    }

    /// Wraps a number read back from storage.
    pub fn from_i64(value: i64) -> Self {
        Self(value)
    }

    /// The run number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a positive integer as typed by a user; `kind` names it in the error.
fn parse_positive(kind: &'static str, value: &str) -> Result<i64, IdError> {
    match value.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(IdError { kind, value: value.chars().take(80).collect(), reason: "must be a positive integer" }),
    }
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The kind of identifier, as named in errors.
            pub const KIND: &'static str = $kind;

            /// Parses a number as typed by a user (a path segment): a positive integer.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                parse_positive($kind, value).map(Self)
            }

            /// Checks a number received as JSON: it must be positive.
            pub fn new(value: i64) -> Result<Self, IdError> {
                Self::parse(&value.to_string())
            }

            /// Wraps a number read back from storage.
            pub fn from_i64(value: i64) -> Self {
                Self(value)
            }

            /// The number.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

positive_id!(
    /// A config version of a pipeline, counted from 1.
    Version,
    "version"
);
positive_id!(
    /// A deployment of a pipeline, counted from 1 per pipeline.
    DeploymentId,
    "deployment"
);

/// An event's id as its tenant sees it: an opaque token of [`EventId::LEN`] URL-safe characters
/// (`A-Z a-z 0-9 - _`). The server makes it from the event's place in the database's one sequence
/// with a key of the tenant's own, so ids say nothing about other tenants' events, nor how many
/// there were (docs/api.md, "Events"); only the server can tell which event an id names. This type
/// checks the shape only; whether an id was handed out to a tenant is the server's question.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// The length of every event id.
    pub const LEN: usize = 22;

    /// Checks the shape of an id as a client sent it (`after=`, `Last-Event-ID`, …).
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let shaped =
            value.len() == Self::LEN && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if shaped {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError {
                kind: "event",
                value: value.chars().take(80).collect(),
                reason: "must be an event id as the API gave it (22 characters A-Z a-z 0-9 - _)",
            })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for EventId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        for ok in ["a", "ci", "go", "qa", "abc", "a-b", "a_b", "build-and-test", "x99", &format!("a{}", "b".repeat(63))]
        {
            assert!(validate_identifier("task", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "1", "1abc", "_a", "-abc", "Abc", "abC", "a b", "a.b", "ab/c", "é-ab", &"a".repeat(65)] {
            assert!(validate_identifier("task", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_ids_deserialize_through_the_validator() {
        let err = serde_json::from_str::<NamespaceId>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid namespace id"), "{err}");
        let ok: NamespaceId = serde_json::from_str("\"team-a\"").unwrap();
        assert_eq!(ok.as_str(), "team-a");
    }

    #[test]
    fn run_ids_are_positive_integers() {
        assert_eq!(RunId::parse("7").unwrap().get(), 7);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            assert!(RunId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_and_deployment_ids_are_positive_integers() {
        assert_eq!(Version::parse("3").unwrap().get(), 3);
        assert_eq!(DeploymentId::parse("12").unwrap().get(), 12);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            let err = Version::parse(bad).unwrap_err();
            assert_eq!(err.kind, "version", "{bad}");
            assert_eq!(DeploymentId::parse(bad).unwrap_err().kind, "deployment", "{bad}");
        }
        assert!(serde_json::from_str::<Version>("0").is_err());
        assert_eq!(serde_json::from_str::<Version>("4").unwrap().get(), 4);
        assert_eq!(serde_json::to_string(&DeploymentId::from_i64(5)).unwrap(), "5");
    }

    #[test]
    fn event_ids_are_checked_for_their_shape_only() {
        let ok = "AbCdEfGhIjKlMnOpQr-_09";
        assert_eq!(EventId::parse(ok).unwrap().as_str(), ok);
        assert_eq!(serde_json::to_string(&EventId::parse(ok).unwrap()).unwrap(), format!("\"{ok}\""));
        for bad in ["", "42", "AbCdEfGhIjKlMnOpQr-_0", "AbCdEfGhIjKlMnOpQr-_09x", "AbCdEfGhIjKlMnOpQr+/09"] {
            assert_eq!(EventId::parse(bad).unwrap_err().kind, "event", "{bad}");
        }
        assert!(serde_json::from_str::<EventId>("42").is_err());
        assert!(serde_json::from_str::<EventId>("\"short\"").is_err());
    }
}

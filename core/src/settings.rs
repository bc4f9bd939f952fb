//! What every crate's serde settings share: the serializers that write secret values out, and the
//! error a settings check returns, naming the key.
//!
//! Each library crate exports its own settings struct (`Deserialize`, `Serialize`, `Default`,
//! `JsonSchema`, a doc comment per field); the server's config composes them and docs/config.md
//! is generated from their schemas. A doc comment's last paragraph may start `Production:`, which
//! the generated table shows in a column of its own (`**required**` where production must set it).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// A setting that cannot work, or settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SettingError {
    /// The key at fault, as written in the config file (`secret_store.addr`).
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl SettingError {
    /// `key` is at fault because of `problem`.
    pub fn new(key: &'static str, problem: &'static str) -> Self {
        Self { key, problem }
    }
}

/// `Serialize` of a [`SecretString`] field: writes the value out. Settings are serialized only to
/// read their defaults (the config loader, the docs generator), never into a log or a response.
pub fn expose_secret<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

/// [`expose_secret`] for an optional secret.
pub fn expose_optional_secret<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.serialize_some(value.expose_secret()),
        None => s.serialize_none(),
    }
}

/// [`expose_secret`] for secrets by id.
pub fn expose_secret_map<S: Serializer>(value: &BTreeMap<String, SecretString>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(value.iter().map(|(k, v)| (k, v.expose_secret())))
}

/// Secret values by id as plain strings, for the code that uses them.
pub fn exposed_map(map: &BTreeMap<String, SecretString>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.expose_secret().to_owned())).collect()
}

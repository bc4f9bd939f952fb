//! The settings of API tokens and run tokens (`[tokens]` and `[run_tokens]` in the server config;
//! docs/config.md).

use std::collections::BTreeMap;

use gofer_core::settings::{SettingError, expose_secret_map};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Lifetime of a new token that asks for none, in days.
    pub default_expiry_days: u32,
    /// The longest lifetime a token may ask for, in days.
    pub max_expiry_days: u32,
    /// How often expired and revoked tokens are deleted, in seconds.
    pub purge_interval_s: u64,
    /// How long expired or revoked tokens stay listed before the purge deletes them, in seconds.
    pub purge_grace_s: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { default_expiry_days: 90, max_expiry_days: 365, purge_interval_s: 3600, purge_grace_s: 86400 }
    }
}

/// Run token signing keys (JWTs given to tasks that set `inject_api_token`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunTokenSettings {
    /// Run token signing keys by id: base64 secrets of at least 32 bytes (in the environment,
    /// `GOFER_RUN_TOKENS__KEYS__<KID>`, the id lowercased). Every key verifies; keep an old key
    /// here after rotating so tokens it signed keep working until they expire. Empty: a key is
    /// created once in `<state_dir>/run-token-keys.json` (fine for one host).
    ///
    /// Production: **required** with several replicas (same keys everywhere)
    #[serde(serialize_with = "expose_secret_map")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub keys: BTreeMap<String, SecretString>,
    /// The id of the key that signs new tokens; required with `keys`.
    ///
    /// Production: with `keys`
    pub active_kid: Option<String>,
}

impl RunTokenSettings {
    /// Refuses keys without an active one.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !self.keys.is_empty() && self.active_kid.is_none() {
            return Err(SettingError::new("run_tokens.active_kid", "required with run_tokens.keys"));
        }
        Ok(())
    }
}

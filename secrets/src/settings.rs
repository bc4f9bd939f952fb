//! The secret store's settings (`secret_store` in the server config; docs/config.md).

use std::collections::BTreeMap;

use gofer_core::settings::{SettingError, expose_optional_secret, expose_secret_map, exposed_map};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{Keyring, KeyringError};

/// Where secret values are kept ([secrets.md](secrets.md)).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretStoreSettings {
    /// Embedded: AES-256-GCM in this service's Postgres database.
    Postgres(PostgresStoreSettings),
    /// Vault or OpenBao (KV v2).
    Vault(VaultSettings),
}

impl Default for SecretStoreSettings {
    fn default() -> Self {
        Self::Postgres(PostgresStoreSettings::default())
    }
}

impl SecretStoreSettings {
    /// Refuses settings that cannot work together, naming the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        match self {
            Self::Postgres(postgres) => postgres.validate(),
            Self::Vault(vault) => vault.auth().map(drop),
        }
    }
}

/// The embedded store (`secret_store = { kind = "postgres", … }`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresStoreSettings {
    /// Keys by id, each the base64 of 32 random bytes (`head -c32 /dev/urandom | base64`); every
    /// key decrypts, keep old ones after a rotation. Empty: a key `k1` is created once in
    /// `<state_dir>/secret-keys.json` (mode 0600).
    ///
    /// Production: set (from your own secret store), identical on every replica
    #[serde(serialize_with = "expose_secret_map", skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub keys: BTreeMap<String, SecretString>,
    /// The key id that encrypts new values (required with `keys`); values sealed by other keys
    /// are re-encrypted with it at start-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
}

impl PostgresStoreSettings {
    /// Refuses keys without a primary one.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !self.keys.is_empty() && self.primary_key.is_none() {
            return Err(SettingError::new("secret_store.primary_key", "required with secret_store.keys"));
        }
        Ok(())
    }

    /// The configured keyring; `None` when no keys are configured (the server keeps its own).
    pub fn keyring(&self) -> Result<Option<Keyring>, KeyringError> {
        match &self.primary_key {
            Some(primary) if !self.keys.is_empty() => Keyring::new(&exposed_map(&self.keys), primary).map(Some),
            _ => Ok(None),
        }
    }
}

/// Vault or OpenBao KV v2 (`secret_store = { kind = "vault", … }`): a token, or AppRole.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// Vault/OpenBao address, e.g. `https://vault.internal:8200`.
    ///
    /// Production: **required** for vault
    pub addr: String,
    /// Vault token (periodic, renewed outside Gofer); or AppRole (`role_id` and `secret_id`).
    #[serde(default, serialize_with = "expose_optional_secret")]
    #[schemars(with = "Option<String>")]
    pub token: Option<SecretString>,
    /// AppRole role id, used when no token is set; Gofer logs in again when its token is refused.
    ///
    /// Production: recommended
    #[serde(default)]
    pub role_id: Option<String>,
    /// AppRole secret id, with `role_id`.
    #[serde(default, serialize_with = "expose_optional_secret")]
    #[schemars(with = "Option<String>")]
    pub secret_id: Option<SecretString>,
    /// The AppRole auth mount.
    #[serde(default = "VaultSettings::default_approle_mount")]
    pub approle_mount: String,
    /// The KV v2 mount.
    #[serde(default = "VaultSettings::default_mount")]
    pub mount: String,
    /// Path prefix in the mount: values live at `<prefix>tenants/<tenant>/…`.
    #[serde(default = "VaultSettings::default_prefix")]
    pub prefix: String,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            addr: String::new(),
            token: None,
            role_id: None,
            secret_id: None,
            approle_mount: Self::default_approle_mount(),
            mount: Self::default_mount(),
            prefix: Self::default_prefix(),
        }
    }
}

impl VaultSettings {
    fn default_approle_mount() -> String {
        "approle".into()
    }

    fn default_mount() -> String {
        "secret".into()
    }

    fn default_prefix() -> String {
        "gofer/".into()
    }

    /// How the store authenticates: the token when set, else AppRole.
    pub fn auth(&self) -> Result<VaultAuth, SettingError> {
        if self.addr.is_empty() {
            return Err(SettingError::new("secret_store.addr", "required with secret_store.kind = \"vault\""));
        }
        match (&self.token, &self.role_id, &self.secret_id) {
            (Some(token), _, _) => Ok(VaultAuth::Token(token.expose_secret().to_owned())),
            (None, Some(role_id), Some(secret_id)) => Ok(VaultAuth::AppRole {
                mount: self.approle_mount.clone(),
                role_id: role_id.clone(),
                secret_id: secret_id.expose_secret().to_owned(),
            }),
            _ => Err(SettingError::new(
                "secret_store.token",
                "secret_store.kind = \"vault\" needs a token, or role_id and secret_id (AppRole)",
            )),
        }
    }
}

/// How the store authenticates.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token (a periodic or long-lived one).
    Token(String),
    /// AppRole: role id and secret id, at an auth mount (usually `approle`).
    AppRole {
        /// The auth mount.
        mount: String,
        /// Role id.
        role_id: String,
        /// Secret id.
        secret_id: String,
    },
}

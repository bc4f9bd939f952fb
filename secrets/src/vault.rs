//! The production secret store: Vault or OpenBao KV v2 through vaultrs. A value lives at
//! `<mount>/data/<prefix>tenants/<tenant>/<scope>/<key>` as `{"value": "…"}`; deleting removes
//! its metadata and every version. Authenticates with a token, or with AppRole (logging in again
//! when the token is refused, e.g. after it expired).

use std::collections::HashMap;

use gofer_core::TenantId;
use gofer_core::scheduler::BoxFuture;
use gofer_core::secrets::{SecretKey, SecretPrefix, SecretScope, SecretStore, SecretStoreError, SecretValue};
use tokio::sync::RwLock;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::settings::{VaultAuth, VaultSettings};

/// Runs a vaultrs call with the current client, and once more after logging in again when the
/// token was refused.
macro_rules! with_client {
    ($self:ident, |$c:ident| $call:expr) => {{
        let first = {
            let $c = &*$self.client.read().await;
            $call
        };
        match first {
            Err(e) if $self.relogin(&e).await => {
                let $c = &*$self.client.read().await;
                $call
            }
            other => other,
        }
    }};
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(***)"),
            VaultAuth::AppRole { mount, role_id, .. } => write!(f, "AppRole({mount}, {role_id}, ***)"),
        }
    }
}

/// Secrets in Vault/OpenBao KV v2.
pub struct VaultStore {
    settings: VaultSettings,
    auth: VaultAuth,
    client: RwLock<VaultClient>,
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore").field("settings", &self.settings).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> SecretStoreError {
    SecretStoreError::Unavailable(format!("vault: {e}"))
}

fn status(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::APIError { code, .. } => Some(*code),
        _ => None,
    }
}

fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code, errors } => format!("status {code}: {}", errors.join("; ")),
        other => other.to_string(),
    }
}

impl VaultStore {
    /// Builds the client, logging in first when AppRole is configured (a token is used as given:
    /// an unreachable server shows on first use, as `Unavailable`).
    pub async fn connect(settings: VaultSettings) -> Result<Self, SecretStoreError> {
        let auth = settings.auth().map_err(|e| SecretStoreError::Unavailable(e.to_string()))?;
        let mut prefix = settings.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let settings = VaultSettings { prefix, ..settings };
        let token = Self::login(&settings, &auth).await?;
        let client = Self::client(&settings, &token)?;
        Ok(Self { settings, auth, client: RwLock::new(client) })
    }

    fn client(settings: &VaultSettings, token: &str) -> Result<VaultClient, SecretStoreError> {
        let built = VaultClientSettingsBuilder::default()
            .address(&settings.addr)
            .token(token)
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(unavailable)?;
        VaultClient::new(built).map_err(|e| unavailable(describe(&e)))
    }

    async fn login(settings: &VaultSettings, auth: &VaultAuth) -> Result<String, SecretStoreError> {
        match auth {
            VaultAuth::Token(token) => Ok(token.clone()),
            VaultAuth::AppRole { mount, role_id, secret_id } => {
                let anonymous = Self::client(settings, "")?;
                let auth = vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id)
                    .await
                    .map_err(|e| unavailable(format!("AppRole login: {}", describe(&e))))?;
                Ok(auth.client_token)
            }
        }
    }

    /// The path of a tenant-relative path inside the mount.
    fn full(&self, tenant: &TenantId, relative: &str) -> String {
        format!("{}tenants/{tenant}/{relative}", self.settings.prefix)
    }

    /// Whether to try again after `e`: the token was refused and a fresh AppRole login worked
    /// (AppRole tokens expire).
    async fn relogin(&self, e: &ClientError) -> bool {
        if status(e) != Some(403) || !matches!(self.auth, VaultAuth::AppRole { .. }) {
            return false;
        }
        tracing::info!("vault refused the token; logging in again");
        match Self::login(&self.settings, &self.auth).await {
            Ok(token) => {
                vaultrs::client::Client::set_token(&mut *self.client.write().await, &token);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "vault login failed");
                false
            }
        }
    }

    /// Lists a folder: names, folders ending in `/`. A missing folder is empty.
    async fn list_folder(&self, path: &str) -> Result<Vec<String>, SecretStoreError> {
        let mount = self.settings.mount.as_str();
        match with_client!(self, |c| vaultrs::kv2::list(c, mount, path).await) {
            Ok(keys) => Ok(keys),
            Err(e) if status(&e) == Some(404) => Ok(Vec::new()),
            Err(e) => Err(unavailable(describe(&e))),
        }
    }

    async fn delete_path(&self, path: &str) -> Result<(), SecretStoreError> {
        let mount = self.settings.mount.as_str();
        match with_client!(self, |c| vaultrs::kv2::delete_metadata(c, mount, path).await) {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(unavailable(describe(&e))),
        }
    }

    /// Deletes everything under a folder, depth first.
    async fn delete_tree(&self, folder: String) -> Result<(), SecretStoreError> {
        let mut stack = vec![folder];
        while let Some(folder) = stack.pop() {
            for entry in self.list_folder(&folder).await? {
                let path = format!("{folder}{entry}");
                if entry.ends_with('/') {
                    stack.push(path);
                } else {
                    self.delete_path(&path).await?;
                }
            }
        }
        Ok(())
    }
}

impl SecretStore for VaultStore {
    fn name(&self) -> &'static str {
        "vault"
    }

    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
        value: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move {
            let path = self.full(tenant, &format!("{}/{key}", scope.path()));
            let mount = self.settings.mount.as_str();
            let data = HashMap::from([("value", value.expose())]);
            with_client!(self, |c| vaultrs::kv2::set(c, mount, &path, &data).await.map(|_| ()))
                .map_err(|e| unavailable(describe(&e)))
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<Option<SecretValue>, SecretStoreError>> {
        Box::pin(async move {
            let path = self.full(tenant, &format!("{}/{key}", scope.path()));
            let mount = self.settings.mount.as_str();
            let read = with_client!(self, |c| vaultrs::kv2::read::<HashMap<String, String>>(c, mount, &path).await);
            match read {
                Ok(mut data) => match data.remove("value") {
                    Some(v) => Ok(Some(SecretValue::new(v))),
                    None => Err(SecretStoreError::Corrupt(format!("secret {key} has no \"value\" field"))),
                },
                Err(e) if status(&e) == Some(404) => Ok(None),
                Err(e) => Err(unavailable(describe(&e))),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move { self.delete_path(&self.full(tenant, &format!("{}/{key}", scope.path()))).await })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
    ) -> BoxFuture<'a, Result<Vec<SecretKey>, SecretStoreError>> {
        Box::pin(async move {
            let folder = self.full(tenant, &format!("{}/", scope.path()));
            let mut keys = Vec::new();
            for entry in self.list_folder(&folder).await? {
                if !entry.ends_with('/') {
                    keys.push(SecretKey::parse(entry).map_err(|e| SecretStoreError::Corrupt(e.to_string()))?);
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn purge<'a>(
        &'a self,
        tenant: &'a TenantId,
        prefix: &'a SecretPrefix,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>> {
        Box::pin(async move {
            self.delete_tree(self.full(tenant, &prefix.path())).await?;
            tracing::info!(tenant = %tenant, prefix = %prefix.path(), "secret values purged from vault");
            Ok(())
        })
    }
}

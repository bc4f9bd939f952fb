//! Token secrets (random, shown once), their SHA-256 storage form, the principal a token stands
//! for, and what a new token may do.

use base64::Engine as _;
use gofer_core::{NamespaceId, PipelineId, RunId, TenantId};
use ipnet::IpNet;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::Duration;

/// Every secret starts with this, so secret scanners can recognise leaked Gofer tokens.
pub const SECRET_PREFIX: &str = "gofer_";

/// A token secret in clear: only ever held in memory and shown once.
#[derive(Clone)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// 32 random bytes from the OS generator, base64url-encoded behind [`SECRET_PREFIX`].
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a secret chosen by an operator (GOFER_BOOTSTRAP_TOKEN).
    pub fn from_preset(secret: &str) -> Self {
        Self(secret.to_owned())
    }

    /// The secret, to show to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn hash(&self) -> Vec<u8> {
        hash_secret(&self.0)
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(***)")
    }
}

/// SHA-256 of a presented secret. A fast hash is right here: secrets are 256 random bits, so
/// there is nothing to brute-force, and every request pays this cost.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A tenant token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages tenants and plans; not a member of any tenant.
    Operator,
    /// Everything inside its tenant.
    Admin,
    /// Create and change pipelines and runs.
    Write,
    /// Read only.
    Read,
}

impl Role {
    /// Text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Write => "write",
            Role::Read => "read",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            "write" => Role::Write,
            "read" => Role::Read,
            _ => return None,
        })
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator of the service.
    Operator {
        /// The token's id.
        token_id: uuid::Uuid,
    },
    /// A member of one tenant.
    Tenant {
        /// The token's id.
        token_id: uuid::Uuid,
        /// The tenant every request of this token is scoped to.
        tenant: TenantId,
        /// What it may do there.
        role: Role,
        /// Namespace globs it is limited to; empty means every namespace.
        namespaces: NamespaceGlobs,
    },
    /// A run token: may read its own run while the run is live.
    Run(RunScope),
}

/// The run a run token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScope {
    /// Owner.
    pub tenant: TenantId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Run.
    pub run: RunId,
}

/// Whose tokens: an operator manages operator tokens, a tenant admin its tenant's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    /// Operator tokens.
    Operator,
    /// One tenant's tokens.
    Tenant(TenantId),
}

/// What a new token may do.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its role (`operator` for operator tokens).
    pub role: Role,
    /// Namespace globs (tenant tokens only).
    pub namespaces: NamespaceGlobs,
    /// Client networks it may be used from; empty means anywhere.
    pub allowed_cidrs: Vec<IpNet>,
    /// Free text.
    pub description: String,
    /// How long it lives.
    pub lifetime: Duration,
}

/// The namespaces a token may reach, as globs (`*` any run of characters, `?` one character).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceGlobs(Vec<String>);

impl NamespaceGlobs {
    /// Validates globs: 1 to 64 characters of `a-z 0-9 _ - * ?`.
    pub fn parse(globs: Vec<String>) -> Result<Self, String> {
        if globs.len() > 32 {
            return Err("at most 32 namespace globs".into());
        }
        for glob in &globs {
            let ok = !glob.is_empty()
                && glob.len() <= 64
                && glob.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*?".contains(&b));
            if !ok {
                return Err(format!("namespace glob {glob:?} may only contain a-z, 0-9, '_', '-', '*' and '?'"));
            }
        }
        Ok(Self(globs))
    }

    /// Whether the token may reach `namespace`.
    pub fn allows(&self, namespace: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|g| wildmatch::WildMatch::new(g).matches(namespace))
    }

    /// Whether the token is limited at all.
    pub fn is_limited(&self) -> bool {
        !self.0.is_empty()
    }

    /// The globs as SQL LIKE patterns (`*` → `%`, `?` → `_`; the allowed characters need no
    /// escaping except `_`, which is escaped).
    pub fn like_patterns(&self) -> Vec<String> {
        self.0.iter().map(|g| g.replace('_', "\\_").replace('*', "%").replace('?', "_")).collect()
    }

    /// The globs as given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_globs_match_and_translate_to_like() {
        let globs = NamespaceGlobs::parse(vec!["team-*".into(), "ops_?".into()]).unwrap();
        assert!(globs.allows("team-a") && globs.allows("team-") && globs.allows("ops_1"));
        assert!(!globs.allows("teamx") && !globs.allows("ops_12") && !globs.allows("other"));
        assert_eq!(globs.like_patterns(), vec!["team-%".to_owned(), "ops\\__".to_owned()]);
        assert!(NamespaceGlobs::default().allows("anything"));
        assert!(NamespaceGlobs::parse(vec!["Team".into()]).is_err());
        assert!(NamespaceGlobs::parse(vec!["a%".into()]).is_err());
        assert!(NamespaceGlobs::parse(vec![String::new()]).is_err());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose().len(), SECRET_PREFIX.len() + 43);
        assert_eq!(a.hash(), hash_secret(a.expose()));
        assert_eq!(a.hash().len(), 32);
        assert_eq!(format!("{a:?}"), "TokenSecret(***)");
    }
}

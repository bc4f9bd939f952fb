//! A replica's short-lived memory of verified API tokens, so that a request does not cost a
//! database round trip to check its token. Entries are keyed by the token's SHA-256, live at most
//! `ttl` (and never past the token's own expiry), and are evicted on every replica as soon as a
//! change that affects authentication is committed anywhere: triggers on `api_tokens`, `tenants`
//! and `plans` NOTIFY [`gofer_db::channels::AUTH`] with the tenant id (or `*`), and [`follow`] evicts. Only
//! successful lookups are kept; an unknown, revoked or expired token always goes to the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::auth::Authentication;
use crate::error::TenantsError;
use crate::memo::TenantMemo;
use crate::token::Principal;

/// Verified tokens of this replica, by the SHA-256 of the secret (see the module docs).
pub struct TokenCache {
    memo: Arc<TenantMemo<Vec<u8>, Authentication>>,
}

/// The tenant whose changes evict a verified token: operator and run tokens only go with `*`.
fn token_tenant(_: &Vec<u8>, auth: &Authentication) -> Option<gofer_core::TenantId> {
    match &auth.principal {
        Principal::Tenant { tenant, .. } => Some(tenant.clone()),
        Principal::Operator { .. } | Principal::Run(_) => None,
    }
}

impl TokenCache {
    /// A cache keeping entries for `ttl` (zero: no caching), at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { memo: Arc::new(TenantMemo::new(ttl, max_entries, token_tenant)) }
    }

    /// Resolves a presented bearer secret like [`crate::authenticate`], from memory when a fresh
    /// entry exists.
    pub async fn authenticate(&self, pool: &PgPool, presented: &str) -> Result<Option<Authentication>, TenantsError> {
        let hash = crate::token::hash_secret(presented);
        let now = Instant::now();
        if let Some(hit) = self.memo.get(&hash, now) {
            return Ok(Some(hit));
        }
        let generation = self.memo.generation();
        let found = crate::auth::authenticate(pool, presented).await?;
        if let Some(auth) = &found {
            self.store(hash, auth, generation, now);
        }
        Ok(found)
    }

    /// Resolves a presented bearer secret from memory only: `None` when this replica has not
    /// verified it recently (for addresses that may not cost a database lookup).
    pub fn cached(&self, presented: &str) -> Option<Authentication> {
        self.memo.get(&crate::token::hash_secret(presented), Instant::now())
    }

    fn store(&self, hash: Vec<u8>, auth: &Authentication, generation: u64, now: Instant) {
        // Never past the token's own expiry.
        let not_after = match auth.expires {
            None => None,
            Some(expires) => match Duration::try_from(expires - time::OffsetDateTime::now_utc()) {
                Ok(left) => Some(now + left),
                Err(_) => return, // expired (or expiring) already
            },
        };
        self.memo.store(hash, auth.clone(), generation, now, not_after);
    }

    /// Forgets the tokens of `tenant`, or every token for `None` (operator tokens, plans).
    pub fn evict(&self, tenant: Option<&gofer_core::TenantId>) {
        self.memo.evict(tenant);
    }

    /// Drops expired entries (memory only: expired ones are never answered).
    pub fn sweep(&self) {
        self.memo.sweep();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.memo.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.memo.is_empty()
    }
}

/// Evicts on every auth-change notification ([`gofer_db::channels::AUTH`] on the replica's shared listener), for
/// the life of the replica (see [`crate::memo::follow`]).
pub async fn follow(notices: gofer_notify::Subscription, cache: Arc<TokenCache>) {
    crate::memo::follow(notices, cache.memo.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_core::TenantId;

    fn tenant_auth(tenant: &str, expires: Option<time::OffsetDateTime>) -> Authentication {
        Authentication {
            principal: Principal::Tenant {
                token_id: uuid::Uuid::new_v4(),
                tenant: TenantId::parse(tenant).unwrap(),
                role: crate::Role::Read,
                namespaces: crate::NamespaceGlobs::default(),
            },
            allowed_cidrs: Vec::new(),
            tenant_suspended: false,
            requests_per_minute: None,
            trial: false,
            expires,
        }
    }

    fn listening_cache(ttl: Duration, max: usize) -> TokenCache {
        let cache = TokenCache::new(ttl, max);
        cache.memo.set_listening(true);
        cache
    }

    #[test]
    fn an_entry_never_outlives_its_token() {
        let cache = listening_cache(Duration::from_secs(30), 10);
        let now = Instant::now();
        let soon = time::OffsetDateTime::now_utc() + Duration::from_millis(200);
        cache.store(b"a".to_vec(), &tenant_auth("acme", Some(soon)), 0, now);
        assert!(cache.memo.get(&b"a".to_vec(), now).is_some());
        assert!(cache.memo.get(&b"a".to_vec(), now + Duration::from_millis(250)).is_none());
        let past = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
        cache.store(b"b".to_vec(), &tenant_auth("acme", Some(past)), 0, now);
        assert!(cache.memo.get(&b"b".to_vec(), now).is_none());
    }

    #[test]
    fn a_tenant_eviction_keeps_other_tenants_and_operators() {
        let cache = listening_cache(Duration::from_secs(30), 10);
        let now = Instant::now();
        let operator = Authentication {
            principal: Principal::Operator { token_id: uuid::Uuid::new_v4() },
            ..tenant_auth("acme", None)
        };
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), 0, now);
        cache.store(b"b".to_vec(), &tenant_auth("other", None), 0, now);
        cache.store(b"o".to_vec(), &operator, 0, now);
        cache.evict(Some(&TenantId::parse("acme").unwrap()));
        assert!(cache.memo.get(&b"a".to_vec(), now).is_none());
        assert!(cache.memo.get(&b"b".to_vec(), now).is_some());
        assert!(cache.memo.get(&b"o".to_vec(), now).is_some());
        cache.evict(None);
        assert!(cache.is_empty());
    }
}

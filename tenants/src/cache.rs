//! A replica's short-lived memory of verified API tokens, so that a request does not cost a
//! database round trip to check its token. Entries are keyed by the token's SHA-256, live at most
//! `ttl` (and never past the token's own expiry), and are evicted on every replica as soon as a
//! change that affects authentication is committed anywhere: triggers on `api_tokens`, `tenants`
//! and `plans` NOTIFY [`CHANNEL`] with the tenant id (or `*`), and [`follow`] evicts. Only
//! successful lookups are kept; an unknown, revoked or expired token always goes to the database.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gofer_core::TenantId;
use sqlx::PgPool;

use crate::{Authentication, Principal, TenantsError};

/// The channel the auth-change triggers notify (migration `notify_auth_changes`).
pub const CHANNEL: &str = "gofer_auth";

/// The payload that evicts every entry (operator tokens, plans).
const EVERYONE: &str = "*";

struct Entry {
    auth: Authentication,
    until: Instant,
}

/// Verified tokens of this replica (see the module docs).
pub struct TokenCache {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<Vec<u8>, Entry>>,
    /// Bumped by every eviction: a lookup that started before an eviction must not store what it
    /// read, since it may have read the row before the change committed.
    generation: AtomicU64,
    /// Whether the listener is subscribed; entries are only kept while it is, since a change
    /// while it is not would go unnoticed.
    listening: AtomicBool,
}

impl TokenCache {
    /// A cache keeping entries for `ttl` (zero: no caching), at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    /// Resolves a presented bearer secret like [`crate::authenticate`], from memory when a fresh
    /// entry exists.
    pub async fn authenticate(&self, pool: &PgPool, presented: &str) -> Result<Option<Authentication>, TenantsError> {
        let hash = crate::token::hash_secret(presented);
        let now = Instant::now();
        if let Some(hit) = self.get(&hash, now) {
            return Ok(Some(hit));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let found = crate::authenticate(pool, presented).await?;
        if let Some(auth) = &found {
            self.store(hash, auth, generation, now);
        }
        Ok(found)
    }

    fn get(&self, hash: &[u8], now: Instant) -> Option<Authentication> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(hash)?;
        (entry.until > now).then(|| entry.auth.clone())
    }

    fn store(&self, hash: Vec<u8>, auth: &Authentication, generation: u64, now: Instant) {
        if self.ttl.is_zero() || !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut until = now + self.ttl;
        if let Some(expires) = auth.expires {
            let left = expires - time::OffsetDateTime::now_utc();
            match Duration::try_from(left) {
                Ok(left) => until = until.min(now + left),
                Err(_) => return, // expired (or expiring) already
            }
        }
        let Ok(mut entries) = self.entries.write() else { return };
        // Checked under the lock: evictions bump the generation under it too.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.max_entries {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.max_entries {
                return;
            }
        }
        entries.insert(hash, Entry { auth: auth.clone(), until });
    }

    /// Forgets the tokens of `tenant`, or every token for `None` (operator tokens, plans).
    pub fn evict(&self, tenant: Option<&TenantId>) {
        let Ok(mut entries) = self.entries.write() else { return };
        self.generation.fetch_add(1, Ordering::AcqRel);
        match tenant {
            None => entries.clear(),
            Some(tenant) => entries.retain(|_, e| match &e.auth.principal {
                Principal::Tenant { tenant: t, .. } => t != tenant,
                Principal::Operator { .. } | Principal::Run(_) => true,
            }),
        }
    }

    /// Drops expired entries (memory only: expired ones are never answered).
    pub fn sweep(&self) {
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.until > now);
        }
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict_payload(&self, payload: &str) {
        if payload == EVERYONE {
            self.evict(None);
        } else if let Ok(tenant) = TenantId::parse(payload) {
            self.evict(Some(&tenant));
        } else {
            self.evict(None);
        }
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        if !on {
            // Changes may be missed from here on: forget everything.
            self.evict(None);
        }
    }
}

/// Evicts on every auth-change notification, for the life of the replica. While the listener is
/// not subscribed (start-up, a lost connection) nothing is cached, and everything cached before
/// is forgotten, since notifications may have been missed.
pub async fn follow(pool: PgPool, cache: std::sync::Arc<TokenCache>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    cache.set_listening(true);
                    // `try_recv` answers `None` when the connection dropped (`recv` would reconnect
                    // silently and hide the notifications lost meanwhile).
                    while let Ok(Some(notification)) = listener.try_recv().await {
                        cache.evict_payload(notification.payload());
                    }
                    cache.set_listening(false);
                    tracing::warn!("lost the auth-change listener; token cache off until it is back");
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for auth changes; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen for auth changes; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        cache.set_listening(true);
        cache
    }

    #[test]
    fn an_entry_is_answered_until_its_ttl() {
        let cache = listening_cache(Duration::from_millis(30), 10);
        let now = Instant::now();
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), 0, now);
        assert!(cache.get(b"a", now).is_some());
        assert!(cache.get(b"a", now + Duration::from_millis(31)).is_none());
    }

    #[test]
    fn an_entry_never_outlives_its_token() {
        let cache = listening_cache(Duration::from_secs(30), 10);
        let now = Instant::now();
        let soon = time::OffsetDateTime::now_utc() + Duration::from_millis(200);
        cache.store(b"a".to_vec(), &tenant_auth("acme", Some(soon)), 0, now);
        assert!(cache.get(b"a", now).is_some());
        assert!(cache.get(b"a", now + Duration::from_millis(250)).is_none());
        let past = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
        cache.store(b"b".to_vec(), &tenant_auth("acme", Some(past)), 0, now);
        assert!(cache.get(b"b", now).is_none());
    }

    #[test]
    fn eviction_is_per_tenant_and_beats_a_lookup_in_flight() {
        let cache = listening_cache(Duration::from_secs(30), 10);
        let now = Instant::now();
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), 0, now);
        cache.store(b"b".to_vec(), &tenant_auth("other", None), 0, now);
        cache.evict_payload("acme");
        assert!(cache.get(b"a", now).is_none());
        assert!(cache.get(b"b", now).is_some());
        // A lookup that read the database before the eviction (generation 0) stores nothing.
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), 0, now);
        assert!(cache.get(b"a", now).is_none());
        cache.evict_payload("*");
        assert!(cache.is_empty());
    }

    #[test]
    fn nothing_is_kept_while_not_listening_or_when_full() {
        let cache = TokenCache::new(Duration::from_secs(30), 1);
        let now = Instant::now();
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), 0, now);
        assert!(cache.is_empty());
        cache.set_listening(true);
        let generation = cache.generation.load(Ordering::Acquire);
        cache.store(b"a".to_vec(), &tenant_auth("acme", None), generation, now);
        cache.store(b"b".to_vec(), &tenant_auth("acme", None), generation, now);
        assert_eq!(cache.len(), 1);
    }
}

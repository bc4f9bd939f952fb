//! A replica's short-lived memory of values read from Postgres, kept correct across replicas by
//! NOTIFY: entries live at most `ttl`, and a notification on the memo's channel naming a tenant
//! (or `*`) evicts that tenant's entries (or all) on every replica as soon as the change commits.
//! While the replica's listener is not subscribed nothing is kept, since a change would go
//! unnoticed. The verified-token cache ([`crate::cache`]) and the API's cache of complete runs
//! are built on it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gofer_core::TenantId;
use gofer_notify::{Notice, Subscription};

/// The payload that evicts every entry.
pub const EVERYONE: &str = "*";

struct Entry<V> {
    value: V,
    until: Instant,
}

/// Which tenant an entry belongs to (`None`: evicted only by `*`).
pub type TenantOf<K, V> = fn(&K, &V) -> Option<TenantId>;

/// Values of this replica (see the module docs).
pub struct TenantMemo<K, V> {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<K, Entry<V>>>,
    /// Bumped by every eviction: a read that started before an eviction must not store what it
    /// read, since it may have read the row before the change committed.
    generation: AtomicU64,
    /// Whether the listener is subscribed.
    listening: AtomicBool,
    tenant_of: TenantOf<K, V>,
}

impl<K: Eq + Hash, V: Clone> TenantMemo<K, V> {
    /// A memo keeping entries for `ttl` (zero: nothing is kept), at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize, tenant_of: TenantOf<K, V>) -> Self {
        Self {
            ttl,
            max_entries,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            tenant_of,
        }
    }

    /// The fresh entry of `key`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (entry.until > now).then(|| entry.value.clone())
    }

    /// Take before reading the database; pass to [`Self::store`] with what was read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers `value` until `ttl` from `now` (or `not_after`, if sooner), unless an eviction
    /// happened since `generation` was taken, the listener is down, or the memo is full.
    pub fn store(&self, key: K, value: V, generation: u64, now: Instant, not_after: Option<Instant>) {
        if self.ttl.is_zero() || !self.listening.load(Ordering::Acquire) {
            return;
        }
        let until = not_after.map_or(now + self.ttl, |limit| limit.min(now + self.ttl));
        if until <= now {
            return;
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
        entries.insert(key, Entry { value, until });
    }

    /// Forgets the entries of `tenant`, or every entry for `None`.
    pub fn evict(&self, tenant: Option<&TenantId>) {
        let Ok(mut entries) = self.entries.write() else { return };
        self.generation.fetch_add(1, Ordering::AcqRel);
        match tenant {
            None => entries.clear(),
            Some(tenant) => {
                let tenant_of = self.tenant_of;
                entries.retain(|k, e| tenant_of(k, &e.value).as_ref() != Some(tenant));
            }
        }
    }

    /// Evicts as a notification payload says: a tenant id, or `*` (anything else evicts all).
    pub fn evict_payload(&self, payload: &str) {
        match TenantId::parse(payload) {
            Ok(tenant) if payload != EVERYONE => self.evict(Some(&tenant)),
            _ => self.evict(None),
        }
    }

    /// Drops expired entries (memory only: expired ones are never answered).
    pub fn sweep(&self) {
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.until > now);
        }
    }

    /// How many entries are remembered.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether entries are kept: the listener is subscribed. Turning it off forgets everything,
    /// since changes may be missed from there on.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        if !on {
            self.evict(None);
        }
    }
}

/// Evicts on every notification the subscription hears (the memo's channel on the replica's
/// shared listener, [`gofer_notify`]), for the life of the replica. While the listener is not
/// subscribed (start-up, a lost connection) nothing is kept, and everything kept before is
/// forgotten, since notifications may have been missed.
pub async fn follow<K: Eq + Hash, V: Clone>(mut notices: Subscription, memo: Arc<TenantMemo<K, V>>) {
    loop {
        match notices.recv().await {
            Notice::Listening => {
                // Evictions announced before this point may have been missed.
                memo.evict(None);
                memo.set_listening(true);
            }
            Notice::Lost => {
                memo.set_listening(false);
                tracing::warn!("lost the LISTEN connection; the caches are off until it is back");
            }
            Notice::Message { payload, .. } => memo.evict_payload(&payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(ttl: Duration, max: usize) -> TenantMemo<(String, u32), u32> {
        let memo: TenantMemo<(String, u32), u32> =
            TenantMemo::new(ttl, max, |k: &(String, u32), _: &u32| TenantId::parse(k.0.clone()).ok());
        memo.set_listening(true);
        memo
    }

    fn key(tenant: &str, n: u32) -> (String, u32) {
        (tenant.to_owned(), n)
    }

    #[test]
    fn an_entry_is_answered_until_its_ttl_or_its_limit() {
        let memo = memo(Duration::from_millis(30), 10);
        let now = Instant::now();
        memo.store(key("acme", 1), 1, memo.generation(), now, None);
        memo.store(key("acme", 2), 2, memo.generation(), now, Some(now + Duration::from_millis(10)));
        assert_eq!(memo.get(&key("acme", 1), now), Some(1));
        assert_eq!(memo.get(&key("acme", 2), now + Duration::from_millis(11)), None);
        assert_eq!(memo.get(&key("acme", 1), now + Duration::from_millis(11)), Some(1));
        assert_eq!(memo.get(&key("acme", 1), now + Duration::from_millis(31)), None);
    }

    #[test]
    fn eviction_is_per_tenant_and_beats_a_read_in_flight() {
        let memo = memo(Duration::from_secs(30), 10);
        let now = Instant::now();
        let before = memo.generation();
        memo.store(key("acme", 1), 1, before, now, None);
        memo.store(key("other", 1), 2, before, now, None);
        memo.evict_payload("acme");
        assert_eq!(memo.get(&key("acme", 1), now), None);
        assert_eq!(memo.get(&key("other", 1), now), Some(2));
        // A read that started before the eviction stores nothing.
        memo.store(key("acme", 1), 1, before, now, None);
        assert_eq!(memo.get(&key("acme", 1), now), None);
        memo.evict_payload(EVERYONE);
        assert!(memo.is_empty());
    }

    #[test]
    fn nothing_is_kept_while_not_listening_or_when_full() {
        let memo = memo(Duration::from_secs(30), 1);
        memo.set_listening(false);
        let now = Instant::now();
        memo.store(key("acme", 1), 1, memo.generation(), now, None);
        assert!(memo.is_empty());
        memo.set_listening(true);
        memo.store(key("acme", 1), 1, memo.generation(), now, None);
        memo.store(key("acme", 2), 2, memo.generation(), now, None);
        assert_eq!(memo.len(), 1);
    }
}

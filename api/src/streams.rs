//! Caps on long-lived streams (issue 19, item 5). An event stream, a log follow and an attach
//! session each hold one slot of their tenant for as long as they are open; a tenant whose plan
//! allows `max_concurrent_streams` and holds that many is refused another with 429
//! `too_many_streams` naming the cap. The slot is a guard: it is given back when the stream's
//! state is dropped, whichever way it ends (the end of the log, the client going away, a shutdown).
//!
//! What is capped, and where:
//! - **Per tenant, per replica.** The counts live in this replica's memory, so a tenant may hold
//!   its cap on each replica. A shared count would need a write (and a heartbeat, for replicas that
//!   die holding slots) per stream opened; every replica holds its own streams' memory and
//!   connections, which is what the cap protects.
//! - **Not per token.** A tenant's tokens are its own: one token taking the whole allowance hurts
//!   only its tenant, which can revoke it. Bystanders are protected by the tenant's cap.
//! - **Not per address.** Every stream needs a tenant (or run) token, so the tenant's cap bounds
//!   it; anonymous clients cannot open one, and trials are limited per address when they start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use gofer_core::TenantId;

use crate::error::ApiError;
use sqlx::PgPool;

/// How long a refused client is told to wait: streams end when their clients go, which the
/// server cannot foresee; a few seconds keeps an `EventSource` from retrying in a tight loop.
pub const RETRY_AFTER_S: u64 = 5;

/// The open streams of each tenant on this replica.
#[derive(Debug, Clone, Default)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// One open stream's slot; given back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back as soon as it is dropped"]
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// A refusal: the tenant already holds `open` streams, its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Streams the tenant holds open on this replica.
    pub open: usize,
}

impl StreamSlots {
    /// Takes a slot of `tenant` if it holds fewer than `cap` (the check and the count are one step,
    /// so two streams opening together cannot both take the last slot).
    pub fn take(&self, tenant: &TenantId, cap: u32) -> Result<StreamSlot, Full> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let held = open.get(tenant).copied().unwrap_or(0);
        if held >= cap as usize {
            return Err(Full { open: held });
        }
        *open.entry(tenant.clone()).or_insert(0) += 1;
        Ok(StreamSlot { open: self.open.clone(), tenant: tenant.clone() })
    }

    /// Takes a stream slot of `tenant` under its plan's `max_concurrent_streams` (read now, so a
    /// plan change applies to the next stream), or refuses with 429 `too_many_streams`.
    pub(crate) async fn take_under_plan(&self, pool: &PgPool, tenant: &TenantId) -> Result<StreamSlot, ApiError> {
        let plan = gofer_billing::tenant_plan(pool, tenant).await?;
        self.take(tenant, plan.max_concurrent_streams).map_err(|full| refusal(full, plan.max_concurrent_streams))
    }

    /// Streams `tenant` holds open on this replica.
    pub fn open(&self, tenant: &TenantId) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(tenant).copied().unwrap_or(0)
    }
}

fn refusal(full: Full, cap: u32) -> ApiError {
    ApiError::TooManyStreams {
        detail: format!(
            "the tenant has {} streams open on this server, as many as its plan allows \
             (max_concurrent_streams {cap}); event streams, log follows and attach sessions count \
             alike: close one and retry",
            full.open
        ),
        retry_after_s: RETRY_AFTER_S,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_tenant_holds_at_most_its_cap_and_a_dropped_slot_is_given_back() {
        let slots = StreamSlots::default();
        let (acme, umbrella) = (tenant("acme"), tenant("umbrella"));
        let mut held: Vec<StreamSlot> = (0..3).map(|_| slots.take(&acme, 3).unwrap()).collect();
        assert_eq!(slots.take(&acme, 3).unwrap_err(), Full { open: 3 });
        let bystander = slots.take(&umbrella, 3).expect("another tenant's slots are its own");
        assert_eq!((slots.open(&acme), slots.open(&umbrella)), (3, 1));
        drop(held.pop());
        let again = slots.take(&acme, 3).expect("a closed stream's slot is free again");
        assert_eq!(slots.take(&acme, 3).unwrap_err(), Full { open: 3 });
        // A lower cap (the plan changed) refuses until enough streams closed; zero refuses all.
        assert!(slots.take(&acme, 2).is_err());
        assert!(slots.take(&tenant("initech"), 0).is_err());
        drop((again, bystander, held));
        assert_eq!((slots.open(&acme), slots.open(&umbrella)), (0, 0));
        assert!(slots.open.lock().unwrap().get(&umbrella).is_none(), "an idle tenant costs no entry");
    }

    #[test]
    fn slots_taken_at_once_from_many_threads_never_exceed_the_cap() {
        let slots = StreamSlots::default();
        let acme = tenant("acme");
        let taken: Vec<Option<StreamSlot>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32).map(|_| s.spawn(|| slots.take(&acme, 5).ok())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 5);
        drop(taken);
        assert_eq!(slots.open(&acme), 0);
    }

    #[test]
    fn the_refusal_names_the_cap_and_the_plan_field() {
        let error = refusal(Full { open: 3 }, 3);
        assert_eq!(error.code(), "too_many_streams");
        let detail = error.problem().detail;
        assert!(detail.contains("max_concurrent_streams 3"), "{detail}");
        assert!(detail.contains("3 streams open"), "{detail}");
    }
}

//! Limits on abuse: failed authentications per client address (governor). General request rate
//! limits build on this module.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The key a client is limited by: its IPv4 address, or its IPv6 /64 (one host usually owns a
/// whole /64, so limiting single IPv6 addresses would limit nothing).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Counts failed authentications per client; a client over the budget is refused (429) for a
/// while, without its tokens being looked at.
pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    block_for: Duration,
}

impl AuthFailures {
    /// Allows `per_minute` failures per client (as a burst, refilled over the minute), then
    /// blocks it for `block_for`.
    pub fn new(per_minute: u32, block_for: Duration) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(per_minute)), blocked: Mutex::default(), block_for }
    }

    /// Refuses a client that is blocked.
    pub fn check_blocked(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = client_key(ip);
        let blocked = self.blocked.lock().map(|b| b.get(&key).copied()).unwrap_or(None);
        match blocked {
            Some(until) if until > Instant::now() => Err(ApiError::RateLimited {
                retry_after_s: until.saturating_duration_since(Instant::now()).as_secs().max(1),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure; answers the 429 to send instead of 401 when it used up the budget.
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = client_key(ip);
        if self.limiter.check_key(&key).is_err() {
            let until = Instant::now() + self.block_for;
            if let Ok(mut blocked) = self.blocked.lock() {
                blocked.insert(key, until);
            }
            tracing::warn!(client = %key, block_s = self.block_for.as_secs(), "too many failed authentications; blocking the client");
            return Err(ApiError::RateLimited { retry_after_s: self.block_for.as_secs().max(1) });
        }
        Ok(())
    }

    /// Forgets idle clients and ended blocks, so memory stays bounded however many addresses
    /// have been seen.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, until| *until > now);
        }
    }

    /// Clients tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_failure_budget_is_blocked_and_others_are_not() {
        let failures = AuthFailures::new(3, Duration::from_secs(60));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert!(failures.record_failure(ip).is_ok());
        }
        assert!(matches!(failures.record_failure(ip), Err(ApiError::RateLimited { .. })));
        assert!(
            matches!(failures.check_blocked(ip), Err(ApiError::RateLimited { retry_after_s }) if retry_after_s >= 59)
        );
        assert!(failures.check_blocked("203.0.113.8".parse().unwrap()).is_ok());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
    }

    #[test]
    fn sweeping_forgets_idle_clients() {
        let failures = AuthFailures::new(1000, Duration::from_secs(1));
        for i in 0..10_000u32 {
            let _ = failures.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(failures.tracked(), 10_000);
        // Entries whose bucket refilled are dropped; with 1000/min, one failure refills in 60 ms,
        // and governor keeps an entry one emission interval longer.
        std::thread::sleep(Duration::from_millis(250));
        failures.sweep();
        assert_eq!(failures.tracked(), 0);
    }
}

//! Limits on abuse: failed authentications per client address (governor). General request rate
//! limits build on this module.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The one form a client address is keyed and matched in: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, how a dual-stack `[::]` listener sees IPv4 peers) becomes the IPv4 address.
/// Only the mapped form: other IPv6 forms that carry IPv4 (6to4, NAT64) are real IPv6 peers.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A network in the one form addresses are matched in: an IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`, as an operator may write a dual-stack proxy's range) becomes the IPv4
/// network (`10.0.0.0/8`), since every address is canonical ([`canonical_ip`]) before it is
/// matched. Other networks are unchanged.
pub fn canonical_net(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, ipnet::IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// The key a client is limited by: its IPv4 address, or its IPv6 /64 (one host usually owns a
/// whole /64, so limiting single IPv6 addresses would limit nothing). Canonical first
/// ([`canonical_ip`]), so an operator's `::ffff:a.b.c.d` means `a.b.c.d` too.
pub fn client_key(ip: IpAddr) -> IpAddr {
    let ip = canonical_ip(ip);
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
    /// Token lookups in the database allowed per blocked address: enough for the people behind it
    /// whose tokens this replica has not cached, too few to make the block a lookup flood.
    lookups_while_blocked: DefaultKeyedRateLimiter<IpAddr>,
}

/// Database token lookups per minute for a blocked address (see [`AuthFailures`]).
const LOOKUPS_PER_MINUTE_WHILE_BLOCKED: u32 = 30;

impl AuthFailures {
    /// Allows `per_minute` failures per client (as a burst, refilled over the minute), then
    /// blocks it for `block_for`.
    pub fn new(per_minute: u32, block_for: Duration) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let lookups = NonZeroU32::new(LOOKUPS_PER_MINUTE_WHILE_BLOCKED).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Mutex::default(),
            block_for,
            lookups_while_blocked: RateLimiter::keyed(Quota::per_minute(lookups)),
        }
    }

    /// Whether a token presented from a blocked address may be looked up in the database (else
    /// only a token this replica verified recently passes).
    pub fn may_look_up_while_blocked(&self, ip: IpAddr) -> bool {
        self.lookups_while_blocked.check_key(&client_key(ip)).is_ok()
    }

    /// Refuses a client that is blocked.
    pub fn check_blocked(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = client_key(ip);
        let blocked = self.blocked.lock().map(|b| b.get(&key).copied()).unwrap_or(None);
        match blocked {
            Some(until) if until > Instant::now() => Err(ApiError::AuthFailuresBlocked {
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
            return Err(ApiError::AuthFailuresBlocked { retry_after_s: self.block_for.as_secs().max(1) });
        }
        Ok(())
    }

    /// Forgets idle clients and ended blocks, so memory stays bounded however many addresses
    /// have been seen.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.lookups_while_blocked.retain_recent();
        self.lookups_while_blocked.shrink_to_fit();
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
        assert!(matches!(failures.record_failure(ip), Err(ApiError::AuthFailuresBlocked { .. })));
        assert!(
            matches!(failures.check_blocked(ip), Err(ApiError::AuthFailuresBlocked { retry_after_s }) if retry_after_s >= 59)
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

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Ordinary requests.
    General,
    /// Expensive requests: starting runs.
    StartRuns,
    /// Trial signups, per client address.
    TrialSignup,
}

/// The outcome of a rate-limit check, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Requests per window.
    pub limit: u32,
    /// Requests left now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// Set when refused: seconds until a request can pass.
    pub retry_after_s: Option<u64>,
}

type InformedLimiter = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    governor::clock::DefaultClock,
    governor::middleware::StateInformationMiddleware,
>;

struct Limit {
    limiter: InformedLimiter,
    per_minute: u32,
}

impl Limit {
    fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self { limiter: RateLimiter::keyed(quota).with_middleware(), per_minute }
    }

    fn check(&self, key: &str) -> Decision {
        use governor::clock::Clock;
        let interval = Duration::from_secs(60) / self.per_minute;
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = interval * (self.per_minute - remaining.min(self.per_minute));
                Decision { limit: self.per_minute, remaining, reset_s: reset.as_secs(), retry_after_s: None }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                Decision {
                    limit: self.per_minute,
                    remaining: 0,
                    reset_s: (interval * self.per_minute).as_secs(),
                    retry_after_s: Some(wait.as_secs().max(1)),
                }
            }
        }
    }
}

/// What a token's plan allows, as its last authentication said.
struct Learned {
    /// The plan's rate; `None`: the default token rate (operators, run tokens, plans without one).
    per_minute: Option<u32>,
    per_address: bool,
    at: Instant,
}

/// Request rate limits: per token for authenticated requests (at the rate of the tenant's plan
/// once the token has authenticated), per client address (IPv6: /64) for requests without a
/// token and for trial tokens, with stricter buckets for starting runs and trial signups.
///
/// A token that has not (yet) authenticated is counted in its own bucket **and** in its
/// address's: otherwise any made-up `Authorization` header would buy a fresh bucket, and the
/// per-address limit would never hold on public routes. Once a token authenticates, the limiter
/// learns it ([`RequestLimits::learn`]) and counts it in its own bucket alone.
pub struct RequestLimits {
    token: Arc<Limit>,
    anonymous: Limit,
    start_runs: Limit,
    trial_signups: Limit,
    /// Plan rates by token key, refreshed by every authentication (which reads the plan anyway),
    /// so a plan change applies from a token's next request on.
    learned: RwLock<HashMap<String, Learned>>,
    /// One limiter per plan rate in use.
    by_rate: RwLock<HashMap<u32, Arc<Limit>>>,
}

/// How long a learned plan rate is used without a fresh authentication confirming it.
const LEARNED_FOR: Duration = Duration::from_secs(300);

impl RequestLimits {
    /// Limits per minute: per token (before its plan is known, and for operators), per anonymous
    /// client, for starting runs, and for trial signups (per address).
    pub fn new(per_token: u32, per_anonymous_client: u32, start_runs: u32, trial_signups: u32) -> Self {
        Self {
            token: Arc::new(Limit::new(per_token)),
            anonymous: Limit::new(per_anonymous_client),
            start_runs: Limit::new(start_runs),
            trial_signups: Limit::new(trial_signups),
            learned: RwLock::default(),
            by_rate: RwLock::default(),
        }
    }

    /// Records that a token just authenticated, with its plan's rate (`None`: the default token
    /// rate); `per_address` for trial tokens. Writes only when something changed or the entry is
    /// getting old, so readers rarely wait.
    pub fn learn(&self, token_key: &str, per_minute: Option<u32>, per_address: bool) {
        let fresh = self.learned.read().ok().is_some_and(|map| {
            map.get(token_key).is_some_and(|l| {
                l.per_minute == per_minute && l.per_address == per_address && l.at.elapsed() < LEARNED_FOR / 2
            })
        });
        if fresh {
            return;
        }
        if let Ok(mut map) = self.learned.write() {
            map.insert(token_key.to_owned(), Learned { per_minute, per_address, at: Instant::now() });
        }
    }

    fn plan_limit(&self, token_key: &str) -> Option<(Arc<Limit>, bool)> {
        let (per_minute, per_address) = self.learned.read().ok().and_then(|map| {
            map.get(token_key).filter(|l| l.at.elapsed() < LEARNED_FOR).map(|l| (l.per_minute, l.per_address))
        })?;
        let Some(per_minute) = per_minute else { return Some((self.token.clone(), per_address)) };
        if let Some(limit) = self.by_rate.read().ok().and_then(|m| m.get(&per_minute).cloned()) {
            return Some((limit, per_address));
        }
        let mut by_rate = self.by_rate.write().ok()?;
        Some((by_rate.entry(per_minute).or_insert_with(|| Arc::new(Limit::new(per_minute))).clone(), per_address))
    }

    /// Checks one request. `token_key` identifies the presented token (a hash, never the
    /// secret), `ip` the client.
    pub fn check(&self, bucket: Bucket, token_key: Option<&str>, ip: IpAddr) -> Decision {
        let plan = token_key.and_then(|t| self.plan_limit(t));
        let (key, general) = match (token_key, &plan) {
            (Some(_), Some((limit, true))) => {
                let key = format!("trial-ip:{}", client_key(ip));
                let decision = limit.check(&key);
                (key, decision)
            }
            (Some(token), Some((limit, false))) => {
                let key = format!("t:{token}");
                let decision = limit.check(&key);
                (key, decision)
            }
            (Some(token), None) => {
                // Not authenticated yet: the address's bucket too (see the type's docs). Checked
                // first, so a refused made-up token never takes a token bucket entry.
                let address = self.anonymous.check(&format!("ip:{}", client_key(ip)));
                let key = format!("t:{token}");
                if address.retry_after_s.is_some() {
                    (key, address)
                } else {
                    let decision = self.token.check(&key);
                    (key, decision)
                }
            }
            (None, _) => {
                let key = format!("ip:{}", client_key(ip));
                let decision = self.anonymous.check(&key);
                (key, decision)
            }
        };
        match bucket {
            _ if general.retry_after_s.is_some() => general,
            Bucket::General => general,
            Bucket::StartRuns => self.start_runs.check(&key),
            Bucket::TrialSignup => self.trial_signups.check(&format!("ip:{}", client_key(ip))),
        }
    }

    /// Forgets idle clients and old plan rates, so memory stays bounded however many have been seen.
    pub fn sweep(&self) {
        let by_rate: Vec<Arc<Limit>> = self.by_rate.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for limit in [self.token.as_ref(), &self.anonymous, &self.start_runs, &self.trial_signups]
            .into_iter()
            .chain(by_rate.iter().map(|l| l.as_ref()))
        {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
        if let Ok(mut learned) = self.learned.write() {
            learned.retain(|_, l| l.at.elapsed() < LEARNED_FOR);
            learned.shrink_to_fit();
        }
    }

    /// Clients tracked across buckets (for tests and metrics).
    pub fn tracked(&self) -> usize {
        let by_rate: usize = self.by_rate.read().map(|m| m.values().map(|l| l.limiter.len()).sum()).unwrap_or(0);
        self.token.limiter.len()
            + self.anonymous.limiter.len()
            + self.start_runs.limiter.len()
            + self.trial_signups.limiter.len()
            + by_rate
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy. This is where a request's address
/// enters: it answers the canonical form ([`canonical_ip`]), and matches trusted proxies in it.
pub fn resolve_client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| canonical_net(*net).contains(ip));
    let peer = canonical_ip(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut client = peer;
    for entry in header.rsplit(',') {
        match entry.trim().parse::<IpAddr>().map(canonical_ip) {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // A malformed entry ends what can be believed.
            Err(_) => return client,
        }
    }
    client
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn tokens_and_addresses_have_their_own_buckets_and_runs_a_stricter_one() {
        let limits = RequestLimits::new(3, 2, 1, 1);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for token in ["aaa", "bbb", "ccc"] {
            limits.learn(token, None, false);
        }
        let first = limits.check(Bucket::General, Some("aaa"), ip);
        assert_eq!((first.limit, first.remaining, first.retry_after_s), (3, 2, None));
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).remaining, 1);
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).remaining, 0);
        let refused = limits.check(Bucket::General, Some("aaa"), ip);
        assert!(refused.retry_after_s.is_some_and(|s| (1..=20).contains(&s)), "{refused:?}");
        assert_eq!(limits.check(Bucket::General, Some("bbb"), ip).retry_after_s, None, "another token");
        assert_eq!(limits.check(Bucket::General, None, ip).limit, 2, "anonymous clients have their own limit");
        assert_eq!(limits.check(Bucket::StartRuns, Some("ccc"), ip).retry_after_s, None);
        assert!(limits.check(Bucket::StartRuns, Some("ccc"), ip).retry_after_s.is_some(), "one run start per minute");
    }

    #[test]
    fn a_token_whose_plan_is_known_is_limited_at_the_plans_rate_and_trial_tokens_per_address() {
        let limits = RequestLimits::new(100, 100, 100, 100);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).limit, 100, "plan not known yet");
        limits.learn("aaa", Some(2), false);
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).remaining, 1);
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).remaining, 0);
        assert!(limits.check(Bucket::General, Some("aaa"), ip).retry_after_s.is_some());
        // A plan change applies from the next authentication on.
        limits.learn("aaa", Some(50), false);
        assert_eq!(limits.check(Bucket::General, Some("aaa"), ip).limit, 50);
        // Two trial tokens from one address share the address's bucket.
        limits.learn("t1", Some(2), true);
        limits.learn("t2", Some(2), true);
        assert!(limits.check(Bucket::General, Some("t1"), ip).retry_after_s.is_none());
        assert!(limits.check(Bucket::General, Some("t2"), ip).retry_after_s.is_none());
        assert!(limits.check(Bucket::General, Some("t1"), ip).retry_after_s.is_some());
        let elsewhere: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(limits.check(Bucket::General, Some("t1"), elsewhere).retry_after_s.is_none());
    }

    #[test]
    fn made_up_tokens_count_in_their_address_bucket_until_one_authenticates() {
        let limits = RequestLimits::new(100, 3, 100, 100);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        // Three requests, each with a fresh made-up bearer, use up the address's budget…
        for i in 0..3 {
            assert!(limits.check(Bucket::General, Some(&format!("bogus{i}")), ip).retry_after_s.is_none());
        }
        let refused = limits.check(Bucket::General, Some("bogus3"), ip);
        assert_eq!((refused.limit, refused.remaining), (3, 0), "the address's limit answers: {refused:?}");
        assert!(refused.retry_after_s.is_some());
        assert!(limits.check(Bucket::General, None, ip).retry_after_s.is_some(), "and anonymous requests");
        // …and were refused before taking a token bucket of their own.
        assert_eq!(limits.token.limiter.len(), 3);
        // A token that authenticated is counted in its own bucket alone.
        limits.learn("real", None, false);
        let passed = limits.check(Bucket::General, Some("real"), ip);
        assert_eq!((passed.limit, passed.retry_after_s), (100, None));
        // Another address is not touched.
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(limits.check(Bucket::General, Some("bogus4"), other).retry_after_s.is_none());
    }

    #[test]
    fn memory_stays_bounded_under_a_million_addresses() {
        let limits = RequestLimits::new(600, 6000, 60, 60);
        for i in 0..1_000_000u32 {
            limits.check(Bucket::General, None, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(limits.tracked(), 1_000_000);
        // One request refills in 10 ms at 6000/min; governor keeps an entry one interval longer.
        std::thread::sleep(Duration::from_millis(50));
        limits.sweep();
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve_client_ip(stranger, Some("1.2.3.4"), &trusted), stranger);
        assert_eq!(resolve_client_ip(proxy, Some("1.2.3.4"), &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
        // Spoofed left entries are ignored: the right-most untrusted entry is the client.
        assert_eq!(
            resolve_client_ip(proxy, Some("6.6.6.6, 1.2.3.4, 10.9.9.9"), &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve_client_ip(proxy, None, &trusted), proxy);
        assert_eq!(resolve_client_ip(proxy, Some("garbage"), &trusted), proxy);
    }

    #[test]
    fn ipv4_mapped_addresses_are_resolved_to_ipv4() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        let none: Vec<ipnet::IpNet> = vec![];
        assert_eq!(resolve_client_ip(v4("::ffff:203.0.113.9"), None, &none), v4("203.0.113.9"));
        assert_eq!(resolve_client_ip(v4("::1"), None, &none), v4("::1"), "IPv6 peers stay IPv6");
        // 6to4 and NAT64 addresses are IPv6 peers, not the IPv4 they carry.
        assert_eq!(resolve_client_ip(v4("2002:cb00:7109::1"), None, &none), v4("2002:cb00:7109::1"));
        // A mapped proxy matches its IPv4 network, and mapped forwarded entries are IPv4 too.
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = v4("::ffff:10.0.0.1");
        assert_eq!(resolve_client_ip(proxy, Some("1.2.3.4"), &trusted), v4("1.2.3.4"));
        assert_eq!(resolve_client_ip(proxy, None, &trusted), v4("10.0.0.1"));
        assert_eq!(resolve_client_ip(proxy, Some("::ffff:1.2.3.4, ::ffff:10.9.9.9"), &trusted), v4("1.2.3.4"));
        assert_eq!(resolve_client_ip(proxy, Some("1.2.3.4, ::ffff:10.9.9.9"), &trusted), v4("1.2.3.4"));
    }

    #[test]
    fn ipv4_mapped_networks_match_the_ipv4_addresses_they_hold() {
        let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        assert_eq!(canonical_net(net("::ffff:10.0.0.0/104")), net("10.0.0.0/8"));
        assert_eq!(canonical_net(net("::ffff:192.0.2.7/128")), net("192.0.2.7/32"));
        assert_eq!(canonical_net(net("2001:db8::/32")), net("2001:db8::/32"), "real IPv6 stays");
        assert_eq!(canonical_net(net("::/0")), net("::/0"), "too wide to be mapped IPv4");
        // A trusted proxy written in the mapped form is trusted when it connects.
        let trusted = vec![net("::ffff:10.0.0.0/104")];
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(resolve_client_ip(v4("::ffff:10.1.2.3"), Some("1.2.3.4"), &trusted), v4("1.2.3.4"));
        assert_eq!(resolve_client_ip(v4("10.1.2.3"), Some("1.2.3.4"), &trusted), v4("1.2.3.4"));
    }

    #[test]
    fn ipv4_mapped_clients_are_keyed_apart_and_as_their_ipv4_address() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        // Before: every mapped address fell in the `::` /64 and shared one bucket.
        assert_eq!(client_key(v4("::ffff:127.0.0.2")), v4("127.0.0.2"));
        assert_ne!(client_key(v4("::ffff:127.0.0.2")), client_key(v4("::ffff:127.0.0.3")));
        let limits = RequestLimits::new(100, 1, 100, 100);
        assert!(limits.check(Bucket::General, None, v4("::ffff:192.0.2.1")).retry_after_s.is_none());
        assert!(limits.check(Bucket::General, None, v4("192.0.2.1")).retry_after_s.is_some(), "the same client");
        assert!(limits.check(Bucket::General, None, v4("::ffff:192.0.2.2")).retry_after_s.is_none());
        let blocks = crate::blocks::IpBlocks::new(0);
        let block = crate::blocks::ActiveBlock {
            until: time::OffsetDateTime::now_utc() + Duration::from_secs(60),
            scope: gofer_core::model::BlockScope::Anonymous,
            reason: "test".into(),
        };
        blocks.insert(v4("::ffff:192.0.2.1"), block);
        assert!(blocks.block(v4("192.0.2.1")).is_some());
        assert!(blocks.block(v4("::ffff:192.0.2.1")).is_some());
        assert!(blocks.block(v4("192.0.2.2")).is_none());
        let failures = AuthFailures::new(1, Duration::from_secs(60));
        assert!(failures.record_failure(v4("::ffff:192.0.2.1")).is_ok());
        assert!(failures.record_failure(v4("192.0.2.1")).is_err());
        assert!(failures.check_blocked(v4("::ffff:192.0.2.2")).is_ok());
    }
}

/// The client address of a request, as resolved by [`rate_limit`] (trusted proxies applied).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The key of the presented token in the rate limiter (a hash prefix, never the secret), put in
/// the request's extensions so authentication can tell the limiter the token's plan rate.
#[derive(Debug, Clone)]
pub struct TokenRateKey(pub String);

//! `limiter`: the memory of the API's abuse limiters under a flood of distinct clients (issue 19,
//! item 4). Feeds the limiters what the rate-limit middleware and authentication feed them for
//! requests that each carry a made-up bearer token from a fresh address (half IPv4, half IPv6
//! /64s), at the service's default limits, then sweeps them as the periodic job does. Prints the
//! process's RSS before, after the flood, and after the sweep (`--json` for JSON).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use gofer_api::blocks::IpBlocks;
use gofer_api::limits::{AuthFailures, Bucket, RequestLimits};
use gofer_bench::machine::{load_average, rss_mib};

#[derive(Debug, Parser)]
struct Options {
    /// Distinct clients (each one request with its own made-up bearer and address).
    #[arg(long, default_value_t = 1_000_000)]
    clients: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    clients: u32,
    load_before: Vec<f64>,
    rss_before_mib: f64,
    rss_after_flood_mib: f64,
    rss_after_sweep_mib: f64,
    tracked_after_flood: usize,
    tracked_after_sweep: usize,
    flood_seconds: f64,
    sweep_ms: f64,
}

/// A random client: a made-up bearer's limiter key (what the middleware derives: 16 bytes of
/// the token's hash, in hex) and an address, from a UUID's random bits.
fn random_client(i: u32) -> (String, IpAddr) {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let address = if i.is_multiple_of(2) {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        let mut v6 = [0u8; 16];
        v6[..8].copy_from_slice(&bytes[8..]);
        IpAddr::from(v6)
    };
    (key, address)
}

fn main() {
    let options = Options::parse();
    let defaults = gofer_api::Config::default();
    let rates = &defaults.rate_limits;
    let requests = RequestLimits::new(
        rates.per_token_per_minute,
        rates.anonymous_per_minute,
        rates.start_runs_per_minute,
        rates.trial_signups_per_minute,
    );
    let failures =
        AuthFailures::new(defaults.auth.failures_per_minute, Duration::from_secs(defaults.auth.failure_block_s));
    let blocks = IpBlocks::new(defaults.ip_blocks.rate_limited_per_minute);
    let load_before = load_average();
    let rss_before_mib = rss_mib();

    let started = Instant::now();
    for i in 0..options.clients {
        let (key, address) = random_client(i);
        // The middleware: the limiter, and a strike for a refused request.
        if requests.check(Bucket::General, Some(&key), address).retry_after_s.is_some() {
            blocks.strike(address);
        }
        // Authentication: the made-up token fails.
        let _ = failures.record_failure(address);
    }
    let flood_seconds = started.elapsed().as_secs_f64();
    let tracked_after_flood = requests.tracked() + failures.tracked();
    let rss_after_flood_mib = rss_mib();

    // The periodic sweep forgets a client once its buckets have refilled (governor keeps an entry
    // one emission interval longer); the slowest to refill at the defaults is one failed
    // authentication (a minute / failures_per_minute).
    let refill = Duration::from_secs(60) / defaults.auth.failures_per_minute.max(1);
    std::thread::sleep(refill * 2 + Duration::from_millis(500));
    let sweep_started = Instant::now();
    requests.sweep();
    failures.sweep();
    blocks.sweep();
    let sweep_ms = sweep_started.elapsed().as_secs_f64() * 1000.0;
    let report = Report {
        clients: options.clients,
        load_before,
        rss_before_mib,
        rss_after_flood_mib,
        rss_after_sweep_mib: rss_mib(),
        tracked_after_flood,
        tracked_after_sweep: requests.tracked() + failures.tracked(),
        flood_seconds,
        sweep_ms,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!("{report:#?}");
    }
}

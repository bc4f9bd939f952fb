//! Load: N concurrent clients, each starting a one-task run and reading its state until it is
//! complete, over and over for a fixed time, against one replica with the instant scheduler.
//! Records throughput, latency per kind of request, answers by status class, and the process's
//! RSS every second (the replica and its clients share the process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::{NAMESPACE, TENANT};
use crate::Options;
use crate::harness::{Database, Replica, TenantClient, operator_token, replica_config};
use crate::instant::InstantScheduler;
use crate::stats::Summary;

/// What the load scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Measured time, in seconds.
    pub duration_s: f64,
    /// Runs started (201).
    pub runs_started: u64,
    /// Runs seen complete by their client.
    pub runs_completed: u64,
    /// Requests of every kind per second.
    pub requests_per_s: f64,
    /// `POST …/runs` sent → answered.
    pub start: Option<Summary>,
    /// `GET …/runs/{run}` sent → answered.
    pub read: Option<Summary>,
    /// Answers 2xx.
    pub ok: u64,
    /// Answers 4xx (429 included).
    pub client_errors: u64,
    /// Answers 5xx (target: none).
    pub server_errors: u64,
    /// Requests that got no answer (connection errors, timeouts).
    pub transport_errors: u64,
    /// RSS of the process (replica and clients) each second, in MiB, from the start of the load.
    pub rss_mib: Vec<f64>,
}

#[derive(Default)]
struct Tally {
    start: Vec<Duration>,
    read: Vec<Duration>,
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    transport_errors: u64,
    started: u64,
    completed: u64,
}

impl Tally {
    fn count(&mut self, status: Option<u16>) {
        match status {
            Some(200..=299) => self.ok += 1,
            Some(500..) => self.server_errors += 1,
            Some(_) => self.client_errors += 1,
            None => self.transport_errors += 1,
        }
    }
}

/// Runs the load scenario: `--clients` clients for `--duration-s` seconds.
pub async fn run(options: &Options) -> anyhow::Result<LoadResult> {
    let monitor_interval_ms = options.monitor_interval_ms.unwrap_or(super::FAST_MONITOR_INTERVAL_MS);
    let database = Database::create(&options.database_url).await?;
    let scheduler = Arc::new(InstantScheduler::default());
    let operator = operator_token();
    let replica = Replica::start(Some(scheduler.view(0)), |dir| {
        replica_config(&database.url, dir, &operator, Some(monitor_interval_ms), None)
    })
    .await?;
    let measured = measure(options, &replica, &operator).await;
    replica.stop().await?;
    database.drop_now().await?;
    measured
}

async fn measure(options: &Options, replica: &Replica, operator: &str) -> anyhow::Result<LoadResult> {
    let client = TenantClient::create(&replica.address, operator, TENANT).await?;
    client.namespace(NAMESPACE).await?;
    client.pipeline(NAMESPACE, "load", 1, &["true"]).await?;
    let duration = Duration::from_secs(options.duration_s);
    let until = Instant::now() + duration;
    let runs = format!("{}/api/v1/namespaces/{NAMESPACE}/pipelines/load/runs", replica.address);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let sampler = tokio::spawn(async move {
        let mut rss = Vec::new();
        while Instant::now() < until {
            rss.push(crate::machine::rss_mib());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        rss.push(crate::machine::rss_mib());
        rss
    });
    let began = Instant::now();
    let workers: Vec<_> = (0..options.clients)
        .map(|_| tokio::spawn(client_loop(http.clone(), runs.clone(), client.token().to_owned(), until)))
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.context("a client panicked")?;
        total.start.extend(tally.start);
        total.read.extend(tally.read);
        total.ok += tally.ok;
        total.client_errors += tally.client_errors;
        total.server_errors += tally.server_errors;
        total.transport_errors += tally.transport_errors;
        total.started += tally.started;
        total.completed += tally.completed;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let requests = total.ok + total.client_errors + total.server_errors + total.transport_errors;
    Ok(LoadResult {
        clients: options.clients,
        duration_s: elapsed,
        runs_started: total.started,
        runs_completed: total.completed,
        requests_per_s: requests as f64 / elapsed,
        start: Summary::of(&total.start),
        read: Summary::of(&total.read),
        ok: total.ok,
        client_errors: total.client_errors,
        server_errors: total.server_errors,
        transport_errors: total.transport_errors,
        rss_mib: sampler.await.context("the RSS sampler panicked")?,
    })
}

/// One client: start a run, read it until complete (every 5 ms), repeat until `until`.
async fn client_loop(http: reqwest::Client, runs: String, token: String, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let sent = Instant::now();
        let answer = http.post(&runs).bearer_auth(&token).json(&serde_json::json!({"variables": {}})).send().await;
        let status = answer.as_ref().ok().map(|a| a.status().as_u16());
        let body: Option<serde_json::Value> = match answer {
            Ok(a) => a.json().await.ok(),
            Err(_) => None,
        };
        tally.start.push(sent.elapsed());
        tally.count(status);
        let Some(id) = body.as_ref().and_then(|b| b["run"]["id"].as_i64()).filter(|_| status == Some(201)) else {
            continue;
        };
        tally.started += 1;
        let url = format!("{runs}/{id}");
        while Instant::now() < until {
            let sent = Instant::now();
            let answer = http.get(&url).bearer_auth(&token).send().await;
            let status = answer.as_ref().ok().map(|a| a.status().as_u16());
            let state: Option<serde_json::Value> = match answer {
                Ok(a) => a.json().await.ok(),
                Err(_) => None,
            };
            tally.read.push(sent.elapsed());
            tally.count(status);
            if state.as_ref().and_then(|s| s["run"]["state"].as_str()) == Some("complete") {
                tally.completed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tally
}

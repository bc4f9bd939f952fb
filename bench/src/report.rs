//! Printing a [`Report`]: plain tables for people, compared with the targets of issue 4.

use std::fmt::Write;

use crate::Report;
use crate::profile::SqlProfile;
use crate::scenarios::throughput::{Backend, ThroughputResult};
use crate::stats::Summary;

/// Issue 4's targets on a 2-core machine.
pub mod targets {
    /// Dispatch latency, median.
    pub const DISPATCH_P50_MS: f64 = 10.0;
    /// Dispatch latency, 99th percentile.
    pub const DISPATCH_P99_MS: f64 = 50.0;
    /// Task executions per second through the queue with an instant scheduler.
    pub const TASKS_PER_S: f64 = 1000.0;
    /// Time the API may add to a direct S3 transfer, in percent (issue 8).
    pub const OBJECT_OVERHEAD_PCT: f64 = 20.0;
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn load(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" ")
}

fn latency_header(out: &mut String) {
    let _ = writeln!(
        out,
        "  {:<34} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "from sending POST …/runs to", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
}

fn latency_row(out: &mut String, label: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {:<34} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        label, s.n, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.mean_ms
    );
}

fn throughput_table(out: &mut String, rows: &[ThroughputResult]) {
    let _ = writeln!(
        out,
        "  {:<8} {:>8} {:>6} {:>10} {:>10} {:>7} {:>7} {:>8} {:>7} {:>11} {:>14} {:>12}",
        "backend",
        "replicas",
        "tasks",
        "monitor ms",
        "startup ms",
        "busy s",
        "total s",
        "tasks/s",
        "(total)",
        "per replica",
        "cpu ms/task:",
        "gofer/pg/host",
    );
    for r in rows {
        let backend = match r.backend {
            Backend::Instant => "instant",
            Backend::Sandbox => "sandbox",
        };
        let opt = |v: Option<f64>, precision: usize| v.map_or("-".to_owned(), |v| format!("{v:.precision$}"));
        let per_replica = if r.starts_per_replica.iter().any(|n| *n > 0) {
            r.starts_per_replica.iter().map(usize::to_string).collect::<Vec<_>>().join("/")
        } else {
            "-".into()
        };
        let cpu = format!(
            "{:.2}/{}/{:.2}",
            r.cpu_ms_per_task_gofer,
            opt(r.cpu_ms_per_task_postgres, 2),
            r.cpu_ms_per_task_host
        );
        let tasks =
            if r.timed_out { format!("{}/{} TIMED OUT", r.completed_tasks, r.tasks) } else { r.tasks.to_string() };
        let _ = writeln!(
            out,
            "  {:<8} {:>8} {:>6} {:>10} {:>10} {:>7} {:>7.2} {:>8.0} {:>7.0} {:>11} {:>27}",
            backend,
            r.replicas,
            tasks,
            r.monitor_interval_ms,
            opt(r.startup_ms, 0),
            opt(r.busy_s, 2),
            r.total_s,
            r.tasks_per_s,
            r.tasks_per_s_total,
            per_replica,
            cpu
        );
    }
    for r in rows {
        if let (Some(held), Some(in_flight)) = (&r.start_to_committed, r.mean_in_flight) {
            let _ = writeln!(
                out,
                "  {} replica(s): scheduler start → outcome committed per task: p50 {:.1} ms, p99 {:.1} ms, \
                 max {:.1} ms; {:.1} tasks in that stretch at once on average ({} slots)",
                r.replicas,
                held.p50_ms,
                held.p99_ms,
                held.max_ms,
                in_flight,
                r.replicas * r.max_parallel_tasks
            );
        }
    }
    let _ = writeln!(
        out,
        "  ({} runs × {} tasks enqueued beforehand; max_parallel_tasks {} per replica; enqueueing took {})",
        rows.first().map_or(0, |r| r.runs),
        rows.first().map_or(0, |r| r.tasks_per_run),
        rows.first().map_or(0, |r| r.max_parallel_tasks),
        rows.iter().map(|r| format!("{:.1} s", r.enqueue_s)).collect::<Vec<_>>().join(", ")
    );
}

fn sql_table(out: &mut String, title: &str, sql: &SqlProfile, per: usize) {
    let per = per.max(1) as f64;
    let _ = writeln!(
        out,
        "\n  SQL of {title}: {} statements ({:.1} per task); executing {:.0} ms ({:.3} ms per task), planning {:.0} ms",
        sql.statements,
        sql.statements as f64 / per,
        sql.total_ms,
        sql.total_ms / per,
        sql.plan_ms
    );
    let _ = writeln!(
        out,
        "  {:>8} {:>9} {:>10} {:>9} {:>9}  statement",
        "calls", "per task", "total ms", "ms/call", "plan ms"
    );
    for s in &sql.top {
        let calls = s.calls.max(1) as f64;
        let _ = writeln!(
            out,
            "  {:>8} {:>9.2} {:>10.1} {:>9.3} {:>9.3}  {}",
            s.calls,
            s.calls as f64 / per,
            s.total_ms,
            s.total_ms / calls,
            s.plan_ms / calls,
            s.query
        );
    }
}

/// Renders the report as tables.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let settings: Vec<String> = report.postgres.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "machine: {} cores, {}, {} MiB RAM", m.cores, m.cpu_model, m.memory_mib);
    let _ = writeln!(out, "postgres {}: {}", report.postgres.version, settings.join(", "));
    let _ = writeln!(
        out,
        "load average (1/5/15 min): before {}, after {}",
        load(&report.load_before),
        load(&report.load_after)
    );
    if let Some(d) = &report.dispatch {
        let _ = writeln!(
            out,
            "\nDispatch latency: instant scheduler, {} one-task runs one after another ({} warm-up runs first), \
             monitor_interval_ms={}{}",
            d.runs,
            d.warmup,
            d.monitor_interval_ms,
            if d.truncated { ", STOPPED EARLY by the time limit" } else { "" }
        );
        latency_header(&mut out);
        latency_row(&mut out, "201 Created received", &d.answered);
        latency_row(&mut out, "scheduler start (dispatch)", &d.dispatched);
        latency_row(&mut out, "task outcome committed", &d.completed);
        let _ = writeln!(
            out,
            "  target: p50 ≤ {} ms {} ({:.2}), p99 ≤ {} ms {} ({:.2}); {:.1} s wall",
            targets::DISPATCH_P50_MS,
            verdict(d.dispatched.p50_ms <= targets::DISPATCH_P50_MS),
            d.dispatched.p50_ms,
            targets::DISPATCH_P99_MS,
            verdict(d.dispatched.p99_ms <= targets::DISPATCH_P99_MS),
            d.dispatched.p99_ms,
            d.wall_s
        );
        if let Some(sql) = &d.sql {
            sql_table(&mut out, "the measured runs", sql, d.runs);
        }
    }
    if !report.throughput.is_empty() {
        let _ = writeln!(out, "\nThroughput through the queue (instant scheduler)");
        throughput_table(&mut out, &report.throughput);
        for r in &report.throughput {
            let _ = writeln!(
                out,
                "  target ≥ {} tasks/s with {} replica(s): {} ({:.0})",
                targets::TASKS_PER_S,
                r.replicas,
                verdict(r.tasks_per_s >= targets::TASKS_PER_S),
                r.tasks_per_s
            );
        }
        for r in &report.throughput {
            if let Some(sql) = &r.sql {
                sql_table(&mut out, &format!("{} replica(s)", r.replicas), sql, r.tasks);
            }
        }
    }
    if let Some(s) = &report.sandbox {
        let _ = writeln!(
            out,
            "\nWhole path through the local sandbox: {} one-task `true` runs one after another ({} warm-up), \
             monitor_interval_ms={}{}",
            s.runs,
            s.warmup,
            s.monitor_interval_ms,
            if s.truncated { ", STOPPED EARLY by the time limit" } else { "" }
        );
        latency_header(&mut out);
        latency_row(&mut out, "201 Created received", &s.answered);
        latency_row(&mut out, "run seen complete", &s.completed);
        throughput_table(&mut out, std::slice::from_ref(&s.throughput));
    }
    if let Some(o) = &report.objects {
        objects_table(&mut out, o);
    }
    if let Some(l) = &report.load {
        load_section(&mut out, l);
    }
    out
}

fn objects_table(out: &mut String, o: &crate::scenarios::objects::ObjectsResult) {
    let _ = writeln!(
        out,
        "\nObjects: {} MiB pipeline objects, {} uploads and downloads per target after a warm-up; S3 part size {} MiB, \
         {} in flight",
        o.object_mib,
        o.repeats,
        o.part_size_bytes / (1024 * 1024),
        o.part_concurrency
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>12} {:>12} {:>12} {:>12} {:>22}",
        "target", "up MiB/s", "(best)", "down MiB/s", "(best)", "time added up / down"
    );
    for t in &o.targets {
        let added = t.overhead_pct.map_or_else(|| "-".to_owned(), |(u, d)| format!("{u:+.0}% / {d:+.0}%"));
        let _ = writeln!(
            out,
            "  {:<16} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>22}",
            t.target, t.upload_mib_s, t.upload_best_mib_s, t.download_mib_s, t.download_best_mib_s, added
        );
    }
    if let Some(api) = o.targets.iter().find(|t| t.target == "api+s3")
        && let Some((up, down)) = api.overhead_pct
    {
        let met = up <= targets::OBJECT_OVERHEAD_PCT && down <= targets::OBJECT_OVERHEAD_PCT;
        let _ = writeln!(
            out,
            "  target: the API adds ≤ {}% to the faster direct S3: {} (upload {up:+.0}%, download {down:+.0}%)",
            targets::OBJECT_OVERHEAD_PCT,
            verdict(met)
        );
    }
}

fn load_section(out: &mut String, l: &crate::scenarios::load::LoadResult) {
    let _ = writeln!(
        out,
        "\nLoad: {} clients, each starting a one-task run and reading it every 5 ms until complete, for {:.1} s \
         (instant scheduler)",
        l.clients, l.duration_s
    );
    let _ = writeln!(
        out,
        "  runs started {} ({:.0}/s), completed {}; {:.0} requests/s; answers 2xx {}, 4xx {}, 5xx {}, no answer {}",
        l.runs_started,
        l.runs_started as f64 / l.duration_s,
        l.runs_completed,
        l.requests_per_s,
        l.ok,
        l.client_errors,
        l.server_errors,
        l.transport_errors
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "request sent → answered", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
    if let Some(s) = &l.start {
        latency_row(out, "POST …/runs", s);
    }
    if let Some(s) = &l.read {
        latency_row(out, "GET …/runs/{run}", s);
    }
    let rss: Vec<String> = l.rss_mib.iter().map(|r| format!("{r:.0}")).collect();
    let _ = writeln!(out, "  RSS of the process (replica + clients), MiB, every second: {}", rss.join(" "));
    let _ = writeln!(out, "  target: no 5xx: {} ({})", verdict(l.server_errors == 0), l.server_errors);
}

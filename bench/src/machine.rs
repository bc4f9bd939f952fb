//! What the numbers were measured on: the host (cores, CPU model, memory, load), CPU time spent
//! during a measurement, and the Postgres settings that matter for a write-heavy queue.

use std::time::Duration;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

/// The host.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `MemTotal` from /proc/meminfo, in MiB.
    pub memory_mib: u64,
}

impl Machine {
    /// Reads the host's description (unknown parts are left empty or zero).
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = field(&cpuinfo, "model name").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        Self { cores, cpu_model, memory_mib: memory_kib / 1024 }
    }
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_owned()))
}

/// This process's resident set size (`VmRSS`), in MiB; 0 when unreadable.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 =
        field(&status, "VmRSS").and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok())).unwrap_or(0.0);
    kib / 1024.0
}

/// The 1-, 5- and 15-minute load averages (from /proc/loadavg), empty when unreadable.
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// CPU time used so far by this process, by the Postgres cluster and by the whole host.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// User plus system time of this process (the server, its engine and the benchmark driver).
    pub this_process: Duration,
    /// User plus system time of the Postgres cluster (the postmaster, its live children and those
    /// it has reaped), when it runs on this host and its postmaster is known.
    pub postgres: Option<Duration>,
    /// Busy time of every CPU of the host (everything but idle and iowait): Postgres, this
    /// process, and anything else running.
    pub host_busy: Duration,
}

/// Linux reports times in clock ticks of 1/100 s (`USER_HZ`, fixed at 100 on x86-64 and arm64).
fn ticks(n: u64) -> Duration {
    Duration::from_millis(n.saturating_mul(10))
}

/// The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    // The state letter is not a number: keep it as 0 so indexes stay those of proc(5) minus 3.
    after_name.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect()
}

// Indexes into `stat_fields` (proc(5) field number minus 3).
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

fn field_sum(fields: &[u64], which: &[usize]) -> u64 {
    which.iter().filter_map(|i| fields.get(*i)).sum()
}

/// CPU time of `postmaster` and every process it started, including reaped ones.
fn cluster_cpu(postmaster: u32) -> Option<Duration> {
    let own = stat_fields(&postmaster.to_string());
    if own.is_empty() {
        return None;
    }
    let mut total = field_sum(&own, &[UTIME, STIME, CUTIME, CSTIME]);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let fields = stat_fields(pid);
        if fields.get(PPID) == Some(&u64::from(postmaster)) {
            total += field_sum(&fields, &[UTIME, STIME]);
        }
    }
    Some(ticks(total))
}

/// The postmaster behind a connection, when Postgres runs on this host: the parent of the
/// connection's backend.
pub async fn postmaster_pid(pool: &sqlx::PgPool) -> Option<u32> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.ok()?;
    let parent = *stat_fields(&backend.to_string()).get(PPID)?;
    u32::try_from(parent).ok().filter(|p| *p > 1)
}

impl CpuTimes {
    /// Reads /proc (zeros where unreadable); `postmaster` as found by [`postmaster_pid`].
    pub fn now(postmaster: Option<u32>) -> Self {
        let own = field_sum(&stat_fields("self"), &[UTIME, STIME]);
        let host = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = host
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy: u64 = cpu.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
        Self { this_process: ticks(own), postgres: postmaster.and_then(cluster_cpu), host_busy: ticks(busy) }
    }

    /// CPU time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            this_process: self.this_process.saturating_sub(earlier.this_process),
            postgres: self.postgres.zip(earlier.postgres).map(|(now, then)| now.saturating_sub(then)),
            host_busy: self.host_busy.saturating_sub(earlier.host_busy),
        }
    }
}

/// The Postgres server and the settings that matter here.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresSettings {
    /// `server_version`.
    pub version: String,
    /// `fsync`, `synchronous_commit`, `full_page_writes`, `shared_buffers`, `max_connections`.
    pub settings: Vec<(String, String)>,
    /// Whether pg_stat_statements is loaded (needed for `--profile-sql`).
    pub pg_stat_statements_loaded: bool,
}

impl PostgresSettings {
    /// Reads them through the admin URL.
    pub async fn read(admin_url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(admin_url).await?;
        let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut conn).await?;
        let mut settings = Vec::new();
        for name in ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_connections"] {
            let value: String =
                sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&mut conn).await?;
            settings.push((name.to_owned(), value));
        }
        let preload: String = sqlx::query_scalar("SHOW shared_preload_libraries").fetch_one(&mut conn).await?;
        let pg_stat_statements_loaded = preload.split(',').any(|l| l.trim() == "pg_stat_statements");
        Ok(Self { version, settings, pg_stat_statements_loaded })
    }
}

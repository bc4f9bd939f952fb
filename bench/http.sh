#!/usr/bin/env bash
# Request throughput of one release replica, measured with wrk (issue 10; docs/benchmarks.md).
#
#   bench/http.sh [--port 24414] [--duration 10] [--runs 60] [--keep] [--perf DIR]
#
# Starts a private Postgres (infra/postgres.sh --fast, its own directory and port), one release
# `gofer service start` on it (rate limiting ON, plan rates raised so nothing is refused: the
# limiter's cost is part of the measure), creates a tenant, a namespace, a one-task pipeline and
# --runs runs (local sandbox, `true`), waits until they are complete, then runs
# `wrk -t2 -c16 -d<duration>s --latency` against, in this order:
#   1. GET /health                                   (baseline: no auth, no database)
#   2. GET /api/v1/tokens/whoami                     (authentication only: the token cache)
#   3. GET …/runs/{id}                               (authenticated, one run)
#   4. GET …/runs?limit=50                           (authenticated, 50 runs)
# and prints the replica's RSS after start-up, after the set-up and after the wrk runs.
# With --perf DIR, `perf record -g` samples the replica during each measured wrk run into
# DIR/<n>.data (1 = health … 4 = list; read with `perf report -i DIR/3.data --no-children`).
# Build first: cargo build --release -p gofer-cli (GOFER_BIN overrides the binary).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# Below Linux's ephemeral range (32768–60999): a port in it can be taken by a client socket in
# TIME_WAIT after a test run, and Postgres then fails to bind.
port=24414
duration=10
runs=60
keep=0
perf_dir=
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --perf) perf_dir=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null
BIN=${GOFER_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/gofer}
[ -x "$BIN" ] || { echo "no release binary at $BIN: cargo build --release -p gofer-cli" >&2; exit 1; }

work=$(mktemp -d /tmp/gofer-http-bench.XXXXXX)
chmod 755 "$work"
admin=$("$here/infra/postgres.sh" start --dir "$work/pg" --port "$port" --db postgres --fast | tail -n1)
base=${admin%/*}
psql "$admin" -qc "CREATE DATABASE bench"
listen=127.0.0.1:$((port + 1000))
url=http://$listen
operator=gofer_bench_operator_token_0123456789abcdef

pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    "$here/infra/postgres.sh" stop --dir "$work/pg" >/dev/null 2>&1 || true
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

GOFER_DATABASE_URL=$base/bench GOFER_STATE_DIR=$work/state GOFER_LISTEN=$listen \
GOFER_BOOTSTRAP_TOKEN=$operator GOFER_LOG_LEVEL=error \
GOFER_RATE_LIMITS__ENABLED=true GOFER_RATE_LIMITS__PER_TOKEN_PER_MINUTE=1000000000 \
    "$BIN" service start >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$url/ready" >/dev/null || { cat "$work/server.log"; exit 1; }
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status"; }
sleep 2
echo "rss idle after start-up: $(rss)"

psql "$base/bench" -qc "UPDATE plans SET requests_per_minute = 1000000000"
post() { curl -sf -X POST "$url$1" -H "authorization: Bearer $2" -H 'content-type: application/json' -d "$3"; }
token=$(post /api/v1/tenants "$operator" '{"id":"bench","name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
post /api/v1/namespaces "$token" '{"id":"builds","name":"builds"}' >/dev/null
pipe=/api/v1/namespaces/builds/pipelines/hello
post "$pipe/configs" "$token" '{"name":"hello","tasks":[{"id":"say","image":"debian:12","command":["true"]}]}' >/dev/null
for _ in $(seq 1 "$runs"); do post "$pipe/runs" "$token" '{}' >/dev/null; done
for _ in $(seq 1 600); do
    left=$(psql "$base/bench" -tAc "SELECT count(*) FROM runs WHERE state <> 'complete'")
    [ "$left" = 0 ] && break
    sleep 0.2
done
echo "runs: $runs ($left unfinished)"
sleep 2
echo "rss idle after set-up: $(rss)"

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The same summed over the postmaster and its children (the backends).
pg_ticks() {
    local postmaster total=0 p
    postmaster=$(head -n1 "$work/pg/data/postmaster.pid")
    for p in $postmaster $(pgrep -P "$postmaster"); do total=$((total + $(cpu_ticks "$p"))); done
    echo "$total"
}
phase=0
measure() {
    local label=$1 path=$2
    shift 2
    wrk -t2 -c16 -d3s "$@" "$url$path" >/dev/null # warm-up
    echo "== $label: $path"
    phase=$((phase + 1))
    if [ -n "$perf_dir" ]; then
        mkdir -p "$perf_dir"
        perf record -q -F 999 -g -p "$pid" -o "$perf_dir/$phase.data" -- sleep "$duration" 2>/dev/null &
    fi
    local before_gofer before_pg out requests
    before_gofer=$(cpu_ticks "$pid")
    before_pg=$(pg_ticks)
    out=$(wrk -t2 -c16 -d"${duration}s" --latency "$@" "$url$path")
    grep -E "Requests/sec|Latency  |  50%|  90%|  99%|Non-2xx|Socket errors|requests in" <<<"$out"
    # CPU per request of the replica and of Postgres (all its processes), from /proc tick counts.
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v g=$(( $(cpu_ticks "$pid") - before_gofer )) -v p=$(( $(pg_ticks) - before_pg )) -v n="$requests" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "    cpu per request: gofer %.1f us, postgres %.1f us\n", g / hz / n * 1e6, p / hz / n * 1e6}'
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
measure "baseline (no auth, no database)" /health
measure "whoami (authentication only, no database when cached)" /api/v1/tokens/whoami -H "authorization: Bearer $token"
measure "GET one run (authenticated)" "$pipe/runs/$runs" -H "authorization: Bearer $token"
measure "list 50 runs (authenticated)" "$pipe/runs?limit=50" -H "authorization: Bearer $token"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rss after wrk: $(rss)"
sleep 5
echo "rss 5 s later: $(rss)"

#!/usr/bin/env bash
# The latency floor of the HTTP stack on this machine (issue 10; docs/benchmarks.md): wrk with the
# command bench/http.sh uses (-t2 -c16, 10 s rounds) against two minimal servers that answer a
# fixed 654-byte JSON body with no routing, middleware, auth or database
# (bench/src/bin/floor.rs): actix-web, as the replica, and hyper on tokio's work-stealing runtime.
# Rounds alternate between the two so that a busy minute hits both.
#
#   bench/floor.sh [--rounds 4] [--duration 10]
#
# Build first: cargo build --release -p gofer-bench (FLOOR_BIN overrides the binary).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rounds=4
duration=10
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
BIN=${FLOOR_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/floor}
[ -x "$BIN" ] || { echo "no release binary at $BIN: cargo build --release -p gofer-bench" >&2; exit 1; }

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$BIN" --server actix --listen 127.0.0.1:24481 & pids+=($!)
"$BIN" --server hyper --listen 127.0.0.1:24482 & pids+=($!)
for port in 24481 24482; do
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
    wrk -t2 -c16 -d2s "http://127.0.0.1:$port/" >/dev/null # warm-up
done
round() { wrk -t2 -c16 -d"${duration}s" --latency "$1" | awk '/ 99%/ {p99 = $2} /Requests\/sec/ {rps = $2} END {printf "p99 %-8s %9s req/s", p99, rps}'; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$rounds"); do
    echo "round $i  actix-web: $(round http://127.0.0.1:24481/)   hyper: $(round http://127.0.0.1:24482/)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

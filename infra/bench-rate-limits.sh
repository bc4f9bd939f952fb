#!/bin/bash
# Usage: infra/bench-rate-limits.sh (a release build first: cargo build --release -p gofer-cli; GOFER_BIN, GOFER_BENCH_ADMIN_URL override the binary and the Postgres admin URL).
# Authenticated GET rps/p99 with rate limiting on vs off, against a release `gofer service start`.
set -e
command -v wrk >/dev/null || apt-get install -y wrk
BIN=${GOFER_BIN:-${CARGO_TARGET_DIR:-target}/release/gofer}
ADMIN=${GOFER_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:54404/postgres}
BASE=${ADMIN%/*}
run() {
  local label=$1 enabled=$2
  local db=bench_billing_$label
  psql $ADMIN -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
  local dir=$(mktemp -d); chmod 755 $dir
  GOFER_DATABASE_URL=$BASE/$db GOFER_STATE_DIR=$dir GOFER_LISTEN=127.0.0.1:18091 \
  GOFER_BOOTSTRAP_TOKEN=gofer_bench_operator_token_0123456789abcdef GOFER_LOG_LEVEL=error \
  GOFER_RATE_LIMITS__ENABLED=$enabled GOFER_RATE_LIMITS__PER_TOKEN_PER_MINUTE=1000000000 \
  $BIN service start >$dir/server.log 2>&1 &
  local pid=$!
  for i in $(seq 1 50); do curl -sf http://127.0.0.1:18091/ready >/dev/null && break; sleep 0.2; done
  psql $BASE/$db -qc "UPDATE plans SET requests_per_minute = 1000000000"
  local token=$(curl -sf -X POST http://127.0.0.1:18091/api/v1/tenants -H "authorization: Bearer gofer_bench_operator_token_0123456789abcdef" -H 'content-type: application/json' -d '{"id":"bench","name":"b"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -sf -X POST http://127.0.0.1:18091/api/v1/namespaces -H "authorization: Bearer $token" -H 'content-type: application/json' -d '{"id":"builds","name":"B"}' >/dev/null
  wrk -t2 -c16 -d5s -H "authorization: Bearer $token" http://127.0.0.1:18091/api/v1/namespaces/builds >/dev/null  # warm-up
  for rep in 1 2; do
    echo "== $label rep $rep"
    wrk -t2 -c16 -d10s --latency -H "authorization: Bearer $token" http://127.0.0.1:18091/api/v1/namespaces/builds | grep -E "Requests/sec|99%|Non-2xx|50%"
  done
  kill $pid; wait $pid 2>/dev/null || true
  psql $ADMIN -qc "DROP DATABASE IF EXISTS $db" || true
}
run on true
run off false
run on2 true
run off2 false

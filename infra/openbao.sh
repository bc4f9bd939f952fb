#!/usr/bin/env bash
# A private OpenBao (Vault-compatible) server for tests and development, KV v2 mounted at
# `secret/`, usable with the token `root` (or --token). Installed by infra/deps.sh.
#   infra/openbao.sh start --dir DIR [--port 8209] [--token root] [--file]   prints the address
#   infra/openbao.sh stop --dir DIR        SIGTERM
#   infra/openbao.sh kill --dir DIR        SIGKILL (fault tests: a crash, no clean shutdown)
# Default: a dev server, in memory (gone when stopped). With --file: a real server keeping its
# data on disk under DIR/data (integrated "raft" storage, single node: OpenBao 2 has no "file"
# backend; tcp listener on loopback, TLS off; cluster port PORT+1), initialised once with one unseal key
# (kept in DIR/init.json), KV v2 enabled at `secret/` and a root-policy token whose id is --token.
# Starting it again on the same DIR (after a stop or kill) keeps the data and unseals it.
set -euo pipefail

cmd=${1:-}; shift || true
dir=""; port=8209; token=root; file=false
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        --file) file=true; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || { echo "usage: $0 start|stop|kill --dir DIR [--port PORT] [--token TOKEN] [--file]" >&2; exit 2; }
bao="${GOFER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gofer}/openbao-2.7.2/bin/bao"
addr="http://127.0.0.1:$port"

# Whether process $1 lives (a killed one not reaped yet is a zombie: gone).
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
running() { [ -f "$dir/bao.pid" ] && alive "$(cat "$dir/bao.pid")"; }

# Waits until the server answers /v1/sys/health with any status (sealed and uninitialised
# servers answer 5xx), or gives up after 10 s showing its log.
wait_listening() {
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$addr/v1/sys/health" || true)
        [ "$code" != "000" ] && return 0
        running || break
        sleep 0.1
    done
    echo "OpenBao did not start; its log:" >&2; cat "$dir/log" >&2; exit 1
}

# A field of DIR/init.json (the first element of a list); python3 is there: deps.sh installs bao
# through pip.
init_field() {
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(v[0] if isinstance(v, list) else v)' "$dir/init.json" "$1"
}

unseal() {
    curl -sf -X PUT -d "{\"key\": \"$(init_field keys_base64)\"}" "$addr/v1/sys/unseal" >/dev/null
}

start_file() {
    mkdir -p "$dir/data"
    cat >"$dir/config.hcl" <<EOF
storage "raft" {
  path    = "$dir/data"
  node_id = "gofer-test"
  # Election and heartbeat in about a second instead of five: a single node elects itself.
  performance_multiplier = 1
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr     = "$addr"
cluster_addr = "http://127.0.0.1:$((port + 1))"
ui           = false
EOF
    setsid "$bao" server -config="$dir/config.hcl" >>"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/bao.pid"
    wait_listening
    # Through the HTTP API (curl): each `bao` CLI call starts a Python wrapper first.
    if [ ! -s "$dir/init.json" ]; then
        curl -sf -X PUT -d '{"secret_shares": 1, "secret_threshold": 1}' "$addr/v1/sys/init" >"$dir/init.json.tmp"
        mv "$dir/init.json.tmp" "$dir/init.json"
        unseal
        root=$(init_field root_token)
        for _ in $(seq 100); do
            curl -sf -H "X-Vault-Token: $root" "$addr/v1/sys/mounts" >/dev/null && break
            sleep 0.1
        done
        curl -sf -H "X-Vault-Token: $root" -X POST -d '{"type": "kv", "options": {"version": "2"}}' \
            "$addr/v1/sys/mounts/secret"
        curl -sf -H "X-Vault-Token: $root" -X POST -d "{\"id\": \"$token\", \"policies\": [\"root\"]}" \
            "$addr/v1/auth/token/create-orphan" >/dev/null
    else
        unseal
    fi
    # Active (unsealed, leader) once health answers 200.
    for _ in $(seq 100); do
        curl -sf "$addr/v1/sys/health" >/dev/null && { echo "$addr"; exit 0; }
        sleep 0.1
    done
    echo "OpenBao did not unseal; its log:" >&2; cat "$dir/log" >&2; exit 1
}

case "$cmd" in
    start)
        [ -x "$bao" ] || "$(dirname "$0")/deps.sh"
        mkdir -p "$dir"
        if running; then
            echo "$addr"; exit 0
        fi
        if $file; then
            start_file
        fi
        # Its own session, so the caller's terminal signals do not reach it; stop kills it by pid.
        setsid "$bao" server -dev -dev-root-token-id="$token" -dev-listen-address="127.0.0.1:$port" \
            >"$dir/log" 2>&1 </dev/null &
        echo $! >"$dir/bao.pid"
        for _ in $(seq 100); do
            if curl -sf "$addr/v1/sys/health" >/dev/null; then
                echo "$addr"; exit 0
            fi
            running || break
            sleep 0.1
        done
        echo "OpenBao did not start; its log:" >&2; cat "$dir/log" >&2; exit 1 ;;
    stop|kill)
        if [ -f "$dir/bao.pid" ]; then
            signal=TERM; [ "$cmd" = kill ] && signal=KILL
            pid=$(cat "$dir/bao.pid")
            kill -s "$signal" "$pid" 2>/dev/null || true
            # Gone before returning, so a restart can bind the port again.
            for _ in $(seq 100); do alive "$pid" || break; sleep 0.05; done
            rm -f "$dir/bao.pid"
        fi ;;
    *) echo "usage: $0 start|stop|kill --dir DIR" >&2; exit 2 ;;
esac

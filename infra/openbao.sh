#!/usr/bin/env bash
# A private OpenBao (Vault-compatible) dev server for tests and development: in-memory, KV v2
# mounted at `secret/`, root token `root` (or --token). Installed by infra/deps.sh.
#   infra/openbao.sh start --dir DIR [--port 8209] [--token root]   prints the address
#   infra/openbao.sh stop --dir DIR
set -euo pipefail

cmd=${1:-}; shift || true
dir=""; port=8209; token=root
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || { echo "usage: $0 start|stop --dir DIR [--port PORT] [--token TOKEN]" >&2; exit 2; }
bao="${GOFER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gofer}/openbao-2.7.2/bin/bao"

case "$cmd" in
    start)
        [ -x "$bao" ] || "$(dirname "$0")/deps.sh"
        mkdir -p "$dir"
        if [ -f "$dir/bao.pid" ] && kill -0 "$(cat "$dir/bao.pid")" 2>/dev/null; then
            echo "http://127.0.0.1:$port"; exit 0
        fi
        # Its own session, so the caller's terminal signals do not reach it; stop kills it by pid.
        setsid "$bao" server -dev -dev-root-token-id="$token" -dev-listen-address="127.0.0.1:$port" \
            >"$dir/log" 2>&1 </dev/null &
        echo $! >"$dir/bao.pid"
        for _ in $(seq 100); do
            if curl -sf "http://127.0.0.1:$port/v1/sys/health" >/dev/null; then
                echo "http://127.0.0.1:$port"; exit 0
            fi
            kill -0 "$(cat "$dir/bao.pid")" 2>/dev/null || break
            sleep 0.1
        done
        echo "OpenBao did not start; its log:" >&2; cat "$dir/log" >&2; exit 1 ;;
    stop)
        if [ -f "$dir/bao.pid" ]; then
            kill "$(cat "$dir/bao.pid")" 2>/dev/null || true
            rm -f "$dir/bao.pid"
        fi ;;
    *) echo "usage: $0 start|stop --dir DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Starts or stops a private s3s-fs server (a real S3 API over a directory) for tests and
# benchmarks. Credentials AKIDTEST/SECRETTEST, path-style addressing.
#   infra/s3.sh start --dir DIR --port PORT   (prints the endpoint URL once it answers)
#   infra/s3.sh stop --dir DIR
set -euo pipefail

cmd=${1:-}; shift || true
dir=""; port=9310
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || { echo "--dir is required" >&2; exit 2; }

case "$cmd" in
    start)
        command -v s3s-fs >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
        mkdir -p "$dir/data"
        if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "http://127.0.0.1:$port"; exit 0
        fi
        s3s-fs --host 127.0.0.1 --port "$port" --access-key AKIDTEST --secret-key SECRETTEST "$dir/data" \
            >"$dir/log" 2>&1 &
        echo $! >"$dir/pid"
        for _ in $(seq 1 100); do
            # Any HTTP answer (403 without a signature) means it is up.
            if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
                echo "http://127.0.0.1:$port"; exit 0
            fi
            sleep 0.1
        done
        echo "s3s-fs did not start; see $dir/log" >&2; exit 1 ;;
    stop)
        if [ -f "$dir/pid" ]; then
            kill "$(cat "$dir/pid")" 2>/dev/null || true
            rm -f "$dir/pid"
        fi ;;
    *) echo "usage: infra/s3.sh start|stop --dir DIR [--port PORT]" >&2; exit 2 ;;
esac

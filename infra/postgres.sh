#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for Gofer: its own data directory and port, loopback only.
#
#   infra/postgres.sh start   [--dir DIR] [--port PORT] [--db NAME] [--fast]   # idempotent; prints the URL
#   infra/postgres.sh stop    [--dir DIR]
#   infra/postgres.sh status  [--dir DIR]
#   infra/postgres.sh url     [--port PORT] [--db NAME]
#
# Defaults: DIR=$GOFER_STATE_DIR/postgres (GOFER_STATE_DIR defaults to ./.gofer), PORT=54329,
# NAME=gofer. --fast turns fsync off (tests only: a crash can lose data).
# As root, initdb and postgres refuse to run, so they run as the `postgres` user.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
shift || true
dir="${GOFER_STATE_DIR:-./.gofer}/postgres"
port=${GOFER_PG_PORT:-54329}
db=gofer
fast=0
while [ $# -gt 0 ]; do
    case "$1" in
        # An empty --dir (a failed mktemp) would make the caller's working directory the data
        # directory and hand it to the postgres user.
        --dir) [ -n "${2:-}" ] || { echo "--dir needs a directory" >&2; exit 2; }; dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --db) db=$2; shift 2 ;;
        --fast) fast=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
# The postgres user may not be able to enter the caller's directory; nothing below needs it.
cd /

AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi
url="postgres://postgres@127.0.0.1:${port}/${db}"

# The server runs as `postgres`, which must reach the data directory; under a private home
# (/root is 0700) it cannot, so the data then lives under /var/lib/gofer-postgres and the state
# dir holds a symlink to it.
resolve_dir() {
    if [ -L "$dir" ]; then dir=$(readlink -f "$dir"); return; fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if [ ${#AS[@]} -gt 0 ]; then
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -x "$dir"; then
            local alt
            alt=/var/lib/gofer-postgres/$(printf '%s' "$dir" | sha256sum | cut -c1-16)
            mkdir -p "$alt"
            chown postgres: "$alt"
            rmdir "$dir"
            ln -s "$alt" "$dir"
            dir=$alt
        fi
    fi
}

running() {
    [ -f "$dir/data/PG_VERSION" ] && "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

case "$cmd" in
    start)
        [ -x "$PGBIN/initdb" ] || "$here/deps.sh"
        resolve_dir
        if [ ! -f "$dir/data/PG_VERSION" ]; then
            "${AS[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
        fi
        if ! running; then
            opts="-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=300"
            [ "$fast" = 1 ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start -o "$opts" >/dev/null
        fi
        if ! "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
            "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
        fi
        echo "$url"
        ;;
    stop)
        [ -L "$dir" ] && dir=$(readlink -f "$dir")
        if running; then "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; fi
        ;;
    status)
        [ -L "$dir" ] && dir=$(readlink -f "$dir")
        if running; then echo "running: $url"; else echo "stopped"; exit 3; fi
        ;;
    url)
        echo "$url"
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac

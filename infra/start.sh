#!/usr/bin/env bash
# Sets up and runs the service on embedded defaults: private Postgres, local sandbox scheduler,
# local log store, all under the state dir (GOFER_STATE_DIR, default ./.gofer). Prints the URL
# and, on first start, the bootstrap operator token. Stop with Ctrl-C; `infra/postgres.sh stop`
# stops the database.
set -euo pipefail
cd "$(dirname "$0")/.."

infra/deps.sh
export GOFER_STATE_DIR=${GOFER_STATE_DIR:-./.gofer}
mkdir -p "$GOFER_STATE_DIR"
# As root, tasks run as uid 65534, which must enter its work directory; under a private home
# (/root is 0700) it cannot, so the sandbox then works under /var/lib/gofer instead.
if [ "$(id -u)" = 0 ] && [ -z "${GOFER_SANDBOX__WORK_DIR:-}" ] \
    && ! setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$GOFER_STATE_DIR" 2>/dev/null; then
    abs=$(cd "$GOFER_STATE_DIR" && pwd -P)
    export GOFER_SANDBOX__WORK_DIR=/var/lib/gofer/sandbox-$(printf '%s' "$abs" | sha256sum | cut -c1-16)
    mkdir -p "$GOFER_SANDBOX__WORK_DIR"
fi
export GOFER_DATABASE_URL=${GOFER_DATABASE_URL:-$(infra/postgres.sh start)}
cargo build --release --locked -p gofer-cli
exec target/release/gofer service start "$@"

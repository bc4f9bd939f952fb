#!/usr/bin/env bash
# Sets up and runs the service on embedded defaults: private Postgres, local sandbox scheduler,
# local log store, all under the state dir (GOFER_STATE_DIR, default ./.gofer). Prints the URL
# and, on first start, the bootstrap operator token. Stop with Ctrl-C; `infra/postgres.sh stop`
# stops the database.
set -euo pipefail
cd "$(dirname "$0")/.."

infra/deps.sh
export GOFER_STATE_DIR=${GOFER_STATE_DIR:-./.gofer}
export GOFER_DATABASE_URL=${GOFER_DATABASE_URL:-$(infra/postgres.sh start)}
cargo build --release --locked -p gofer-cli
exec target/release/gofer service start "$@"

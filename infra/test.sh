#!/usr/bin/env bash
# Sets up and runs every test: installs what is missing, starts a private Postgres cluster for
# this run (one fresh database per test is created inside it) and an OpenBao dev server (the
# secret store tests; each test uses a path prefix of its own), runs the whole workspace's tests,
# and stops both. Usage: infra/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

infra/deps.sh
# Schemathesis, the API fuzzer of the contract test (tests/tests/it/contract.rs), pinned; only the
# tests need it, so it is installed here rather than by deps.sh.
st_venv="${GOFER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gofer}/schemathesis-4.32.5"
if [ ! -x "$st_venv/bin/st" ]; then
    echo "installing Schemathesis 4.32.5 into $st_venv" >&2
    rm -rf "$st_venv"
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi


pg_dir=$(mktemp -d /tmp/gofer-test-pg.XXXXXX)
pg_port=${GOFER_TEST_PG_PORT:-54339}
bao_dir="$pg_dir/openbao"
bao_port=${GOFER_TEST_VAULT_PORT:-8209}
s3_dir=$(mktemp -d /tmp/gofer-test-s3.XXXXXX)
s3_port=${GOFER_TEST_S3_PORT:-9339}
cleanup() {
    infra/openbao.sh stop --dir "$bao_dir" || true
    infra/s3.sh stop --dir "$s3_dir" || true
    infra/postgres.sh stop --dir "$pg_dir" || true
    rm -rf "$pg_dir" "$s3_dir"
}
trap cleanup EXIT
infra/postgres.sh start --dir "$pg_dir" --port "$pg_port" --db postgres --fast >/dev/null
export GOFER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${pg_port}/postgres"
GOFER_TEST_VAULT_ADDR=$(infra/openbao.sh start --dir "$bao_dir" --port "$bao_port" --token root)
export GOFER_TEST_VAULT_ADDR GOFER_TEST_VAULT_TOKEN=root
# A real S3 server for the object store tests (each test uses a bucket of its own).
GOFER_TEST_S3_ENDPOINT=$(infra/s3.sh start --dir "$s3_dir" --port "$s3_port")
export GOFER_TEST_S3_ENDPOINT GOFER_TEST_S3_ACCESS_KEY=AKIDTEST GOFER_TEST_S3_SECRET_KEY=SECRETTEST
export GOFER_TEST_S3_DATA_DIR="$s3_dir/data"
export GOFER_TEST_SCHEMATHESIS="$st_venv/bin/st"

# Lints first: they are quick and fail early.
cargo fmt --all --check
cargo clippy --workspace --tests --locked -- -D warnings
# No two files of a crate import each other (issue 21; infra/import-cycles.py says which do).
python3 infra/import-cycles.py
# Four test threads on two cores: the integration tests mostly wait (on Postgres, the sandbox,
# the scheduler double), so twice the cores runs the one test binary in about two thirds of the
# time (docs/benchmarks.md, "CI wall time"); RUST_TEST_THREADS set by the caller wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked "$@"

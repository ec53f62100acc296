#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need when it is missing, checks
# formatting and lints, then runs every test of the workspace. Fails loudly; never skips.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# A clean build of the tests takes about 3 GiB (dependencies without debug info, no incremental
# state); a disk that cannot hold it fails here, by name, not as a linker crash half-way.
export CARGO_INCREMENTAL=0
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
echo "disk: $((free_kib / 1024 / 1024)) GiB free where the build goes"
if [ "$free_kib" -lt $((4 * 1024 * 1024)) ]; then
    echo "less than 4 GiB free: the test build would not fit; free some space first" >&2
    exit 1
fi

step "Python environment for the JupyterHub compatibility test"
EDGEHUB_PYENV="$(bash scripts/ensure-pyenv.sh | tail -n1)"
export EDGEHUB_PYENV

step "Python environment for JupyterHub 6's own proxy test suite"
EDGEHUB_PYENV_JH6="$(bash scripts/ensure-pyenv.sh jupyterhub6 | tail -n1)"
export EDGEHUB_PYENV_JH6

step "configurable-http-proxy (the monolith of bench/seed-ab.sh, whose quick run is a test)"
# The pinned version, installed with npm into ~/.cache/edgehub/chp when missing (bench/lib/common.sh).
EDGEHUB_CHP="$(bash -c 'set -euo pipefail; log() { echo "$*" >&2; }; die() { echo "error: $*" >&2; exit 1; }
    . bench/lib/common.sh; ensure_chp; echo "$CHP_BIN"')"
export EDGEHUB_CHP

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    step "Installing redis-server (the edge-auth tests start real ones)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "redis-server is missing and installing it needs root: apt-get install redis-server" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    command -v redis-server >/dev/null || { echo "redis-server install failed" >&2; exit 1; }
    # The tests start their own servers (on UNIX sockets); the packaged service is not needed.
    (service redis-server stop || systemctl stop redis-server) >/dev/null 2>&1 || true
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    step "Installing PostgreSQL (the state-store tests start real servers, as an unprivileged user)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL is missing and installing it needs root: apt-get install postgresql" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "postgresql install failed" >&2; exit 1; }
    # The tests start their own clusters in temp directories; the packaged one is not needed.
    (service postgresql stop || systemctl stop postgresql) >/dev/null 2>&1 || true
fi

if [ ! -x /usr/sbin/slapd ] || ! command -v ldapsearch >/dev/null 2>&1; then
    step "Installing slapd and ldap-utils (the LDAP sign-in tests start real OpenLDAP servers)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "slapd or ldapsearch is missing and installing them needs root: apt-get install slapd ldap-utils" >&2
        exit 1
    fi
    apt-get update -qq
    # The package would otherwise ask for an admin password and build a directory of its own;
    # the tests make theirs (tests/support/slapd.rs), so its configuration is skipped.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null
    { [ -x /usr/sbin/slapd ] && command -v ldapsearch; } >/dev/null || { echo "slapd or ldap-utils install failed" >&2; exit 1; }
    (service slapd stop || systemctl stop slapd) >/dev/null 2>&1 || true
fi

if [ ! -x /usr/sbin/nginx ]; then
    step "Installing nginx-light (the rolling-restart test puts it in front of two hubs, as a Service)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "nginx is missing and installing it needs root: apt-get install nginx-light" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    [ -x /usr/sbin/nginx ] || { echo "nginx-light install failed" >&2; exit 1; }
    (service nginx stop || systemctl stop nginx) >/dev/null 2>&1 || true
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    step "Installing chromium and chromedriver (the hub's page tests drive a headless browser)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium or chromedriver is missing and installing them needs root: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    { command -v chromium && command -v chromedriver; } >/dev/null || { echo "chromium or chromedriver install failed" >&2; exit 1; }
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    step "Installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

step "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "Lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "Tests (cargo nextest)"
cargo nextest run --workspace --no-fail-fast

# The hub's tests once more with its state in PostgreSQL instead of SQLite: every test's hub
# gets a database of its own on a server the test process starts (tests/support/postgres.rs).
# Left out: the tests that choose their backends themselves, and the manifests' checks.
step "The hub's tests on PostgreSQL state (EDGEHUB_TEST_STATE=postgres)"
EDGEHUB_TEST_STATE=postgres cargo nextest run -p hub-core --no-fail-fast \
    -E 'not (binary(state_store) | binary(several_hubs) | binary(deploy_manifests))'

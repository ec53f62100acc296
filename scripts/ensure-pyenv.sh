#!/usr/bin/env bash
# Create (or reuse) a Python venv of the tests that run Python tools. Two of them:
#   (default)    JupyterHub 5 for the compatibility test proxy/tests/jupyterhub/run_hub_test.py,
#                the idle culler, kubernetes-validate: proxy/tests/jupyterhub/requirements.txt
#   jupyterhub6  JupyterHub 6 and pytest, to run its own proxy test suite against edgeproxy:
#                proxy/tests/jupyterhub6/requirements.txt
#
#   bash scripts/ensure-pyenv.sh [jupyterhub6]   # prints the venv path as the last stdout line
#   PYENV=$(bash scripts/ensure-pyenv.sh | tail -n1)
#
# Environment:
#   EDGEHUB_PYENV       the default venv's location (default: $HOME/.cache/edgehub/pyenv)
#   EDGEHUB_PYENV_JH6   the jupyterhub6 venv's location (default: $HOME/.cache/edgehub/pyenv-jupyterhub6)
#   EDGEHUB_PYTHON      interpreter used to create them (default: python3)
#
# Idempotent: the venv is (re)built from scratch only when it is missing, broken,
# or when requirements.txt (or the interpreter version) changed since the last
# successful install. A hash stamp inside the venv records that install.
# All progress output goes to stderr; stdout carries only the venv path.
set -euo pipefail

log() { printf 'ensure-pyenv: %s\n' "$*" >&2; }
die() { printf 'ensure-pyenv: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "ensure-pyenv: ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PYTHON="${EDGEHUB_PYTHON:-python3}"
STAMP_NAME=".edgehub-requirements.sha256"
case "${1:-default}" in
default)
    REQUIREMENTS="$REPO_ROOT/proxy/tests/jupyterhub/requirements.txt"
    VENV="${EDGEHUB_PYENV:-${HOME:?HOME is not set; set EDGEHUB_PYENV}/.cache/edgehub/pyenv}"
    # Modules and scripts that must be usable for the venv to count as complete.
    CHECK_IMPORTS='import jupyterhub, jupyter_server, ipykernel, requests, tornado, jupyterhub_idle_culler, kubernetes_validate'
    EXES="jupyterhub jupyterhub-singleuser kubernetes-validate"
    ;;
jupyterhub6)
    REQUIREMENTS="$REPO_ROOT/proxy/tests/jupyterhub6/requirements.txt"
    VENV="${EDGEHUB_PYENV_JH6:-${HOME:?HOME is not set; set EDGEHUB_PYENV_JH6}/.cache/edgehub/pyenv-jupyterhub6}"
    CHECK_IMPORTS='import jupyterhub.tests.test_proxy, pytest, pytest_asyncio, requests_mock'
    EXES="jupyterhub pytest"
    ;;
*) die "unknown venv '$1' (known: default, jupyterhub6)" ;;
esac

[ -f "$REQUIREMENTS" ] || die "requirements file not found: $REQUIREMENTS"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found on PATH (install python3, or set EDGEHUB_PYTHON)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"

PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') \
    || die "'$PYTHON' does not run"
case "$PY_VERSION" in
    3.[0-8].*) die "python >= 3.9 is required (found $PY_VERSION at $(command -v "$PYTHON"))" ;;
esac

# Absolute venv path (it is printed and used by callers from other directories).
case "$VENV" in
    /*) ;;
    *) VENV="$PWD/$VENV" ;;
esac
mkdir -p "$(dirname "$VENV")" || die "cannot create $(dirname "$VENV")"

# Serialise concurrent runs (e.g. two test jobs on one machine).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV.lock" || die "cannot open lock file $VENV.lock"
    flock -w 900 9 || die "timed out waiting for lock $VENV.lock"
fi

WANT=$({ printf 'edgehub-pyenv-v1\npython %s\n' "$PY_VERSION"; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)
STAMP="$VENV/$STAMP_NAME"

venv_ok() {
    [ -x "$VENV/bin/python" ] || return 1
    [ -f "$STAMP" ] || return 1
    [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] || return 1
    for exe in $EXES; do [ -x "$VENV/bin/$exe" ] || return 1; done
    "$VENV/bin/python" -c "$CHECK_IMPORTS" >/dev/null 2>&1 || return 1
}

if venv_ok; then
    log "venv is up to date: $VENV"
    echo "$VENV"
    exit 0
fi

# Never wipe a directory that is not a venv.
if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
    if [ -d "$VENV" ] && [ -z "$(ls -A "$VENV")" ]; then
        :
    else
        die "$VENV exists but is not a Python venv; remove it or set EDGEHUB_PYENV"
    fi
fi

install_venv_support() {
    # Debian/Ubuntu ship venv/ensurepip separately (python3-venv).
    if [ "$(id -u)" != 0 ]; then
        die "'$PYTHON -m venv' does not work; install the python3-venv package (apt-get install python3-venv) as root"
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "'$PYTHON -m venv' does not work and apt-get is not available to install python3-venv"
    local minor pkgs
    minor=${PY_VERSION%.*}
    pkgs="python3-venv"
    log "python venv support missing; installing $pkgs (+ python$minor-venv if available) with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
    if apt-cache show "python$minor-venv" >/dev/null 2>&1; then
        pkgs="$pkgs python$minor-venv"
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-upgrade $pkgs >&2 \
        || die "apt-get install $pkgs failed"
}

create_venv() {
    "$PYTHON" -m venv --clear "$VENV" >&2
}

rm -f "$STAMP"
log "creating venv at $VENV with $(command -v "$PYTHON") ($PY_VERSION)"
if ! create_venv; then
    log "'$PYTHON -m venv' failed; trying to install venv support"
    rm -rf "$VENV"
    install_venv_support
    create_venv || die "'$PYTHON -m venv --clear $VENV' failed even after installing python3-venv"
fi
[ -x "$VENV/bin/python" ] || die "venv at $VENV has no bin/python"
"$VENV/bin/python" -m pip --version >/dev/null 2>&1 \
    || die "venv at $VENV has no working pip (is python3-venv / ensurepip installed?)"

log "installing $REQUIREMENTS"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -r "$REQUIREMENTS" >&2 \
    || die "pip install -r $REQUIREMENTS failed (see output above)"

"$VENV/bin/python" -c "$CHECK_IMPORTS" >&2 \
    || die "installed venv is unusable: '$CHECK_IMPORTS' failed"
for exe in $EXES; do
    [ -x "$VENV/bin/$exe" ] || die "installed venv lacks bin/$exe"
done

printf '%s\n' "$WANT" > "$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP" || die "cannot write stamp $STAMP"
log "venv ready: $VENV"
echo "$VENV"

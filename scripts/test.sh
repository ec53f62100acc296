#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need when it is missing, checks
# formatting and lints, then runs every test of the workspace. Fails loudly; never skips.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python environment for the JupyterHub compatibility test"
EDGEHUB_PYENV="$(bash scripts/ensure-pyenv.sh | tail -n1)"
export EDGEHUB_PYENV

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

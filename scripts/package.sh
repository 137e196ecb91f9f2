#!/usr/bin/env bash
# Builds sockchat's Debian package: the release binary, its manual pages
# and shell completions, the systemd unit and an example config, with
# cargo-deb (installed when missing). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --quiet
fi
cargo build --release --locked --quiet
bin=target/release/sockchat
rm -rf target/package
mkdir -p target/package/man target/package/completions
"$bin" man >target/package/man/sockchat.1
for command in serve connect bench man completions; do
    "$bin" man "$command" >"target/package/man/sockchat-$command.1"
done
"$bin" completions bash >target/package/completions/sockchat.bash
"$bin" completions zsh >target/package/completions/_sockchat
"$bin" completions fish >target/package/completions/sockchat.fish
cargo deb --no-build --locked --quiet
ls -t target/debian/sockchat_*.deb | head -1

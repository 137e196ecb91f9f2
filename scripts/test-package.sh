#!/usr/bin/env bash
# The Debian package, end to end on this machine: build it, check its
# systemd unit, install it with dpkg, chat through the installed server
# (loopback only), read its manual, remove it, and check it is gone.
# Run by scripts/test.sh; needs root (or sudo) for dpkg.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if dpkg -s sockchat >/dev/null 2>&1; then
    echo "test-package: a sockchat package is installed already; not touching it" >&2
    exit 1
fi
deb=$(./scripts/package.sh | tail -1)
echo "test-package: built $deb"

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    $sudo dpkg -r sockchat >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

$sudo dpkg -i "$deb" >/dev/null
for path in /usr/bin/sockchat /usr/share/man/man1/sockchat.1.gz \
    /usr/share/man/man1/sockchat-serve.1.gz /usr/share/bash-completion/completions/sockchat \
    /usr/lib/systemd/system/sockchat.service /usr/share/doc/sockchat/examples/config.toml \
    /usr/share/doc/sockchat/copyright; do
    [ -e "$path" ] || { echo "test-package: $path was not installed" >&2; exit 1; }
done
# The unit, checked as systemd reads it (its binary now exists).
man_check=no
command -v man >/dev/null 2>&1 && man_check=yes
systemd-analyze verify --man="$man_check" /usr/lib/systemd/system/sockchat.service
# The installed manual renders without a warning.
zcat /usr/share/man/man1/sockchat-serve.1.gz | groff -man -ww -z
# The example config is a config the server accepts.
/usr/bin/sockchat serve --config /usr/share/doc/sockchat/examples/config.toml \
    --no-history --print-config >/dev/null

# The installed server chats: a welcome, and a message said and echoed.
/usr/bin/sockchat serve --tcp 127.0.0.1:0 --udp off --web off --tls off --irc off --irc-tls off --db "$work/history.db" \
    </dev/null >"$work/out" 2>"$work/log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening tcp" "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening tcp //p' "$work/out")
[ -n "$addr" ] || { echo "test-package: the server did not start" >&2; cat "$work/log" >&2; exit 1; }
said=$(echo "hello from the package" | /usr/bin/sockchat connect "$addr" --nick pkg)
echo "$said" | grep -qx "\[lobby\] pkg: hello from the package" \
    || { echo "test-package: no echo; the client saw: $said" >&2; exit 1; }
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""

$sudo dpkg -r sockchat >/dev/null
for path in /usr/bin/sockchat /usr/lib/systemd/system/sockchat.service; do
    [ ! -e "$path" ] || { echo "test-package: $path is still there after dpkg -r" >&2; exit 1; }
done
echo "test-package: installed, ran, removed: ok"

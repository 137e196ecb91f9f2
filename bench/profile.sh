#!/usr/bin/env bash
# Where the server's instructions go under scenario A (100 clients, 10
# closed-loop senders), with history on and off: instructions per delivery
# counted by callgrind, so the figures do not depend on a noisy machine.
# Loopback only; each run is bounded (DURATION seconds of load).
#
#   bench/profile.sh            # both variants
#   DURATION=5 bench/profile.sh
#   SERVER=/tmp/sockchat-old bench/profile.sh   # profile another build (the
#                                               # load is still this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

command -v valgrind >/dev/null || install_missing valgrind
cargo build --release --quiet
BIN=$PWD/target/release/sockchat
SERVER=${SERVER:-$BIN}
DURATION=${DURATION:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

profile() {
    local name=$1
    shift
    local port
    port=$(free_port)
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
        "$SERVER" serve --tcp "127.0.0.1:$port" --udp off --web off --tls off --irc off --irc-tls off --max-rate 0 --max-per-ip 0 \
        --max-clients 0 "$@" </dev/null >/dev/null 2>"$work/$name.log" &
    local pid=$!
    # Valgrind starts slowly.
    wait_for_port "$port" 300
    taskset -c 1 "$BIN" bench "127.0.0.1:$port" --greeting --clients 100 --senders 10 --rate 0 \
        --duration "$DURATION" --json >"$work/$name.json" || [ $? -eq 3 ]
    kill -INT "$pid"
    wait "$pid" || true
    callgrind_annotate --threshold=100 "$work/$name.out" >"$work/$name.txt"
    python3 - "$name" "$work/$name.json" "$work/$name.txt" <<'PY'
import json, re, sys
name, report, annotated = sys.argv[1:]
deliveries = json.load(open(report))["deliveries_received"]
groups = {}
total = 0
for line in open(annotated):
    match = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
    if not match or "PROGRAM TOTALS" in line:
        continue
    count, symbol = int(match.group(1).replace(",", "")), match.group(2)
    if re.search(r"fts5|Fts5", symbol):
        group = "SQLite full-text index"
    elif re.search(r"sqlite|pcache|[Bb]tree|Vdbe|[Pp]ager|[Ww]al", symbol):
        group = "SQLite"
    elif "tokio" in symbol:
        group = "tokio (channels, wake-ups, I/O driver)"
    elif "sockchat::" in symbol:
        group = "sockchat"
    elif re.search(r"malloc|free", symbol):
        group = "allocator"
    elif re.search(r"mem(cpy|move|cmp|set)", symbol):
        group = "memcpy and friends"
    else:
        group = "other"
    groups[group] = groups.get(group, 0) + count
    total += count
print(f"{name}: {deliveries} deliveries, {total / deliveries:.0f} instructions per delivery")
for group, count in sorted(groups.items(), key=lambda item: -item[1]):
    print(f"    {count / deliveries:6.0f}  {group}")
PY
}

profile "history on" --db "$work/history.db"
profile "history off" --no-history

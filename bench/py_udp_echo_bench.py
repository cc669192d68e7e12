#!/usr/bin/env python3
"""UDP echo from Python: an asyncio DatagramProtocol echo server
(bench/py_udp_echo_server.py) on stdlib asyncio, uvloop and evloop's asyncio
loop (its ctypes path and its native path, EVLOOP_IMPL), 64-byte datagrams from c-examples/udp_echo_client (20
clients, one datagram in flight each, every reply checked): the server's
user-space instructions per round trip under callgrind, the difference of
two loads, median of --repeat runs, PYTHONHASHSEED=0.

    cargo build --release && bench/py_udp_echo_bench.py [--rounds 500,1500] [--repeat 3] [--python PY]

uvloop comes from the venv of bench/asyncio_bench.py (made on first use).
"""
import argparse
import os
import statistics
import subprocess
from types import SimpleNamespace

import echo_bench  # bench/, beside this script
from asyncio_bench import venv_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench-py-udp")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", default="500,1500")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    parser.add_argument("--only", help="comma-separated loops (asyncio, uvloop, evloop-ctypes, evloop-native)")
    args = parser.parse_args()
    release = os.path.join(ROOT, "target", "release")
    os.makedirs(OUT, exist_ok=True)
    client_bin = os.path.join(OUT, "udp_echo_client")
    subprocess.run(["cc", "-std=c11", "-O2", "-I" + os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "c-examples", "udp_echo_client.c"), "-L" + release, "-levloop",
                    "-Wl,-rpath," + release, "-o", client_bin], check=True)
    python = venv_python(args.python)
    os.environ.update(PYTHONHASHSEED="0", EVLOOP_LIBRARY=os.path.join(release, "libevloop.so"))
    r1, r2 = (int(r) for r in args.rounds.split(","))
    trips = (r2 - r1) * args.conns
    client = f"{client_bin} --port {{port}} --conns {args.conns} --size 64 --rounds {{rounds}} --timeout 300 --quiet"
    rows = []
    for name in ("asyncio", "uvloop", "evloop-ctypes", "evloop-native"):
        if args.only and name not in args.only.split(","):
            continue
        loop_name, _, implementation = name.partition("-")
        os.environ["EVLOOP_IMPL"] = implementation or "ctypes"
        server = [python, os.path.join(ROOT, "bench", "py_udp_echo_server.py"), "--loop", loop_name]
        bench = SimpleNamespace(client=client, conns=args.conns, size=64, server=server)
        per_trip = []
        for _ in range(args.repeat):
            per_trip.append((echo_bench.instructions(bench, r2) - echo_bench.instructions(bench, r1)) / trips)
            print(f"{name}: {per_trip[-1]:.0f} instructions per round trip", flush=True)
        rows.append((name, statistics.median(per_trip), min(per_trip), max(per_trip)))
    print(f"\nmedians of {args.repeat}, {args.conns} clients, 64-byte datagrams, {trips} round trips between the loads")
    print("| server loop | instructions per round trip (range) |")
    print("|---|---|")
    for name, median, low, high in rows:
        print(f"| {name} | {median:,.0f} ({low:,.0f} to {high:,.0f}) |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""UDP echo, 64-byte datagrams, 20 clients each with one datagram in flight:
the server's user-space instructions per round trip (callgrind, at two loads,
the difference) and its syscalls per round trip (perf stat), for

  evloop     c-examples/udp_echo_server.c (recvmmsg batches, one
             evl_udp_send_batch per batch)
  libuv      bench/udp_echo_libuv.c: uv_udp_recv_start, uv_udp_try_send
  libuv-mmsg the same with UV_UDP_RECVMMSG
  raw        bench/udp_echo_raw.c: epoll_wait, recvmmsg, sendmmsg (the floor)
  raw-block  the same without epoll: a blocking recvmmsg, then sendmmsg

    bench/udp_echo_bench.py [--rounds 500,1000] [--repeat 3] [--conns 20] [--size 64]

Builds what it needs: the library with `cargo build --profile profiling`
(release with symbols), the servers against it with -O2, libuv's through
pkg-config (apt-get install libuv1-dev; the benchmark only, no test needs
it). The load is c-examples/udp_echo_client, which checks every reply.
Prints each measurement, then a table of medians.
"""
import argparse
import os
import statistics
import subprocess
import sys
from types import SimpleNamespace

import echo_bench  # bench/, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench-udp")


def build():
    subprocess.run(["cargo", "build", "--profile", "profiling", "-q"], cwd=ROOT, check=True)
    lib = os.path.join(ROOT, "target", "profiling")
    os.makedirs(OUT, exist_ok=True)
    cc = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-g"]
    evloop = ["-I" + os.path.join(ROOT, "include"), "-L" + lib, "-levloop", "-Wl,-rpath," + lib]
    for name in ["udp_echo_server", "udp_echo_client"]:
        subprocess.run(cc + [os.path.join(ROOT, "c-examples", name + ".c"), "-o", os.path.join(OUT, name)]
                       + evloop, check=True)
    subprocess.run(cc + [os.path.join(ROOT, "bench", "udp_echo_raw.c"), "-o", os.path.join(OUT, "udp_echo_raw")],
                   check=True)
    uv = subprocess.run(["pkg-config", "--cflags", "--libs", "libuv"], capture_output=True, text=True)
    if uv.returncode != 0:
        sys.exit("libuv not found: apt-get install libuv1-dev (for this benchmark only)")
    subprocess.run(cc + [os.path.join(ROOT, "bench", "udp_echo_libuv.c"), "-o", os.path.join(OUT, "udp_echo_libuv")]
                   + uv.stdout.split(), check=True)


def servers():
    return [
        ("evloop", [os.path.join(OUT, "udp_echo_server")]),
        ("libuv", [os.path.join(OUT, "udp_echo_libuv")]),
        ("libuv-mmsg", [os.path.join(OUT, "udp_echo_libuv"), "--recvmmsg"]),
        ("raw", [os.path.join(OUT, "udp_echo_raw")]),
        ("raw-block", [os.path.join(OUT, "udp_echo_raw"), "--blocking"]),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", default="500,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--only", help="comma-separated server names")
    args = parser.parse_args()
    build()
    r1, r2 = (int(r) for r in args.rounds.split(","))
    trips = (r2 - r1) * args.conns
    client = (f"{OUT}/udp_echo_client --port {{port}} --conns {args.conns} --size {args.size} "
              f"--rounds {{rounds}} --timeout 120 --quiet")
    rows = []
    for name, cmd in servers():
        if args.only and name not in args.only.split(","):
            continue
        bench = SimpleNamespace(client=client, conns=args.conns, size=args.size, server=cmd)
        per_trip, waits, others = [], [], []
        for _ in range(args.repeat):
            i1, i2 = echo_bench.instructions(bench, r1), echo_bench.instructions(bench, r2)
            per_trip.append((i2 - i1) / trips)
            (w1, s1), (w2, s2) = echo_bench.syscalls(bench, r1), echo_bench.syscalls(bench, r2)
            waits.append((w2 - w1) / trips)
            others.append(((s2 - w2) - (s1 - w1)) / trips)
            print(f"{name}: {per_trip[-1]:.1f} instructions, {others[-1]:.3f} syscalls besides waits, "
                  f"{waits[-1]:.3f} waits per round trip", flush=True)
        rows.append((name, statistics.median(per_trip), min(per_trip), max(per_trip),
                     statistics.median(others), statistics.median(waits)))
    print(f"\nmedians of {args.repeat}, {args.conns} clients, {args.size}-byte datagrams, "
          f"{trips} round trips between the two loads")
    print("| server | instructions per round trip (range) | syscalls per round trip besides waits | waits |")
    print("|---|---|---|---|")
    for name, med, low, high, other, wait in rows:
        print(f"| {name} | {med:.0f} ({low:.0f} to {high:.0f}) | {other:.3f} | {wait:.3f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""User-space instructions per echo round trip of asyncio servers on three
loops: the standard library's, uvloop's and evloop's (callgrind, difference
of two loads, median of several runs; see bench/echo_bench.py).

    bench/asyncio_bench.py [--repeat 5] [--rounds 100,200] [--conns 20] [--size 64]

Two servers (bench/asyncio_echo.py): Protocol echo (data_received ->
transport.write) and streams echo (await reader.read(1000), writer.write,
await writer.drain()). The load is c-examples' echo_client: 20 connections,
64-byte messages, one in flight each; 100 and 200 rounds are 2,000 and
4,000 round trips. uvloop is pip-installed into target/bench-venv (made on
first use, from the python3 running this script); every loop runs on that
venv's python, the same binary. Needs valgrind, and target/echo_client and
target/release/libevloop.so built (the README's commands).
"""
import argparse
import os
import statistics
import subprocess
import sys

from echo_bench import instructions  # bench/, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench-venv")
PYTHON = os.path.join(VENV, "bin", "python3")
LOOPS = ("asyncio", "uvloop", "evloop")
SERVERS = ("protocol", "streams")


def ensure_venv():
    if not os.path.exists(PYTHON):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if subprocess.run([PYTHON, "-c", "import uvloop"], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "uvloop"], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", default="100,200")
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    ensure_venv()
    os.environ.setdefault("EVLOOP_LIBRARY", os.path.join(ROOT, "target", "release", "libevloop.so"))
    r1, r2 = (int(r) for r in args.rounds.split(","))
    trips = (r2 - r1) * args.conns
    version = subprocess.run([PYTHON, "-c", "import sys, uvloop; print(sys.version.split()[0], uvloop.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    table = {}
    for server in args.servers.split(","):
        for loop in args.loops.split(","):
            load = argparse.Namespace(client=None, conns=args.conns, size=args.size, server=[
                PYTHON, os.path.join(ROOT, "bench", "asyncio_echo.py"), "--loop", loop, "--server", server])
            runs = []
            for _ in range(args.repeat):
                i1, i2 = instructions(load, r1), instructions(load, r2)
                runs.append((i2 - i1) / trips)
            table[server, loop] = runs
            print(f"{server} echo on {loop}: " + ", ".join(f"{r:,.0f}" for r in runs)
                  + f" -> median {statistics.median(runs):,.0f}", file=sys.stderr, flush=True)
    print(f"\nuser-space instructions per round trip (callgrind; {args.conns} connections, {args.size} B, one in "
          f"flight each; {r1 * args.conns:,} and {r2 * args.conns:,} round trips; median of {args.repeat}; "
          f"CPython {version[0]}, uvloop {version[1]})\n")
    loops = args.loops.split(",")
    print("| server | " + " | ".join(loops) + " |")
    print("|---|" + "---|" * len(loops))
    for server in args.servers.split(","):
        names = {"protocol": "Protocol echo", "streams": "streams echo"}
        cells = [f"{statistics.median(table[server, loop]):,.0f}" for loop in loops]
        print(f"| {names[server]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

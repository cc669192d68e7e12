#!/usr/bin/env python3
"""User-space instructions per echo round trip of asyncio servers on
evloop's native loop, uvloop and asyncio (and evloop's ctypes loop if
asked), all in one run: callgrind, the difference between two loads (so
start-up and shutdown cancel out), median of several runs.

    bench/native_bench.py [--repeat 5] [--rounds 100,600] [--conns 20] [--size 64]
                          [--loops native,uvloop,asyncio] [--servers protocol,streams]

The servers are bench/asyncio_echo.py's. The load is c-examples' echo_client
with --independent connections: 20 of them, 64-byte messages, one in
flight each; 100 and 600 rounds are 2,000 and 12,000 round trips. Every
loop runs on one interpreter, target/native-bench-venv's python (pyenv's
3.11.7 when it is made), with uvloop 0.23 and aiohttp installed there on
first use, and PYTHONHASHSEED=0 (the start-up cost moves with the seed).
Needs valgrind; builds target/native-bench/echo_client and uses
target/release/libevloop.so (`cargo build --release`).
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys

from echo_bench import instructions, syscalls  # bench/, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "native-bench-venv")
PYTHON = os.path.join(VENV, "bin", "python3")
BASE_PYTHON = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3")
CLIENT = os.path.join(ROOT, "target", "native-bench", "echo_client")
NAMES = {"protocol": "Protocol echo", "streams": "streams echo"}


def ensure_tools():
    """The venv (uvloop 0.23, aiohttp) and the load generator."""
    if not os.path.exists(PYTHON):
        base = BASE_PYTHON if os.path.exists(BASE_PYTHON) else sys.executable
        subprocess.run([base, "-m", "venv", VENV], check=True)
    if subprocess.run([PYTHON, "-c", "import uvloop, aiohttp"], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "uvloop==0.23.*", "aiohttp"], check=True)
    if not os.path.exists(CLIENT):
        os.makedirs(os.path.dirname(CLIENT), exist_ok=True)
        lib = os.path.join(ROOT, "target", "release")
        subprocess.run(["cc", "-std=c11", "-O2", "-I", os.path.join(ROOT, "include"),
                        os.path.join(ROOT, "c-examples", "echo_client.c"), "-L", lib, "-levloop",
                        f"-Wl,-rpath,{lib}", "-o", CLIENT], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", default="100,600")
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--loops", default="native,uvloop,asyncio")
    parser.add_argument("--servers", default="protocol,streams")
    parser.add_argument("--syscalls", action="store_true", help="also count syscalls per round trip (perf)")
    args = parser.parse_args()
    ensure_tools()
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ.setdefault("EVLOOP_LIBRARY", os.path.join(ROOT, "target", "release", "libevloop.so"))
    r1, r2 = (int(r) for r in args.rounds.split(","))
    trips = (r2 - r1) * args.conns
    version = subprocess.run([PYTHON, "-c", "import sys, uvloop; print(sys.version.split()[0], uvloop.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    client = (f"{CLIENT} --port {{port}} --conns {args.conns} --size {args.size} --independent "
              f"--rounds {{rounds}} --quiet")
    loops, servers = args.loops.split(","), args.servers.split(",")
    table, calls = {}, {}
    for server in servers:
        for loop in loops:
            load = argparse.Namespace(client=client, conns=args.conns, size=args.size, server=[
                PYTHON, os.path.join(ROOT, "bench", "asyncio_echo.py"), "--loop", loop, "--server", server])
            runs = []
            for _ in range(args.repeat):
                i1, i2 = instructions(load, r1), instructions(load, r2)
                runs.append((i2 - i1) / trips)
            table[server, loop] = runs
            line = f"{NAMES[server]} on {loop}: " + ", ".join(f"{r:,.0f}" for r in runs)
            line += f" -> median {statistics.median(runs):,.0f}"
            if args.syscalls:
                (w1, s1), (w2, s2) = syscalls(load, r1), syscalls(load, r2)
                calls[server, loop] = ((s2 - w2) - (s1 - w1)) / trips, (w2 - w1) / trips
                line += " (syscalls per round trip: {:.2f}, and {:.2f} waits)".format(*calls[server, loop])
            print(line, file=sys.stderr, flush=True)
    print(f"\nuser-space instructions per round trip (callgrind; {args.conns} independent connections, "
          f"{args.size} B, one in flight each; {r2 * args.conns:,} minus {r1 * args.conns:,} round trips; "
          f"median of {args.repeat}; CPython {version[0]}, uvloop {version[1]}, PYTHONHASHSEED=0)\n")
    print("| server | " + " | ".join(loops) + " |")
    print("|---|" + "---|" * len(loops))
    for server in servers:
        cells = [f"{statistics.median(table[server, loop]):,.0f}" for loop in loops]
        print(f"| {NAMES[server]} | " + " | ".join(cells) + " |")
    print("\ncommand: " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""User-space instructions per aiohttp request (callgrind, by difference) of
bench/native_aiohttp.py's "hello world" on evloop's native loop, uvloop and
asyncio.

    bench/aiohttp_callgrind.py [--requests 1000,3000] [--repeat 1] [--loops native,uvloop,asyncio]

The server runs under callgrind; the client, outside it, is this script's
--client mode: one keep-alive HTTP/1.1 connection sending `GET /` and
reading each whole answer (headers, then Content-Length bytes) before the
next. The server is run once per size and the difference of instructions
is divided by the difference of requests, so start-up, aiohttp's first
requests and shutdown cancel out. Uses bench/native_bench.py's venv
(uvloop 0.23, aiohttp), PYTHONHASHSEED=0 and target/release/libevloop.so
(`cargo build --release`). Six callgrind runs: about 4 minutes (--repeat 3: 12).
"""
import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys

from echo_bench import instructions  # bench/, beside this script
from native_bench import PYTHON, ROOT, ensure_tools

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def get_all(port, requests):
    """Send `requests` GET / on one connection, each after the previous answer."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        buffered = b""
        for _ in range(requests):
            conn.sendall(REQUEST)
            while b"\r\n\r\n" not in buffered:
                buffered += receive(conn)
            head, buffered = buffered.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            if lines[0].split()[1] != "200":
                sys.exit(f"unexpected answer: {lines[0]}")
            length = next(int(line.split(":", 1)[1]) for line in lines[1:]
                          if line.lower().startswith("content-length:"))
            while len(buffered) < length:
                buffered += receive(conn)
            buffered = buffered[length:]


def receive(conn):
    data = conn.recv(65536)
    if not data:
        sys.exit("the server closed the connection")
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", default="1000,3000")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--loops", default="native,uvloop,asyncio")
    parser.add_argument("--client", nargs=2, type=int, metavar=("PORT", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return get_all(*args.client)
    n1, n2 = (int(n) for n in args.requests.split(","))
    ensure_tools()
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ.setdefault("EVLOOP_LIBRARY", os.path.join(ROOT, "target", "release", "libevloop.so"))
    client = shlex.join([sys.executable, os.path.abspath(__file__), "--client"]) + " {port} {rounds}"
    loops = args.loops.split(",")
    medians = {}
    for loop in loops:
        load = argparse.Namespace(client=client, server=[
            PYTHON, os.path.join(ROOT, "bench", "native_aiohttp.py"), "--loop", loop])
        runs = [(instructions(load, n2) - instructions(load, n1)) / (n2 - n1) for _ in range(args.repeat)]
        medians[loop] = statistics.median(runs)
        print(f"{loop}: " + ", ".join(f"{r:,.0f}" for r in runs), file=sys.stderr, flush=True)
    version = subprocess.run([PYTHON, "-c", "import sys, uvloop, aiohttp; "
                              "print(sys.version.split()[0], uvloop.__version__, aiohttp.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    print(f"\nuser-space instructions per aiohttp request (callgrind; one keep-alive connection; "
          f"{n2:,} minus {n1:,} requests; median of {args.repeat}; CPython {version[0]}, "
          f"uvloop {version[1]}, aiohttp {version[2]}, PYTHONHASHSEED=0)\n")
    print("| " + " | ".join(loops) + " | native vs uvloop |")
    print("|---|" + "---|" * len(loops))
    ratio = f"{medians['native'] / medians['uvloop']:.3f}x" if {"native", "uvloop"} <= medians.keys() else "-"
    print("| " + " | ".join(f"{medians[loop]:,.0f}" for loop in loops) + f" | {ratio} |")
    print("\ncommand: " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()

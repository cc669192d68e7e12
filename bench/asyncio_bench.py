#!/usr/bin/env python3
"""User-space instructions per echo round trip of asyncio servers on several
event loops, the standard library's, uvloop's and evloop's by default, and how
many events each of the loop's iterations got (callgrind, difference of two
loads, median of several runs; see bench/echo_bench.py).

    bench/asyncio_bench.py [--repeat 5] [--rounds 100,600] [--conns 20] [--size 64]
                           [--loop [LABEL=]NAME|MODULE:CALLABLE ...] [--servers protocol,streams]
                           [--python PATH]

Two servers (bench/asyncio_echo.py): Protocol echo (data_received ->
transport.write) and streams echo (await reader.read(1000), writer.write,
await writer.drain()). The load is c-examples' echo_client with
--independent: 20 connections, 64-byte messages, one in flight each, each
connection sending its next message as soon as its reply is in (not in
lockstep with the others); 100 and 600 rounds are 2,000 and 12,000 round
trips, a difference long enough that start-up, which moves with the hash
seed, is small beside it, and the servers run with PYTHONHASHSEED=0.

Events per iteration: the round trips of the difference divided by the
difference in the loop's waits, counted as calls of epoll_wait, epoll_pwait
and epoll_pwait2 under callgrind (--wait-functions names others). An
iteration's fixed cost is shared by its events, so a figure means little
without it.

--loop (repeatable) names a loop factory: asyncio, uvloop and evloop stand
for their new_event_loop; MODULE:CALLABLE is any callable returning a new
asyncio loop, imported with the repository's python/ first on sys.path (so
`--loop native=evloop.native:new_event_loop` measures a loop added there).
LABEL names its column (default: the name, or the module).

Every loop runs on one interpreter, --python (default pyenv's CPython 3.11.7,
else the python3 running this script), in a virtual environment of the
bench's own, target/asyncio-bench-venv-VERSION, with uvloop 0.23 from PyPI.
Needs valgrind and cc; builds target/release/libevloop.so (cargo) and
target/echo_client when they are missing or older than their sources.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys

from echo_bench import profile  # bench/, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYENV_311 = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3")
UVLOOP = "uvloop==0.23.*"
DEFAULT_LOOPS = ("asyncio", "uvloop", "evloop")
SERVERS = {"protocol": "Protocol echo", "streams": "streams echo"}
WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
CLIENT = os.path.join(ROOT, "target", "echo_client")


def venv_python(base):
    """The bench's venv for interpreter `base` (made, and uvloop installed, on first use)."""
    version = subprocess.run([base, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    venv = os.path.join(ROOT, "target", "asyncio-bench-venv-" + version)
    python = os.path.join(venv, "bin", "python3")
    if not os.path.exists(python):
        subprocess.run([base, "-m", "venv", venv], check=True)
    if subprocess.run([python, "-c", "import uvloop"], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", UVLOOP], check=True)
    return python


def newest(paths):
    return max(os.path.getmtime(p) for p in paths)


def build():
    """libevloop.so (cargo decides whether anything changed) and echo_client."""
    subprocess.run(["cargo", "build", "--release", "--lib", "-q"], cwd=ROOT, check=True)
    library = os.path.join(ROOT, "target", "release", "libevloop.so")
    sources = [os.path.join(ROOT, "c-examples", f) for f in ("echo_client.c", "common.h")]
    sources += [library, os.path.join(ROOT, "include", "evloop.h")]
    if not os.path.exists(CLIENT) or os.path.getmtime(CLIENT) < newest(sources):
        release = os.path.dirname(library)
        subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-Iinclude",
                        "c-examples/echo_client.c", "-L" + release, "-levloop",
                        "-Wl,-rpath," + release, "-o", CLIENT], cwd=ROOT, check=True)
    return library


def parse_loop(value):
    """(label, factory) of a --loop value."""
    label, sep, spec = value.partition("=")
    if not sep:
        spec = value
        label = value.split(":")[0]
    return label, spec


def git_commit():
    found = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %cs"],
                           capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return found.stdout.strip() + (" with uncommitted changes" if dirty else "")


def measure(python, spec, server, args, r1, r2):
    """(instructions per round trip, events per iteration) of one run."""
    load = argparse.Namespace(
        conns=args.conns, size=args.size,
        client=f"{CLIENT} --port {{port}} --conns {args.conns} --size {args.size} "
               f"--rounds {{rounds}} --independent --quiet",
        server=[python, os.path.join(ROOT, "bench", "asyncio_echo.py"), "--loop", spec,
                "--server", server])
    (i1, w1), (i2, w2) = profile(load, r1, args.waits), profile(load, r2, args.waits)
    trips = (r2 - r1) * args.conns
    return (i2 - i1) / trips, trips / (w2 - w1) if w2 > w1 else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", default="100,600", help="rounds per connection, two sizes")
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--loop", action="append", dest="loops", metavar="[LABEL=]FACTORY",
                        help="asyncio, uvloop, evloop or MODULE:CALLABLE (repeatable)")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--python", help="the interpreter (default: pyenv's 3.11.7)")
    parser.add_argument("--wait-functions", default=",".join(WAITS),
                        help="the functions whose calls are the loop's waits")
    args = parser.parse_args()
    args.waits = set(args.wait_functions.split(","))
    loops = [parse_loop(v) for v in args.loops or DEFAULT_LOOPS]
    servers = args.servers.split(",")
    base = args.python or (PYENV_311 if os.path.exists(PYENV_311) else sys.executable)
    python = venv_python(base)
    os.environ.setdefault("EVLOOP_LIBRARY", build())
    os.environ["PYTHONHASHSEED"] = "0"  # the servers' start-up moves with the hash seed
    r1, r2 = (int(r) for r in args.rounds.split(","))
    commit = git_commit()  # what is measured: the checkout as the runs start
    version = subprocess.run([python, "-c", "import sys, uvloop; print(sys.version.split()[0], uvloop.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    table = {}
    for server in servers:
        for label, spec in loops:
            runs = [measure(python, spec, server, args, r1, r2) for _ in range(args.repeat)]
            table[server, label] = runs
            print(f"{server} echo on {label}: "
                  + ", ".join(f"{cost:,.0f} ({events:.1f} events/iteration)" for cost, events in runs)
                  + f" -> median {statistics.median(c for c, _ in runs):,.0f}",
                  file=sys.stderr, flush=True)
    print(f"\nuser-space instructions per round trip, and in brackets the events per iteration "
          f"(callgrind; {args.conns} connections, {args.size} B, one in flight each, independent; "
          f"difference of {r1 * args.conns:,} and {r2 * args.conns:,} round trips; PYTHONHASHSEED=0; "
          f"median of {args.repeat}; CPython {version[0]}, uvloop {version[1]}; "
          f"{datetime.date.today()}, commit {commit})\n")
    print("| server | " + " | ".join(label for label, _ in loops) + " |")
    print("|---|" + "---|" * len(loops))
    for server in servers:
        cells = []
        for label, _ in loops:
            runs = table[server, label]
            cost = statistics.median(c for c, _ in runs)
            events = statistics.median(e for _, e in runs)
            cells.append(f"{cost:,.0f} ({events:.1f})")
        print(f"| {SERVERS[server]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

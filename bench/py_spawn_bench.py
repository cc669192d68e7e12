#!/usr/bin/env python3
"""Spawning /bin/true N times from Python, one after the other (each awaited
before the next): wall time per spawn on stdlib asyncio, on evloop's asyncio
loop (native and ctypes paths: evl_spawn, evloop/_subprocess.py; and the
ctypes path made to use asyncio's own subprocess code, as before), on
uvloop, and on evloop.Loop.spawn (evl_spawn without asyncio), as ratios of
interleaved runs.

    cargo build --release && bench/py_spawn_bench.py [--rounds 5] [-n 1000] [--python PY]

Each round runs every contender once, in turn, each in a fresh process
that times its own N spawns (start-up not counted); the ratio of a round
is a contender's time over stdlib asyncio's in that round, and the
table gives the median per-spawn time and the median ratio. stdout is a
pipe read to its end (asyncio's create_subprocess_exec(stdout=PIPE) and
communicate()), stdin and stderr /dev/null. uvloop comes from the venv of
bench/asyncio_bench.py (made on first use); the tests never need it.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

CHILD = r"""
import asyncio, os, sys, time
def cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
sys.path.insert(0, os.path.join(sys.argv[3], "python"))
kind, n = sys.argv[1], int(sys.argv[2])

async def spawn_all():
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec(
            "/bin/true", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        await proc.communicate()
        assert proc.returncode == 0

def loop_spawn_all():
    import evloop
    from evloop.processes import DEVNULL, PIPE, SubprocessProtocol
    loop = evloop.Loop()
    for _ in range(n):
        done = []
        class Child(SubprocessProtocol):
            def connection_lost(self, exc):
                done.append(self)
            def connection_made(self, process):
                self.process = process
        loop.spawn(Child(), ["/bin/true"], stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL)
        while not done:
            loop.run_once()
        assert done[0].process.get_returncode() == 0
    loop.close()

if kind == "loop.spawn":
    start, cpu0 = time.perf_counter(), cpu(); loop_spawn_all()
else:
    if kind == "uvloop":
        import uvloop; factory = uvloop.new_event_loop
    elif kind.startswith("evloop"):
        import evloop; factory = evloop.new_event_loop
        if kind.endswith("asyncio's code"):
            import evloop._subprocess
            evloop._subprocess.covers = lambda *args: False
    else:
        factory = asyncio.SelectorEventLoop
    loop = factory()
    start, cpu0 = time.perf_counter(), cpu(); loop.run_until_complete(spawn_all())
    loop.close()
print(time.perf_counter() - start, cpu() - cpu0)
"""

CONTENDERS = ("asyncio", "evloop native", "evloop ctypes", "evloop ctypes, asyncio's code", "uvloop", "loop.spawn")
BASE = "asyncio"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    args = parser.parse_args()
    from asyncio_bench import venv_python

    python = venv_python(args.python)
    env = dict(os.environ, EVLOOP_LIBRARY=os.path.join(ROOT, "target", "release", "libevloop.so"))
    times = {name: [] for name in CONTENDERS}
    cpus = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name in CONTENDERS:
            impl = {"EVLOOP_IMPL": "native" if "native" in name else "ctypes"}
            out = subprocess.run([python, "-c", CHILD, name, str(args.n), ROOT], env=dict(env, **impl), check=True,
                                 capture_output=True, text=True).stdout
            wall, cpu = map(float, out.strip().splitlines()[-1].split())
            times[name].append(wall / args.n)
            cpus[name].append(cpu / args.n)
    print(f"{args.n} spawns of /bin/true, {args.rounds} interleaved rounds, {python}")
    print("| loop | µs per spawn (median) | ratio to stdlib asyncio (median of rounds) | CPU µs per spawn (parent and child) |")
    print("|---|---|---|---|")
    for name in CONTENDERS:
        ratios = [mine / base for mine, base in zip(times[name], times[BASE])]
        print(f"| {name} | {statistics.median(times[name]) * 1e6:,.0f} | {statistics.median(ratios):.2f} "
              f"| {statistics.median(cpus[name]) * 1e6:,.0f} |")


if __name__ == "__main__":
    main()

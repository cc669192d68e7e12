#!/usr/bin/env python3
"""Server CPU time (user + system) per round trip or request, as ratios of
interleaved runs: evloop's native loop against uvloop (and asyncio), the
server and the load pinned to separate cores (taskset).

    bench/native_cpu.py echo    [--rounds 5] [--trips 50000] [--loops native,uvloop,asyncio]
    bench/native_cpu.py aiohttp [--rounds 5] [--seconds 5] [--conns 1,50] [--loops ...]

echo: the Protocol echo of bench/asyncio_echo.py with one busy connection
(c-examples' echo_client, 64 B, one in flight), --trips round trips a run.
aiohttp: bench/native_aiohttp.py's "hello world" under Debian's wrk
(keep-alive), --seconds a run, at each --conns. Each round runs every loop
once (in a rotating order), so slow drifts of the machine hit all loops
alike; the CPU is read from /proc/PID/stat around the load only. Prints
each round's figure, the median, the medians' ratios to uvloop's, and the
median of the user part alone (the rest is the kernel's: the syscalls, and
the wake-ups a busy connection makes at every round trip).
Uses bench/native_bench.py's venv (uvloop 0.23, aiohttp) and echo_client.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

from native_bench import CLIENT, PYTHON, ROOT, ensure_tools  # bench/, beside this script

TICK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOAD_CPU = "0", "1"


def cpu_seconds(pid):
    """(CPU time, user time) of process `pid` so far, in seconds: the first
    the scheduler's own count of the time its threads ran (schedstat, in
    ns: the clock ticks of /proc/PID/stat would round a short run's few
    hundredths of a second), the second from the ticks (the split between
    user and system exists only there)."""
    ran = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
            ran += int(schedstat.read().split()[0])
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return ran / 1e9, int(fields[11]) / TICK


def per_op(before, after, ops):
    """(CPU, user) µs per operation between two cpu_seconds readings."""
    return (after[0] - before[0]) / ops * 1e6, (after[1] - before[1]) / ops * 1e6


def start(script, loop, *more):
    server = subprocess.Popen(["taskset", "-c", SERVER_CPU, PYTHON, os.path.join(ROOT, "bench", script),
                               "--loop", loop, "--port", "0", *more], stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().strip()
    if not port.isdigit():
        server.kill()
        sys.exit(f"{script} --loop {loop}: no port ({port!r})")
    return server, port


def stop(server):
    server.terminate()
    server.wait(timeout=60)


def echo_run(loop, trips):
    server, port = start("asyncio_echo.py", loop, "--server", "protocol")
    try:
        before = cpu_seconds(server.pid)
        subprocess.run(["taskset", "-c", LOAD_CPU, CLIENT, "--port", port, "--conns", "1", "--size", "64",
                        "--independent", "--rounds", str(trips), "--quiet"], check=True)
        return per_op(before, cpu_seconds(server.pid), trips)
    finally:
        stop(server)


def aiohttp_run(loop, conns, seconds):
    server, port = start("native_aiohttp.py", loop)
    try:
        # A short warm-up (aiohttp's first requests build its caches).
        subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", "-d1s", "--timeout", "60s", f"http://127.0.0.1:{port}/"],
                       capture_output=True, check=True)
        before = cpu_seconds(server.pid)
        done = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "60s",
                               f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True)
        after = cpu_seconds(server.pid)
        requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))
        if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
            sys.exit(f"wrk against {loop}: {done.stdout}")
        return per_op(before, after, requests)
    finally:
        stop(server)


def report(title, table, loops, unit):
    print(f"\n{title}")
    rounds = len(table[loops[0]])
    print("| loop | " + " | ".join(f"round {i + 1}" for i in range(rounds))
          + f" | median {unit} | vs uvloop | user {unit} (median) |")
    print("|---|" + "---|" * (rounds + 3))
    base = statistics.median(t for t, _ in table["uvloop"]) if "uvloop" in table else None
    for loop in loops:
        median = statistics.median(t for t, _ in table[loop])
        user = statistics.median(u for _, u in table[loop])
        ratio = f"{median / base:.2f}x" if base else "-"
        print(f"| {loop} | " + " | ".join(f"{t:.2f}" for t, _ in table[loop])
              + f" | {median:.2f} | {ratio} | {user:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("echo", "aiohttp"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=50000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--conns", default="1,50")
    parser.add_argument("--loops", default="native,uvloop,asyncio")
    args = parser.parse_args()
    ensure_tools()
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ.setdefault("EVLOOP_LIBRARY", os.path.join(ROOT, "target", "release", "libevloop.so"))
    loops = args.loops.split(",")
    settings = [None] if args.bench == "echo" else [int(c) for c in args.conns.split(",")]
    for setting in settings:
        table = {loop: [] for loop in loops}
        for round_ in range(args.rounds):
            order = loops[round_ % len(loops):] + loops[:round_ % len(loops)]
            for loop in order:
                if args.bench == "echo":
                    table[loop].append(echo_run(loop, args.trips))
                else:
                    table[loop].append(aiohttp_run(loop, setting, args.seconds))
                total, user = table[loop][-1]
                print(f"round {round_ + 1}: {loop} {total:.2f} (user {user:.2f})", file=sys.stderr, flush=True)
        if args.bench == "echo":
            report(f"server CPU µs per round trip, Protocol echo, one busy connection ({args.trips} round trips "
                   f"a run; server on CPU {SERVER_CPU}, echo_client on CPU {LOAD_CPU})", table, loops, "µs")
        else:
            report(f"server CPU µs per request, aiohttp hello world, wrk -c{setting} for {args.seconds} s "
                   f"(server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU})", table, loops, "µs")
    print("\ncommand: " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

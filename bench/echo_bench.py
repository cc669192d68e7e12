#!/usr/bin/env python3
"""Cost of one echo round trip in a server: user-space instructions (callgrind)
and syscalls (perf stat), both by difference between two loads, so start-up
and shutdown cancel out.

    bench/echo_bench.py [--client CMD] [--conns 20] [--size 64] [--rounds 100,200] [--repeat N]
                        -- SERVER ARGS...

Build the server against `cargo build --profile profiling` (the release code
with symbols, so callgrind_annotate can name what costs; see
c-examples/README.md). The server is started with `--port 0 --quiet` appended (it must print its
port on the first line and exit cleanly on SIGTERM). The load is `--conns`
connections, `--size`-byte messages, one in flight per connection, `rounds`
messages per connection: c-examples' echo_client by default, or any command
given with --client (`{port}` and `{rounds}` in it are replaced).

Prints instructions per round trip, then syscalls per round trip: epoll waits
apart (their number depends on how many events each wait returns) from the
rest (one read and one write per round trip is 2.00).
"""
import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile

from callgrind_delta import callgrind_calls, callgrind_total  # bench/, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAITS = ["syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait",
         "syscalls:sys_enter_epoll_pwait2"]


def start(cmd):
    server = subprocess.Popen(cmd + ["--port", "0", "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    port = server.stdout.readline().strip()
    if not port.isdigit():
        server.kill()
        sys.exit(f"{cmd}: expected a port on the first line, got {port!r}")
    return server, port


def stop(server):
    # Under callgrind a SIGTERM that reaches a server long blocked in its
    # wait is now and then lost: it is sent again after 30 s (a server
    # still writing its profile then dies of it: accepted after a resend).
    server.send_signal(signal.SIGTERM)
    try:
        status = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=120)
        if status == -signal.SIGTERM:
            status = 0
    if status != 0:
        sys.exit(f"the server exited with status {server.returncode}")


def load(args, port, rounds):
    template = args.client or (f"{ROOT}/target/echo_client --port {{port}} --conns {args.conns} "
                               f"--size {args.size} --rounds {{rounds}} --quiet")
    cmd = shlex.split(template.replace("{port}", port).replace("{rounds}", str(rounds)))
    subprocess.run(cmd, check=True)


def instructions(args, rounds):
    return profile(args, rounds, ())[0]


def profile(args, rounds, functions):
    """(instructions, calls into `functions`) of the server under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        server, port = start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
                             + args.server)
        load(args, port, rounds)
        stop(server)
        return callgrind_total(out), callgrind_calls(out, functions)


def syscalls(args, rounds):
    """(waits, all syscalls) the server made, from its start to its exit."""
    with tempfile.NamedTemporaryFile("r") as counts:
        events = sum((["-e", e] for e in ["raw_syscalls:sys_enter"] + WAITS), [])
        perf, port = start(["perf", "stat", "-x,", "-o", counts.name] + events + ["--"] + args.server)
        load(args, port, rounds)
        with open(f"/proc/{perf.pid}/task/{perf.pid}/children") as f:
            server_pid = int(f.read().split()[0])
        os.kill(server_pid, signal.SIGTERM)
        if perf.wait(timeout=120) != 0:
            sys.exit(f"perf (or the server) exited with status {perf.returncode}")
        found = {}
        for line in counts:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[0].isdigit():
                found[fields[2]] = int(fields[0])
    waits = sum(found.get(e, 0) for e in WAITS)
    return waits, found["raw_syscalls:sys_enter"]


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--client")
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", default="100,200")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure instructions this many times, print each and the median "
                             "(how many events each wait returns, so the cost, varies from run to run)")
    args = parser.parse_args(argv[:split])
    args.server = argv[split + 1:]
    r1, r2 = (int(r) for r in args.rounds.split(","))
    trips = (r2 - r1) * args.conns

    per_trip = []
    for _ in range(args.repeat):
        i1, i2 = instructions(args, r1), instructions(args, r2)
        per_trip.append((i2 - i1) / trips)
        print(f"instructions: {i1} at {r1 * args.conns} round trips, {i2} at {r2 * args.conns}: "
              f"{per_trip[-1]:.1f} per round trip", flush=True)
    if args.repeat > 1:
        print(f"median of {args.repeat}: {statistics.median(per_trip):.1f} per round trip "
              f"(from {min(per_trip):.1f} to {max(per_trip):.1f})")
    (w1, s1), (w2, s2) = syscalls(args, r1), syscalls(args, r2)
    waits, other = (w2 - w1) / trips, ((s2 - w2) - (s1 - w1)) / trips
    print(f"syscalls per round trip: {other:.2f} besides waits, {waits:.2f} waits")


if __name__ == "__main__":
    main()

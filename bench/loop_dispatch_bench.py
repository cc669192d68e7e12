#!/usr/bin/env python3
"""User-space instructions per echo round trip of the articles' Python echo
servers on evloop.Loop and EvloopSelector, beside the standard library's
selectors (EpollSelector), at 20 connections and at 1: where the native
dispatch of evloop.Loop and of the selector pays (issue 26).

    cargo build --release && bench/loop_dispatch_bench.py [--repeat 3] [--python PY]
        [--only NAME,...] [--impl native,ctypes]

Each figure is bench/echo_bench.py's: callgrind, 64-byte messages, one in
flight per connection, the difference of two loads (20 connections: 2,000
and 4,000 round trips; 1 connection: 1,000 and 2,000), the median of
--repeat runs, with PYTHONHASHSEED=0. The evloop servers run once per
implementation named by --impl (EVLOOP_IMPL: the native dispatch, or the
ctypes one).

The servers: bench/s5_selectors.py (the articles' S5 as written, on
selectors.DefaultSelector, then with --evloop on evloop.DefaultSelector),
python/examples/selectors_echo_server.py (its mirror, bugs fixed, on
EvloopSelector), python/examples/epoll_echo_server.py (S7's mirror on
evloop.Loop's register/modify) and python/examples/stream_echo_server.py
(evloop.Loop's streams, Protocol-style).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "python", "examples")

#: name -> (server arguments after the interpreter, whether it runs on evloop)
SERVERS = {
    "s5-stdlib": ([os.path.join(ROOT, "bench", "s5_selectors.py")], False),
    "s5-evloop": ([os.path.join(ROOT, "bench", "s5_selectors.py"), "--evloop"], True),
    "selectors-mirror": ([os.path.join(EXAMPLES, "selectors_echo_server.py")], True),
    "epoll-mirror": ([os.path.join(EXAMPLES, "epoll_echo_server.py")], True),
    "streams": ([os.path.join(EXAMPLES, "stream_echo_server.py")], True),
}
LOADS = {20: "100,200", 1: "1000,2000"}


def measure(python, server, conns, repeat, env):
    cmd = [sys.executable, os.path.join(ROOT, "bench", "echo_bench.py"), "--conns", str(conns),
           "--rounds", LOADS[conns], "--repeat", str(repeat), "--", python] + server
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    figures = [float(x) for x in re.findall(r"([0-9.]+) per round trip\n", out)]
    runs = figures[:repeat]
    return statistics.median(runs), min(runs), max(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    parser.add_argument("--only", help="comma-separated server names: " + ", ".join(SERVERS))
    parser.add_argument("--impl", default="native,ctypes")
    parser.add_argument("--conns", default="20,1")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SERVERS)
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.setdefault("EVLOOP_LIBRARY", os.path.join(ROOT, "target", "release", "libevloop.so"))
    print(f"{'server':<28} {'conns':>5} {'median':>9} {'min':>9} {'max':>9}", flush=True)
    for name in names:
        server, on_evloop = SERVERS[name]
        for impl in args.impl.split(",") if on_evloop else [""]:
            label = f"{name} ({impl})" if impl else name
            run_env = dict(env, EVLOOP_IMPL=impl) if impl else env
            for conns in (int(c) for c in args.conns.split(",")):
                median, low, high = measure(args.python, server, conns, args.repeat, run_env)
                print(f"{label:<28} {conns:>5} {median:>9.0f} {low:>9.0f} {high:>9.0f}", flush=True)


if __name__ == "__main__":
    main()

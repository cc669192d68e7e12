#!/usr/bin/env python3
"""What the articles teach, measured: the server's CPU time per echo round
trip of one active connection while N other connections are open and idle,
for select, poll, epoll and evloop, in C and in Python; and the CPU that the
articles' busy-polling server (S8) burns, beside its twin on evloop.

    cargo build --release && bench/io_models.py            # about 10 minutes
    bench/io_models.py --plot-only                          # redraw from docs/io_models.csv

select and poll hand the kernel every watched fd on every call and the
kernel scans them all; epoll is told once and returns what is ready. The
scan is kernel work, invisible to user-space instruction counts, so this
measures CPU time (user + system) of the server process: the sum over its
threads of /proc/PID/task/TID/schedstat (nanoseconds on a CPU), read before
and after R round trips. CPU time, unlike wall time, does not grow when
other work shares the machine. Each figure is the median of --runs runs;
the runs are interleaved (every model at every N, then again).

The servers of one language run side by side and take turns, 100 round
trips each, so that whatever else the machine does falls on all alike. The
active connection is this process's; the idle ones are held by another
process per server (one process may hold 20,000 fds here). select stops at
FD_SETSIZE (1024 fds): its line ends at N = 1,000.

Writes docs/io_models.csv (medians), docs/io_models_s8.csv, and draws
docs/io_models_c.png and docs/io_models_python.png with matplotlib, which
this script installs into a virtual environment of its own
(target/bench-venv); nothing else needs it.
"""
import argparse
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target")
DOCS = os.path.join(ROOT, "docs")
RELEASE = os.path.join(TARGET, "release")
BIN = os.path.join(TARGET, "bench-io")
VENV = os.path.join(TARGET, "bench-venv")
PYTHON = sys.executable
EXAMPLES = os.path.join(ROOT, "python", "examples")
SELECT_LIMIT = 1000  # the largest N whose fds all stay under FD_SETSIZE (1024)
MESSAGE = bytes(range(64))
CPU_BUDGET_NS = 3e9  # of server CPU per measure: enough for a stable figure


def c_program(name):
    """Builds c-examples/NAME.c as its README says, with -O2, once."""
    exe = os.path.join(BIN, name)
    source = os.path.join(ROOT, "c-examples", name + ".c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(source):
        os.makedirs(BIN, exist_ok=True)
        subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I" + os.path.join(ROOT, "include"),
                        source, "-L" + RELEASE, "-levloop", "-Wl,-rpath," + RELEASE, "-o", exe], check=True)
    return exe


def c_models():
    bench = c_program("bench_io_models")
    return [
        ("select", [bench, "--model", "select"], SELECT_LIMIT),
        ("poll", [bench, "--model", "poll"], None),
        ("epoll", [bench, "--model", "epoll"], None),
        ("evloop (selectors_echo_server)", [c_program("selectors_echo_server")], None),
        ("evloop streams (stream_echo_server)", [c_program("stream_echo_server")], None),
    ]


def python_models():
    server = os.path.join(ROOT, "bench", "io_models_server.py")
    return [
        ("select.select", [PYTHON, server, "--model", "select"], SELECT_LIMIT),
        ("select.poll", [PYTHON, server, "--model", "poll"], None),
        ("selectors.EpollSelector", [PYTHON, server, "--model", "epoll-selector"], None),
        ("evloop.EvloopSelector", [PYTHON, server, "--model", "evloop-selector"], None),
        ("evloop streams (stream_echo_server.py)", [PYTHON, os.path.join(EXAMPLES, "stream_echo_server.py")], None),
    ]


def cpu_ns(pid):
    """CPU time (user + system) of every thread of `pid`, in nanoseconds."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return total


class Server:
    """A server started with --port 0 --quiet; killed on every way out."""

    def __init__(self, command):
        env = dict(os.environ, EVLOOP_LIBRARY=os.path.join(RELEASE, "libevloop.so"))
        self.process = subprocess.Popen(command + ["--port", "0", "--quiet"], stdout=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=env, text=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"{command}: first line {line!r} is not a port")
        self.port = int(line)
        self.pid = self.process.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock, message, reply):
    sock.sendall(message)
    got = b""
    while len(got) < len(reply):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        got += chunk
    if got != reply:
        raise RuntimeError(f"wrong reply {got[:40]!r}..., expected {reply[:40]!r}...")


def hold(port, count):
    """--hold: opens `count` idle connections to `port`, says so, and keeps
    them until its standard input closes (another process than the one that
    measures: a process may hold at most 20,000 fds)."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    print("ready", flush=True)
    sys.stdin.read()
    for conn in conns:
        conn.close()


class Setup:
    """A server with `idle` idle connections (held by another process) and
    one active connection; stopped on every way out."""

    def __init__(self, command, idle):
        self.server = Server(command)
        self.holder = None
        try:
            if idle:
                self.holder = subprocess.Popen([PYTHON, os.path.abspath(__file__), "--hold", str(self.server.port),
                                                str(idle)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                if self.holder.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{command}: the idle connections could not be opened")
            self.active = connect(self.server.port)
            # Accepted in order: once the last one echoes, every idle one is
            # accepted and watched.
            for _ in range(200):
                round_trip(self.active, MESSAGE, MESSAGE)
        except BaseException:
            self.close()
            raise
        self.used_ns = self.done = 0

    def chunk(self, rounds):
        before = cpu_ns(self.server.pid)
        for _ in range(rounds):
            round_trip(self.active, MESSAGE, MESSAGE)
        self.used_ns += cpu_ns(self.server.pid) - before
        self.done += rounds

    def close(self):
        if hasattr(self, "active"):
            self.active.close()
        if self.holder:
            self.holder.stdin.close()
            self.holder.wait()
            self.holder.stdout.close()
        self.server.close()


def measure(models, idle, rounds):
    """Server CPU nanoseconds per round trip of each of `models` (name,
    command) with `idle` idle connections. Every server runs at once and
    takes its turn 100 round trips at a time, so that whatever else the
    machine does falls on all of them alike; one stops early once its round
    trips have cost CPU_BUDGET_NS (poll at 10,000)."""
    setups = []
    try:
        for name, command in models:
            setups.append((name, Setup(command, idle)))
        turn = 0
        while True:
            running = [(n, s) for n, s in setups if s.done < rounds and s.used_ns < CPU_BUDGET_NS]
            if not running:
                break
            turn += 1
            for name, setup in running[turn % len(running):] + running[:turn % len(running)]:
                setup.chunk(100)
        for name, setup in setups:
            if setup.server.process.poll() is not None:
                raise RuntimeError(f"{name} ended during the measure")
        return {name: setup.used_ns / setup.done for name, setup in setups}
    finally:
        for _, setup in setups:
            setup.close()


def measure_models(args):
    rows = []  # (language, model, idle, run, ns per round trip)
    suites = []
    if "c" in args.languages:
        suites.append(("C", c_models()))
    if "python" in args.languages:
        suites.append(("Python", python_models()))
    for run in range(args.runs):
        for idle in args.idle:
            for language, models in suites:
                chosen = [(name, command) for name, command, limit in models if limit is None or idle <= limit]
                for name, ns in measure(chosen, idle, args.rounds).items():
                    rows.append((language, name, idle, run, ns))
                    print(f"run {run + 1}/{args.runs}  {language:6} {name:40} N={idle:<6} "
                          f"{ns / 1000:8.2f} us/round trip", flush=True)
    medians = {}
    for language, name, idle, _, ns in rows:
        medians.setdefault((language, name, idle), []).append(ns)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "io_models.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["language", "model", "idle_connections", "runs", "round_trips_per_run",
                      "median_server_cpu_us_per_round_trip", "min_us", "max_us"])
        for (language, name, idle), values in medians.items():
            out.writerow([language, name, idle, len(values), args.rounds, f"{statistics.median(values) / 1000:.3f}",
                          f"{min(values) / 1000:.3f}", f"{max(values) / 1000:.3f}"])


# ---- S8, the busy-polling server, beside its twin on evloop ----------------

def s8_servers():
    s8 = c_program("nonblocking_echo_server")
    py = os.path.join(EXAMPLES, "nonblocking_echo_server.py")
    return [
        ("C", "S8 busy polling", [s8]),
        ("C", "S8 on evloop", [s8, "--evloop"]),
        ("Python", "S8 busy polling", [PYTHON, py]),
        ("Python", "S8 on evloop", [PYTHON, py, "--evloop"]),
    ]


def s8_measure(command, seconds, cpu):
    """(idle CPU share, serving CPU share, round trips per second, CPU us per
    round trip): CPU seconds per wall second, idle then with one client
    making round trips as fast as it can (C4's loop)."""
    with Server(command) as server:
        os.sched_setaffinity(server.pid, {cpu})
        time.sleep(0.2)
        start, cpu = time.monotonic(), cpu_ns(server.pid)
        time.sleep(seconds)
        idle = (cpu_ns(server.pid) - cpu) / 1e9 / (time.monotonic() - start)
        with connect(server.port) as client:
            message = b"%d hello" % os.getpid()
            reply = message.upper()
            round_trip(client, message, reply)
            start, cpu, count = time.monotonic(), cpu_ns(server.pid), 0
            while time.monotonic() - start < seconds:
                round_trip(client, message, reply)
                count += 1
            elapsed, used = time.monotonic() - start, cpu_ns(server.pid) - cpu
        return idle, used / 1e9 / elapsed, count / elapsed, used / 1000 / count


def measure_s8(args):
    # The server on --cpu, the client on another one: a busy server would
    # otherwise take the client's time slices.
    others = sorted(set(range(os.cpu_count() or 1)) - {args.cpu})
    if others:
        os.sched_setaffinity(0, {others[0]})
    results = {}
    for run in range(args.runs):
        for language, name, command in s8_servers():
            if language.lower() not in args.languages:
                continue
            figures = s8_measure(command, args.s8_seconds, args.cpu)
            results.setdefault((language, name), []).append(figures)
            print(f"run {run + 1}/{args.runs}  {language:6} {name:16} idle {figures[0]:6.1%} of a core, "
                  f"serving {figures[1]:6.1%}, {figures[2]:8.0f} round trips/s, {figures[3]:7.2f} us CPU each",
                  flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "io_models_s8.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["language", "server", "runs", "idle_cpu_share", "serving_cpu_share",
                      "round_trips_per_second", "server_cpu_us_per_round_trip"])
        for (language, name), values in results.items():
            medians = [statistics.median(v[i] for v in values) for i in range(4)]
            out.writerow([language, name, len(values), f"{medians[0]:.4f}", f"{medians[1]:.4f}",
                          f"{medians[2]:.0f}", f"{medians[3]:.2f}"])


# ---- the charts --------------------------------------------------------------

PLOT = r'''
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

table, language, out = sys.argv[1:4]
series = {}
with open(table) as f:
    for row in csv.DictReader(f):
        if row["language"] == language:
            series.setdefault(row["model"], []).append(
                (int(row["idle_connections"]), float(row["median_server_cpu_us_per_round_trip"])))
fig, ax = plt.subplots(figsize=(9, 5.6), dpi=110)
markers = ["o", "s", "^", "D", "v", "P"]
for (model, points), marker in zip(series.items(), markers):
    points.sort()
    is_select = model in ("select", "select.select")
    # select and poll cost alike: select dashed and on top, so both show.
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=model, markersize=5,
            linewidth=2.4 if is_select else 1.8, linestyle="--" if is_select else "-", zorder=3 if is_select else 2)
    if is_select:
        last = points[-1]
        ax.plot([last[0]], [last[1]], "x", color="black", markersize=10, markeredgewidth=2, zorder=4)
        ax.annotate("select ends here: it cannot watch\nan fd from FD_SETSIZE (1,024) on", xy=last,
                    xytext=(last[0] * 1.5, last[1] * 0.2), arrowprops=dict(arrowstyle="->", color="0.3"),
                    fontsize=9, color="0.2")
ax.axvline(1024, color="0.6", linestyle=":", linewidth=1)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("idle connections open beside the active one (N)")
ax.set_ylabel("server CPU time per round trip (us, user + system)")
ax.set_title(f"{language}: one active echo connection among N idle ones\n"
             "(64-byte messages; median of interleaved runs; lower is better)")
ax.grid(True, which="major", alpha=0.4)
ax.grid(True, which="minor", alpha=0.12)
ax.legend(loc="upper left", fontsize=9)
fig.tight_layout()
fig.savefig(out)
'''


def venv_python():
    """The virtual environment's python, with matplotlib installed in it."""
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    return python


def plot(args):
    python = venv_python()
    table = os.path.join(args.out, "io_models.csv")
    for language, name in (("C", "io_models_c.png"), ("Python", "io_models_python.png")):
        if language.lower() in args.languages:
            subprocess.run([python, "-c", PLOT, table, language, os.path.join(args.out, name)], check=True)
            print("wrote", os.path.join(args.out, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, nargs="+", default=[1, 10, 100, 1000, 3000, 10000],
                        help="the values of N (default: 1 10 100 1000 3000 10000)")
    parser.add_argument("--rounds", type=int, default=3000, help="round trips per measure (default 3000)")
    parser.add_argument("--runs", type=int, default=5, help="runs whose median is taken (default 5)")
    parser.add_argument("--languages", nargs="+", default=["c", "python"], choices=["c", "python"])
    parser.add_argument("--s8-seconds", type=float, default=2.0, help="seconds of each S8 measure (default 2)")
    parser.add_argument("--skip-models", action="store_true", help="keep docs/io_models.csv")
    parser.add_argument("--skip-s8", action="store_true", help="keep docs/io_models_s8.csv")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the charts from docs/io_models.csv")
    parser.add_argument("--out", default=DOCS, help="where the CSVs and charts go (default docs/)")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU that client and servers share (default 0)")
    parser.add_argument("--hold", type=int, nargs=2, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold:
        hold(*args.hold)
        return
    if not args.plot_only:
        # One CPU for the client and every server: a round trip then costs
        # the same whichever CPUs the scheduler would have picked (a wakeup
        # across CPUs costs more than one on the same CPU).
        os.sched_setaffinity(0, {args.cpu})
        if not os.path.exists(os.path.join(RELEASE, "libevloop.so")):
            sys.exit("build the library first: cargo build --release")
        if not args.skip_models:
            measure_models(args)
        if not args.skip_s8:
            measure_s8(args)
    plot(args)


if __name__ == "__main__":
    main()

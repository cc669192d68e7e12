#!/usr/bin/env python3
"""TLS echo servers compared: evloop's c-examples/tls_echo_server against
libevent's OpenSSL bufferevents (bench/tls/libevent_tls_echo.c) and libuv
with OpenSSL memory BIOs (bench/tls/libuv_tls_echo.c).

    bench/tls_bench.py [--rounds 5] [--messages 2000] [--sizes 64,16384]
                       [--handshakes 2000] [--callgrind [--callgrind-runs 3]]
                       [--servers evloop,libevent,libuv]
                       [--python PATH]

Python servers (--servers py-asyncio,py-uvloop,py-evloop): the asyncio
Protocol echo of bench/asyncio_echo.py with ssl=, on the standard library's
loop and on uvloop (an ssl.SSLContext of the standard library: OpenSSL
through SSLProtocol), and on evloop's loop with
evloop.create_default_context() (the library's TLS streams), all on one
interpreter (--python, default pyenv's CPython 3.11.7) in the venv of
bench/asyncio_bench.py (uvloop from PyPI); their ratios are to py-uvloop.
py-evloop is the implementation evloop picks (the native path on CPython);
py-native and py-ctypes name one.

Needs libevent-dev, libuv1-dev and libssl-dev (Debian: apt-get install
libevent-dev libuv1-dev libssl-dev; the tests never do), openssl (the
certificate: EC P-256, made into target/tls-bench/), taskset, and valgrind
for --callgrind. Builds `cargo build --profile profiling` (the release code
with symbols) and the three servers.

The load is c-examples/echo_client --tls (evloop's own TLS client, the same
for every server): 20 connections, one message in flight on each, TLS 1.3
with the cipher suite the client prefers (TLS_AES_256_GCM_SHA384, which
every server follows; the table prints what was agreed). The server runs
alone on CPU 0, the load on CPU 1 (taskset).

- CPU per round trip: the server's CPU time (ns, /proc/PID/schedstat) while
  the client makes --messages round trips per connection, minus the same
  for half as many (so the 20 handshakes and start-up cancel out), per
  round trip; --rounds runs with the servers' order rotated (interleaved),
  medians, and ratios to libevent+OpenSSL.
- Handshakes: new connections (each: a full TLS 1.3 handshake, one 1-byte
  round trip, close) per second of server CPU: --handshakes connections, 100
  at a time, from fresh client processes (no session resumption).
- --callgrind: user-space instructions per round trip (callgrind, two loads
  of 100 and 300 messages per connection, by difference), 64 B and 16 KiB,
  for every server named (C and Python); --callgrind-runs: the median of so
  many.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "tls-bench")
PROFILING = os.path.join(ROOT, "target", "profiling")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build(names=("evloop", "libevent", "libuv")):
    os.makedirs(OUT, exist_ok=True)
    sh(["cargo", "build", "--profile", "profiling", "--quiet"], cwd=ROOT)
    if any(name.startswith("py-") for name in names):
        sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)  # what python/evloop loads
    cflags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"]
    evloop = ["-I", os.path.join(ROOT, "include"), "-L", PROFILING, "-levloop", f"-Wl,-rpath,{PROFILING}"]
    for name in ("tls_echo_server", "echo_client"):
        sh(["cc", *cflags, os.path.join(ROOT, "c-examples", name + ".c"), *evloop, "-o", os.path.join(OUT, name)])

    def pkg(*names):
        return subprocess.run(["pkg-config", "--cflags", "--libs", *names], check=True, capture_output=True,
                              text=True).stdout.split()

    if "libevent" in names:
        sh(["cc", *cflags, os.path.join(ROOT, "bench/tls/libevent_tls_echo.c"), *pkg("libevent_openssl", "openssl"),
            "-o", os.path.join(OUT, "libevent_tls_echo")])
    if "libuv" in names:
        sh(["cc", *cflags, os.path.join(ROOT, "bench/tls/libuv_tls_echo.c"), *pkg("libuv", "openssl"),
            "-o", os.path.join(OUT, "libuv_tls_echo")])
    cert, key = os.path.join(OUT, "cert.pem"), os.path.join(OUT, "key.pem")
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
       capture_output=True)
    return cert, key


SERVERS = {
    "evloop": "tls_echo_server",
    "libevent": "libevent_tls_echo",
    "libuv": "libuv_tls_echo",
}
# The Python servers: bench/asyncio_echo.py's Protocol echo with ssl= (--loop, --ssl).
PYTHON_SERVERS = {
    "py-asyncio": ("asyncio", "stdlib"),
    "py-uvloop": ("uvloop", "stdlib"),
    "py-evloop": ("evloop", "evloop"),  # the implementation evloop chooses: native on CPython
    "py-native": ("native", "evloop"),  # evloop's native path, named
    "py-ctypes": ("ctypes", "evloop"),  # evloop's ctypes path
}
PYTHON = [sys.executable]  # the venv's interpreter, set by main()


class Server:
    def __init__(self, name, cert, key, wrap=()):
        if name in PYTHON_SERVERS:
            loop, context = PYTHON_SERVERS[name]
            cmd = [*wrap, *PYTHON, os.path.join(ROOT, "bench", "asyncio_echo.py"), "--loop", loop, "--server",
                   "protocol", "--ssl", context, "--cert", cert, "--key", key, "--port", "0", "--quiet"]
        else:
            cmd = [*wrap, os.path.join(OUT, SERVERS[name]), "--cert", cert, "--key", key, "--port", "0", "--quiet"]
        self.proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def cpu_ns(self):
        with open(f"/proc/{self.proc.pid}/schedstat") as f:
            return int(f.read().split()[0])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=300)


def client(port, cert, *args):
    cmd = ["taskset", "-c", "1", os.path.join(OUT, "echo_client"), "--tls", "--ca", cert, "--server-name",
           "localhost", "--port", str(port), "--quiet", "--timeout", "300", *args]
    sh(cmd, timeout=600)


def load(port, cert, size, messages):
    client(port, cert, "--conns", "20", "--size", str(size), "--rounds", str(messages), "--independent")


def per_round_trip_ns(name, cert, key, size, messages):
    server = Server(name, cert, key)
    try:
        load(server.port, cert, size, 10)  # warm up
        t0 = server.cpu_ns()
        load(server.port, cert, size, messages // 2)
        t1 = server.cpu_ns()
        load(server.port, cert, size, messages)
        t2 = server.cpu_ns()
    finally:
        server.stop()
    return ((t2 - t1) - (t1 - t0)) / (20 * (messages - messages // 2))


def handshakes_per_cpu_second(name, cert, key, count):
    server = Server(name, cert, key)
    try:
        client(server.port, cert, "--conns", "10", "--size", "1")  # warm up
        t0 = server.cpu_ns()
        for _ in range(count // 100):
            client(server.port, cert, "--conns", "100", "--size", "1")
        t1 = server.cpu_ns()
    finally:
        server.stop()
    return (count // 100 * 100) / ((t1 - t0) / 1e9)


def negotiated(name, cert, key):
    """What the server and the bench's client agree on, as openssl s_client sees the server."""
    server = Server(name, cert, key)
    try:
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-brief",
                              "-CAfile", cert, "-servername", "localhost"], input="", capture_output=True,
                             text=True, timeout=60).stderr
    finally:
        server.stop()
    lines = [l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith(("Protocol version", "Ciphersuite"))]
    return " ".join(lines)


def callgrind_per_round_trip(name, cert, key, size, n1, n2):
    def instructions(messages):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cg.out")
            server = Server(name, cert, key, wrap=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
            try:
                load(server.port, cert, size, messages)
            finally:
                server.stop()
            with open(out) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        return int(line.split()[1])
        raise RuntimeError("no callgrind totals")

    return (instructions(n2) - instructions(n1)) / (20 * (n2 - n1))


def table(names, base, sizes, results, shakes, rounds):
    """The CPU per round trip and the handshake rate of `names`, as ratios to `base`."""
    print()
    print("| server CPU per round trip (median of %d) | " % rounds
          + " | ".join(f"{s} B" for s in sizes) + " | ratio to " + base + " |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name in names:
        medians = [statistics.median(results[name, s]) for s in sizes]
        ratios = [m / statistics.median(results[base, s]) for m, s in zip(medians, sizes)]
        print(f"| {name} | " + " | ".join(f"{m / 1000:.2f} µs" for m in medians) + " | "
              + ", ".join(f"{x:.2f}" for x in ratios) + " |")
    print()
    print("| handshakes per server CPU second (median) | rate | ratio to " + base + " |")
    print("|---|---|---|")
    for name in names:
        rate = statistics.median(shakes[name])
        print(f"| {name} | {rate:,.0f} | {rate / statistics.median(shakes[base]):.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sizes", default="64,16384")
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-runs", type=int, default=1, help="callgrind runs per cell (the median)")
    parser.add_argument("--servers", default="evloop,libevent,libuv")
    parser.add_argument("--python", default=None, help="the interpreter of the Python servers")
    args = parser.parse_args()
    for tool in ("taskset", "openssl", "pkg-config"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    names = args.servers.split(",")
    if any(name in PYTHON_SERVERS for name in names):
        from asyncio_bench import PYENV_311, venv_python  # bench/, beside this script

        base_python = args.python or (PYENV_311 if os.path.exists(PYENV_311) else sys.executable)
        PYTHON[:] = [venv_python(base_python)]
        os.environ["PYTHONHASHSEED"] = "0"
    cert, key = build(names)
    for name in names:
        print(f"{name}: {negotiated(name, cert, key)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {(n, s): [] for n in names for s in sizes}
    shakes = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for size in sizes:
            for name in order:
                results[name, size].append(per_round_trip_ns(name, cert, key, size, args.messages))
        for name in order:
            shakes[name].append(handshakes_per_cpu_second(name, cert, key, args.handshakes))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
    c_names = [n for n in names if n not in PYTHON_SERVERS]
    py_names = [n for n in names if n in PYTHON_SERVERS]
    for group, preferred in ((c_names, "libevent"), (py_names, "py-uvloop")):
        if group and args.rounds:  # --rounds 0: callgrind alone
            table(group, preferred if preferred in group else group[0], sizes, results, shakes, args.rounds)
    if args.callgrind:
        print()
        print(f"| instructions per round trip (callgrind, median of {args.callgrind_runs}) | 64 B | 16384 B |")
        print("|---|---|---|")
        for name in names:
            counts = [
                statistics.median(callgrind_per_round_trip(name, cert, key, s, 100, 300)
                                  for _ in range(args.callgrind_runs))
                for s in (64, 16384)
            ]
            print(f"| {name} | " + " | ".join(f"{c:,.0f}" for c in counts) + " |")


if __name__ == "__main__":
    main()

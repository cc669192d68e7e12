#!/usr/bin/env python3
"""Memory a server holds per idle connection: its RSS growth while N
connections (default 10,000) each exchange one message and then stay open
and silent, divided by N. The client is this process (one process may hold
20,000 fds here, so client and server are apart).

    bench/idle_memory.py [--conns 10000] -- SERVER ARGS...

The server is started with `--port 0 --quiet` appended and must print its
port on the first line.
"""
import argparse
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--conns", type=int, default=10000)
    parser.add_argument("server", nargs="+")
    args = parser.parse_args()
    server = subprocess.Popen(args.server + ["--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    try:
        # Warm up: the first connection allocates what every later one shares.
        with socket.create_connection(("127.0.0.1", port)) as warm:
            warm.sendall(b"x")
            warm.recv(1)
        time.sleep(0.2)
        before = rss_kib(server.pid)
        conns = []
        for _ in range(args.conns):
            conn = socket.create_connection(("127.0.0.1", port))
            conns.append(conn)
        for conn in conns:
            conn.sendall(b"ping")
        for conn in conns:
            assert conn.recv(4) == b"ping"
        time.sleep(0.5)
        after = rss_kib(server.pid)
        growth = (after - before) * 1024
        print(f"RSS {before} KiB before, {after} KiB with {args.conns} idle connections: "
              f"{growth / args.conns:.0f} bytes per connection")
        for conn in conns:
            conn.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The articles' selectors echo server (S5), as written there, for measuring:
the only changes are the port (--port, 0 printing the chosen one), --quiet
(no prints), a clean exit on SIGTERM, and --evloop, which makes the
one-line change `sel = evloop.DefaultSelector()`.

    bench/s5_selectors.py [--evloop] [--port P] [--quiet]
"""
import os
import selectors
import signal
import socket
import sys

args = sys.argv[1:]
quiet = "--quiet" in args  # no prints (the benchmarks' load is silent)
port = int(args[args.index("--port") + 1]) if "--port" in args else 10000
if "--evloop" in args:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "python"))
    import evloop

    sel = evloop.DefaultSelector()
else:
    sel = selectors.DefaultSelector()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def accept(sock, mask):
    conn, addr = sock.accept()  # Should be ready
    if not quiet:
        print("accepted", conn, "from", addr, mask)
    conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, read)


def read(conn, mask):
    data = conn.recv(1024)
    if data:
        if not quiet:
            print("echoing", repr(data), "to", conn)
        conn.send(data)
    else:
        if not quiet:
            print("closing", conn)
        sel.unregister(conn)
        conn.close()


sock = socket.socket()
sock.bind(("localhost", port))
sock.listen(100)
sock.setblocking(False)
sel.register(sock, selectors.EVENT_READ, accept)
if port == 0:
    print(sock.getsockname()[1], flush=True)
while True:
    events = sel.select()
    for key, mask in events:
        callback = key.data
        callback(key.fileobj, mask)

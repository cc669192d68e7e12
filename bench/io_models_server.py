#!/usr/bin/env python3
"""The same echo server on each of Python's ways to wait for many sockets,
for bench/io_models.py: select.select (every socket handed over on every
call), select.poll (registered once in Python, but the whole array still
goes to the kernel on every call), selectors.EpollSelector and
evloop.EvloopSelector (the same selectors code on two selectors: epoll is
told once and returns only what is ready).

A benchmark server, not an example: no log lines, no output queues (the
benchmark's 64-byte replies always go whole on loopback). select.select
refuses fds from 1024 on: such a connection is closed at once, and said so.

    bench/io_models_server.py --model select|poll|epoll-selector|evloop-selector [--port P]
"""
import argparse
import os
import select
import selectors
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "python"))

SELECT_LIMIT = 1024  # FD_SETSIZE: select.select raises ValueError from here on


def echo(sock):
    """Echoes what `sock` has; returns False when the connection is over."""
    try:
        data = sock.recv(4096)
        if data:
            sock.send(data)
            return True
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        pass
    return False


def accept_all(listener):
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        sock.setblocking(False)
        yield sock


def run_select(listener):
    watched = [listener]
    while True:
        readable, _, _ = select.select(watched, [], [])
        for sock in readable:
            if sock is not listener:
                if not echo(sock):
                    watched.remove(sock)
                    sock.close()
                continue
            for conn in accept_all(listener):
                if conn.fileno() >= SELECT_LIMIT:
                    print(f"select: fd {conn.fileno()} is over FD_SETSIZE ({SELECT_LIMIT}): connection closed",
                          file=sys.stderr)
                    conn.close()
                else:
                    watched.append(conn)


def run_poll(listener):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    by_fd = {}
    while True:
        for fd, _ in poller.poll():
            if fd != listener.fileno():
                sock = by_fd[fd]
                if not echo(sock):
                    poller.unregister(fd)
                    del by_fd[fd]
                    sock.close()
                continue
            for conn in accept_all(listener):
                by_fd[conn.fileno()] = conn
                poller.register(conn, select.POLLIN)


def run_selector(listener, sel):
    def accept(sock):
        for conn in accept_all(sock):
            sel.register(conn, selectors.EVENT_READ, read)

    def read(sock):
        if not echo(sock):
            sel.unregister(sock)
            sock.close()

    sel.register(listener, selectors.EVENT_READ, accept)
    while True:
        for key, _ in sel.select():
            key.data(key.fileobj)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, choices=["select", "poll", "epoll-selector", "evloop-selector"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--quiet", action="store_true", help="accepted for symmetry: there are no log lines")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    if args.port == 0:
        print(listener.getsockname()[1], flush=True)
    if args.model == "select":
        run_select(listener)
    elif args.model == "poll":
        run_poll(listener)
    elif args.model == "epoll-selector":
        run_selector(listener, selectors.EpollSelector())
    else:
        import evloop

        run_selector(listener, evloop.EvloopSelector())


if __name__ == "__main__":
    main()

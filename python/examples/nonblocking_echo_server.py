#!/usr/bin/env python3
"""nonblocking_echo_server.py: the articles' counter-example (S8), and beside
it the same service on evloop (--evloop). 127.0.0.1:8083, replies in upper
case. Mirrors c-examples/nonblocking_echo_server.c.

S8 has no multiplexer: its sockets are non-blocking and it asks each of them,
over and over, whether it has something, catching BlockingIOError, and in
between prints "doing other work" and the sizes of its two lists. It never
waits, so it burns a whole core even with nothing to do. Mirrored faithfully,
as the baseline it is; --seconds and --max-idle bound it. --evloop serves the
same replies from evloop callbacks and does its "other work" on a timer, once
a second: the process sleeps until a socket or the timer needs it.

Fixed: a second message that came before the first reply was sent replaced
that reply (w_list is a dict keyed by socket): replies queue up; a partial
send() lost the rest: it is kept; a connection closed after b'' or a reset
stayed in w_list and the next send() on it raised OSError and killed the
server: closing forgets it everywhere, after its pending replies are sent; a
reset while sending closes that connection only; a successful accept()
skipped the polling of every other socket for that turn: every turn polls
them all; a client that never reads is no longer read from while 1 MiB waits
for it; SIGINT/SIGTERM end it cleanly.

    nonblocking_echo_server.py [--host H] [--port P] [--evloop] [--seconds S] [--max-idle S] [--quiet]
"""

import socket
import time

from common import (
    QUEUE_LIMIT, Stopped, evloop, open_listener, parse_options, positive, raise_on_stop_signals, say,
    stop_loop_on_signals,
)


def add_options(parser) -> None:
    parser.add_argument("--evloop", action="store_true", help="the same service on evloop")
    parser.add_argument("--seconds", type=positive, default=0, metavar="S", help="stop after S seconds")
    parser.add_argument("--max-idle", type=positive, default=0, metavar="S",
                        help="stop after S seconds with no connection open and no byte moved")


options = parse_options("Upper-case echo server polling non-blocking sockets in a loop, no multiplexer (S8), "
                        "default 127.0.0.1:8083.", 8083, add_options)


class Bounds:
    """When to stop, from --seconds and --max-idle; shared by both modes."""

    def __init__(self) -> None:
        self.started = self.last_activity = time.monotonic()

    def out_of_time(self, open_count: int) -> bool:
        now = time.monotonic()
        if options.seconds and now - self.started >= options.seconds:
            return True
        return bool(options.max_idle) and open_count == 0 and now - self.last_activity >= options.max_idle


def print_lists(readers: int, writers: int) -> None:
    say("doing other work")
    say("rlist:", readers)
    say("wlist:", writers)


class Polled:
    """A connection: in r_list while open, "in w_list" while replies wait."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.eof = False
        self.moved = False  # a byte came or went in this turn
        self.interest = evloop.READ  # --evloop: what the loop watches

    def read(self) -> bool:
        """recv() once; returns False when the connection is to be closed.
        Sets `moved` when a byte came."""
        if self.eof or len(self.out) >= QUEUE_LIMIT:
            return True
        try:
            data = self.sock.recv(1024)
        except (BlockingIOError, InterruptedError):  # "next socket"
            return True
        except OSError:
            return False
        self.moved = True
        if not data:
            self.eof = True
            return bool(self.out)
        self.out += data.upper()
        return True

    def write(self) -> bool:
        """send() of what waits; returns False when the connection is to be closed."""
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return False
            self.moved = self.moved or sent > 0
            del self.out[:sent]
        return bool(self.out) or not self.eof


def run_busy(listener: socket.socket) -> None:
    raise_on_stop_signals()
    r_list = []
    bounds = Bounds()
    try:
        while not bounds.out_of_time(len(r_list)):
            moved = False
            try:
                conn, _ = listener.accept()
                conn.setblocking(False)
                r_list.append(Polled(conn))
                moved = True
            except BlockingIOError:
                print_lists(len(r_list), sum(1 for p in r_list if p.out))
            except OSError:
                pass  # reset before it was taken, or out of fds: try again next turn
            kept = []
            for p in r_list:
                p.moved = False
                if p.read() and p.write():
                    kept.append(p)
                else:
                    p.sock.close()
                moved = moved or p.moved
            r_list = kept
            if moved:
                bounds.last_activity = time.monotonic()
    except Stopped:
        pass
    for p in r_list:
        p.sock.close()


def run_twin(listener: socket.socket) -> None:
    loop = evloop.Loop()
    connections = {}
    bounds = Bounds()

    def close(sock: socket.socket) -> None:
        loop.unregister(sock)
        sock.close()
        del connections[sock]

    def on_client(sock: socket.socket, revents: int, p: Polled) -> None:
        bounds.last_activity = time.monotonic()
        if revents & (evloop.READ | evloop.ERROR | evloop.HUP) and not p.read():
            close(sock)
            return
        if not p.write():  # the reply at once; what the socket does not take waits for WRITE
            close(sock)
            return
        reading = not p.eof and len(p.out) < QUEUE_LIMIT
        interest = (evloop.READ if reading else 0) | (evloop.WRITE if p.out else 0)
        if interest != p.interest:
            loop.modify(sock, interest)
            p.interest = interest

    def on_accept(sock: socket.socket, revents: int) -> None:
        bounds.last_activity = time.monotonic()
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of fds: the next readiness tries again
            conn.setblocking(False)
            p = Polled(conn)
            connections[conn] = p
            loop.register(conn, evloop.READ, on_client, p)

    def other_work() -> None:
        """The original's "other work", once a second instead of without end."""
        print_lists(len(connections), sum(1 for p in connections.values() if p.out))
        if bounds.out_of_time(len(connections)):
            loop.stop()
        else:
            loop.call_later(1.0, other_work)

    loop.register(listener, evloop.READ, on_accept)
    loop.call_later(1.0, other_work)
    stop_loop_on_signals(loop)
    loop.run()
    for sock in list(connections):
        close(sock)
    loop.unregister(listener)
    loop.close()


def main() -> int:
    listener = open_listener(options)
    if options.evloop:
        run_twin(listener)
    else:
        run_busy(listener)
    listener.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

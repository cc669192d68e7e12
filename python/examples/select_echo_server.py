#!/usr/bin/env python3
"""select_echo_server.py: the articles' select() echo server with output
queues (S1; S3 with --upper), on evloop.Loop. Mirrors
c-examples/select_echo_server.c.

The original keeps three lists and calls select() on them every turn. Here
the loop keeps them: a connection is "in inputs" while registered for READ
and "in outputs" while WRITE is in its interest, which is exactly while its
queue is not empty. Each turn (one run_once) prints "waiting for the next
event", as the original does.

Fixed: a partial send() leaves the rest at the front of the queue; EOF closes
the connection after its queued replies are sent (the original dropped
them); an error closes that connection only; a client that sends and never
reads is no longer read from once 1 MiB waits for it.

    select_echo_server.py [--host H] [--port P] [--upper] [--quiet]
"""

import collections
import socket

from common import (
    QUEUE_LIMIT, accept_all, address, evloop, make_reply, open_listener, parse_options, pause_listener, printable,
    say, stop_loop_on_signals,
)


def add_options(parser) -> None:
    parser.add_argument("--upper", action="store_true", help="reply in upper case (S3)")


options = parse_options("Echo server with per-connection output queues (S1; S3 with --upper), "
                        "default 127.0.0.1:10000.", 10000, add_options)
loop = evloop.Loop()
connections = {}


class Conn:
    def __init__(self, sock: socket.socket, peer: tuple) -> None:
        self.sock = sock
        self.peer = address(peer)
        self.queue = collections.deque()  # messages; a partial send leaves the rest in front
        self.queued = 0
        self.eof = False
        self.interest = evloop.READ

    def update(self) -> None:
        reading = not self.eof and self.queued < QUEUE_LIMIT
        interest = (evloop.READ if reading else 0) | (evloop.WRITE if self.queue else 0)
        if interest != self.interest:
            loop.modify(self.sock, interest)
            self.interest = interest


def drop(c: Conn, why: str = "") -> None:
    if why:
        say(f"{why} for {c.peer}")
    loop.unregister(c.sock)
    c.sock.close()
    del connections[c.sock]


def on_readable(c: Conn) -> bool:
    """Returns whether `c` is still open."""
    try:
        data = c.sock.recv(1024)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        drop(c, "handling exceptional condition")
        return False
    if not data:
        say(f"closing {c.peer} after reading no data")
        if not c.queue:
            drop(c)
            return False
        c.eof = True  # the original dropped the replies still queued: send them first
        c.update()
        return True
    if not options.quiet:
        say(f'received "{printable(data, chr(34))}" from {c.peer}')
    reply = make_reply(options, data)
    c.queue.append(reply)
    c.queued += len(reply)
    c.update()  # "add output channel for response"
    return True


def on_writable(c: Conn) -> None:
    if c.queue:  # one message per writable event, as the original
        message = c.queue[0]
        if not options.quiet:
            say(f'sending "{printable(message, chr(34))}" to {c.peer}')
        try:
            sent = c.sock.send(message)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            drop(c, "handling exceptional condition")
            return
        c.queued -= sent
        if sent == len(message):
            c.queue.popleft()
        else:
            c.queue[0] = message[sent:]
    if not c.queue:
        if c.eof:
            drop(c)
            return
        say(f"output queue for {c.peer} is empty")
    c.update()


def on_client(sock: socket.socket, revents: int, c: Conn) -> None:
    if revents & evloop.ERROR or (revents & evloop.HUP and not revents & evloop.READ):
        drop(c, "handling exceptional condition")
    elif not revents & evloop.READ or on_readable(c):
        if revents & evloop.WRITE:
            on_writable(c)


def on_listener(listener: socket.socket, revents: int) -> None:
    for sock, peer in accept_all(listener, lambda: pause_listener(loop, listener)):
        c = Conn(sock, peer)
        connections[sock] = c
        loop.register(sock, evloop.READ, on_client, c)
        say(f"new connection from {c.peer}")


def main() -> int:
    listener = open_listener(options)
    say(f"starting up on {options.host} port {listener.getsockname()[1]}")
    loop.register(listener, evloop.READ, on_listener)
    stopping = stop_loop_on_signals(loop)
    while not stopping:
        say("\nwaiting for the next event")
        loop.run_once()
    for c in list(connections.values()):
        drop(c)
    loop.unregister(listener)
    listener.close()
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""select_echo_server.py: the articles' select() echo servers, on
evloop.Loop: S1 (default, output queues, 127.0.0.1:10000; S3 with --upper),
S2 (--simple: replies sent straight back, no output queues, 127.0.0.1:9990),
S4 (--dict: a dict of queues, a socket leaves "outputs" as soon as a message
is sent, 127.0.0.1:9000). Mirrors c-examples/select_echo_server.c.

The originals keep three lists and call select() on them every turn. Here
the loop keeps them: a connection is "in inputs" while registered for READ
and "in outputs" while WRITE is in its interest, which is exactly while its
queue is not empty. Each turn is one run_once, whose callbacks only note
what is ready: S1 prints "waiting for the next event" before it, S2 and S4
print the three lists it returned, as the originals do.

Fixed: a partial send() leaves the rest at the front of the queue (S2 queues
it: the only queue it has); S2 replied on the last accepted socket: the reply
goes to the sender; EOF closes the connection after its queued replies are
sent (S1 dropped them, S2 and S4 spun on a socket reading b'' forever); an
error closes that connection only (S4 forgot to close it, and raised
KeyError for a socket both readable and exceptional); a client that sends
and never reads is no longer read from once 1 MiB waits for it.

    select_echo_server.py [--host H] [--port P] [--upper] [--simple | --dict] [--quiet]
"""

import collections
import socket

from common import (
    QUEUE_LIMIT, accept_all, address, evloop, make_reply, open_listener, parse_options, pause_listener, printable,
    say, stop_loop_on_signals,
)


def add_options(parser) -> None:
    parser.add_argument("--upper", action="store_true", help="reply in upper case (S3)")
    scripts = parser.add_mutually_exclusive_group()
    scripts.add_argument("--simple", action="store_true", help="replies sent at once, no output queues (S2), port 9990")
    scripts.add_argument("--dict", action="store_true", help="a dict of queues, outputs left once sent (S4), port 9000")


options = parse_options("Echo server with per-connection output queues (S1; S3 with --upper), "
                        "default 127.0.0.1:10000.", lambda o: 9990 if o.simple else 9000 if o.dict else 10000,
                        add_options)
S1 = not options.simple and not options.dict
#: What S2 and S4 say of a reset or an error; S1 its own line.
EXCEPTIONAL = "handling exceptional condition" if S1 else "client disconnected"
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
        say(f"{why} for {c.peer}" if S1 else f"{why} {c.peer}")
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
        drop(c, EXCEPTIONAL)
        return False
    if not data:
        if S1:
            say(f"closing {c.peer} after reading no data")
        if not c.queue:
            drop(c, "" if S1 else "client disconnected")
            return False
        c.eof = True  # S1 dropped the replies still queued: send them first
        c.update()
        return True
    if not options.quiet:
        say(f'received "{printable(data, chr(34))}" from {c.peer}' if S1 else f"received data {data!r}")
    reply = make_reply(options, data)
    if options.simple and not c.queue:
        # S2 sends at once (to the sender: the original used the last
        # accepted socket), and queues only what the socket does not take.
        try:
            reply = reply[c.sock.send(reply):]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            drop(c, EXCEPTIONAL)
            return False
    if reply:
        c.queue.append(reply)
        c.queued += len(reply)
    c.update()  # "add output channel for response"
    return True


def on_writable(c: Conn) -> None:
    while c.queue:  # one message per writable event, as S1 and S4; S2 sends all it can
        message = c.queue[0]
        if S1 and not options.quiet:
            say(f'sending "{printable(message, chr(34))}" to {c.peer}')
        try:
            sent = c.sock.send(message)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            drop(c, EXCEPTIONAL)
            return
        c.queued -= sent
        if sent < len(message):
            c.queue[0] = message[sent:]
            break
        c.queue.popleft()
        if not options.simple:
            break
    if not c.queue:
        if c.eof:
            drop(c, "" if S1 else "client disconnected")
            return
        if S1:  # S4 "removes it from outputs", silently
            say(f"output queue for {c.peer} is empty")
    c.update()


def on_client(c: Conn, revents: int) -> None:
    if revents & evloop.ERROR or (revents & evloop.HUP and not revents & evloop.READ):
        drop(c, EXCEPTIONAL)
    elif not revents & evloop.READ or on_readable(c):
        if revents & evloop.WRITE:
            on_writable(c)


def on_listener(listener: socket.socket, note) -> None:
    for sock, peer in accept_all(listener, lambda: pause_listener(loop, listener)):
        c = Conn(sock, peer)
        connections[sock] = c
        loop.register(sock, evloop.READ, note)
        say(f"new connection from {c.peer}" if S1 else f"new connection {c.peer}")


def print_lists(listener: socket.socket, ready: list) -> None:
    """S2 and S4 print what select() returned: the readable, writable and
    exceptional sockets, here by address (the listener by its own)."""
    lists = []
    for kind in (evloop.READ, evloop.WRITE, evloop.ERROR | evloop.HUP):
        names = [connections[s].peer if s is not listener else address(s.getsockname())
                 for s, revents in ready if revents & kind]
        lists.append("[" + ", ".join(names) + "]")
    say(" ".join(lists))


def main() -> int:
    listener = open_listener(options)
    if S1:
        say(f"starting up on {options.host} port {listener.getsockname()[1]}")
    ready = []

    def note(sock: socket.socket, revents: int) -> None:
        ready.append((sock, revents))

    loop.register(listener, evloop.READ, note)
    stopping = stop_loop_on_signals(loop)
    while not stopping:
        if S1:
            say("\nwaiting for the next event")
        ready.clear()
        loop.run_once()
        if stopping:
            break
        if not S1 and not options.quiet:
            print_lists(listener, ready)
        # Handling an event closes at most its own connection, never another
        # one of the batch, so every event here is for an open connection.
        for sock, revents in ready:
            if sock is listener:
                on_listener(listener, note)
            else:
                on_client(connections[sock], revents)
    for c in list(connections.values()):
        drop(c)
    loop.unregister(listener)
    listener.close()
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

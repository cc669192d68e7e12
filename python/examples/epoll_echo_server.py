#!/usr/bin/env python3
"""epoll_echo_server.py: the articles' select.epoll echo server (S7), on
evloop.Loop with register/modify/unregister. Mirrors
c-examples/epoll_echo_server.c.

Written the way S7 is: poll (one run_once, whose callbacks only note which
fds are ready, like epoll.poll's list), then look at each (fd, events) pair.
A connection is registered for READ; after every read its interest is
modified to WRITE, and once its queue is found empty, back to READ. That
costs two epoll_ctl calls per message: to write a server, copy
selectors_echo_server.py or stream_echo_server.py instead.

Fixed: recv() returning b'' closes the connection (S7 waited for EPOLLHUP,
which a half-closed peer never raises); a partial send() keeps the rest in
front of the queue; "sending" logs the message sent; an error closes that
connection only; SIGINT/SIGTERM end the loop and the original's clean-up
runs (unregister the listener, close the loop, close the listener).

    epoll_echo_server.py [--host H] [--port P] [--timeout S] [--quiet]
"""

import collections
import socket

from common import (
    accept_all, address, evloop, open_listener, parse_options, pause_listener, positive, printable, say,
    stop_loop_on_signals,
)


def add_options(parser) -> None:
    parser.add_argument("--timeout", type=positive, default=10, metavar="S",
                        help='report "no active connections" after S seconds idle (default 10)')


options = parse_options("Echo server on a level-triggered poll loop (S7), default 127.0.0.1:8888.", 8888, add_options)
loop = evloop.Loop()
connections = {}  # fd -> [socket, peer, queue]


def client_closed(fd: int) -> None:
    say("client closed")
    sock = connections.pop(fd)[0]
    loop.unregister(sock)
    sock.close()


def on_readable(fd: int) -> None:
    sock, peer, queue = connections[fd]
    try:
        data = sock.recv(1024)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        client_closed(fd)
        return
    if not options.quiet:
        say(f"received {printable(data)} from {peer}")
    queue.append(data)
    loop.modify(sock, evloop.WRITE)  # epoll.modify(fd, select.EPOLLOUT)


def on_writable(fd: int) -> None:
    sock, peer, queue = connections[fd]
    if not queue:
        say(f"{peer} queue empty")
        loop.modify(sock, evloop.READ)  # epoll.modify(fd, select.EPOLLIN)
        return
    message = queue[0]
    if not options.quiet:
        say(f"sending {printable(message)} to {peer}")
    try:
        sent = sock.send(message)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        client_closed(fd)
        return
    if sent == len(message):
        queue.popleft()
    else:
        queue[0] = message[sent:]


def main() -> int:
    listener = open_listener(options)
    say(f"server started, listening on {address(listener.getsockname())}")
    ready = []

    def note(fileobj: object, revents: int) -> None:
        ready.append((fileobj, revents))

    loop.register(listener, evloop.READ, note)
    stopping = stop_loop_on_signals(loop)
    while not stopping:
        say("waiting for active connections")
        ready.clear()
        loop.run_once(options.timeout)
        if stopping:
            break
        if not ready:
            say("epoll timed out, no active connections, polling again")
            continue
        say(f"{len(ready)} new events")
        # Handling an event closes at most its own connection, never another
        # one of the batch, so every event here is for an open connection.
        for fileobj, revents in ready:
            if fileobj is listener:
                accept_connections(listener, note)
                continue
            fd = fileobj.fileno()
            if revents & evloop.ERROR:
                client_closed(fd)
            elif revents & evloop.READ:  # before HUP: data first
                on_readable(fd)
            elif revents & evloop.HUP:
                client_closed(fd)
            elif revents & evloop.WRITE:
                on_writable(fd)
    for fd in list(connections):
        sock = connections.pop(fd)[0]
        loop.unregister(sock)
        sock.close()
    loop.unregister(listener)
    loop.close()
    listener.close()
    return 0


def accept_connections(listener: socket.socket, note) -> None:
    for sock, addr in accept_all(listener, lambda: pause_listener(loop, listener)):
        connections[sock.fileno()] = [sock, address(addr), collections.deque()]
        loop.register(sock, evloop.READ, note)
        say(f"new connection {address(addr)}")


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""selectors_echo_server.py: the articles' selectors echo server (S5; S6 with
--sb), on evloop.DefaultSelector: the original's code with one line changed
(the selector), plus its bugs fixed. Mirrors c-examples/selectors_echo_server.c.

Fixed: a partial send() keeps the rest queued and asks for EVENT_WRITE; EOF
closes the connection after its queued replies are sent; a reset or error
closes that connection only; while 1 MiB waits for a client that does not
read, the server stops reading from it; running out of fds pauses accepting
for 100 ms instead of spinning.

    selectors_echo_server.py [--host H] [--port P] [--sb] [--quiet]
"""

import socket
import time

from common import (
    QUEUE_LIMIT, Stopped, accept_all, address, evloop, make_reply, open_listener, parse_options, raise_on_stop_signals, say,
)

selectors = evloop  # the one-line change: `import evloop as selectors`
sel = selectors.DefaultSelector()


def add_options(parser) -> None:
    parser.add_argument("--sb", action="store_true", help='reply upper + "_SB" on port 8088 (S6)')


options = parse_options("Echo server with accept/read callbacks (S5), default 127.0.0.1:10000.",
                        lambda o: 8088 if o.sb else 10000, add_options)
plain_echo = options.quiet and not options.sb
resume_accepting_at = None


class Conn:
    """A connection and what waits to be sent to it."""

    def __init__(self, sock: socket.socket, peer: tuple, local: str) -> None:
        self.sock = sock
        self.text = f"<socket fd={sock.fileno()}, laddr={local}, raddr={address(peer)}>"
        self.out = bytearray()
        self.eof = False

    def interest(self) -> int:
        reading = not self.eof and len(self.out) < QUEUE_LIMIT
        return (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if self.out else 0)


def accept(sock: socket.socket, mask: int) -> None:
    for conn, addr in accept_all(sock, lambda: pause_accepting(sock)):
        c = Conn(conn, addr, address(sock.getsockname()))
        say("accepted", c.text, "from", address(addr))
        sel.register(conn, selectors.EVENT_READ, (read, c))


def pause_accepting(sock: socket.socket) -> None:
    """The selector has no timers: the main loop's select() timeout brings
    the listener back."""
    global resume_accepting_at
    sel.unregister(sock)
    resume_accepting_at = time.monotonic() + 0.1


def close(c: Conn) -> None:
    say("closing", c.text)
    sel.unregister(c.sock)
    c.sock.close()


def update(c: Conn) -> None:
    interest = c.interest()
    if interest:
        sel.modify(c.sock, interest, (read, c))
    else:
        close(c)


def read(c: Conn, mask: int) -> None:
    if mask & selectors.EVENT_WRITE:
        try:
            sent = c.sock.send(c.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            close(c)
            return
        del c.out[:sent]
        if c.eof and not c.out:
            close(c)
            return
        if not mask & selectors.EVENT_READ:
            update(c)
            return
    try:
        data = c.sock.recv(1024)
    except BlockingIOError:
        return
    except OSError:  # S6 closes on any error
        close(c)
        return
    if not data:
        if not c.out:
            close(c)
        else:
            c.eof = True  # send what is queued, then close
            update(c)
        return
    if not plain_echo:
        say("echoing", repr(data), "to", c.text)
        data = make_reply(options, data)
    if c.out:  # behind what is queued: keep the order
        c.out += data
        update(c)
        return
    try:
        sent = c.sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        close(c)
        return
    if sent < len(data):
        c.out += data[sent:]
        update(c)


def main() -> int:
    global resume_accepting_at
    raise_on_stop_signals()
    listener = open_listener(options)
    sel.register(listener, selectors.EVENT_READ, (accept, listener))
    try:
        while True:
            timeout = None
            if resume_accepting_at is not None:
                timeout = resume_accepting_at - time.monotonic()
                if timeout <= 0:
                    sel.register(listener, selectors.EVENT_READ, (accept, listener))
                    resume_accepting_at, timeout = None, None
            for key, mask in sel.select(timeout):
                callback, arg = key.data
                callback(arg, mask)
    except Stopped:
        pass
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    if resume_accepting_at is not None:
        listener.close()
    sel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

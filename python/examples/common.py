"""What the echo examples share, as c-examples/common.h does for the C ones:
options, the listening socket, log formatting in the originals' style,
replies (--upper, --sb) and a clean exit on SIGINT/SIGTERM.

The examples run from a checkout without installing anything: the package
is found beside this directory (python/evloop).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from typing import Callable, Iterator, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import evloop  # noqa: E402  (after the path is set)

#: Log lines show at most this much of a message, then "...".
SHOWN_BYTES = 1024
#: Above this many queued bytes a server stops reading from that client, so a
#: client that sends and never reads cannot grow the server's memory.
QUEUE_LIMIT = 1 << 20

quiet = False


def say(*parts: object) -> None:
    """A log line, unless --quiet."""
    if not quiet:
        print(*parts, flush=True)


def parse_options(description: str, default_port: int, add: Optional[Callable[[argparse.ArgumentParser], None]] = None,
                  argv: Optional[list] = None) -> argparse.Namespace:
    """--host, --port (0: any free port, printed alone on the first line),
    --quiet, and what `add` adds. Bad arguments exit with status 2."""
    global quiet
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=None)
    parser.add_argument("--quiet", action="store_true", help="no log lines")
    if add:
        add(parser)
    options = parser.parse_args(argv)
    if options.port is None:
        options.port = default_port(options) if callable(default_port) else default_port
    quiet = options.quiet
    return options


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 1, got {text!r}")
    return value


def not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number from 0, got {text!r}")
    return value


def open_listener(options: argparse.Namespace) -> socket.socket:
    """A non-blocking listening socket on --host/--port, backlog SOMAXCONN
    (the originals' 5 to 100 made C2's 10,000 connections wait for SYN
    retransmissions). With --port 0 the chosen port is printed first."""
    error: Optional[OSError] = None
    for family, kind, proto, _, address in socket.getaddrinfo(
        options.host, options.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
        except OSError as e:
            sock.close()
            error = e
            continue
        sock.setblocking(False)
        if options.port == 0:
            print(sock.getsockname()[1], flush=True)
        return sock
    sys.exit(f"listen: {error}")


def address(addr: object) -> str:
    """An address as Python prints a socket address tuple."""
    if isinstance(addr, tuple):
        return f"('{addr[0]}', {addr[1]})"
    return str(addr)


def _escapes(quote: str) -> dict:
    table = {c: f"\\x{c:02x}" for c in list(range(0x20)) + list(range(0x7F, 0x100))}
    table.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    if quote:
        table[ord(quote)] = "\\" + quote
    return table


_ESCAPES = {quote: _escapes(quote) for quote in ("", '"', "'")}


def printable(data: bytes, quote: str = "") -> str:
    """`data` for a log line: escapes for what is not printable and for
    `quote`; at most SHOWN_BYTES, then "..." (as c-examples/common.h)."""
    text = data[:SHOWN_BYTES].decode("latin-1").translate(_ESCAPES[quote])
    return text + ("..." if len(data) > SHOWN_BYTES else "")


def make_reply(options: argparse.Namespace, data: bytes) -> bytes:
    """What the server answers: the same bytes, upper case for --upper,
    upper + "_SB" for --sb."""
    if getattr(options, "sb", False):
        return data.upper() + b"_SB"
    if getattr(options, "upper", False):
        return data.upper()
    return data


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so that handlers that
    catch Exception (S6 closes a connection on any) let it through."""


def raise_on_stop_signals() -> None:
    """SIGINT and SIGTERM raise Stopped where the program is, so that it
    finishes cleanly (status 0) from its main loop."""

    def stop(signo: int, frame: object) -> None:
        raise Stopped(signo)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def stop_loop_on_signals(loop: "evloop.Loop") -> list:
    """SIGINT and SIGTERM stop `loop` (run() returns) and are appended to the
    list returned, which programs that call run_once() test, so that the
    program finishes cleanly (status 0)."""
    stopping: list = []

    def stop(signo: int) -> None:
        stopping.append(signo)
        loop.stop()

    loop.add_signal_handler(signal.SIGINT, stop, signal.SIGINT)
    loop.add_signal_handler(signal.SIGTERM, stop, signal.SIGTERM)
    return stopping


OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def accept_all(listener: socket.socket, pause: Callable[[], None]) -> Iterator[Tuple[socket.socket, tuple]]:
    """Every connection waiting on `listener`, made non-blocking. Out of fds
    the connection stays in the backlog and the listener ready, so instead of
    spinning this says so and calls `pause()`, which stops watching the
    listener for 100 ms; the open connections go on being served."""
    while True:
        try:
            sock, peer = listener.accept()
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno in OUT_OF_FDS:
                print(f"accept: {e.strerror}; pausing for 100 ms", file=sys.stderr)
                pause()
                return
            continue  # reset before it was taken
        sock.setblocking(False)
        yield sock, peer


def pause_listener(loop: "evloop.Loop", listener: socket.socket) -> None:
    """accept_all's `pause` for a listener registered in `loop` for READ."""
    loop.modify(listener, 0)
    loop.call_later(0.1, loop.modify, listener, evloop.READ)

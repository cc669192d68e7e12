"""What both asyncio paths' datagram transports share (the ctypes path's
``_ctypes_asyncio/datagram.py``, the native path's ``_native/_datagram.py``):
asyncio's behaviour over a library UDP socket made of a duplicate of the
socket create_datagram_endpoint made.

Protocols see asyncio's: connection_made before any datagram,
datagram_received(data, addr) (an exception from it goes to the loop's
exception handler and the transport goes on, as from asyncio's reader
callback), error_received for what the kernel refuses a datagram for and
for a connected socket's ICMP errors, sendto's checks and errors,
pause_reading, close after what is queued is sent, connection_lost last and
once, and the socket open until connection_lost has returned; each callback
in a copy of the contextvars context that made the transport.

Flow control: the library's queue is bounded at the transport's high-water
mark; past it a datagram is kept here in order and the protocol's
pause_writing() is called; when the queue empties the kept ones are sent
and resume_writing() follows. (While over the mark the library also stops
receiving, where asyncio would go on.) get_write_buffer_size() counts 64
bytes of overhead per datagram queued in the library.

A subclass provides the library's side: ``_send_to(data, raw, addr)`` (0 or
-errno; ``raw`` the sockaddr bytes, None for the connected peer),
``_queued()``, ``_set_watermarks(high, low)``, ``_close_udp()`` and
``_set_library_reading(on)``; it calls ``_stream_drained()``,
``_udp_error(status)`` and ``_stream_closed(status)`` (status 0 or -errno)
for its socket's events, and ``_deliver`` or ``_hold`` with what it receives.
"""

from __future__ import annotations

import collections
import contextvars
import errno
import os
import socket
import sys
import warnings
from asyncio import constants, futures
from asyncio.log import logger
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from . import _sockaddr
from ._socket_extra import add_socket_extra

# Empty datagrams are sent from 3.12 on; before, sendto(b"") did nothing.
SENDS_EMPTY = sys.version_info >= (3, 12)


def _os_error(status: int) -> OSError:
    return OSError(-status, os.strerror(-status))  # the errno's subclass (ConnectionRefusedError...)


class DatagramEndpoint:
    """asyncio's datagram transport over a library UDP socket (see the module);
    mixed in before ``_ctypes_asyncio.fatal.FatalErrors`` and the transport's
    native or asyncio bases."""

    max_size = 256 * 1024  # asyncio's attribute; the library receives any datagram whole
    _sock: Optional[socket.socket] = None
    _protocol_connected = True
    # What asyncio's _FlowControlMixin and BaseTransport set, which the type stubs leave out.
    _extra: Any
    _loop: Any
    _protocol: Any
    _context: Any
    _high_water: int
    _low_water: int
    _maybe_pause_protocol: Callable[[], None]
    _maybe_resume_protocol: Callable[[], None]
    set_protocol: Callable[[Any], None]
    _fatal_error: Callable[[BaseException, str], None]
    # The library's side (see the module).
    _send_to: Callable[[bytes, Optional[bytes], Any], int]
    _queued: Callable[[], int]
    _set_watermarks: Callable[[int, int], Any]
    _close_udp: Callable[[], Any]

    def _prepare(self, sock: socket.socket, protocol: Any, address: Any) -> None:
        """The state, before the library's socket is made."""
        add_socket_extra(self._extra, sock)
        self._sock, self._sock_fd, self._family = sock, sock.fileno(), sock.family
        self.set_protocol(protocol)
        self._address = address
        self._conn_lost = 0
        self._closing = False
        self._gone = False  # the library's socket is closed
        self._paused = False
        self._started = False  # connection_made() has run
        self._held: List[Sequence[Any]] = []  # (data, addr, truncated) received while not delivering
        self._overflow: Deque[Tuple[bytes, Optional[bytes], Any]] = collections.deque()
        self._context = contextvars.copy_context()

    def _announce(self, loop: Any, waiter: Any) -> None:
        """After the library's socket is made: connection_made, then reading."""
        self._set_watermarks(self._high_water, self._low_water)
        loop._transports[self._sock_fd] = self
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start, context=self._context)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        state = " closed" if self._sock is None else (" closing" if self._closing else "")
        return f"<{self.__class__.__name__} fd={self._sock_fd}{state}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    def _start(self) -> None:
        self._started = True
        self._reading_changed()
        if self._held and not self._paused:
            held, self._held = self._held, []
            self._deliver(held)

    def _reading_changed(self) -> None:
        self._set_library_reading(self._started and not self._paused and not self._closing and not self._gone)

    def _set_library_reading(self, on: bool) -> None:
        """Whether the library's datagrams go to the protocol now."""

    # ---- sending -------------------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if not data and not SENDS_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if self._gone:
            return
        try:
            raw = None if self._extra["peername"] or addr is None else _sockaddr.encode(addr, self._family)
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
            return
        data = bytes(data)
        if self._overflow:
            self._overflow.append((data, raw, addr))
            return
        code = self._send_to(data, raw, addr)
        if code:
            self._send_outcome(code, data, addr, raw)

    def _send_outcome(self, code: int, data: Any, addr: Any, raw: Optional[bytes] = None) -> None:
        """What a send the library refused (-errno) becomes."""
        if code == -errno.ENOBUFS:
            if raw is None and not self._extra["peername"]:
                raw = _sockaddr.encode(addr, self._family)
            self._overflow.append((bytes(data), raw, addr))
            self._overflowing(True)
            self._maybe_pause_protocol()
        elif code < 0 and code != -errno.EPIPE:
            self._protocol.error_received(_os_error(code))

    def _overflowing(self, on: bool) -> None:
        """Whether datagrams wait in the overflow."""

    def _send_overflow(self) -> None:
        """The datagrams kept for a full queue, in order, as far as it takes them."""
        while self._overflow and not self._gone:
            data, raw, addr = self._overflow[0]
            code = self._send_to(data, raw, addr)
            if code == -errno.ENOBUFS:
                return
            self._overflow.popleft()
            if code < 0:
                self._protocol.error_received(_os_error(code))
        self._overflowing(False)

    def get_write_buffer_size(self) -> int:
        if self._gone:
            return 0
        return self._queued() + sum(len(data) for data, _, _ in self._overflow)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        super().set_write_buffer_limits(high, low)  # type: ignore[misc]  # _FlowControlMixin's
        if not self._gone:
            self._set_watermarks(self._high_water, self._low_water)

    # ---- receiving -------------------------------------------------------------------

    def _deliver(self, batch: Sequence[Sequence[Any]]) -> None:
        for index, (data, addr, _truncated) in enumerate(batch):
            if self._conn_lost or self._paused:
                if self._paused and not self._conn_lost:
                    self._held.extend(batch[index:])
                return
            try:
                self._protocol.datagram_received(data, addr)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # As an exception from asyncio's reader callback: reported, and the transport goes on.
                self._loop.call_exception_handler(
                    {
                        "message": "Exception in callback datagram_received()",
                        "exception": exc,
                        "transport": self,
                        "protocol": self._protocol,
                    }
                )

    def _hold(self, data: bytes, addr: Any) -> None:
        """A datagram that came while the protocol does not take them."""
        if not self._closing and not self._conn_lost:
            self._held.append((data, addr, False))

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._reading_changed()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._reading_changed()
        if self._held and self._started:
            held, self._held = self._held, []
            self._loop.call_soon(self._deliver, held, context=self._context)

    # ---- ending ------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._held = []
        self._reading_changed()
        if self._overflow:
            return  # closed once the queue has taken them (_stream_drained)
        self._close_now()

    def _close_now(self) -> None:
        if not self._gone:
            self._gone = True
            self._close_udp()  # sends what is queued
        if not self._conn_lost:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._overflow.clear()
        self._closing = True
        self._held = []
        if not self._gone:
            self._gone = True
            self._close_udp()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self.set_protocol(None)
            self._loop = None

    # ---- the library socket's events ------------------------------------------------------

    def _udp_error(self, status: int) -> None:
        if not self._conn_lost:
            self._context.run(self._protocol.error_received, _os_error(status))

    def _stream_drained(self) -> None:
        if self._overflow:
            self._context.run(self._send_overflow)
        if self._overflow:
            return
        if self._closing:
            self._close_now()
        else:
            self._context.run(self._maybe_resume_protocol)

    def _stream_closed(self, status: int) -> None:
        self._gone = True
        if not self._conn_lost:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None if status == 0 else _os_error(status))


def supports(sock: socket.socket) -> bool:
    """Whether the library can serve `sock` (IPv4 and IPv6 UDP)."""
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_DGRAM

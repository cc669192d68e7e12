"""asyncio's datagram transport on the native path: the library's UDP
socket (recvmmsg in, sendto/sendmmsg out, a bounded queue) over a duplicate
of the socket asyncio's create_datagram_endpoint made, so that every
argument of it (local_addr, remote_addr, family, reuse_port,
allow_broadcast, sock=) keeps asyncio's meaning.

The hot path is the library's (src/cpython/datagram.rs): each received
datagram becomes a ``bytes`` and an address tuple and goes to
``datagram_received`` natively, and ``sendto`` to the peer a datagram just
came from, to the last destination given, or to the connected peer is sent
natively. This class holds the rest, as the ctypes path's transport does
(``evloop/_ctypes_asyncio/datagram.py``, the reference): asyncio's checks
and messages, addresses to encode, the overflow of a full queue with
pause_writing/resume_writing, pause_reading, close and abort,
connection_lost once, the socket open until it has returned.
"""

from __future__ import annotations

import collections
import contextvars
import errno
import os
import socket
import warnings
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger
from typing import Any, Callable, Deque, List, Optional, Tuple

from .. import _sockaddr
from .._ctypes_asyncio.datagram import _SENDS_EMPTY
from .._ctypes_asyncio.fatal import FatalErrors
from ._load import load

core = load()


class DatagramTransport(FatalErrors, core.DatagramTransport, transports.DatagramTransport):  # type: ignore[misc,name-defined]
    """A datagram transport of the native loop (see the module)."""

    max_size = 256 * 1024  # asyncio's attribute; the library receives any datagram whole
    _sock: Optional[socket.socket] = None
    # What the native type and asyncio's _FlowControlMixin set, for the type checker.
    _protocol: Any
    _context: Any
    _receiving: bool
    _fast_send: bool
    _extra: Any
    _loop: Any
    _high_water: int
    _low_water: int
    _maybe_pause_protocol: Callable[[], None]
    _maybe_resume_protocol: Callable[[], None]

    def __init__(
        self, loop: Any, sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
    ) -> None:
        super().__init__(extra, loop)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock, self._sock_fd, self._family = sock, sock.fileno(), sock.family
        self.set_protocol(protocol)
        self._address = address
        self._conn_lost = 0
        self._closing = False
        self._gone = False  # the library's socket is closed
        self._paused = False
        self._started = False  # connection_made() has run
        self._held: List[Tuple[bytes, Any]] = []  # received while not receiving
        self._overflow: Deque[Tuple[bytes, Optional[bytes], Any]] = collections.deque()
        self._context = contextvars.copy_context()
        loop._udp_open(self, self._sock_fd, bool(self._extra["peername"]))
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
        self._update_receiving()
        if self._held and not self._paused:
            held, self._held = self._held, []
            self._deliver(held)

    def _update_receiving(self) -> None:
        self._receiving = self._started and not self._paused and not self._closing and not self._gone

    # ---- sending -------------------------------------------------------------------
    # sendto() is native (datagram.rs); what it does not send comes here.

    def _sendto_slow(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if not data and not _SENDS_EMPTY:
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
        self._send_outcome(self._send_to(data, raw, addr), data, addr, raw)

    def _send_outcome(self, code: int, data: Any, addr: Any, raw: Optional[bytes] = None) -> None:
        """What a send the library refused (-errno) becomes."""
        if code == -errno.ENOBUFS:
            if raw is None and not self._extra["peername"]:
                raw = _sockaddr.encode(addr, self._family)
            self._overflow.append((bytes(data), raw, addr))
            self._fast_send = False
            self._maybe_pause_protocol()
        elif code < 0 and code != -errno.EPIPE:
            self._protocol.error_received(OSError(-code, os.strerror(-code)))

    def _send_overflow(self) -> None:
        """The datagrams kept for a full queue, in order, as far as it takes them."""
        while self._overflow and not self._gone:
            data, raw, addr = self._overflow[0]
            code = self._send_to(data, raw, addr)
            if code == -errno.ENOBUFS:
                return
            self._overflow.popleft()
            if code < 0:
                self._protocol.error_received(OSError(-code, os.strerror(-code)))
        self._fast_send = not self._overflow and not self._gone

    def get_write_buffer_size(self) -> int:
        if self._gone:
            return 0
        return self._queued() + sum(len(data) for data, _, _ in self._overflow)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        super().set_write_buffer_limits(high, low)
        if not self._gone:
            self._set_watermarks(self._high_water, self._low_water)

    # ---- receiving -------------------------------------------------------------------

    def _deliver(self, held: List[Tuple[bytes, Any]]) -> None:
        for index, (data, addr) in enumerate(held):
            if self._conn_lost or self._paused:
                if self._paused and not self._conn_lost:
                    self._held.extend(held[index:])
                return
            try:
                self._protocol.datagram_received(data, addr)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {
                        "message": "Exception in callback datagram_received()",
                        "exception": exc,
                        "transport": self,
                        "protocol": self._protocol,
                    }
                )

    def _hold(self, data: bytes, addr: Any) -> None:
        """A datagram of a batch that came while not receiving."""
        if not self._closing and not self._conn_lost:
            self._held.append((data, addr))

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._update_receiving()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._update_receiving()
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
        self._update_receiving()
        if self._overflow:
            return  # closed once the queue has taken them (_udp_drained)
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
            self._last_from = self._last_to = None
            self._loop = None

    _protocol_connected = True

    # ---- what the native code calls -----------------------------------------------------

    def _udp_error(self, code: int) -> None:
        if not self._conn_lost:
            self._context.run(self._protocol.error_received, OSError(code, os.strerror(code)))

    def _udp_drained(self) -> None:
        if self._overflow:
            self._context.run(self._send_overflow)
        if self._overflow:
            return
        if self._closing:
            self._close_now()
        else:
            self._context.run(self._maybe_resume_protocol)

    def _udp_closed(self, code: int) -> None:
        self._gone = True
        if not self._conn_lost:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None if code == 0 else OSError(code, os.strerror(code)))


def supports(sock: socket.socket) -> bool:
    """Whether the library can serve `sock` (IPv4 and IPv6 UDP)."""
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_DGRAM

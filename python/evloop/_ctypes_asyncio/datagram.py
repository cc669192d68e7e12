"""asyncio's datagram transport on the ctypes path: a library UDP socket
(``evl_udp_open``) over a duplicate of the socket asyncio's
create_datagram_endpoint made, so that every argument of it (local_addr,
remote_addr, family, proto, flags, reuse_port, allow_broadcast, sock=)
keeps asyncio's meaning. The library receives with recvmmsg, the datagrams
of a wait coming in one event, and sends at once or from its queue.

What protocols see is asyncio's: connection_made before any datagram,
datagram_received(data, addr) (an exception from it goes to the loop's
exception handler and the transport goes on, as from asyncio's reader
callback), error_received for what the kernel refuses a datagram for and
for a connected socket's ICMP errors, sendto's checks and errors,
pause_reading, close after what is queued is sent, connection_lost last,
and the socket open until connection_lost has returned; each callback in a
copy of the contextvars context that made the transport.

Flow control: the library's queue is bounded at the transport's high-water
mark; past it a datagram is kept here in order and the protocol's
pause_writing() is called; when the queue empties the kept ones are sent
and resume_writing() follows. (While over the mark the library also stops
receiving, where asyncio would go on.) get_write_buffer_size() counts 64
bytes of overhead per datagram queued in the library.

Only IPv4 and IPv6 sockets: a Unix-domain datagram socket keeps asyncio's
own transport (loop.py).
"""

from __future__ import annotations

import collections
import contextvars
import errno
import os
import socket
import sys
import warnings
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger
from ctypes import byref, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Tuple

from .. import _lib, _sockaddr
from .._datagrams import Sender
from ..streams import StreamEndpoint
from .fatal import FatalErrors

if TYPE_CHECKING:
    from .._datagrams import Datagram
    from .loop import EventLoop

# Empty datagrams are sent from 3.12 on; before, sendto(b"") did nothing.
_SENDS_EMPTY = sys.version_info >= (3, 12)


class DatagramTransport(FatalErrors, transports._FlowControlMixin, transports.DatagramTransport, StreamEndpoint):  # type: ignore[misc]
    """asyncio's datagram transport on a library UDP socket (see the
    module's documentation)."""

    max_size = 256 * 1024  # asyncio's attribute; the library receives any datagram whole
    _sock: Optional[socket.socket] = None
    # What asyncio's _FlowControlMixin and BaseTransport set, which the type stubs leave out.
    _extra: Any
    _loop: Any
    _high_water: int
    _low_water: int
    _maybe_pause_protocol: Callable[[], None]
    _maybe_resume_protocol: Callable[[], None]

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
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
        self._protocol = protocol
        self._address = address
        self._conn_lost = 0
        self._closing = False
        self._gone = False  # the library's socket is closed
        self._paused = False
        self._started = False  # connection_made() has run
        self._held: List["Datagram"] = []  # received before connection_made, or while paused
        self._overflow: Deque[Tuple[bytes, Optional[bytes]]] = collections.deque()
        self._context = contextvars.copy_context()
        self._streams = loop._engine.streams
        duplicate = os.dup(self._sock_fd)
        udp = c_uint64()
        code = _lib.evl_udp_open(self._streams.pointer(), duplicate, _lib.NO_STREAM_CB, None, byref(udp))
        if code < 0:
            os.close(duplicate)
            raise _lib.error(code, "evl_udp_open")
        self._udp = udp.value
        self._send = Sender(self._streams.pointer(), self._udp).send
        self._streams.endpoints[self._udp] = self
        self._call(_lib.evl_udp_set_watermarks, self._high_water, self._low_water)
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

    def _call(self, function: Callable[..., int], *args: Any) -> int:
        return self._streams.call(function, self._udp, *args)

    def _start(self) -> None:
        self._started = True
        if self._held and not self._paused:
            held, self._held = self._held, []
            self._deliver(held)

    # ---- sending -------------------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
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
            self._overflow.append((data, raw))
            return
        code = self._send(data, raw)
        if code == -errno.ENOBUFS:
            self._overflow.append((data, raw))
            self._maybe_pause_protocol()
        elif code < 0:
            self._protocol.error_received(_lib.error(code))

    def _send_overflow(self) -> None:
        """The datagrams kept for a full queue, in order, as far as it takes them."""
        while self._overflow and not self._gone:
            data, raw = self._overflow[0]
            code = self._send(data, raw)
            if code == -errno.ENOBUFS:
                return
            self._overflow.popleft()
            if code < 0:
                self._protocol.error_received(_lib.error(code))

    def get_write_buffer_size(self) -> int:
        if self._gone:
            return 0
        size = c_size_t()
        if _lib.evl_udp_queued(self._streams.pointer(), self._udp, byref(size)) < 0:
            return 0
        return size.value + sum(len(data) for data, _ in self._overflow)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        super().set_write_buffer_limits(high, low)
        if not self._gone:
            self._call(_lib.evl_udp_set_watermarks, self._high_water, self._low_water)

    # ---- receiving -------------------------------------------------------------------

    def _deliver(self, batch: List["Datagram"]) -> None:
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
                    {"message": f"Exception in callback {self!r} datagram_received", "exception": exc}
                )

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._call(_lib.evl_udp_pause)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._call(_lib.evl_udp_resume)
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
        if self._overflow:
            return  # closed once the queue has taken them (_stream_drained)
        self._close_now()

    def _close_now(self) -> None:
        if not self._gone:
            self._gone = True
            self._call(_lib.evl_udp_close)  # sends what is queued
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
            self._call(_lib.evl_udp_close)
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
            self._protocol = None
            self._loop = None

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    _protocol_connected = True

    # ---- what the loop calls (StreamEndpoint) ---------------------------------------

    def _datagrams(self, batch: List["Datagram"]) -> None:
        if self._conn_lost:
            return
        if not self._started or self._paused:
            self._held.extend(batch)
            return
        self._context.run(self._deliver, batch)

    def _udp_error(self, status: int) -> None:
        if not self._conn_lost:
            self._context.run(self._protocol.error_received, _lib.error(status))

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
            self._loop.call_soon(self._call_connection_lost, None if status == 0 else _lib.error(status))

    def _receive_failed(self, exc: BaseException) -> None:
        self._context.run(self._fatal_error, exc, "Fatal read error on datagram transport")

    def _loop_closed(self) -> None:
        self._gone = self._closing = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def supports(sock: socket.socket) -> bool:
    """Whether the library can serve `sock` (IPv4 and IPv6 UDP)."""
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_DGRAM

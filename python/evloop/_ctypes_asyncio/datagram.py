"""asyncio's datagram transport on the ctypes path: a library UDP socket
(``evl_udp_open``) over a duplicate of the socket asyncio's
create_datagram_endpoint made, so that every argument of it (local_addr,
remote_addr, family, proto, flags, reuse_port, allow_broadcast, sock=)
keeps asyncio's meaning. The library receives with recvmmsg, the datagrams
of a wait coming in one event, and sends at once or from its queue.

What protocols see, and the flow control, are the shared
``evloop/_datagram_endpoint.py``'s; this is the library's side through
ctypes.

Only IPv4 and IPv6 sockets: a Unix-domain datagram socket keeps asyncio's
own transport (loop.py).
"""

from __future__ import annotations

import os
import socket
from asyncio import transports
from ctypes import byref, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, Callable, List

from .. import _lib
from .._datagram_endpoint import DatagramEndpoint, supports
from .._datagrams import Sender
from ..streams import StreamEndpoint
from .fatal import FatalErrors

if TYPE_CHECKING:
    from .._datagrams import Datagram
    from .loop import EventLoop

__all__ = ["DatagramTransport", "supports"]


class DatagramTransport(DatagramEndpoint, FatalErrors, transports._FlowControlMixin, transports.DatagramTransport, StreamEndpoint):  # type: ignore[misc]
    """asyncio's datagram transport on a library UDP socket (see the
    module's documentation)."""

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
    ) -> None:
        super().__init__(extra, loop)
        self._prepare(sock, protocol, address)
        self._streams = loop._engine.streams
        duplicate = os.dup(self._sock_fd)
        udp = c_uint64()
        code = _lib.evl_udp_open(self._streams.pointer(), duplicate, _lib.NO_STREAM_CB, None, byref(udp))
        if code < 0:
            os.close(duplicate)
            raise _lib.error(code, "evl_udp_open")
        self._udp = udp.value
        self._send_to = Sender(self._streams.pointer(), self._udp).send  # type: ignore[method-assign]
        self._streams.endpoints[self._udp] = self
        self._announce(loop, waiter)

    def _call(self, function: Callable[..., int], *args: Any) -> int:
        return self._streams.call(function, self._udp, *args)

    # ---- the library's side (DatagramEndpoint) -------------------------------------

    def _queued(self) -> int:
        size = c_size_t()
        if _lib.evl_udp_queued(self._streams.pointer(), self._udp, byref(size)) < 0:
            return 0
        return size.value

    def _set_watermarks(self, high: int, low: int) -> None:
        self._call(_lib.evl_udp_set_watermarks, high, low)

    def _close_udp(self) -> None:
        self._call(_lib.evl_udp_close)

    def _set_library_reading(self, on: bool) -> None:
        if not self._gone:
            self._call(_lib.evl_udp_resume if on else _lib.evl_udp_pause)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    # ---- what the loop calls (StreamEndpoint) ---------------------------------------

    def _datagrams(self, batch: List["Datagram"]) -> None:
        if self._conn_lost:
            return
        if not self._started or self._paused:
            self._held.extend(batch)
            return
        self._context.run(self._deliver, batch)

    def _receive_failed(self, exc: BaseException) -> None:
        self._context.run(self._fatal_error, exc, "Fatal read error on datagram transport")

    def _loop_closed(self) -> None:
        self._gone = self._closing = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

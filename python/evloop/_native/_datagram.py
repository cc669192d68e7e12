"""asyncio's datagram transport on the native path: the library's UDP
socket (recvmmsg in, sendto/sendmmsg out, a bounded queue) over a duplicate
of the socket asyncio's create_datagram_endpoint made, so that every
argument of it (local_addr, remote_addr, family, reuse_port,
allow_broadcast, sock=) keeps asyncio's meaning.

The hot path is the library's (src/cpython/datagram.rs): each received
datagram becomes a ``bytes`` and an address tuple and goes to
``datagram_received`` natively, and ``sendto`` to the peer a datagram just
came from, to the last destination given, or to the connected peer is sent
natively. The rest (asyncio's checks and messages, addresses to encode, the
overflow of a full queue with pause_writing/resume_writing, pause_reading,
close and abort, connection_lost once) is the shared
``evloop/_datagram_endpoint.py``'s, as on the ctypes path.
"""

from __future__ import annotations

import socket
from asyncio import transports
from typing import Any, Optional

from .._datagram_endpoint import DatagramEndpoint, supports
from .._ctypes_asyncio.fatal import FatalErrors
from ._load import load

__all__ = ["DatagramTransport", "supports"]

core = load()


class DatagramTransport(DatagramEndpoint, FatalErrors, core.DatagramTransport, transports.DatagramTransport):  # type: ignore[misc,name-defined]
    """A datagram transport of the native loop (see the module)."""

    # Native members (attributes of the native type), for the type checker.
    _receiving: bool
    _fast_send: bool
    _last_from: Any
    _last_to: Any
    # The native sendto first; asyncio's whole way for what it does not send.
    sendto = core.DatagramTransport.sendto  # type: ignore[name-defined]
    _sendto_slow = DatagramEndpoint.sendto

    def __init__(
        self, loop: Any, sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
    ) -> None:
        super().__init__(extra, loop)  # type: ignore[call-arg]  # _FlowControlMixin.__init__
        self._prepare(sock, protocol, address)
        loop._udp_open(self, self._sock_fd, bool(self._extra["peername"]))
        self._announce(loop, waiter)

    def _set_library_reading(self, on: bool) -> None:
        self._receiving = on

    def _overflowing(self, on: bool) -> None:
        self._fast_send = not on and not self._gone

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            super()._call_connection_lost(exc)
        finally:
            self._last_from = self._last_to = None

"""``ssl=`` on the library's TLS streams, for the ctypes path's transports
(``evloop/_asyncio_tls.py`` has what both paths share: which contexts run
there, the waiter, the timeouts, the exceptions, get_extra_info()).

These are the steps a StreamTransport takes with its ``TLSLink``: the
handshake started on its stream (``evl_tls_start``, bounded by the stream's
idle timeout), its end (CONNECTED: ``connection_made()`` then, as asyncio's
SSL transport calls it; or the stream's end during it), and the bound on a
close that waits for its queue.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from .. import _lib
from .._asyncio_tls import EXTRA_NAMES, SSLTransports, TLSLink, log_handshake, native_config

if TYPE_CHECKING:
    from .transport import StreamTransport

__all__ = ["EXTRA_NAMES", "SSLTransports", "TLSLink", "native_config", "start", "handshake_done", "handshake_failed", "closing"]


def start(link: TLSLink, transport: "StreamTransport", waiter: Any) -> None:
    """The handshake begins on the transport's stream; `waiter` (a future)
    gets None once it is done, or its failure."""
    link.waiter = waiter
    streams, stream = transport._streams, transport._stream
    streams.call(_lib.evl_stream_set_idle_timeout, stream, link.handshake_ms)
    streams.call(_lib.evl_tls_start, stream, link.config.handle, link.server_name)
    link.handshaking = True


def handshake_done(link: TLSLink, transport: "StreamTransport") -> None:
    """The library's CONNECTED event with status 0."""
    if not link.handshaking:
        return
    streams, stream = transport._streams, transport._stream
    streams.call(_lib.evl_stream_set_idle_timeout, stream, 0)  # asyncio's transports have none
    session = link.new_session(lambda function, *args: streams.call(function, stream, *args))
    session.load()  # while the stream is open: it answers after the end too
    if transport._loop.get_debug():
        transport._loop.call_soon(log_handshake, transport)
    if link.upgrade:
        link.settle(None)
    else:
        waiter, link.waiter = link.waiter, None
        transport._connection_up(waiter)


def handshake_failed(link: TLSLink, transport: "StreamTransport", status: int) -> None:
    """The stream ended before its handshake was done."""
    link.handshaking = False
    reason = None
    if status < 0 and status != -errno.ETIMEDOUT:
        from .._tls_session import error_reason

        reason = error_reason(lambda function, *args: transport._streams.call(function, transport._stream, *args))
    if not link.upgrade:
        transport._protocol_connected = False  # connection_made() never ran
    link.settle(link.failure(status, reason))


def closing(link: TLSLink, transport: "StreamTransport") -> None:
    """close() waits for the queue to be sent (close_notify follows it):
    if nothing moves for ssl_shutdown_timeout, the library ends the
    stream, and connection_lost() gets TimeoutError, as from asyncio."""
    if not link.handshaking and not transport._gone:
        try:
            transport._streams.call(_lib.evl_stream_set_idle_timeout, transport._stream, link.shutdown_ms)
        except FileNotFoundError:
            pass  # ended meanwhile: its CLOSED event is on its way

"""asyncio's socket transport on the ctypes path: a library stream over a
duplicate of the socket's fd. Reading is reading.py's, writing and flow
control writing.py's, loop.sendfile() sendfile.py's; here the transport is
made, closed, and told what the library's stream did.

The socket itself stays open, as asyncio's does, until connection_lost()
has returned: the library closes its duplicate when the stream ends, and
the socket's fd keeps its number meanwhile, so no new socket can take it
while the loop's map of fds still gives it to this transport.

asyncio runs a transport's protocol callbacks in copies of the context that
made it (its reader's handle, made then), not in the context of whoever
runs the loop: the library's events come to the transport from the loop's
own, so each is run in the transport's copy (renewed by resume_reading(),
as asyncio adds its reader again then); the writing side's in the context
that made the protocol pause (writing.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import socket
import warnings
from asyncio import base_events, constants, futures, transports
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from .._socket_extra import add_socket_extra
from .. import _lib
from ..streams import StreamEndpoint
from .fatal import FatalErrors
from .reading import EOF, Reading
from . import tls as tls_steps
from .tls import EXTRA_NAMES as TLS_EXTRA_NAMES
from .writing import Writing

if TYPE_CHECKING:
    from .loop import EventLoop
    from .tls import TLSLink

# asyncio.Server counts its transports with _attach()/_detach(), which take
# the transport from 3.13 on.
_SERVER_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1  # type: ignore[attr-defined]


class StreamTransport(FatalErrors, Reading, Writing, transports._FlowControlMixin, transports.Transport, StreamEndpoint):
    """asyncio's socket transport, on a library stream (see the module's documentation)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _sock: Optional[socket.socket] = None
    # What asyncio's BaseTransport sets, which the type stubs leave out.
    _extra: Dict[str, Any]

    @property
    def _as_server_argument(self) -> Tuple[Any, ...]:
        return (self,) if _SERVER_TAKES_TRANSPORT else ()

    def __init__(
        self,
        loop: "EventLoop",
        sock: socket.socket,
        protocol: Any,
        waiter: Optional[asyncio.Future] = None,
        extra: Optional[dict] = None,
        server: Any = None,
        tls: Optional["TLSLink"] = None,
    ) -> None:
        super().__init__(extra, loop)
        self._tls = tls  # a TLS stream of the library (tls.py)
        add_socket_extra(self._extra, sock)
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._server = server
        self._conn_lost = 0  # set when connection_lost is scheduled
        self._closing = False  # close(), abort() or a fatal error
        self._gone = False  # the library ended the stream (and closed its duplicate fd)
        self._context = contextvars.copy_context()  # see the module's documentation
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            base_events._set_nodelay(sock)  # type: ignore[attr-defined]
        self._streams = loop._engine.streams
        duplicate = os.dup(self._sock_fd)
        try:
            self._stream = self._streams.adopt(duplicate, self)
        except BaseException:
            os.close(duplicate)
            raise
        self._init_reading()
        self._init_writing()
        # asyncio's transports never stop reading for what waits to be sent:
        # that is the protocol's business (pause_writing).
        self._streams.call(_lib.evl_stream_set_watermarks, self._stream, 0, 0)
        # close() closes once the queue is sent, as asyncio's does: no
        # lingering (a peer still sending gets a reset, ConnectionError);
        # what has arrived is discarded first, so a peer that stopped
        # sending reads the whole reply and end-of-file.
        self._streams.call(_lib.evl_stream_set_linger, self._stream, _lib.EVL_LINGER_DEFAULT_BYTES, 0)
        self._protocol_connected = False
        self.set_protocol(protocol)
        if server is not None:
            server._attach(*self._as_server_argument)
        loop._transports[self._sock_fd] = self
        if tls is None:
            self._connection_up(waiter)
        else:
            tls_steps.start(tls, self, waiter)  # _connection_up() once its handshake is done

    def _connection_up(self, waiter: Optional[asyncio.Future]) -> None:
        """connection_made(), then the data (and the waiter's result)."""
        loop = self._loop
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start, context=self._context)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._tls is not None and name in TLS_EXTRA_NAMES:
            return self._tls.extra(name, default)
        return self._extra.get(name, default)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None and not self._gone:
            info.append("read=polling" if self.is_reading() else "read=idle")
            info.append(f"write=<bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._sock is not None:
            if not self._gone:
                _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # ---- ending --------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._update_fast_write()
        self._stop_reading()
        if not self._gone and self.get_write_buffer_size():
            # As asyncio's transport: reading stops, and the protocol may
            # still write (resume_writing() comes as the queue drains: an SSL
            # protocol sends its close_notify then); the stream closes once
            # the queue is empty.
            self._stream_call(_lib.evl_stream_pause)
            self._close_when_drained = True
            if self._tls is not None:
                tls_steps.closing(self._tls, self)
            return
        self._close_now()

    def _close_now(self) -> None:
        if self._gone or not self._stream_call(_lib.evl_stream_close) or not self._stream_exists():
            # Closed at once (nothing was queued): connection_lost() comes
            # next, as from asyncio's transport, not after the next wait.
            self._gone = True
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._closing = True
        self._conn_lost += 1
        self._update_fast_write()
        self._stop_reading()
        if not self._gone:
            self._stream_call(_lib.evl_stream_abort)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            # As asyncio's transport: the socket is closed once
            # connection_lost() has returned.
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._protocol = None
            self._loop = None
            server, self._server = self._server, None
            if server is not None:
                server._detach(*self._as_server_argument)
            waiter, self._drain_waiter = self._drain_waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # ---- the library's stream --------------------------------------------------------

    def _stream_call(self, function: Callable[..., int]) -> bool:
        """A stream function of the library; False if the stream has ended."""
        if self._gone:
            return False
        try:
            self._streams.call(function, self._stream)
        except FileNotFoundError:
            return False
        return True

    def _stream_exists(self) -> bool:
        return self._streams.exists(self._stream)

    # What the loop calls (StreamEndpoint): each runs what it brings in the
    # context of the protocol's callbacks.

    def _receive_failed(self, exc: BaseException) -> None:
        self._context.run(self._fatal_error, exc, "Fatal error: protocol.data_received() call failed.")

    def _stream_eof(self) -> None:
        if self._receiving:
            self._context.run(self._eof_received)
        elif not self._closing:
            self._backlog.append(EOF)

    def _stream_drained(self) -> None:
        (self._write_context or self._context).run(self._drained)

    def _stream_closed(self, status: int) -> None:
        # The end of a close() that waited for the queue to be sent comes
        # from the writing side, the rest from the reading side.
        writing = self._closing and self._write_context is not None
        (self._write_context if writing else self._context).run(self._stream_ended, status)  # type: ignore[union-attr]

    def _stream_connected(self) -> None:
        # Adopted streams are connected already: this is a TLS handshake's end.
        if self._tls is not None:
            self._context.run(tls_steps.handshake_done, self._tls, self)

    def _loop_closed(self) -> None:
        """The loop was closed with the transport open (its stream is gone):
        the connection ends, no connection_lost() will come."""
        self._gone = self._closing = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _eof_received(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _stream_ended(self, status: int) -> None:
        self._gone = True
        self._update_fast_write()
        if self._tls is not None and self._tls.handshaking:
            tls_steps.handshake_failed(self._tls, self, status)
        if self._conn_lost:
            return
        if self._closing:  # close() asked for it
            self._conn_lost += 1
            exc = None if status == 0 else self._streams.failure(self._stream, status)
            self._loop.call_soon(self._call_connection_lost, exc)
        elif self._started and (status != 0 or not self._backlog):
            # Paused or not, as asyncio's transport learns of an error
            # from a write while reading is paused.
            self._connection_ended(status)
        else:
            # After connection_made(); a clean end after the bytes and EOF
            # that came before it.
            self._backlog.append(("closed", status))

    def _connection_ended(self, status: int) -> None:
        """The library ended the stream: the peer reset it, or both sides
        shut down."""
        if status == 0:
            self._force_close(None)
        else:
            self._fatal_error(self._streams.failure(self._stream, status), "Fatal read error on socket transport")

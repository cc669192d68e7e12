"""An asyncio event loop on evloop: ``evloop.new_event_loop()``.

It is asyncio's own ``SelectorEventLoop`` over a selector that is an
``evloop.Loop``: asyncio's timers, callbacks, raw fds (add_reader, sock_*,
UDP, pipes, subprocesses, signals) run as asyncio wrote them, and the wait
of each iteration is the Loop's one foreign call, ``evl_stream_exchange``.
Socket transports (TCP and Unix: create_server, create_connection,
connect_accepted_socket, start_tls, and so asyncio's streams) are replaced by
transports on the library's buffered streams: the library reads, writes and
queues, and the bytes written in an iteration go out in one call (right
after a batch of data from several streams, or with the next exchange), so
a round trip costs no foreign call of its own. Stream events and raw fd
events come out of the same call. call_soon() and _run_once() are
asyncio's, made leaner where debug mode is off and no timer is due.

Protocols see what asyncio's transports do: connection_made before any
data, Protocol and BufferedProtocol, eof_received, flow control with
pause_writing()/resume_writing() at the write-buffer limits (64 KiB high by
default), pause_reading()/resume_reading(), exceptions in protocol callbacks
reported to the loop's exception handler, closing that transport only.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import inspect
import io
import os
import socket
import sys
import warnings
from asyncio import base_events, constants, events, exceptions, futures, protocols, sslproto, transports, trsock
from asyncio.log import logger
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _lib
from ._lib import timeout_ms
from ._loop import Loop
from .streams import StreamEndpoint
from .selector import _TO_SELECTORS, EvloopSelector, _SelectorMapping

# Stream events that came while the protocol could not take them (before
# connection_made ran, or while reading is paused) wait in the transport's
# backlog with the data, in order.
_EOF = object()
# asyncio.Server counts its transports with _attach()/_detach(), which take
# the transport from 3.13 on.
_SERVER_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1  # type: ignore[attr-defined]
# What loop.sendfile() reads and writes at a time.
_SENDFILE_BLOCK = 64 * 1024


# call_soon() builds asyncio's Handle itself, field by field, where the
# Handle has exactly these fields: the same object as asyncio's, without a
# Python __init__ that asks the loop for its debug mode (futures and tasks
# call call_soon for every wakeup).
_LEAN_HANDLES = getattr(events.Handle, "__slots__", None) == (
    "_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr", "__weakref__", "_context",
)
_new_handle = object.__new__
_copy_context = contextvars.copy_context


class _LoopSelector(EvloopSelector):
    """A selector whose fds are watched by an evloop.Loop, and whose
    select() is one iteration of that Loop: the Loop's streams are served
    by the same call (their protocols run from inside select())."""

    def __init__(self, engine: Loop) -> None:  # no evl_loop of its own
        self._ptr = None
        self._engine = engine
        self._fd_to_key: dict = {}
        self._map: Optional[_SelectorMapping] = _SelectorMapping(self)
        self._io_ready: List[Tuple[int, int]] = []

    def _on_ready(self, fd: int, revents: int) -> None:
        self._io_ready.append((fd, revents))

    def _watch(self, fd: int, events: int) -> None:
        self._engine.register(fd, events, self._on_ready)

    def _rewatch(self, fd: int, events: int) -> None:
        self._engine.modify(fd, events)

    def _unwatch(self, fd: int) -> None:
        if not self._engine.is_closed():
            self._engine.unregister(fd)

    def select(self, timeout: Optional[float] = None) -> List[Tuple[Any, int]]:
        return self.select_ms(timeout_ms(timeout))

    def select_ms(self, wait_ms: int) -> List[Tuple[Any, int]]:
        """select() with the timeout in milliseconds (-1: none)."""
        self._engine.iterate(wait_ms)
        if not self._io_ready:
            return []
        ready, self._io_ready = self._io_ready, []
        result = []
        fd_to_key = self._fd_to_key
        for fd, revents in ready:
            key = fd_to_key.get(fd)
            if key:
                events = _TO_SELECTORS[revents] & key.events
                if events:
                    result.append((key, events))
        return result

    def fileno(self) -> int:
        return self._engine.fileno()

    def close(self) -> None:
        self._fd_to_key.clear()
        self._map = None
        self._engine.close()


class _StreamTransport(transports._FlowControlMixin, transports.Transport, StreamEndpoint):
    """asyncio's socket transport, on a library stream over the socket's fd."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _sock: Optional[socket.socket] = None
    # What asyncio's base classes (BaseTransport, _FlowControlMixin) set and
    # provide, which the standard library's type stubs leave out.
    _extra: Dict[str, Any]
    _loop: Any
    _high_water: int
    _low_water: int
    _protocol_paused: bool
    _maybe_pause_protocol: Callable[[], None]
    _maybe_resume_protocol: Callable[[], None]

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
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._server = server
        self._conn_lost = 0  # set when connection_lost is scheduled
        self._closing = False  # close(), abort() or a fatal error
        self._paused = False  # pause_reading()
        self._eof = False  # write_eof()
        self._gone = False  # the library ended the stream (and closed the fd)
        self._started = False  # connection_made() has run
        self._receiving = False  # data goes straight to the protocol
        self._backlog: List[Any] = []  # bytes, _EOF, ("closed", status)
        self._unconfirmed = 0  # bytes written since the queue was last known
        self._close_when_drained = False  # close() waits for the queue to empty
        self._sending_file = False  # loop.sendfile() is writing
        self._sent_by_sendfile = 0
        self._drain_waiter: Optional[asyncio.Future] = None  # sendfile's wait for the queue
        # bytes, or None once any of the above stops write()'s fast path.
        self._fast_write_type: Optional[type] = bytes
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            base_events._set_nodelay(sock)  # type: ignore[attr-defined]
        engine = loop._engine
        self._engine = engine
        self._stream = engine.adopt(self._sock_fd, self)
        self._id_bytes = self._stream.to_bytes(8, sys.byteorder)
        self._write_streams, self._write_lens, self._write_data = engine.write_queue()
        engine.set_receiver(self._stream, self._backlog.append)
        # asyncio's transports never stop reading for what waits to be sent:
        # that is the protocol's business (pause_writing).
        engine.stream_call(_lib.evl_stream_set_watermarks, self._stream, 0, 0)
        # close() closes once the queue is sent, as asyncio's does: no
        # lingering (a peer still sending gets a reset, ConnectionError);
        # what has arrived is discarded first, so a peer that stopped
        # sending reads the whole reply and end-of-file.
        engine.stream_call(_lib.evl_stream_set_linger, self._stream, _lib.EVL_LINGER_DEFAULT_BYTES, 0)
        self._protocol_connected = False
        self.set_protocol(protocol)
        if server is not None:
            server._attach(*self._as_server_argument)
        loop._transports[self._sock_fd] = self
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]

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
        if self._sock is not None and not self._gone:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # ---- protocol ----------------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True
        if isinstance(protocol, protocols.BufferedProtocol):
            self._deliver: Callable[[bytes], Any] = self._receive_buffered
        else:
            self._deliver = protocol.data_received
        if self._receiving:
            self._engine.set_receiver(self._stream, self._deliver)

    def get_protocol(self) -> Any:
        return self._protocol

    # ---- reading -----------------------------------------------------------

    def _start(self) -> None:
        """After connection_made(): what arrived meanwhile, then the rest."""
        self._started = True
        if self._backlog:
            # In the next callback round, as asyncio's transport reads what
            # came before connection_made() after its next wait (a test of
            # CPython's depends on that order).
            self._loop.call_soon(self._replay)
        else:
            self._replay()

    def _replay(self) -> None:
        while self._started and not self._paused and not self._closing:
            if not self._backlog:
                self._receiving = True
                self._engine.set_receiver(self._stream, self._deliver)
                return
            item = self._backlog.pop(0)
            if item.__class__ is bytes:
                self._receive_guarded(item)
            elif item is _EOF:
                self._eof_received()
            else:
                self._connection_ended(item[1])

    def _receive_guarded(self, data: bytes) -> None:
        try:
            self._deliver(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._receive_failed(exc)

    def _receive_buffered(self, data: bytes) -> None:
        """BufferedProtocol: the bytes copied into as many get_buffer() as it takes."""
        protocol = self._protocol
        view = memoryview(data)
        while len(view):
            try:
                buf = protocol.get_buffer(-1)
                if not len(buf):
                    raise RuntimeError("get_buffer() returned an empty buffer")
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return
            target = memoryview(buf).cast("B")
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            try:
                protocol.buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
                return
            if len(view) and (self._paused or self._closing):
                if not self._closing:
                    self._backlog.insert(0, bytes(view))
                return

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._receiving = False
        self._engine.set_receiver(self._stream, self._backlog.append)
        self._stream_call(_lib.evl_stream_pause)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._stream_call(_lib.evl_stream_resume)
        # What was held is delivered first, in a later callback, as
        # asyncio's own transport delivers after the next wait.
        self._loop.call_soon(self._replay)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    # ---- writing -----------------------------------------------------------

    def write(self, data: Any) -> None:
        # The fast path (bytes, on a transport open for writing) in the
        # fewest bytecodes: _fast_write_type is bytes then, None otherwise.
        if data.__class__ is not self._fast_write_type:
            data = self._write_check(data)
            if data is None:
                return
        # Handed to the library after this iteration's stream events, or
        # with the next iteration's exchange, with every other write made
        # meanwhile, in one call. (An empty write costs nothing there.)
        n = len(data)
        self._write_streams.append(self._id_bytes)
        self._write_lens.append(n)
        self._write_data.append(data)
        self._unconfirmed += n
        if self._unconfirmed > self._high_water:
            self._check_write_buffer()

    def _write_check(self, data: Any) -> Optional[bytes]:
        """The slow half of write(): None if nothing is to be written."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._sending_file:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return None
        if self._conn_lost or self._gone:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return None
        if self._closing and not self._close_when_drained:
            return None
        # A copy: the caller may change a bytearray (or reuse a buffer)
        # before the write reaches the library.
        return bytes(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _check_write_buffer(self) -> None:
        """More than the high limit written since the queue was last known:
        ask the library how much is queued, pause the protocol if too much."""
        self._unconfirmed = size = self.get_write_buffer_size()
        if size > self._high_water:
            self._maybe_pause_protocol()
        elif not size and not self._closing and not self._stream_exists():
            self._write_failed()

    def get_write_buffer_size(self) -> int:
        if self._gone or self._conn_lost:
            return 0
        try:
            return self._engine.queued(self._stream)
        except FileNotFoundError:
            self._write_failed()
            return 0

    def _write_failed(self) -> None:
        """A write failed (the peer has gone) and ended the stream, whose
        CLOSED event, with the reason, comes with the next wait. Closing
        already, so that a writer awaiting drain() gives the loop that wait."""
        self._closing = True
        self._receiving = False
        self._update_fast_write()

    def _stream_drained(self) -> None:
        self._unconfirmed = 0
        if self._protocol_paused:
            self._maybe_resume_protocol()
        if self._close_when_drained and not self._conn_lost and not self.get_write_buffer_size():
            self._close_when_drained = False
            self._close_now()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _update_fast_write(self) -> None:
        slow = self._eof or self._closing or self._gone or self._sending_file or self._conn_lost
        self._fast_write_type = None if slow else bytes

    async def _send_file(self, fd: int, offset: int, count: int) -> int:
        """loop.sendfile(): the file's bytes through the stream, a block at
        a time, waiting for the queue to empty between blocks (so that a
        peer that stops reading stops the sending). Returns the bytes sent."""
        self._sending_file = True
        self._update_fast_write()
        sent = 0
        try:
            while sent < count:
                if self._conn_lost or self._closing:
                    raise ConnectionError("Connection is closed by peer")
                block = os.pread(fd, min(count - sent, _SENDFILE_BLOCK), offset + sent)
                if not block:
                    break
                self._write_streams.append(self._id_bytes)
                self._write_lens.append(len(block))
                self._write_data.append(block)
                sent += len(block)
                if self.get_write_buffer_size():
                    self._drain_waiter = self._loop.create_future()
                    await self._drain_waiter
            return sent
        finally:
            self._sending_file = False
            if self._loop is not None:
                self._update_fast_write()
            self._sent_by_sendfile = sent

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        self._update_fast_write()
        self._stream_call(_lib.evl_stream_shutdown)

    def can_write_eof(self) -> bool:
        return True

    # ---- ending ------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._receiving = False
        self._update_fast_write()
        self._backlog.clear()
        self._engine.set_receiver(self._stream, None)
        if not self._gone and self.get_write_buffer_size():
            # As asyncio's transport: reading stops, and the protocol may
            # still write (resume_writing() comes as the queue drains: an SSL
            # protocol sends its close_notify then); the stream closes once
            # the queue is empty.
            self._stream_call(_lib.evl_stream_pause)
            self._close_when_drained = True
            return
        self._close_now()

    def _close_now(self) -> None:
        if self._gone or not self._stream_call(_lib.evl_stream_close) or not self._stream_exists():
            # Closed at once (nothing was queued): connection_lost() comes
            # next, as from asyncio's transport, not after the next wait.
            self._gone = True
            self._release_socket()
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def _stream_exists(self) -> bool:
        return _lib.evl_stream_fd(self._engine.pointer(), self._stream) >= 0

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._closing = True
        self._receiving = False
        self._backlog.clear()
        self._conn_lost += 1
        self._update_fast_write()
        if not self._gone:
            self._engine.set_receiver(self._stream, None)
            self._stream_call(_lib.evl_stream_abort)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._release_socket()
            self._sock = None
            self._protocol = None
            self._loop = None  # type: ignore[assignment]
            server, self._server = self._server, None
            if server is not None:
                server._detach(*self._as_server_argument)
            waiter, self._drain_waiter = self._drain_waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    def _release_socket(self) -> None:
        """The fd is the library's, which closes it: the socket object lets
        go, and the loop's map of fds to transports forgets it (asyncio
        refuses a new socket an fd its map gives a transport that is not
        closing, and a new socket may take the number as soon as the library
        has closed it, before this transport's connection_lost)."""
        if self._sock is not None and self._sock.fileno() >= 0:
            self._sock.detach()
        loop = self._loop
        if loop is not None and loop._transports.get(self._sock_fd) is self:
            del loop._transports[self._sock_fd]

    def _stream_call(self, function: Callable[..., int]) -> bool:
        """A stream function of the library; False if the stream has ended."""
        if self._gone:
            return False
        try:
            self._engine.stream_call(function, self._stream)
        except FileNotFoundError:
            return False
        return True

    # ---- what the engine calls (StreamEndpoint) ----------------------------

    def _receive_failed(self, exc: BaseException) -> None:
        self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _stream_eof(self) -> None:
        if self._receiving:
            self._eof_received()
        elif not self._closing:
            self._backlog.append(_EOF)

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

    def _stream_closed(self, status: int) -> None:
        self._gone = True
        self._update_fast_write()
        self._release_socket()
        if self._conn_lost:
            return
        if self._closing:  # close() asked for it
            self._conn_lost += 1
            exc = None if status == 0 else _lib.error(status)
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
            self._fatal_error(_lib.error(status), "Fatal read error on socket transport")

    def _stream_connected(self) -> None:
        pass  # adopted streams are connected already

    def _loop_closed(self) -> None:
        self._gone = self._closing = True
        self._release_socket()


class EventLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """asyncio's event loop on evloop (see the module's documentation)."""

    # asyncio's, not in the type stubs: fd -> transport, the ready callbacks,
    # the timers' heap, and the state _run_once reads.
    _transports: Any
    _ready: Any
    _scheduled: List[Any]
    _debug: bool
    _closed: bool
    _stopping: bool
    _clock_resolution: float
    _process_events: Callable[[List[Tuple[Any, int]]], None]

    def __init__(self) -> None:
        self._engine = Loop()
        self._loop_selector = _LoopSelector(self._engine)
        super().__init__(self._loop_selector)

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> events.Handle:  # type: ignore[override]
        """asyncio's call_soon(); when debug mode is off, its Handle is made
        here (see _LEAN_HANDLES)."""
        if self._debug or self._closed or not _LEAN_HANDLES:
            return super().call_soon(callback, *args, context=context)
        handle: Any = _new_handle(events.Handle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def _run_once(self) -> None:
        """asyncio's BaseEventLoop._run_once, without the steps that have
        nothing to do when no timer is scheduled and debug mode is off (a
        busy server's usual iteration): the wait (none if a callback is
        ready), the events, the due timers, the ready callbacks. Otherwise
        asyncio's own."""
        if self._scheduled or self._debug:
            return super()._run_once()  # type: ignore[misc]
        ready = self._ready
        fds_ready = self._loop_selector.select_ms(0 if ready or self._stopping else -1)
        if fds_ready:
            self._process_events(fds_ready)
        if self._scheduled:
            # Scheduled by the events just handled: due ones run now, as
            # asyncio's would.
            end_time = self.time() + self._clock_resolution
            scheduled = self._scheduled
            while scheduled and scheduled[0]._when < end_time:
                handle = heapq.heappop(scheduled)
                handle._scheduled = False
                ready.append(handle)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()

    def _make_socket_transport(
        self, sock: socket.socket, protocol: Any, waiter: Any = None, *, extra: Any = None, server: Any = None
    ) -> _StreamTransport:
        return _StreamTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: Any,
        sslcontext: Any,
        waiter: Any = None,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        extra: Any = None,
        server: Any = None,
        **timeouts: Any,  # ssl_handshake_timeout, and ssl_shutdown_timeout from 3.11
    ) -> Any:
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        _StreamTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: int) -> int:
        if not isinstance(transp, _StreamTransport):
            return await super()._sendfile_native(transp, file, offset, count)  # type: ignore[misc]
        # The library owns the fd (asyncio's os.sendfile would need the
        # socket in the selector): the file goes through the stream.
        try:
            fd = file.fileno()
            size = os.fstat(fd).st_size
        except (AttributeError, io.UnsupportedOperation, OSError) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        count = count or max(size - offset, 0)
        sent = 0
        try:
            sent = await transp._send_file(fd, offset, count)
        finally:
            sent = transp._sent_by_sendfile
            if sent > 0:
                file.seek(offset + sent)
        return sent


def new_event_loop() -> EventLoop:
    """A new evloop asyncio event loop."""
    return EventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,valid-type]
    """asyncio's default policy, making evloop loops."""

    def _loop_factory(self) -> EventLoop:  # type: ignore[override]
        return EventLoop()


def install() -> None:
    """Makes evloop asyncio's event loop policy (uvloop.install())."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Any, *, debug: Optional[bool] = None) -> Any:
    """asyncio.run(main) on an evloop loop."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_before_311(main, debug)


def _run_before_311(main: Any, debug: Optional[bool]) -> Any:
    """asyncio.run's steps, for Pythons without asyncio.Runner."""
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor", None)
            if shutdown_executor is not None:
                loop.run_until_complete(shutdown_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )

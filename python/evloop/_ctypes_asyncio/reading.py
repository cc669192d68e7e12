"""The reading half of the ctypes path's socket transport (a mixin of
transport.StreamTransport): where the stream's data goes, and when.

The library hands the data of a stream to its receiver. Until
connection_made() has run, and while reading is paused, the receiver is
the transport's backlog, which keeps the data, EOF and the stream's end in
order; otherwise it is the protocol itself (data_received, or a copy into
get_buffer() for a BufferedProtocol), called in the transport's contextvars
context (asyncio calls it from its reader's handle, made with a copy of
the context that made the transport).
"""

from __future__ import annotations

import contextvars
import functools
from asyncio import protocols
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, Callable, List

from .. import _lib

if TYPE_CHECKING:
    from .._stream_table import StreamTable

# In the backlog: EOF, after the data that came before it.
EOF = object()


class Reading:
    """Reading for StreamTransport (see the module's documentation)."""

    # What the transport sets up (transport.py), and uses of the rest of it.
    _loop: Any
    _streams: "StreamTable"
    _stream: int
    _protocol: Any
    _closing: bool
    _context: contextvars.Context
    _stream_call: Callable[[Callable[..., int]], bool]
    _eof_received: Callable[[], None]
    _connection_ended: Callable[[int], None]
    _receive_failed: Callable[[BaseException], None]
    _fatal_error: Callable[..., None]

    def _init_reading(self) -> None:
        self._paused = False  # pause_reading()
        self._started = False  # connection_made() has run
        self._receiving = False  # data goes straight to the protocol
        self._backlog: List[Any] = []  # bytes, EOF, ("closed", status)
        self._streams.set_receiver(self._stream, self._backlog.append)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True
        if isinstance(protocol, protocols.BufferedProtocol):
            self._deliver: Callable[[bytes], Any] = self._receive_buffered
        else:
            self._deliver = protocol.data_received
        if self._receiving:
            self._receive_directly()

    def get_protocol(self) -> Any:
        return self._protocol

    def _receive_directly(self) -> None:
        """The loop hands this stream's data to the protocol from now on,
        in the transport's context. (A functools.partial of Context.run
        costs less than any dispatch of a pair in Python.)"""
        receiver = functools.partial(self._context.run, self._deliver)  # type: ignore[call-arg]
        self._streams.set_receiver(self._stream, receiver)

    def _start(self) -> None:
        """After connection_made(): what arrived meanwhile, then the rest."""
        self._started = True
        if self._backlog:
            # In the next callback round, as asyncio's transport reads what
            # came before connection_made() after its next wait (a test of
            # CPython's depends on that order).
            self._loop.call_soon(self._replay, context=self._context)
        else:
            self._replay()

    def _replay(self) -> None:
        while self._started and not self._paused and not self._closing:
            if not self._backlog:
                self._receiving = True
                self._receive_directly()
                return
            item = self._backlog.pop(0)
            if item.__class__ is bytes:
                self._receive_guarded(item)
            elif item is EOF:
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
        self._streams.set_receiver(self._stream, self._backlog.append)
        self._stream_call(_lib.evl_stream_pause)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        # asyncio adds its reader again, with a copy of this caller's context.
        self._context = contextvars.copy_context()
        self._stream_call(_lib.evl_stream_resume)
        # What was held is delivered first, in a later callback, as
        # asyncio's own transport delivers after the next wait.
        self._loop.call_soon(self._replay, context=self._context)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _stop_reading(self) -> None:
        """Closing: nothing more is read, what waits is dropped."""
        self._receiving = False
        self._backlog.clear()
        self._streams.set_receiver(self._stream, None)

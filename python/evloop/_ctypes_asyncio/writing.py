"""The writing half of the ctypes path's socket transport (a mixin of
transport.StreamTransport): write() and flow control.

A write is appended to the loop's write queue (three lists, see
_exchange.py) and reaches the library with the iteration's exchange, with
every other write made meanwhile, in one call; the library writes what the
kernel takes and queues the rest. The transport counts what it wrote since
it last knew the queue's size, and asks the library only when that count
passes the high-water mark: then pause_writing(). resume_writing() comes
once the queue is down to the low-water mark (the selector asks after each
wait, see selector.watch_queue) or empty (the library's DRAINED event).
"""

from __future__ import annotations

import contextvars
import sys
from asyncio import constants
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import _lib

if TYPE_CHECKING:
    from .._stream_table import StreamTable


class Writing:
    """Writing for StreamTransport (see the module's documentation)."""

    # What the transport and asyncio's _FlowControlMixin set up, and uses
    # of the rest of the transport.
    _loop: Any
    _streams: "StreamTable"
    _stream: int
    _closing: bool
    _receiving: bool
    _gone: bool
    _conn_lost: int
    _context: contextvars.Context
    _high_water: int
    _low_water: int
    _protocol_paused: bool
    _maybe_resume_protocol: Callable[[], None]
    _stream_call: Callable[[Callable[..., int]], bool]
    _stream_exists: Callable[[], bool]
    _close_now: Callable[[], None]

    def _init_writing(self) -> None:
        self._id_bytes = self._stream.to_bytes(8, sys.byteorder)
        self._write_streams, self._write_lens, self._write_data = self._streams.write_queue()
        self._eof = False  # write_eof()
        self._unconfirmed = 0  # bytes written since the queue was last known
        self._close_when_drained = False  # close() waits for the queue to empty
        self._sending_file = False  # loop.sendfile() is writing (sendfile.py)
        self._sent_by_sendfile = 0
        self._drain_waiter: Optional[Any] = None  # sendfile's wait for the queue
        # resume_writing() and what the queue's draining brings run in a copy
        # of the context that made the protocol pause (asyncio's writer
        # handle is added by the write that fills its buffer).
        self._write_context: Optional[contextvars.Context] = None
        # bytes, or None once anything stops write()'s fast path.
        self._fast_write_type: Optional[type] = bytes

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

    def _queue_write(self, data: bytes) -> None:
        """A write without the checks of write() (sendfile's blocks)."""
        self._write_streams.append(self._id_bytes)
        self._write_lens.append(len(data))
        self._write_data.append(data)

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        self._update_fast_write()
        self._stream_call(_lib.evl_stream_shutdown)

    def can_write_eof(self) -> bool:
        return True

    def _update_fast_write(self) -> None:
        slow = self._eof or self._closing or self._gone or self._sending_file or self._conn_lost
        self._fast_write_type = None if slow else bytes

    # ---- the queue and flow control ----------------------------------------------

    def get_write_buffer_size(self) -> int:
        if self._gone or self._conn_lost:
            return 0
        try:
            return self._streams.queued(self._stream)
        except FileNotFoundError:
            self._write_failed()
            return 0

    def _check_write_buffer(self) -> None:
        """More than the high limit written since the queue was last known:
        ask the library how much is queued, pause the protocol if too much."""
        self._unconfirmed = size = self.get_write_buffer_size()
        if size > self._high_water:
            self._maybe_pause_protocol()
        elif not size and not self._closing and not self._stream_exists():
            self._write_failed()

    def _write_failed(self) -> None:
        """A write failed (the peer has gone) and ended the stream, whose
        CLOSED event, with the reason, comes with the next wait. Closing
        already, so that a writer awaiting drain() gives the loop that wait."""
        self._closing = True
        self._receiving = False
        self._update_fast_write()

    def _maybe_pause_protocol(self) -> None:
        paused = self._protocol_paused
        super()._maybe_pause_protocol()  # type: ignore[misc]
        if self._protocol_paused and not paused:
            self._write_context = contextvars.copy_context()
            self._loop._loop_selector.watch_queue(self)

    def _queue_progressed(self) -> bool:
        """While the protocol is paused, after a wait: resume_writing()
        once the queue is down to the low-water mark, as asyncio's
        transport does after each send. Returns whether it is still paused."""
        if not self._protocol_paused or self._gone or self._conn_lost:
            return False
        self._unconfirmed = size = self.get_write_buffer_size()
        if size <= self._low_water:
            (self._write_context or self._context).run(self._maybe_resume_protocol)
        return self._protocol_paused

    def _drained(self) -> None:
        """The library's DRAINED event: the queue is empty."""
        self._unconfirmed = 0
        if self._protocol_paused:
            self._maybe_resume_protocol()
        if self._close_when_drained and not self._conn_lost and not self.get_write_buffer_size():
            self._close_when_drained = False
            self._close_now()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


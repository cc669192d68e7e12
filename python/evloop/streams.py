"""Buffered streams in the shape of asyncio's Protocol/Transport.

The library accepts, reads, queues and writes; Python crosses into it once
per loop iteration (``evl_stream_exchange``), handing over the writes of
the iteration before and taking the next batch of events, so a round trip
costs no foreign call of its own. See ``Loop.start_server`` and
``Loop.open_connection``.

A protocol is any object with these methods (all optional but
``data_received``; ``Protocol`` below provides empty ones):

- ``connection_made(transport)``: the stream is ready.
- ``data_received(data: bytes)``: bytes arrived, in order.
- ``eof_received()``: the peer shut down its side. Return a true value to
  keep the transport open (to go on writing); otherwise it is closed.
- ``connection_lost(exc)``: the stream is over: ``None`` when it was closed
  as asked (or both sides shut down), else the ``OSError`` that ended it
  (``ConnectionResetError``, ``TimeoutError`` for an idle timeout,
  ``ConnectionRefusedError`` for a connection that never came up...).
  Called exactly once per transport, last.

Backpressure is the library's: while more than the high watermark (1 MiB)
waits to be sent on a stream, reading from it pauses, until the queue is
back under the low watermark (256 KiB). A protocol that writes in answer to
what it reads needs nothing more; ``set_write_buffer_limits`` moves the marks.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional

from . import _lib
from ._timeouts import idle_ms

if TYPE_CHECKING:
    from ._stream_table import StreamTable


class Protocol:
    """A base class with the methods a stream protocol may define, empty."""

    def connection_made(self, transport: "Transport") -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> Optional[bool]:
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        pass


class StreamEndpoint:
    """What the loop calls on the owner of a stream (evloop.Transport, the
    asyncio transport), one method per event; the stream's data goes to its
    receiver (StreamTable.set_receiver) instead."""

    __slots__ = ()

    def _stream_connected(self) -> None:
        """The outgoing connection is up (or an accepted stream is new)."""

    def _stream_eof(self) -> None:
        """The peer shut down its writing side."""

    def _stream_drained(self) -> None:
        """The write queue emptied (only after something was queued)."""

    def _stream_closed(self, status: int) -> None:
        """The last event: 0 or a negative errno."""

    def _receive_failed(self, exc: BaseException) -> None:
        """The receiver raised `exc` (raise it to stop the loop with it)."""
        raise exc

    def _loop_closed(self) -> None:
        """The loop was freed with the stream still open: no more events."""


class Transport(StreamEndpoint):
    """One buffered stream, named by the library's 64-bit stream id.

    Writes, shutdowns and closes are batched: they reach the library at the
    end of the current loop iteration (or before any call that must see
    them), in the order they were made. Methods must be called on the loop's
    thread.
    """

    __slots__ = (
        "_streams", "_id", "_id_bytes", "_fd", "_protocol", "_closing", "_eof_sent", "_no_writes", "_paused", "_held",
        "_extra", "_receiving", "_write_streams", "_write_lens", "_write_data",
    )

    def __init__(self, streams: "StreamTable", stream_id: int, fd: int, protocol: Any, extra: Optional[dict] = None) -> None:
        self._streams = streams  # the loop's, through which this talks to the library
        self._id = stream_id
        self._id_bytes = stream_id.to_bytes(8, sys.byteorder)  # as the write queue takes it
        self._fd = fd
        self._protocol = protocol
        self._closing = False
        self._eof_sent = False
        self._no_writes = False  # closing or write_eof(): write() takes the slow path
        self._paused = False
        self._held: List[bytes] = []
        self._receiving = False  # connected: data goes to the protocol (or to _held)
        self._extra = extra or {}
        # The loop's lists of writes to hand over at the end of the iteration.
        self._write_streams, self._write_lens, self._write_data = streams.write_queue()

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<evloop.Transport stream={self._id:#x} fd={self._fd} {state}>"

    @property
    def stream_id(self) -> int:
        """The library's id of this stream (for the C API)."""
        return self._id

    def fileno(self) -> int:
        """The stream's fd. It belongs to the library: do not close it."""
        return self._fd

    # ---- writing -------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Sends `data` (bytes, bytearray or memoryview): what the kernel does
        not take at once is queued by the library. Ignored once the transport
        is closing; RuntimeError after write_eof()."""
        if self._no_writes:
            if self._eof_sent and not self._closing:
                raise RuntimeError("Cannot call write() after write_eof()")
            return
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        # The write reaches the library at the end of this loop iteration,
        # with every other write made in it, in one call.
        self._write_streams.append(self._id_bytes)
        self._write_lens.append(len(data))
        self._write_data.append(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        """write() of the chunks joined."""
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        """Shuts down the writing side once the queue has been sent (half-close)."""
        if self._closing or self._eof_sent:
            return
        self._eof_sent = self._no_writes = True
        self._streams.call(_lib.evl_stream_shutdown, self._id)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes queued in the library, not yet taken by the kernel."""
        if self._closing:
            return 0
        return self._streams.queued(self._id)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Above `high` queued bytes reading pauses; at `low` it resumes
        (defaults 1 MiB and high // 4; high 0: never pause)."""
        high, low = _limits(high, low)
        self._streams.call(_lib.evl_stream_set_watermarks, self._id, high, low)

    def set_idle_timeout(self, seconds: Optional[float]) -> None:
        """Closes the stream (connection_lost(TimeoutError)) after `seconds`
        without a byte moving; None or 0: never."""
        self._streams.call(_lib.evl_stream_set_idle_timeout, self._id, idle_ms(seconds))

    # ---- reading -------------------------------------------------------

    def pause_reading(self) -> None:
        """No data_received() until resume_reading(). Bytes the library had
        already read in this iteration are held and delivered on resume."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._streams.set_receiver(self._id, self._held.append)
        self._streams.call(_lib.evl_stream_pause, self._id)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._streams.set_receiver(self._id, self._protocol.data_received)
        self._streams.call(_lib.evl_stream_resume, self._id)
        if self._held:
            held, self._held = b"".join(self._held), []
            self._streams.call_soon(self._deliver_held, held)

    def _deliver_held(self, held: bytes) -> None:
        if self._paused:  # paused again before this ran
            self._held.insert(0, held)
        elif not self._closing:
            self._protocol.data_received(held)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    # ---- ending --------------------------------------------------------

    def close(self) -> None:
        """Sends what is queued, then closes. connection_lost(None) follows."""
        self._end(_lib.evl_stream_close)

    def abort(self) -> None:
        """Closes now; queued bytes are dropped. connection_lost(None) follows."""
        self._end(_lib.evl_stream_abort)

    def _end(self, function: Any) -> None:
        if self._closing:
            return
        self._closing = self._no_writes = True
        # Bytes of this iteration not yet delivered are dropped, as the
        # library drops the stream's events it has not handed out.
        self._streams.set_receiver(self._id, None)
        if not self._streams.is_closed():
            try:
                self._streams.call(function, self._id)
            except FileNotFoundError:
                pass  # ended in the library already (both sides shut down): CLOSED is on its way

    def is_closing(self) -> bool:
        return self._closing

    # ---- the rest of asyncio's Transport -------------------------------

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        if self._receiving and not self._paused and not self._closing:
            self._streams.set_receiver(self._id, protocol.data_received)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """'peername', 'sockname' (looked up when asked) or 'socket' (a
        socket object over the stream's fd, which must not be closed)."""
        if name in self._extra:
            return self._extra[name]
        if name not in ("peername", "sockname", "socket") or self._closing:
            return default
        try:
            sock = socket.socket(fileno=self._fd)
        except OSError:
            return default
        if name == "socket":
            self._extra[name] = sock  # kept, and never closed by us: detached at connection_lost
            return sock
        try:
            value = sock.getpeername() if name == "peername" else sock.getsockname()
        except OSError:
            value = default
        finally:
            sock.detach()
        self._extra[name] = value
        return value

    # ---- what the loop calls (StreamEndpoint) --------------------------

    def _stream_connected(self) -> None:
        """The stream is up (accepted, connected or opened)."""
        if not self._closing:
            self._receiving = True
            if not self._paused:
                self._streams.set_receiver(self._id, self._protocol.data_received)
        made = getattr(self._protocol, "connection_made", None)
        if made is not None:
            made(self)

    def _stream_eof(self) -> None:
        if self._closing:
            return
        eof_received = getattr(self._protocol, "eof_received", None)
        if not (eof_received is not None and eof_received()):
            self.close()

    def _stream_drained(self) -> None:
        pass  # the library resumes reading by itself

    def _receive_failed(self, exc: BaseException) -> None:
        raise exc  # stops the loop: run() raises it

    def _loop_closed(self) -> None:
        self._closing = self._no_writes = True

    def _stream_closed(self, status: int) -> None:
        """The library's CLOSED event: the last one of this stream."""
        if self._closing and status == -errno.ECONNABORTED:
            status = 0  # our own abort(): asyncio reports it as None too
        self._closing = self._no_writes = True
        sock = self._extra.pop("socket", None)
        if sock is not None:
            sock.detach()
        exc = None if status == 0 else _lib.error(status)
        lost = getattr(self._protocol, "connection_lost", None)
        if lost is not None:
            lost(exc)


class Server:
    """A listening socket of the library (``Loop.start_server``)."""

    def __init__(self, streams: "StreamTable", listener_id: int, key: int, factory: Callable[[], Any]) -> None:
        self._streams = streams
        self._id = listener_id
        self._key = key  # the listener's userdata: what ACCEPTED events carry
        self._factory = factory
        self._closed = False

    def __repr__(self) -> str:
        return f"<evloop.Server listener={self._id:#x} port={self.port if not self._closed else None}>"

    @property
    def port(self) -> int:
        """The port listened on (the one the kernel chose for port 0)."""
        return self._streams.call(_lib.evl_listener_port, self._id)

    def set_max_connections(self, limit: Optional[int]) -> None:
        """At most `limit` accepted streams open at once (None or 0: no
        limit); beyond it connections wait in the backlog."""
        self._streams.call(_lib.evl_listener_set_max_conns, self._id, limit or 0)

    def set_idle_timeout(self, seconds: Optional[float]) -> None:
        """The idle timeout of the streams accepted from now on."""
        self._streams.call(_lib.evl_stream_set_idle_timeout, self._id, idle_ms(seconds))

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """The watermarks of the streams accepted from now on."""
        high, low = _limits(high, low)
        self._streams.call(_lib.evl_stream_set_watermarks, self._id, high, low)

    def close(self) -> None:
        """Stops listening. Streams already accepted go on."""
        if self._closed:
            return
        self._closed = True
        self._streams.forget_listener(self._key)
        if not self._streams.is_closed():
            self._streams.call(_lib.evl_listener_close, self._id)

    def _loop_closed(self) -> None:
        self._closed = True

    def is_serving(self) -> bool:
        return not self._closed

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _limits(high: Optional[int], low: Optional[int]) -> "tuple[int, int]":
    if high is None:
        high = 1 << 20 if low is None else max(4 * low, 1 << 16)
    if low is None:
        low = high // 4
    if high < 0 or low < 0 or low > high:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) >= 0")
    return high, low


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")

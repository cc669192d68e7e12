"""``evl_stream_exchange``, the one foreign call of each loop iteration, and
what it reads and writes: its argument struct, the events array it fills,
the loop's read buffer the events' data lies in, and the writes a loop's
transports make between two calls.

A ctypes call costs thousands of instructions, so an iteration crosses
once whatever the number of events: the call makes the writes of the
iteration before, waits, and fills the array with everything ready, saying
how many of the events, from the first, are stream data lying end to end
in the read buffer (mapped once). Those are copied out in one piece and cut
per event; the rest are read with ``struct``, which costs far less than
ctypes' field accessors. The struct's fields that change (write_count and
timeout_ms going in, data_events and data_len coming back) are reached
through int and word views of it, at offsets taken from its declaration in
``_lib``; nothing outside this module touches it.
"""

from __future__ import annotations

import functools
import struct
from array import array
from ctypes import addressof, byref, c_char, c_size_t, c_uint64, c_void_p, sizeof
from io import BytesIO
from typing import Any, Callable, Iterator, List, Optional

from . import _lib
from ._implementation import native_calls
from ._lib import check

# struct evl_stream_event as the library writes it.
EVENT = struct.Struct("=IiQQQQiI")
assert EVENT.size == sizeof(_lib.evl_stream_event)

# The first event's `data`, in 64-bit words (where a run of DATA events'
# bytes starts in the read buffer).
_PTR = _lib.evl_stream_event.data.offset // 8
# The fields of the arguments that change, as ints or words.
_WRITE_COUNT, _TIMEOUT_MS, _DATA_EVENTS = (
    getattr(_lib.evl_stream_exchange_args, name).offset // 4 for name in ("write_count", "timeout_ms", "data_events")
)
_DATA_LEN = _lib.evl_stream_exchange_args.data_len.offset // 8
# How many writes, and bytes, an iteration hands over with its exchange;
# more go in a call of their own.
_STAGED_WRITES, _STAGED_BYTES = 1024, 256 * 1024
# Up to this many bytes, a poll's data is copied out in one piece and cut
# per event (the fewest bytecodes); above, each event's bytes are copied
# once, straight from the read buffer (no second copy, no large block
# allocated and freed at every iteration).
_ONE_COPY_BYTES = 64 * 1024


def _cutter(view: memoryview, offset: int) -> Callable[[int], bytes]:
    """A function returning the next `length` bytes of `view` from `offset` on."""
    position = offset

    def read(length: int) -> bytes:
        nonlocal position
        start = position
        position += length
        return view[start:position].tobytes()

    return read

_raw_exchange, _raw_exchange_writes = _lib.raw_exchange, _lib.raw_exchange_writes


@functools.lru_cache(maxsize=None)
def _data_run(count: int) -> struct.Struct:
    """Reads the stream and length of `count` events in one call: a flat
    tuple (stream, len, stream, len...)."""
    fields = _lib.evl_stream_event._fields_
    one = "".join("Q" if field[0] in ("stream", "len") else f"{sizeof(field[1])}x" for field in fields)
    return struct.Struct("=" + one * count)


class Exchange:
    """A loop's evl_stream_exchange: its arguments, arrays and pending
    writes. `write_streams`, `write_lens` and `write_data` are the writes
    made since the last call, one item to each list per write: the stream
    id as 8 bytes (native order: joining those costs less than converting
    ids of more than 30 bits), the length, the bytes. They reach the library
    in order, with the next poll() or send_writes()."""

    def __init__(self, loop: int, max_events: int) -> None:
        self._loop: Optional[int] = loop
        start, size = c_void_p(), c_size_t()
        check(_lib.evl_stream_read_buffer(loop, byref(start), byref(size)), "evl_stream_read_buffer")
        # Every DATA event's bytes are a slice of this (valid until the next poll).
        self._reads_start: int = start.value or 0  # never NULL on success
        self._reads = (c_char * size.value).from_address(self._reads_start)
        self._reads_view = memoryview(self._reads).cast("B")
        self._events = (c_char * (EVENT.size * max_events))()
        self._events_view = memoryview(self._events).cast("B")
        self._events_u64 = self._events_view.cast("Q")

        self.write_streams: List[bytes] = []
        self.write_lens: List[int] = []  # a list: list.append costs less than array's
        self.write_data: List[bytes] = []
        # Where the writes are copied for the library.
        self._staged_streams = (c_uint64 * _STAGED_WRITES)()
        self._staged_lens = (c_size_t * _STAGED_WRITES)()
        self._staged_data = (c_char * _STAGED_BYTES)()
        self._staged_streams_view = memoryview(self._staged_streams).cast("B")
        self._staged_lens_view = memoryview(self._staged_lens).cast("B").cast("Q")
        self._staged_data_view = memoryview(self._staged_data).cast("B")

        self._args = _lib.evl_stream_exchange_args(
            write_streams=addressof(self._staged_streams),
            write_lens=addressof(self._staged_lens),
            write_data=addressof(self._staged_data),
            events=addressof(self._events),
            max_events=max_events,
            timeout_ms=-1,
        )
        self._args_ints = memoryview(self._args).cast("B").cast("i")
        self._args_words = memoryview(self._args).cast("B").cast("Q")
        self._wait_ms = -1
        # The raw calls and their arguments, made once. On the native path
        # (evloop/_implementation.py) the library's own functions, given
        # the addresses as ints. On the ctypes path byref()s, which ctypes
        # passes as they are (a c_void_p costs it a search of its table of
        # types), the loop as a reference to its first byte. None (NULL)
        # once freed.
        calls = native_calls()
        self._loop_arg: Optional[Any]
        self._args_arg: Any
        #: On the native path, its dispatch_data (see _dispatch.py), which
        #: reads the DATA events itself: poll() then leaves data_read and
        #: data_fields alone.
        self.native_dispatch: Optional[Callable[..., Any]] = None
        #: The address of the events array, for native_dispatch.
        self.events_address = addressof(self._events)
        if calls is not None:
            self._exchange_call, self._writes_call = calls.exchange, calls.exchange_writes
            self.native_dispatch = calls.dispatch_data
            self._loop_arg, self._args_arg = loop, addressof(self._args)
        else:
            self._exchange_call, self._writes_call = _raw_exchange, _raw_exchange_writes
            self._loop_arg, self._args_arg = byref(c_char.from_address(loop)), byref(self._args)
        #: After poll(): how many of its events, from the first, are DATA
        #: events whose bytes lie end to end in the read buffer; a function
        #: that returns the next `length` bytes of their data (copied out of
        #: the read buffer in one piece); an iterator over their streams and
        #: lengths, flat: (stream, length, stream, length...).
        self.data_events = 0
        self.data_read: Callable[[int], bytes] = BytesIO().read
        self.data_fields: Iterator[int] = iter(())

    def loop_freed(self) -> None:
        """The library's loop is gone: any later call gets -EINVAL."""
        self._loop = self._loop_arg = None

    # ---- the call ------------------------------------------------------------

    def poll(self, wait_ms: int) -> int:
        """The writes made so far go out, then the wait (-1: until something
        happens), then the events are written to the array. Returns their
        number, or the library's negative errno (-EINTR for a signal)."""
        if self.write_streams:
            self.send_writes(stage=True)
        if wait_ms != self._wait_ms:
            self._args_ints[_TIMEOUT_MS] = self._wait_ms = wait_ms
        count: int = self._exchange_call(self._loop_arg, self._args_arg)
        if count > 0:
            data_events = self.data_events = self._args_ints[_DATA_EVENTS]
            if data_events and self.native_dispatch is None:
                # What data_run() would say, without a call of its own:
                # this is every busy iteration.
                offset = self._events_u64[_PTR] - self._reads_start
                length = self._args_words[_DATA_LEN]
                if length <= _ONE_COPY_BYTES:
                    self.data_read = BytesIO(self._reads[offset : offset + length]).read  # type: ignore[arg-type]
                else:
                    self.data_read = _cutter(self._reads_view, offset)
                self.data_fields = iter(_data_run(data_events).unpack_from(self._events))
        return count

    def send_writes(self, stage: bool = False) -> int:
        """Hands the writes made so far to the library, in order (a failed
        write ends its stream, whose CLOSED event says why). Those that fit
        are copied to the staged arrays: with `stage` the next poll() makes
        them, otherwise evl_stream_exchange_writes now. Returns how many of
        the writes made now failed."""
        streams, lens, data = self.write_streams, self.write_lens, self.write_data
        count = len(streams)
        joined = b"".join(data)
        if count <= _STAGED_WRITES and len(joined) <= _STAGED_BYTES:
            self._staged_streams_view[: count * 8] = b"".join(streams)
            self._staged_lens_view[:count] = array("Q", lens)
            self._staged_data_view[: len(joined)] = joined
            self._args_ints[_WRITE_COUNT] = count
            failed = 0 if stage else self._writes_call(self._loop_arg, self._args_arg)
        else:
            lens_array = array("Q", lens)
            failed = _lib.evl_stream_write_batch(
                self._loop, b"".join(streams), lens_array.buffer_info()[0], count, joined
            )
        streams.clear()
        lens.clear()
        data.clear()
        return check(failed, "evl_stream_write_batch")

    # ---- what came -----------------------------------------------------------

    def events(self, start: int, end: int) -> List[tuple]:
        """Events start..end of the last poll's array, decoded: (kind, fd,
        stream, data, len, userdata, status, revents) each."""
        return list(EVENT.iter_unpack(self._events_view[start * EVENT.size : end * EVENT.size]))

    def data(self, address: int, length: int) -> bytes:
        """The bytes of a DATA event of the last poll (its `data` and `len`)."""
        offset = address - self._reads_start
        return self._reads[offset : offset + length]  # type: ignore[return-value]

"""evloop.Loop: the library's loop, driven from Python.

Each iteration is one foreign call, ``evl_stream_exchange``: it makes the
writes of the iteration before, waits, and fills an array with everything
ready (raw fds, and stream data, EOF, close...), which is then dispatched
here in Python; when data came on several streams, what their receivers
wrote goes out in a second call right after (see iterate()). A ctypes call
costs thousands of instructions, so crossing once or twice per iteration
rather than once per event is what makes this fast.
Timers are the library's and call back through one ctypes callback per
loop; signals use Python's own handlers.
"""

from __future__ import annotations

import collections
from array import array
import errno
import functools
from io import BytesIO
import math
import signal
import socket
import struct
import threading
from ctypes import addressof, byref, c_char, c_size_t, c_uint64, c_void_p, sizeof
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _lib
from ._lib import ceil_ms, check, timeout_ms
from .streams import Server, StreamEndpoint, Transport

# What evl_stream_exchange writes (struct evl_stream_event), read with struct
# rather than through ctypes fields, which cost far more per access.
_EVENT = struct.Struct("=IiQQQQiI")
assert _EVENT.size == sizeof(_lib.evl_stream_event)

_DATA = _lib.EVL_STREAM_DATA
# A DATA event whose bytes were copied out of the read buffer (see _save).
_SAVED_DATA = -1
# The longest delay evl_timer_start takes (a uint64_t of milliseconds).
_MAX_TIMER_MS = (1 << 64) - 1
# The first event's `data`, in 64-bit words (the read buffer's offset of a
# run of DATA events).
_PTR = _lib.evl_stream_event.data.offset // 8
# Where the fields of evl_stream_exchange that change are, in ints or words.
_WRITE_COUNT, _TIMEOUT_MS, _DATA_EVENTS = (
    getattr(_lib.evl_stream_exchange_args, name).offset // 4 for name in ("write_count", "timeout_ms", "data_events")
)
_DATA_LEN = _lib.evl_stream_exchange_args.data_len.offset // 8
# How many writes, and bytes, an iteration hands over with its
# evl_stream_exchange; more go in a call of their own.
_STAGED_WRITES, _STAGED_BYTES = 1024, 256 * 1024

Callback = Callable[..., Any]
_raw_exchange, _raw_exchange_writes = _lib.raw_exchange, _lib.raw_exchange_writes


@functools.lru_cache(maxsize=None)
def _data_run(count: int) -> struct.Struct:
    """Reads the stream and length of `count` events in one call: a flat
    tuple (stream, len, stream, len...)."""
    fields = _lib.evl_stream_event._fields_
    one = "".join("Q" if field[0] in ("stream", "len") else f"{sizeof(field[1])}x" for field in fields)
    return struct.Struct("=" + one * count)


class Handle:
    """A callback scheduled with call_soon, call_soon_threadsafe or call_later."""

    __slots__ = ("_callback", "_args", "_cancelled", "_loop", "_timer_id")

    def __init__(self, loop: "Loop", callback: Callback, args: Tuple[Any, ...]) -> None:
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._timer_id: Optional[int] = None

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<evloop.Handle {self._callback!r}{state}>"

    def cancel(self) -> None:
        """The callback will not be called (if it has not been already)."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._timer_id is not None:
            self._loop._cancel_timer(self)

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        if not self._cancelled:
            self._callback(*self._args)


class _Registration:
    __slots__ = ("serial", "fileobj", "callback", "args")

    def __init__(self, serial: int, fileobj: Any, callback: Callback, args: Tuple[Any, ...]) -> None:
        self.serial = serial
        self.fileobj = fileobj
        self.callback = callback
        self.args = args


_INT_MAX = 2**31 - 1


def fileobj_to_fd(fileobj: Any) -> int:
    """An fd, or an object's fileno(), checked as the selectors module does
    (and as select.epoll does the int: ctypes would pass a larger one as its
    low 32 bits, which may name another open fd)."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    if fd > _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return fd


class Loop:
    """An event loop: fds, timers, signals, thread-safe calls and buffered
    streams. All methods are for the thread that runs the loop, except
    call_soon_threadsafe() and stop(). A context manager: close() at exit.

    Callbacks may register, modify or unregister anything (their own fd
    included), close fds and stop the loop. An exception raised by a
    callback stops the loop and is raised from run() or run_once(); what
    was ready but not yet dispatched is kept for the next iteration.
    """

    def __init__(self, max_events: int = 1024) -> None:
        if not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"max_events must be a positive int, not {max_events!r}")
        pointer = c_void_p()
        check(_lib.evl_loop_new(byref(pointer)), "evl_loop_new")
        self._ptr: Optional[int] = pointer.value
        start, size = c_void_p(), c_size_t()
        check(_lib.evl_stream_read_buffer(self._ptr, byref(start), byref(size)), "evl_stream_read_buffer")
        # Every DATA event's bytes are a slice of this (valid until the next poll).
        self._reads_start: int = start.value or 0  # never NULL on success
        self._reads = (c_char * size.value).from_address(self._reads_start)
        self._events = (c_char * (_EVENT.size * max_events))()
        self._events_view = memoryview(self._events).cast("B")
        # The same array as 64-bit words: where a run of DATA events starts.
        self._events_u64 = self._events_view.cast("Q")

        # Writes made since the last iteration, as evl_stream_write_batch
        # takes them: transports append to these (see Transport.write).
        # (Each stream as its id's 8 bytes, made once per transport: joining
        # them is cheaper than converting ids of more than 30 bits.)
        self._write_streams: List[bytes] = []
        self._write_lens: List[int] = []  # a list: list.append costs less than array's
        self._write_data: List[bytes] = []
        # Where _flush_writes(stage=True) copies them for evl_stream_exchange.
        self._staged_streams = (c_uint64 * _STAGED_WRITES)()
        self._staged_lens = (c_size_t * _STAGED_WRITES)()
        self._staged_data = (c_char * _STAGED_BYTES)()
        self._staged_streams_view = memoryview(self._staged_streams).cast("B")
        self._staged_lens_view = memoryview(self._staged_lens).cast("B").cast("Q")
        self._staged_data_view = memoryview(self._staged_data).cast("B")

        # evl_stream_exchange's arguments: set once here, then only the
        # fields that change, through a view of the struct's int fields.
        self._exchange = _lib.evl_stream_exchange_args(
            write_streams=addressof(self._staged_streams),
            write_lens=addressof(self._staged_lens),
            write_data=addressof(self._staged_data),
            events=addressof(self._events),
            max_events=max_events,
            timeout_ms=-1,
        )
        # The arguments of the iteration's raw calls (see _lib.raw_exchange),
        # made once; _ptr_arg becomes None (NULL) when the loop is freed.
        # They are byref()s, which ctypes passes as they are (a c_void_p
        # costs it a search of its table of types, 300 instructions), the
        # loop as a reference to its first byte.
        self._ptr_arg: Optional[Any] = byref(c_char.from_address(pointer.value or 0))
        self._exchange_arg = byref(self._exchange)
        self._exchange_ints = memoryview(self._exchange).cast("B").cast("i")
        self._exchange_words = memoryview(self._exchange).cast("B").cast("Q")
        self._wait_ms = -1

        self._registrations: Dict[int, _Registration] = {}
        self._serial = 0
        self._timers: Dict[int, Handle] = {}
        self._timer_callback = _lib.evl_timer_cb(self._on_timer)
        self._ready: Deque[Handle] = collections.deque()
        self._saved: List[tuple] = []  # events of an interrupted batch
        self._streams: Dict[int, StreamEndpoint] = {}
        self._receivers: Dict[int, Callback] = {}
        self._listeners: Dict[int, Server] = {}
        self._signal_handlers: Dict[int, Handle] = {}
        self._previous_handlers: Dict[int, Any] = {}
        self._wakeup: Optional[Tuple[socket.socket, socket.socket]] = None
        # run() is running in the main thread: a SIGINT read from the wakeup
        # socket must end it (see _sigint_arrived).
        self._in_run = False
        self._exception: Optional[BaseException] = None
        self._stopping = False
        self._running = False
        self._thread: Optional[int] = None

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else ("running" if self._running else "idle")
        return f"<evloop.Loop {state} fds={len(self._registrations)} streams={len(self._streams)}>"

    def __enter__(self) -> "Loop":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None and not self._running:
            _lib.evl_loop_free(self._ptr)
            self._ptr = self._ptr_arg = None

    def _handle(self) -> int:
        if self._ptr is None:
            raise RuntimeError("the loop is closed")
        return self._ptr

    def is_closed(self) -> bool:
        return self._ptr is None

    def is_running(self) -> bool:
        return self._running

    # ---- fds ---------------------------------------------------------------

    def register(self, fileobj: Any, events: int, callback: Callback, *args: Any) -> None:
        """Watches `fileobj` (an fd or an object with fileno()) for `events`
        (READ, WRITE, optionally EDGE or ONESHOT) and calls
        ``callback(fileobj, revents, *args)`` when it is ready; `revents`
        holds READ, WRITE, ERROR, HUP, RDHUP bits. FileExistsError if it is
        registered already, PermissionError for a regular file."""
        fd = fileobj_to_fd(fileobj)
        self._serial += 1
        check(_lib.evl_register(self._handle(), fd, events, _lib.NO_IO_CB, self._serial), "evl_register")
        self._registrations[fd] = _Registration(self._serial, fileobj, callback, args)

    def modify(self, fileobj: Any, events: int, callback: Optional[Callback] = None, *args: Any) -> None:
        """Replaces the interest (the whole mask, like epoll.modify; re-arms
        ONESHOT) and, if `callback` is given, the callback and its args."""
        fd = self._registered_fd(fileobj)
        check(_lib.evl_modify(self._handle(), fd, events), "evl_modify")
        if callback is not None:
            registration = self._registrations[fd]
            registration.callback, registration.args = callback, args

    def unregister(self, fileobj: Any) -> None:
        """Stops watching; works after the fd was closed. No event of this
        registration is delivered afterwards. FileNotFoundError if it is not
        registered."""
        fd = self._registered_fd(fileobj)
        check(_lib.evl_unregister(self._handle(), fd), "evl_unregister")
        del self._registrations[fd]

    def _registered_fd(self, fileobj: Any) -> int:
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            # Closed already: found by identity, as selectors does.
            for fd, registration in self._registrations.items():
                if registration.fileobj is fileobj:
                    return fd
            raise FileNotFoundError(errno.ENOENT, f"{fileobj!r} is not registered") from None

    # ---- callbacks ---------------------------------------------------------

    def call_soon(self, callback: Callback, *args: Any) -> Handle:
        """Calls ``callback(*args)`` in the next iteration (loop thread only)."""
        self._handle()
        handle = Handle(self, callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callback, *args: Any) -> Handle:
        """call_soon() for any thread: wakes the loop if it is waiting."""
        pointer = self._handle()
        handle = Handle(self, callback, args)
        self._ready.append(handle)  # deque.append is atomic
        check(_lib.evl_wake(pointer), "evl_wake")
        return handle

    def call_later(self, delay: float, callback: Callback, *args: Any) -> Handle:
        """Calls ``callback(*args)`` once, `delay` seconds from now (rounded
        up to the millisecond: never early). Returns a cancellable Handle.
        ValueError for an infinite or NaN delay."""
        if delay != delay or delay == math.inf:
            raise ValueError(f"call_later: the delay must be a finite number of seconds, not {delay!r}")
        # Past 2**64 - 1 ms (585 million years) the timer is as good as never.
        ms = min(ceil_ms(max(delay, 0)), _MAX_TIMER_MS)
        handle = Handle(self, callback, args)
        timer_id = c_uint64()
        check(
            _lib.evl_timer_start(self._handle(), ms, 0, self._timer_callback, None, byref(timer_id)),
            "evl_timer_start",
        )
        handle._timer_id = timer_id.value
        self._timers[timer_id.value] = handle
        return handle

    def _cancel_timer(self, handle: Handle) -> None:
        if handle._timer_id is None:
            return
        if self._timers.pop(handle._timer_id, None) is not None and self._ptr is not None:
            check(_lib.evl_timer_stop(self._ptr, handle._timer_id), "evl_timer_stop")

    def _on_timer(self, _loop: int, timer_id: int, _userdata: Any) -> None:
        # Called by the library from inside evl_stream_exchange: nothing may
        # escape into C, so an exception is kept and raised from run().
        handle = self._timers.pop(timer_id, None)
        if handle is None:
            return
        if self._exception is not None:
            self._ready.append(handle)  # after the exception is raised
            return
        try:
            handle._run()
        except BaseException as exc:  # KeyboardInterrupt too: re-raised
            self._exception = exc

    # ---- signals -----------------------------------------------------------

    def add_signal_handler(self, signo: int, callback: Callback, *args: Any) -> None:
        """Calls ``callback(*args)`` in the loop whenever `signo` arrives
        (Python's signal handling, so the main thread only, as in asyncio).
        Replaces an earlier handler of the same signal."""
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be added in the main thread")
        self._handle()
        self._ensure_wakeup()
        previous = signal.signal(signo, self._on_signal)
        self._previous_handlers.setdefault(signo, previous)
        self._signal_handlers[signo] = Handle(self, callback, args)

    def remove_signal_handler(self, signo: int) -> bool:
        """Stops handling `signo`: its previous Python handler comes back.
        Returns whether a handler was removed."""
        if self._signal_handlers.pop(signo, None) is None:
            return False
        signal.signal(signo, self._previous_handlers.pop(signo, signal.SIG_DFL))
        return True

    def _on_signal(self, signo: int, _frame: Any) -> None:
        # Python runs this between two bytecodes of the main thread: queue.
        handle = self._signal_handlers.get(signo)
        if handle is not None:
            self._ready.append(Handle(self, handle._callback, handle._args))

    def _ensure_wakeup(self) -> None:
        """A socket pair whose reading end the loop watches: Python's C
        signal handler writes the signal number into it (set_wakeup_fd), so
        a signal wakes the wait even when it went to another thread or came
        just before the wait began."""
        if self._wakeup is not None:
            return
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        check(_lib.evl_register(self._ptr, reader.fileno(), _lib.EVL_READ, _lib.NO_IO_CB, 0), "evl_register")
        self._wakeup = (reader, writer)

    def _drain_wakeup(self) -> bool:
        """Empties the wakeup socket; returns whether SIGINT was among the
        signal numbers Python's C handler wrote there."""
        assert self._wakeup is not None
        sigint = False
        try:
            while True:
                data = self._wakeup[0].recv(4096)
                if not data:
                    break
                sigint = sigint or signal.SIGINT in data
        except (BlockingIOError, InterruptedError):
            pass
        return sigint

    def _sigint_arrived(self) -> None:
        """Ctrl-C came while run() ran. Its Python handler runs now if it has
        not yet. If it has, but ran on entry to a callback the library called
        (a timer's), before that callback's own try, ctypes dropped its
        KeyboardInterrupt (it prints "Exception ignored" and goes on): raise
        it again, so that Ctrl-C always ends run(). One that a callback
        caught and kept is raised from run() already, before this."""
        _lib.run_signal_handlers()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler and self._exception is None:
            raise KeyboardInterrupt

    # ---- inside another loop (see embed.py) --------------------------------

    def fileno(self) -> int:
        """An fd that becomes readable when the loop has something to do
        (ready I/O, a due timer, a wakeup, a signal), for a host loop to
        watch; when it is readable, or timeout() has passed, call
        run_once(0). It is the loop's own: never close or read it."""
        return check(_lib.evl_backend_fd(self._handle()), "evl_backend_fd")

    def timeout(self) -> Optional[float]:
        """Seconds until the loop needs run_once(0) even if fileno() stays
        quiet (0 if it has work now, such as calls or writes waiting), never
        before its next timer is due; None if only fileno() can give it work."""
        if self._ready or self._saved or self._write_streams:
            return 0.0
        ms = _lib.evl_backend_timeout(self._handle())
        return None if ms == -1 else check(ms, "evl_backend_timeout") / 1000

    # ---- running -----------------------------------------------------------

    def stop(self) -> None:
        """Makes run() return after the current iteration (called before
        run(), that run returns at once). Any thread."""
        self._stopping = True
        if self._ptr is not None:
            _lib.evl_wake(self._ptr)

    def run(self) -> None:
        """Runs until stop() or until nothing is left to wait for (no fd,
        timer, stream, listener, signal handler or pending call). Raises
        what a callback raised, and KeyboardInterrupt on Ctrl-C, even while
        waiting."""
        self._enter()
        main = threading.current_thread() is threading.main_thread()
        previous_wakeup = None
        try:
            if main:
                self._ensure_wakeup()
                assert self._wakeup is not None
                previous_wakeup = signal.set_wakeup_fd(self._wakeup[1].fileno(), warn_on_full_buffer=False)
                # What is there is from before (a Ctrl-C that ended an earlier run).
                self._drain_wakeup()
                self._in_run = True
            while not self._stopping and self._has_work():
                self.iterate(-1)
        finally:
            if main:
                self._in_run = False
                signal.set_wakeup_fd(-1 if previous_wakeup is None else previous_wakeup)
            self._leave()

    def run_once(self, timeout: Optional[float] = None) -> int:
        """One iteration: waits up to `timeout` seconds (None: until something
        happens; 0: not at all), then dispatches. Returns the number of
        callbacks called (stream events included)."""
        self._enter()
        try:
            return self.iterate(timeout_ms(timeout))
        finally:
            self._leave()

    def _enter(self) -> None:
        self._handle()
        if self._running:
            raise RuntimeError("the loop is already running")
        self._running = True
        self._thread = threading.get_ident()

    def _leave(self) -> None:
        self._running = False
        self._stopping = False
        # run() hands each iteration's writes to the next one's exchange;
        # whatever the last one wrote goes out now.
        if self._write_streams:
            self._flush_writes()

    def _has_work(self) -> bool:
        return bool(
            self._streams
            or self._registrations
            or self._timers
            or self._listeners
            or self._signal_handlers
            or self._ready
            or self._saved
            or self._write_streams
        )

    def iterate(self, wait_ms: int) -> int:
        """One iteration (run() and run_once() are made of these, and the
        asyncio loop's selector calls it): the writes made since the last
        one go out, then the wait (-1: until something happens), the
        dispatch, and the calls that were ready. Returns the number of
        callbacks called."""
        called = 0
        if self._saved or self._ready:
            wait_ms = 0
            if self._saved:
                saved, self._saved = self._saved, []
                called = self._dispatch(saved)
        if self._write_streams:
            self._flush_writes(stage=True)
        if wait_ms != self._wait_ms:
            self._exchange_ints[_TIMEOUT_MS] = self._wait_ms = wait_ms
        # The writes made since the last iteration go out, then the wait.
        count = _raw_exchange(self._ptr_arg, self._exchange_arg)
        if count > 0:
            if self._exception is not None:
                self._save(self._batch(0, count))
                self._raise_kept()
            data_events = self._exchange_ints[_DATA_EVENTS]
            if data_events:
                self._dispatch_data(data_events, count)
            if data_events < count:
                self._dispatch(self._batch(data_events, count))
            called += count
            # What the receivers of several streams wrote goes out now
            # rather than with the next exchange: the peers answer while the
            # rest of this iteration runs, and their answers come together
            # in the next wait, instead of trickling in one or two per wait.
            # (For one stream that is a call for nothing.)
            if data_events > 1 and self._write_streams and self._flush_writes():
                # A write failed: its stream has ended and its fd is closed,
                # and a socket made before the next exchange could take the
                # number while the stream's owner still counts it as open
                # (asyncio then refuses that socket). Its CLOSED, now.
                called += self.iterate(0)
        elif count < 0:
            if count == -errno.EINTR:
                # A signal: its Python handler runs now (KeyboardInterrupt
                # is raised from here on Ctrl-C).
                _lib.run_signal_handlers()
                return called
            raise _lib.error(count, "evl_stream_exchange")
        elif self._exception is not None:
            self._raise_kept()
        if self._ready:
            called += self._run_ready()
        return called

    def _batch(self, start: int, end: int) -> List[tuple]:
        """Events start..end of the array, decoded."""
        return list(_EVENT.iter_unpack(self._events_view[start * _EVENT.size : end * _EVENT.size]))

    def _dispatch_data(self, data_events: int, count: int) -> None:
        """The hot path: the DATA events at the start of the batch, whose
        bytes lie end to end in the read buffer (evl_stream_exchange says
        how many and how long). The bytes are copied out in one piece and
        cut with BytesIO.read; the events' streams and lengths come from one
        struct.unpack_from. If a handler raises, the events after it are
        saved, as _dispatch does."""
        offset = self._events_u64[_PTR] - self._reads_start
        read = BytesIO(self._reads[offset : offset + self._exchange_words[_DATA_LEN]]).read  # type: ignore[arg-type]
        receivers = self._receivers
        fields = iter(_data_run(data_events).unpack_from(self._events))
        try:
            for stream, length in zip(fields, fields):
                data = read(length)
                try:
                    receive = receivers[stream]
                except KeyError:  # closed since it was read
                    continue
                try:
                    receive(data)
                except Exception as exc:
                    # The stream's owner decides: an asyncio transport
                    # reports it and closes, evloop.Transport raises it.
                    self._streams[stream]._receive_failed(exc)
        except BaseException:
            self._save(self._batch(data_events - len(list(fields)) // 2, count))
            raise

    def _dispatch(self, batch: List[tuple]) -> int:
        """Calls the handlers of a batch of events. If one raises, the events
        after it are saved for the next iteration and the exception goes on."""
        receivers = self._receivers
        reads, start = self._reads, self._reads_start
        events = iter(batch)
        try:
            for kind, fd, stream, data, length, userdata, status, revents in events:
                if kind == 1:  # EVL_STREAM_DATA: the hot path
                    try:
                        receive = receivers[stream]
                    except KeyError:  # closed since it was read
                        continue
                    offset = data - start
                    try:
                        receive(reads[offset : offset + length])
                    except Exception as exc:
                        self._streams[stream]._receive_failed(exc)
                else:
                    self._dispatch_other(kind, fd, stream, data, length, userdata, status, revents)
        except BaseException:
            self._save(list(events))
            raise
        return len(batch)

    def _dispatch_other(
        self, kind: int, fd: int, stream: int, data: Any, _len: int, userdata: int, status: int, revents: int
    ) -> None:
        if kind == _lib.EVL_STREAM_IO:
            registration = self._registrations.get(fd)
            # A registration that ended (or whose fd number was reused) since
            # the batch was fetched gets nothing: the serial tells them apart.
            if registration is not None and registration.serial == userdata:
                registration.callback(registration.fileobj, revents, *registration.args)
            elif userdata == 0 and self._wakeup is not None and fd == self._wakeup[0].fileno():
                if self._drain_wakeup() and self._in_run:
                    self._sigint_arrived()
        elif kind == _SAVED_DATA:
            receiver = self._receivers.get(stream)
            if receiver is not None:
                try:
                    receiver(data)
                except Exception as exc:
                    self._streams[stream]._receive_failed(exc)
        elif kind == _lib.EVL_STREAM_ACCEPTED:
            server = self._listeners.get(userdata)
            if server is None:  # closed since: the stream is not wanted
                _lib.evl_stream_abort(self._ptr, stream)
                return
            self._new_transport(stream, fd, server._factory())._stream_connected()
        else:
            endpoint = self._streams.get(stream)
            if endpoint is None:
                return
            if kind == _lib.EVL_STREAM_CONNECTED:
                if status == 0:
                    endpoint._stream_connected()
                # A failure is reported by the CLOSED event that follows.
            elif kind == _lib.EVL_STREAM_EOF:
                endpoint._stream_eof()
            elif kind == _lib.EVL_STREAM_DRAINED:
                endpoint._stream_drained()
            elif kind == _lib.EVL_STREAM_CLOSED:
                del self._streams[stream]
                self._receivers.pop(stream, None)
                endpoint._stream_closed(status)

    def _save(self, events: List[tuple]) -> None:
        """Keeps `events` for the next iteration, with the bytes of DATA
        events copied: the read buffer is reused by the next poll."""
        reads, start = self._reads, self._reads_start
        kept = []
        for event in events:
            kind, fd, stream, data, length, userdata, status, revents = event
            if kind == _DATA:
                offset = data - start
                event = (_SAVED_DATA, fd, stream, reads[offset : offset + length], length, userdata, status, revents)
            kept.append(event)
        self._saved = kept + self._saved

    def _raise_kept(self) -> None:
        exc, self._exception = self._exception, None
        assert exc is not None
        raise exc

    def _run_ready(self) -> int:
        # Only what was queued before this point: callbacks queued by these
        # run in the next iteration, so a callback re-queueing itself cannot
        # starve the fds.
        ready = self._ready
        count = len(ready)
        for _ in range(count):
            ready.popleft()._run()
        return count

    # ---- streams -----------------------------------------------------------

    def start_server(
        self,
        protocol_factory: Callable[[], Any],
        host: Optional[str] = "127.0.0.1",
        port: int = 0,
        *,
        backlog: int = 0,
        reuse_port: bool = False,
        max_connections: Optional[int] = None,
        idle_timeout: Optional[float] = None,
    ) -> Server:
        """Listens on host:port (None or "": every IPv4 address; port 0: any,
        see Server.port). Each accepted connection gets a protocol from
        `protocol_factory()` and a Transport. `backlog` 0: SOMAXCONN."""
        self._serial += 1
        key = self._serial
        listener = c_uint64()
        flags = _lib.EVL_LISTEN_REUSEPORT if reuse_port else 0
        check(
            _lib.evl_listen(self._handle(), _host(host), port, backlog, flags, _lib.NO_STREAM_CB, key, byref(listener)),
            "evl_listen",
        )
        server = Server(self, listener.value, key, protocol_factory)
        self._listeners[key] = server
        try:
            if max_connections:
                server.set_max_connections(max_connections)
            if idle_timeout:
                server.set_idle_timeout(idle_timeout)
        except BaseException:
            server.close()
            raise
        return server

    def open_connection(self, protocol_factory: Callable[[], Any], host: str, port: int) -> Transport:
        """Connects to host:port without blocking (a name is resolved first).
        The protocol's connection_made() comes once connected; a failure
        comes as connection_lost(ConnectionRefusedError...) without it.
        Writes made before the connection is up are queued."""
        stream = c_uint64()
        connect = _lib.evl_connect(self._handle(), _host(host), port, _lib.NO_STREAM_CB, None, byref(stream))
        check(connect, "evl_connect")
        return self._new_transport(stream.value, -1, protocol_factory())

    def open_stream(self, fd: int, protocol_factory: Callable[[], Any]) -> Transport:
        """A stream over a connected fd (socket, pipe...), which the library
        then owns and closes. connection_made() comes at once."""
        fd = fileobj_to_fd(fd)
        stream = c_uint64()
        check(_lib.evl_stream_open(self._handle(), fd, _lib.NO_STREAM_CB, None, byref(stream)), "evl_stream_open")
        transport = self._new_transport(stream.value, fd, protocol_factory())
        transport._stream_connected()
        return transport

    def _new_transport(self, stream: int, fd: int, protocol: Any) -> Transport:
        """Its protocol's connection_made() and data come with _stream_connected()."""
        if fd < 0:
            fd = _lib.evl_stream_fd(self._ptr, stream)
        transport = Transport(self, stream, fd, protocol)
        self._streams[stream] = transport
        return transport

    # ---- what stream owners use (evloop.Transport, the asyncio transport) ----

    def adopt(self, fd: int, endpoint: "StreamEndpoint") -> int:
        """Makes a library stream of the connected fd, which the library then
        owns and closes, and returns its id. The stream's events go to
        `endpoint`; its data to the receiver set with set_receiver(), none
        until then (bytes read before are dropped: set it, or pause, first)."""
        fd = fileobj_to_fd(fd)
        stream = c_uint64()
        check(_lib.evl_stream_open(self._handle(), fd, _lib.NO_STREAM_CB, None, byref(stream)), "evl_stream_open")
        self._streams[stream.value] = endpoint
        return stream.value

    def pointer(self) -> int:
        """The library's loop (RuntimeError once closed)."""
        return self._handle()

    def set_receiver(self, stream: int, receiver: Optional[Callable[[bytes], Any]]) -> None:
        """Where the stream's data goes from now on (None: dropped)."""
        if receiver is None:
            self._receivers.pop(stream, None)
        else:
            self._receivers[stream] = receiver

    def write_queue(self) -> Tuple[List[bytes], List[int], List[bytes]]:
        """The lists a write is appended to, one item to each: the stream id
        as 8 bytes (native order), the length, the bytes. They reach the
        library with the next iteration's exchange, in order."""
        return self._write_streams, self._write_lens, self._write_data

    def stream_call(self, function: Callable[..., int], *args: Any) -> int:
        """``function(loop pointer, *args)`` (one of the library's stream
        functions) once the writes made before are handed over, so that the
        order is kept; raises for a negative return."""
        return self._call_after_writes(function, *args)

    def forget_listener(self, key: int) -> None:
        """A Server closed: accepted events of its listener are refused."""
        self._listeners.pop(key, None)

    def queued(self, stream: int) -> int:
        """Bytes written to the stream that the kernel has not taken yet."""
        return self._queued(stream)

    def _flush_writes(self, stage: bool = False) -> int:
        """Hands the writes made so far to the library, in the order they
        were made (a failed write ends its stream, whose CLOSED event says
        why). Writes that fit are copied to the staged arrays: with `stage`
        the next evl_stream_exchange makes them, otherwise
        evl_stream_exchange_writes now. Returns how many of the
        writes made now failed."""
        streams, lens, data = self._write_streams, self._write_lens, self._write_data
        count = len(streams)
        joined = b"".join(data)
        if count <= _STAGED_WRITES and len(joined) <= _STAGED_BYTES:
            self._staged_streams_view[: count * 8] = b"".join(streams)
            self._staged_lens_view[:count] = array("Q", lens)
            self._staged_data_view[: len(joined)] = joined
            self._exchange_ints[_WRITE_COUNT] = count
            failed = 0 if stage else _raw_exchange_writes(self._ptr_arg, self._exchange_arg)
        else:
            lens_array = array("Q", lens)
            failed = _lib.evl_stream_write_batch(self._ptr, b"".join(streams), lens_array.buffer_info()[0], count, joined)
        streams.clear()
        lens.clear()
        data.clear()
        return check(failed, "evl_stream_write_batch")

    def _call_after_writes(self, function: Callable[..., int], *args: Any) -> int:
        """Calls a stream function of the library once the writes made
        before have been handed over, so that the order is kept."""
        if self._write_streams:
            self._flush_writes()
        return check(function(self._handle(), *args), function.__name__)

    def _queued(self, stream: int) -> int:
        size = c_size_t()
        self._call_after_writes(_lib.evl_stream_queued, stream, byref(size))
        return size.value

    # ---- closing -----------------------------------------------------------

    def close(self) -> None:
        """Frees the loop: closes its streams and listeners (their protocols'
        connection_lost is not called), forgets fds and timers (the fds stay
        open: they are yours). RuntimeError from a callback of this loop."""
        if self._ptr is None:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        for signo in list(self._signal_handlers):
            self.remove_signal_handler(signo)
        if self._write_streams:
            self._flush_writes()
        check(_lib.evl_loop_free(self._ptr), "evl_loop_free")
        self._ptr = self._ptr_arg = None
        for endpoint in self._streams.values():
            endpoint._loop_closed()
        for server in self._listeners.values():
            server._loop_closed()
        self._streams.clear()
        self._receivers.clear()
        self._listeners.clear()
        self._registrations.clear()
        self._timers.clear()
        self._ready.clear()
        self._saved = []
        if self._wakeup is not None:
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None


def _host(host: Optional[str]) -> bytes:
    return (host or "").encode("idna") if host else b""

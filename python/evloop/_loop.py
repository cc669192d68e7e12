"""evloop.Loop: the library's loop, driven from Python.

Each iteration (iterate(), below, read top to bottom) is one foreign call,
``evl_stream_exchange`` (see _exchange.py): it makes the writes of the
iteration before, waits, and fills an array with everything ready (raw
fds, and stream data, EOF, close...), which is then dispatched here in
Python (_dispatch.py); when data came on several streams, what their
receivers wrote goes out in a second call right after. A ctypes call costs
thousands of instructions, so crossing once or twice per iteration rather
than once per event is what makes this fast.

The parts, one module each: the raw fds (_fds.py), the timers and handles
(_handles.py), signals (_signals.py), streams and listeners
(_stream_table.py). Timers are the library's and call back through one
ctypes callback per loop; signals use Python's own handlers.
"""

from __future__ import annotations

import errno
import threading
from ctypes import byref, c_void_p
from typing import Any, Callable, Optional

from . import _lib
from ._dispatch import Dispatcher
from ._exchange import Exchange
from ._fds import Registrations, fileobj_to_fd
from ._handles import Handle, ReadyQueue, Timers
from ._lib import check
from ._signals import Signals, run_signal_handlers
from ._stream_table import StreamTable
from ._timeouts import timeout_ms
from .streams import Server, Transport

Callback = Callable[..., Any]
__all__ = ["Handle", "Loop", "fileobj_to_fd"]


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
        self._exchange = Exchange(pointer.value or 0, max_events)
        self._callbacks = ReadyQueue()
        self._ready = self._callbacks.handles
        self._fds = Registrations(self)
        self._timers = Timers(self, self._callbacks)
        self._signals = Signals(self, self._callbacks)
        #: The streams and listeners, and what their owners call (see _stream_table.py).
        self.streams = StreamTable(self, self._exchange)
        self._dispatcher = Dispatcher(self._exchange, self.streams, self._fds, self._signals)
        self._stopping = False
        self._running = False

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else ("running" if self._running else "idle")
        return f"<evloop.Loop {state} fds={len(self._fds.by_fd)} streams={len(self.streams.endpoints)}>"

    def __enter__(self) -> "Loop":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None and not self._running:
            _lib.evl_loop_free(self._ptr)
            self._ptr = None
            exchange = getattr(self, "_exchange", None)
            if exchange is not None:
                exchange.loop_freed()

    def pointer(self) -> int:
        """The library's loop (RuntimeError once closed)."""
        if self._ptr is None:
            raise RuntimeError("the loop is closed")
        return self._ptr

    def is_closed(self) -> bool:
        return self._ptr is None

    def is_running(self) -> bool:
        return self._running

    # ---- fds, callbacks, timers, signals ---------------------------------------

    def register(self, fileobj: Any, events: int, callback: Callback, *args: Any) -> None:
        """Watches `fileobj` (an fd or an object with fileno()) for `events`
        (READ, WRITE, optionally EDGE or ONESHOT) and calls
        ``callback(fileobj, revents, *args)`` when it is ready; `revents`
        holds READ, WRITE, ERROR, HUP, RDHUP bits. FileExistsError if it is
        registered already, PermissionError for a regular file."""
        self._fds.register(fileobj, events, callback, args)

    def modify(self, fileobj: Any, events: int, callback: Optional[Callback] = None, *args: Any) -> None:
        """Replaces the interest (the whole mask, like epoll.modify; re-arms
        ONESHOT) and, if `callback` is given, the callback and its args."""
        self._fds.modify(fileobj, events, callback, args)

    def unregister(self, fileobj: Any) -> None:
        """Stops watching; works after the fd was closed. No event of this
        registration is delivered afterwards. FileNotFoundError if it is not
        registered."""
        self._fds.unregister(fileobj)

    def call_soon(self, callback: Callback, *args: Any) -> Handle:
        """Calls ``callback(*args)`` in the next iteration (loop thread only)."""
        self.pointer()
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callback, *args: Any) -> Handle:
        """call_soon() for any thread: wakes the loop if it is waiting."""
        pointer = self.pointer()
        handle = Handle(callback, args)
        self._ready.append(handle)  # deque.append is atomic
        check(_lib.evl_wake(pointer), "evl_wake")
        return handle

    def call_later(self, delay: float, callback: Callback, *args: Any) -> Handle:
        """Calls ``callback(*args)`` once, `delay` seconds from now (rounded
        up to the millisecond: never early). Returns a cancellable Handle.
        ValueError for an infinite or NaN delay."""
        return self._timers.call_later(delay, callback, args)

    def add_signal_handler(self, signo: int, callback: Callback, *args: Any) -> None:
        """Calls ``callback(*args)`` in the loop whenever `signo` arrives
        (Python's signal handling, so the main thread only, as in asyncio).
        Replaces an earlier handler of the same signal."""
        self._signals.add(signo, callback, args)

    def remove_signal_handler(self, signo: int) -> bool:
        """Stops handling `signo`: its previous Python handler comes back.
        Returns whether a handler was removed."""
        return self._signals.remove(signo)

    # ---- streams ---------------------------------------------------------------

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
        return self.streams.listen(protocol_factory, host, port, backlog, reuse_port, max_connections, idle_timeout)

    def open_connection(self, protocol_factory: Callable[[], Any], host: str, port: int) -> Transport:
        """Connects to host:port without blocking (a name is resolved first).
        The protocol's connection_made() comes once connected; a failure
        comes as connection_lost(ConnectionRefusedError...) without it.
        Writes made before the connection is up are queued."""
        return self.streams.connect(protocol_factory, host, port)

    def open_stream(self, fd: int, protocol_factory: Callable[[], Any]) -> Transport:
        """A stream over a connected fd (socket, pipe...), which the library
        then owns and closes. connection_made() comes at once."""
        return self.streams.open(fd, protocol_factory)

    # ---- inside another loop (see embed.py) --------------------------------------

    def fileno(self) -> int:
        """An fd that becomes readable when the loop has something to do
        (ready I/O, a due timer, a wakeup, a signal), for a host loop to
        watch; when it is readable, or timeout() has passed, call
        run_once(0). It is the loop's own: never close or read it."""
        return check(_lib.evl_backend_fd(self.pointer()), "evl_backend_fd")

    def timeout(self) -> Optional[float]:
        """Seconds until the loop needs run_once(0) even if fileno() stays
        quiet (0 if it has work now, such as calls or writes waiting), never
        before its next timer is due; None if only fileno() can give it work."""
        if self._ready or self._dispatcher.saved or self._exchange.write_streams:
            return 0.0
        ms = _lib.evl_backend_timeout(self.pointer())
        return None if ms == -1 else check(ms, "evl_backend_timeout") / 1000

    # ---- running -----------------------------------------------------------------

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
                previous_wakeup = self._signals.enter_run()
            while not self._stopping and self._has_work():
                self.iterate(-1)
        finally:
            if main:
                self._signals.leave_run(previous_wakeup)
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
        self.pointer()
        if self._running:
            raise RuntimeError("the loop is already running")
        self._running = True

    def _leave(self) -> None:
        self._running = False
        self._stopping = False
        # run() hands each iteration's writes to the next one's exchange;
        # whatever the last one wrote goes out now.
        if self._exchange.write_streams:
            self._exchange.send_writes()

    def _has_work(self) -> bool:
        return bool(
            self.streams.endpoints
            or self.streams.listeners
            or self._fds.by_fd
            or self._timers.by_id
            or self._signals.handlers
            or self._ready
            or self._dispatcher.saved
            or self._exchange.write_streams
        )

    def iterate(self, wait_ms: int, keep_streams: bool = False) -> int:
        """One iteration (run() and run_once() are made of these, and the
        asyncio loop's selector calls it): what waits from the last one
        first, then the writes made since go out, then the wait (-1: until
        something happens; none if anything waits), the dispatch, and the
        calls that were ready. Returns the number of callbacks called (with
        `keep_streams`, of events).

        `keep_streams`: the stream events are kept, not dispatched, until
        dispatch_kept() (the raw fds' callbacks run): for a caller with
        callbacks of its own to run before them."""
        exchange, dispatcher, callbacks = self._exchange, self._dispatcher, self._callbacks
        called = 0
        if dispatcher.saved or self._ready:
            wait_ms = 0
            if dispatcher.saved and not keep_streams:
                called = dispatcher.dispatch_saved()
        count = exchange.poll(wait_ms)
        if count > 0:
            if callbacks.exception is not None:  # a timer's, during the poll
                dispatcher.save(0, count)
                callbacks.raise_kept()
            if keep_streams:
                dispatcher.keep(count)
                return count
            data_events = exchange.data_events
            if data_events:
                dispatcher.dispatch_data(count)
            if data_events < count:
                dispatcher.dispatch(exchange.events(data_events, count))
            called += count
            # What the receivers of several streams wrote goes out now
            # rather than with the next exchange: the peers answer while the
            # rest of this iteration runs, and their answers come together
            # in the next wait, instead of trickling in one or two per wait.
            # (For one stream that is a call for nothing.)
            if data_events > 1 and exchange.write_streams and exchange.send_writes():
                # A write failed, and ended its stream: its owner learns it
                # in this iteration, from the CLOSED event of a poll now.
                called += self.iterate(0)
        elif count < 0:
            if count == -errno.EINTR:
                # A signal: its Python handler runs now (KeyboardInterrupt
                # is raised from here on Ctrl-C).
                run_signal_handlers()
                return called
            raise _lib.error(count, "evl_stream_exchange")
        elif callbacks.exception is not None:
            callbacks.raise_kept()
        if self._ready:
            called += callbacks.run()
        return called

    def dispatch_kept(self) -> int:
        """Dispatches the stream events iterate(keep_streams=True) kept (and
        any an exception left undispatched); returns how many."""
        return self._dispatcher.dispatch_saved()

    # ---- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Frees the loop: closes its streams and listeners (their protocols'
        connection_lost is not called), forgets fds and timers (the fds stay
        open: they are yours). RuntimeError from a callback of this loop."""
        if self._ptr is None:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        if self._exchange.write_streams:
            self._exchange.send_writes()
        check(_lib.evl_loop_free(self._ptr), "evl_loop_free")
        self._ptr = None
        self._exchange.loop_freed()
        self._signals.close()
        self.streams.loop_closed()
        self._fds.clear()
        self._timers.clear()
        self._ready.clear()
        self._dispatcher.clear()

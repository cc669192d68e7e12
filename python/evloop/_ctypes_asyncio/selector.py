"""The selector of the ctypes path's asyncio loop: its fds are watched by an
evloop.Loop, and its select() is one iteration of that Loop, which serves
the Loop's streams in the same call (their protocols run from inside
select(), or from a callback it queues, see select_ms)."""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import events
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .._loop import Loop
from .._timeouts import timeout_ms
from ..selector import _TO_SELECTORS, EvloopSelector, _SelectorMapping

if TYPE_CHECKING:
    from .transport import StreamTransport


class LoopSelector(EvloopSelector):
    """A selector over an evloop.Loop (see the module's documentation)."""

    def __init__(self, engine: Loop) -> None:  # no evl_loop of its own
        self._ptr = None
        self._engine = engine
        self._fd_to_key: dict = {}
        self._map: Optional[_SelectorMapping] = _SelectorMapping(self)
        self._io_ready: List[Tuple[int, int]] = []
        # The asyncio loop's queue of ready callbacks, and a callback that
        # dispatches the stream events select() kept (see select_ms).
        self._asyncio_ready: Any = None
        self._after_the_wait_handle: Optional[events.Handle] = None
        # Transports whose protocol is paused (pause_writing): asked after
        # each wait whether their queue is down to the low-water mark.
        self._paused_writers: Dict["StreamTransport", None] = {}

    def serve(self, loop: asyncio.AbstractEventLoop, ready: Any) -> None:
        """The asyncio loop this selector serves, and its ready queue."""
        self._asyncio_ready = ready
        self._after_the_wait_handle = events.Handle(self._after_the_wait, (), loop, contextvars.Context())

    def watch_queue(self, transport: "StreamTransport") -> None:
        """`transport`'s protocol is paused: its queue is looked at after
        each wait until it is down to the low-water mark (the library says
        when a queue is empty, not when it is down to a mark)."""
        self._paused_writers[transport] = None

    def _check_paused_writers(self) -> None:
        for transport in list(self._paused_writers):
            if not transport._queue_progressed():
                del self._paused_writers[transport]

    def _after_the_wait(self) -> None:
        """The stream events of the last wait, when select() kept them."""
        self._engine.dispatch_kept()
        if self._paused_writers:
            self._check_paused_writers()

    # What the library is told goes to the Loop.

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
        """select() with the timeout in milliseconds (-1: none). The
        streams' events are dispatched here (their protocols run from
        inside), unless callbacks were ready before this wait: asyncio runs
        those before the wait's I/O callbacks, so the streams' events are
        then dispatched by a callback queued after them."""
        ready = self._asyncio_ready
        if wait_ms == 0 and ready:
            if self._engine.iterate(0, keep_streams=True) or self._paused_writers:
                ready.append(self._after_the_wait_handle)
        else:
            self._engine.iterate(wait_ms)
            if self._paused_writers:
                self._check_paused_writers()
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

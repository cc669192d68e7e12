"""A Loop's scheduled callbacks: the Handle that call_soon, call_later and
the signal handlers return or queue, the queue of those ready to run, and
the timers behind call_later, which are the library's (they call back
through one ctypes callback per loop, from inside the iteration's foreign
call)."""

from __future__ import annotations

import collections
import math
from ctypes import byref, c_uint64
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Optional, Tuple

from . import _lib
from ._lib import check
from ._timeouts import ceil_ms

if TYPE_CHECKING:
    from ._loop import Loop

Callback = Callable[..., Any]
# The longest delay evl_timer_start takes (a uint64_t of milliseconds).
_MAX_TIMER_MS = (1 << 64) - 1


class Handle:
    """A callback scheduled with call_soon, call_soon_threadsafe or call_later."""

    __slots__ = ("_callback", "_args", "_cancelled", "_timers", "_timer_id")

    def __init__(self, callback: Callback, args: Tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._timers: Optional[Timers] = None  # a call_later's
        self._timer_id = 0

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<evloop.Handle {self._callback!r}{state}>"

    def cancel(self) -> None:
        """The callback will not be called (if it has not been already)."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._timers is not None:
            self._timers.cancel(self)

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        if not self._cancelled:
            self._callback(*self._args)


class ReadyQueue:
    """The callbacks a Loop runs in its next iteration (`handles`), and the
    exception of a callback that ran from inside a foreign call, kept to be
    raised from run(): nothing may escape into the library."""

    def __init__(self) -> None:
        self.handles: Deque[Handle] = collections.deque()
        self.exception: Optional[BaseException] = None

    def run_from_library(self, handle: Handle) -> None:
        """Runs `handle` now, from inside a foreign call (a timer's): its
        exception is kept (and the handles after it run later)."""
        if self.exception is not None:
            self.handles.append(handle)
            return
        try:
            handle._run()
        except BaseException as exc:  # KeyboardInterrupt too: re-raised
            self.exception = exc

    def raise_kept(self) -> None:
        exc, self.exception = self.exception, None
        assert exc is not None
        raise exc

    def run(self) -> int:
        """Runs what was queued before this point: callbacks queued by
        these run in the next iteration, so a callback re-queueing itself
        cannot starve the fds. Returns how many ran."""
        ready = self.handles
        count = len(ready)
        for _ in range(count):
            ready.popleft()._run()
        return count


class Timers:
    """The library's one-shot timers of a Loop, by id."""

    def __init__(self, loop: "Loop", ready: ReadyQueue) -> None:
        self._loop = loop
        self._ready = ready
        #: The timers' handles, by id.
        self.by_id: Dict[int, Handle] = {}
        self._callback = _lib.evl_timer_cb(self._fired)

    def call_later(self, delay: float, callback: Callback, args: Tuple[Any, ...]) -> Handle:
        if delay != delay or delay == math.inf:
            raise ValueError(f"call_later: the delay must be a finite number of seconds, not {delay!r}")
        # Past 2**64 - 1 ms (585 million years) the timer is as good as never.
        ms = min(ceil_ms(max(delay, 0)), _MAX_TIMER_MS)
        handle = Handle(callback, args)
        timer_id = c_uint64()
        check(
            _lib.evl_timer_start(self._loop.pointer(), ms, 0, self._callback, None, byref(timer_id)),
            "evl_timer_start",
        )
        handle._timers, handle._timer_id = self, timer_id.value
        self.by_id[timer_id.value] = handle
        return handle

    def cancel(self, handle: Handle) -> None:
        if self.by_id.pop(handle._timer_id, None) is not None and not self._loop.is_closed():
            check(_lib.evl_timer_stop(self._loop.pointer(), handle._timer_id), "evl_timer_stop")

    def _fired(self, _loop: int, timer_id: int, _userdata: Any) -> None:
        handle = self.by_id.pop(timer_id, None)
        if handle is not None:
            self._ready.run_from_library(handle)

    def clear(self) -> None:
        """The loop is freed, and its timers with it."""
        self.by_id.clear()

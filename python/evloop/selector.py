"""EvloopSelector: a selectors.BaseSelector over the library's loop.

It behaves as the standard library's EpollSelector does, mistake for
mistake (the same exceptions for the same misuse), so that a program written
for ``selectors`` runs on it by changing one line. ``select()`` is one
foreign call, ``evl_poll``, whatever the number of ready fds; on the
native path (evloop/_implementation.py) that call and the making of the
list are the library's (src/cpython/loop_calls.rs), on the ctypes path
they are below.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Mapping
from ctypes import addressof, byref, c_char, c_void_p, sizeof
from selectors import EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey
from struct import Struct
from typing import Any, Iterator, List, Optional, Tuple

from . import _lib
from ._fds import fileobj_to_fd
from ._implementation import native_calls
from ._lib import check
from ._signals import run_signal_handlers
from ._timeouts import timeout_ms

# What select() reads of struct evl_event, as evl_poll writes it: fd and
# revents (not the userdata).
_EVENT = Struct("=iI8x")
_EVENT_SIZE = _EVENT.size
assert _EVENT_SIZE == sizeof(_lib.evl_event)

_READ, _WRITE = _lib.EVL_READ, _lib.EVL_WRITE
# selectors' masks as the library's.
_TO_EVL = (0, _READ, _WRITE, _READ | _WRITE)


class _ToSelectors(dict):
    """The library's readiness bits as selectors' mask, computed once per
    combination (a dict lookup costs less than the bit tests)."""

    def __missing__(self, revents: int) -> int:
        # As EpollSelector: anything but readability (errors, hang-ups
        # included) counts as writable, anything but writability as readable.
        events = (EVENT_WRITE if revents & ~_READ else 0) | (EVENT_READ if revents & ~_WRITE else 0)
        self[revents] = events
        return events


_TO_SELECTORS = _ToSelectors()


class _SelectorMapping(Mapping):
    """get_map(): fileobjs (or fds) to keys, read-only."""

    def __init__(self, selector: "EvloopSelector") -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj: Any) -> SelectorKey:
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector._fd_to_key)


class EvloopSelector(BaseSelector):
    """A selector on evloop's epoll loop; see selectors.BaseSelector."""

    def __init__(self) -> None:
        pointer = c_void_p()
        check(_lib.evl_loop_new(byref(pointer)), "evl_loop_new")
        self._ptr: Optional[int] = pointer.value
        self._fd_to_key: dict = {}
        self._map: Optional[_SelectorMapping] = _SelectorMapping(self)
        self._capacity = 0
        self._grow(64)
        calls = native_calls()
        self._native_select = None if calls is None else calls.select

    def _grow(self, capacity: int) -> None:
        self._capacity = capacity
        self._events = (c_char * (_EVENT.size * capacity))()
        self._events_start = addressof(self._events)
        self._events_view = memoryview(self._events).cast("B")

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            _lib.evl_loop_free(self._ptr)
            self._ptr = None

    def _pointer(self) -> int:
        if self._ptr is None:
            raise ValueError("I/O operation on closed selector")
        return self._ptr

    def _fileobj_lookup(self, fileobj: Any) -> int:
        """The fd of `fileobj`; for an object whose fd cannot be had any more
        (closed), the fd it was registered with."""
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    # What the library is told; a selector over an evloop.Loop tells the Loop.

    def _watch(self, fd: int, events: int) -> None:
        check(_lib.evl_register(self._pointer(), fd, events, _lib.NO_IO_CB, None), "evl_register")

    def _rewatch(self, fd: int, events: int) -> None:
        check(_lib.evl_modify(self._pointer(), fd, events), "evl_modify")

    def _unwatch(self, fd: int) -> None:
        if self._ptr is not None:
            # Never fails for a registered fd, closed or not: the library
            # forgets it either way.
            _lib.evl_unregister(self._ptr, fd)

    def register(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        key = SelectorKey(fileobj, self._fileobj_lookup(fileobj), events, data)
        if key.fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {key.fd}) is already registered")
        self._watch(key.fd, _TO_EVL[events])
        self._fd_to_key[key.fd] = key
        return key

    def unregister(self, fileobj: Any) -> SelectorKey:
        try:
            key = self._fd_to_key.pop(self._fileobj_lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        self._unwatch(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        changed = False
        if events != key.events:
            # Not checked, as EpollSelector does not: the known bits are used.
            try:
                self._rewatch(key.fd, _TO_EVL[events & 3])
            except BaseException:
                # As EpollSelector: a registration that could not be changed is dropped.
                self.unregister(fileobj)
                raise
            changed = True
        if data != key.data:
            changed = True
        if changed:
            key = key._replace(events=events, data=data)
            self._fd_to_key[key.fd] = key
        return key

    def select(self, timeout: Optional[float] = None) -> List[Tuple[SelectorKey, int]]:
        pointer = self._pointer()
        wait_ms = -1 if timeout is None else timeout_ms(timeout)
        want = len(self._fd_to_key) or 1
        if want > self._capacity:
            self._grow(max(want, 2 * self._capacity))
        if self._native_select is not None:
            ready = self._native_select(pointer, self._events_start, want, wait_ms, self._fd_to_key)
            if ready.__class__ is int:
                raise _lib.error(ready, "evl_poll")
            return ready  # type: ignore[no-any-return]
        deadline = time.monotonic() + timeout if timeout is not None and wait_ms > 0 else 0.0
        count = _lib.evl_poll(pointer, wait_ms, self._events_start, want)
        while count < 0:
            if count != -errno.EINTR:
                raise _lib.error(count, "evl_poll")
            # PEP 475: run the signal's handler (its exception propagates),
            # then wait for what is left of the timeout.
            run_signal_handlers()
            if wait_ms > 0:
                wait_ms = timeout_ms(deadline - time.monotonic())
            count = _lib.evl_poll(pointer, wait_ms, self._events_start, want)
        ready = []
        fd_to_key = self._fd_to_key
        for fd, revents in _EVENT.iter_unpack(self._events_view[: count * _EVENT_SIZE]):
            key = fd_to_key.get(fd)
            if key:
                ready.append((key, _TO_SELECTORS[revents] & key.events))
        return ready

    def fileno(self) -> int:
        """The library's backend fd (as EpollSelector.fileno()): readable
        while a registered fd is ready. It stays the selector's."""
        return check(_lib.evl_backend_fd(self._pointer()), "evl_backend_fd")

    def close(self) -> None:
        if self._ptr is not None:
            check(_lib.evl_loop_free(self._ptr), "evl_loop_free")
            self._ptr = None
        self._fd_to_key.clear()
        self._map = None

    def get_map(self) -> Optional[Mapping]:  # type: ignore[override]
        return self._map

    def get_key(self, fileobj: Any) -> SelectorKey:
        mapping = self.get_map()
        if mapping is None:
            raise RuntimeError("Selector is closed")
        try:
            return mapping[fileobj]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None


DefaultSelector = EvloopSelector

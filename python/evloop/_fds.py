"""A Loop's raw fds: register, modify, unregister, and the callback of each
ready one. The library is told the fd and a serial number; the callback
and its arguments stay here, found by fd, and the serial tells a live
registration from one that ended (or whose fd number was reused) after
its event was fetched."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from . import _lib
from ._lib import check

if TYPE_CHECKING:
    from ._loop import Loop

Callback = Callable[..., Any]


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


class _Registration:
    __slots__ = ("serial", "fileobj", "callback", "args")

    def __init__(self, serial: int, fileobj: Any, callback: Callback, args: Tuple[Any, ...]) -> None:
        self.serial = serial
        self.fileobj = fileobj
        self.callback = callback
        self.args = args


class Registrations:
    """The fds a Loop watches, with their callbacks (see Loop.register)."""

    def __init__(self, loop: "Loop") -> None:
        self._loop = loop
        #: The registrations, by fd.
        self.by_fd: Dict[int, _Registration] = {}
        # 0 is never a registration's: the userdata of the loop's own fds.
        self._serial = 0

    def register(self, fileobj: Any, events: int, callback: Callback, args: Tuple[Any, ...]) -> None:
        fd = fileobj_to_fd(fileobj)
        self._serial += 1
        check(_lib.evl_register(self._loop.pointer(), fd, events, _lib.NO_IO_CB, self._serial), "evl_register")
        self.by_fd[fd] = _Registration(self._serial, fileobj, callback, args)

    def modify(self, fileobj: Any, events: int, callback: Optional[Callback], args: Tuple[Any, ...]) -> None:
        fd = self._registered_fd(fileobj)
        check(_lib.evl_modify(self._loop.pointer(), fd, events), "evl_modify")
        if callback is not None:
            registration = self.by_fd[fd]
            registration.callback, registration.args = callback, args

    def unregister(self, fileobj: Any) -> None:
        fd = self._registered_fd(fileobj)
        check(_lib.evl_unregister(self._loop.pointer(), fd), "evl_unregister")
        del self.by_fd[fd]

    def _registered_fd(self, fileobj: Any) -> int:
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            # Closed already: found by identity, as selectors does.
            for fd, registration in self.by_fd.items():
                if registration.fileobj is fileobj:
                    return fd
            raise FileNotFoundError(errno.ENOENT, f"{fileobj!r} is not registered") from None

    def ready(self, fd: int, serial: int, revents: int) -> bool:
        """An event of the library for `fd`: its callback, if the
        registration it was fetched for is still the one. Returns whether
        the event was a registration's (else it may be the loop's own)."""
        registration = self.by_fd.get(fd)
        if registration is None or registration.serial != serial:
            return False
        registration.callback(registration.fileobj, revents, *registration.args)
        return True

    def clear(self) -> None:
        """The loop is freed: its registrations are gone (the fds stay open)."""
        self.by_fd.clear()

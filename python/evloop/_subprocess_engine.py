"""The evloop.Loop that runs an asyncio loop's children (_subprocess.py)
and name lookups (_resolve.py), whichever path the asyncio loop is.

On the ctypes path it is the loop's own ``Loop`` (every iteration is one of
its). The native path has no ``Loop``: it gets one when it first needs
it, run inside it through ``evloop.attach`` (its epoll fd, with the pidfds
and the pipes' streams, is one more fd in the native loop's epoll set), and
closed with it (``close()``: children still running are killed and reaped,
as ``evl_loop_free`` does).
"""

from __future__ import annotations

from typing import Any, Optional

from ._loop import Loop
from .embed import Attachment


class Engine:
    """A ``Loop`` serving an asyncio loop, and how to have it run soon."""

    __slots__ = ("loop", "_attachment")

    def __init__(self, loop: Loop, attachment: Optional[Attachment] = None) -> None:
        self.loop = loop
        self._attachment = attachment

    def kick(self) -> None:
        """After a call on the Loop from asyncio's code whose events must not
        wait for the Loop's fd (a close: its CLOSED), an iteration soon."""
        if self._attachment is not None:
            self._attachment.run_soon()

    def close(self) -> None:
        attachment, self._attachment = self._attachment, None
        if attachment is not None:  # no kick after this: the asyncio loop is closing
            attachment.detach()
            self.loop.close()


def attached(host: Any) -> Engine:
    """A new Loop run inside the running-or-not asyncio loop `host`."""
    loop = Loop()
    try:
        return Engine(loop, Attachment(loop, host))
    except BaseException:
        loop.close()
        raise


def engine_of(host: Any) -> Engine:
    """The Engine of an evloop asyncio loop (either path)."""
    return host._evloop_engine()  # type: ignore[no-any-return]

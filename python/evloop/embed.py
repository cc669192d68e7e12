"""Running an evloop.Loop inside a running asyncio loop, so that an asyncio
application can serve or open evloop streams without changing its loop.

asyncio watches ``Loop.fileno()`` with ``add_reader`` and keeps one timer
(``call_at``) at ``Loop.timeout()``; when either fires, one evloop iteration
runs without blocking (``Loop.run_once(0)``), and the timer moves to
evloop's next deadline. evloop's callbacks (its protocols' data_received,
its call_later) run inside asyncio's, on asyncio's thread.

    attachment = evloop.attach(loop)        # in a coroutine, or pass the asyncio loop
    ...
    attachment.detach()

Writes and calls made on the evloop loop from asyncio's own callbacks go out
in evloop's next iteration: ``attachment.run_soon()`` asks for it at once
(``loop.call_soon_threadsafe`` wakes it too).
"""

from __future__ import annotations

import asyncio
from typing import Optional

from ._loop import Loop


class Attachment:
    """An evloop.Loop run by an asyncio loop; see the module's doc."""

    def __init__(self, loop: Loop, host: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.host = host
        self._fd = loop.fileno()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._soon: Optional[asyncio.Handle] = None
        host.add_reader(self._fd, self._run)
        self._reschedule()

    def __repr__(self) -> str:
        return f"<evloop.Attachment of {self.loop!r} to {self.host!r}>"

    def run_soon(self) -> None:
        """Runs an evloop iteration as soon as asyncio gets to it (for work
        made on the evloop loop from asyncio's callbacks)."""
        if self._soon is None:
            self._soon = self.host.call_soon(self._run)

    def _run(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        try:
            self.loop.run_once(0)
        finally:
            if not self.loop.is_closed():
                self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self.loop.timeout()
        if timeout == 0:
            self.run_soon()
        elif timeout is not None:
            # Rounded up to whole ms, and the fd wakes asyncio at the deadline
            # anyway: run_once finds the timer due.
            self._timer = self.host.call_at(self.host.time() + timeout, self._run)

    def detach(self) -> None:
        """Stops running the loop from asyncio (the loop itself stays open)."""
        self.host.remove_reader(self._fd)
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None


def attach(loop: Loop, host: Optional[asyncio.AbstractEventLoop] = None) -> Attachment:
    """Runs `loop` inside `host` (default: the running asyncio loop) from
    now until ``detach()``. `host` must be able to watch an fd with
    add_reader: the default loop on Linux is (its selector is epoll)."""
    return Attachment(loop, host if host is not None else asyncio.get_running_loop())

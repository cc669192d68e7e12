"""evloop's asyncio loop, under uvloop's names: ``new_event_loop()``,
``EventLoopPolicy``, ``install()``, ``run()``, and ``EventLoop``, the class
of the implementation ``_implementation`` chose for this process (the
native path, or the ctypes path: see there, and ``IMPLEMENTATION``).

Importing this module makes the choice: an ``EVLOOP_IMPL`` that asks for an
implementation that cannot run here raises ImportError, saying why.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Optional

from . import _implementation

_choice = _implementation.current()
#: The class of evloop's asyncio loop in this process.
EventLoop: Any = _choice.event_loop
#: Which implementation runs: "native" or "ctypes".
IMPLEMENTATION = _choice.name


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new evloop asyncio event loop."""
    return EventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,valid-type]
    """asyncio's default policy, making evloop loops."""

    def _loop_factory(self) -> asyncio.AbstractEventLoop:  # type: ignore[override]
        return EventLoop()


def install() -> None:
    """Makes evloop asyncio's event loop policy (uvloop.install())."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Any, *, debug: Optional[bool] = None) -> Any:
    """asyncio.run(main) on an evloop loop."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_before_311(main, debug)


def _run_before_311(main: Any, debug: Optional[bool]) -> Any:
    """asyncio.run's steps, for Pythons without asyncio.Runner."""
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor", None)
            if shutdown_executor is not None:
                loop.run_until_complete(shutdown_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )

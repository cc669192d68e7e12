"""evloop's native asyncio loop, for CPython: the loop's iteration, its
ready queue and timers, and the socket transports run inside
``libevloop.so``, which calls CPython's own exported functions found at run
time, so the one library serves every CPython from 3.8 on. It is still
loaded with ctypes (``ctypes.PyDLL``, once); afterwards Python calls the
native methods directly.

- :func:`available` says whether this Python can have it, and
  :func:`unavailable_reason` why not (PyPy: the package's ctypes path
  serves it instead);
- :class:`EventLoop` (imported on first use), which
  ``evloop/_implementation.py`` hands to ``evloop.new_event_loop()`` and
  the rest of the package's asyncio names.
"""

from __future__ import annotations

from typing import Any, Optional

from . import _load

_ASYNCIO_NAMES = ("EventLoop",)


def unavailable_reason() -> Optional[str]:
    """None when the native loop can run here; otherwise why not."""
    try:
        _load.load()
    except ImportError as exc:
        return str(exc)
    return None


def available() -> bool:
    """Whether the native loop can run in this Python."""
    return unavailable_reason() is None


def __getattr__(name: str) -> Any:
    if name in _ASYNCIO_NAMES:
        from . import _loop

        return getattr(_loop, name)
    raise AttributeError(f"module 'evloop._native' has no attribute {name!r}")


__all__ = ["available", "unavailable_reason", *_ASYNCIO_NAMES]

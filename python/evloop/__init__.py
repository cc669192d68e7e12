"""evloop: an epoll event loop written in Rust, loaded through ctypes.

- ``Loop``: fds with callbacks, timers, signals, thread-safe calls, and
  buffered streams (``start_server``, ``open_connection``) in the shape of
  asyncio's Protocol/Transport.
- ``EvloopSelector`` (``DefaultSelector``): a drop-in ``selectors`` selector;
  ``import evloop as selectors`` runs a selectors program on it.
- ``attach(loop)``: runs a ``Loop`` inside the running asyncio loop.

Standard library only; the library is found as ``python/README.md`` says.
"""

from selectors import EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey

from ._lib import ABI_VERSION, EvloopPanic, strerror, version
from ._loop import Handle, Loop
from .embed import Attachment, attach
from .selector import DefaultSelector, EvloopSelector
from .streams import Protocol, Server, Transport
from ._lib import (
    EVL_EDGE as EDGE,
    EVL_ERROR as ERROR,
    EVL_HUP as HUP,
    EVL_ONESHOT as ONESHOT,
    EVL_RDHUP as RDHUP,
    EVL_READ as READ,
    EVL_WRITE as WRITE,
)

from typing import Any, Callable, Optional


def start_server(
    protocol_factory: Callable[[], Any], host: Optional[str] = "127.0.0.1", port: int = 0, *, loop: Loop, **options: Any
) -> Server:
    """``loop.start_server(protocol_factory, host, port, **options)``."""
    return loop.start_server(protocol_factory, host, port, **options)


def open_connection(protocol_factory: Callable[[], Any], host: str, port: int, *, loop: Loop) -> Transport:
    """``loop.open_connection(protocol_factory, host, port)``."""
    return loop.open_connection(protocol_factory, host, port)


__version__ = version()

# The asyncio loop (uvloop's names), imported on first use: asyncio is a
# large import that selectors and Loop programs do not need.
_ASYNCIO_NAMES = ("EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run")


# TLS configurations (evloop.tls), imported on first use too: ssl is large.
_TLS_NAMES = ("EvloopSSLContext", "TLSConfig", "TLSUnsupported", "create_default_context")


def __getattr__(name: str) -> Any:
    if name in _ASYNCIO_NAMES:
        from . import _asyncio

        return getattr(_asyncio, name)
    if name in _TLS_NAMES:
        from . import tls

        return getattr(tls, name)
    raise AttributeError(f"module 'evloop' has no attribute {name!r}")

__all__ = [
    "ABI_VERSION", "Attachment", "BaseSelector", "DefaultSelector", "EDGE", "ERROR", "EVENT_READ", "EVENT_WRITE",
    "EventLoop", "EventLoopPolicy", "EvloopPanic", "EvloopSelector", "HUP", "Handle", "Loop", "ONESHOT", "Protocol",
    "RDHUP", "READ", "SelectorKey", "Server", "Transport", "WRITE", "attach", "install", "new_event_loop",
    "open_connection", "run", "start_server", "strerror", "version",
    "EvloopSSLContext", "TLSConfig", "TLSUnsupported", "create_default_context",
]

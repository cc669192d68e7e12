"""loop.getaddrinfo() of both asyncio paths on the library's thread pool
(``evl_getaddrinfo``, through the loop's Engine: _subprocess_engine.py)
instead of asyncio's default executor: no Python thread, no executor to
shut down, and a lookup whose awaiting task is cancelled is cancelled in
the pool too. The result is socket.getaddrinfo's, and so are its errors
(socket.gaierror with the EAI code and text)."""

from __future__ import annotations

import asyncio
from typing import Any, List

from ._subprocess_engine import engine_of


def _plain(host: Any, port: Any) -> bool:
    """Arguments the library takes as socket.getaddrinfo would; for others
    (bad types...) socket.getaddrinfo itself gives the error, which differs
    between CPython and PyPy."""
    return (host is None or isinstance(host, (str, bytes))) and (
        port is None or isinstance(port, (str, bytes)) or type(port) is int
    )


async def getaddrinfo(loop: Any, host: Any, port: Any, family: int, type: int, proto: int, flags: int) -> List[Any]:
    if not _plain(host, port):
        return await asyncio.BaseEventLoop.getaddrinfo(loop, host, port, family=family, type=type, proto=proto, flags=flags)
    future = loop.create_future()

    def done(outcome: Any) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    try:
        resolution = engine_of(loop).loop.getaddrinfo(host, port, done, family=family, type=type, proto=proto, flags=flags)
    except ValueError:
        # Hints the library refuses (a family other than IPv4 and IPv6...):
        # the error is socket.getaddrinfo's to give.
        return await asyncio.BaseEventLoop.getaddrinfo(loop, host, port, family=family, type=type, proto=proto, flags=flags)
    try:
        return await future  # type: ignore[no-any-return]
    except asyncio.CancelledError:
        resolution.cancel()
        raise

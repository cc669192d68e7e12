"""The ctypes path's asyncio event loop: asyncio's SelectorEventLoop over a
LoopSelector (an evloop.Loop), with socket transports on the library's
streams (see the package's documentation)."""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import socket
from asyncio import events
from typing import Any, Callable, List, Optional, Tuple

from .._loop import Loop
from .._subprocess import AsyncioServices
from .._subprocess_engine import Engine
from . import datagram
from .selector import LoopSelector
from .sendfile import send_file
from . import tls as tls_steps
from .tls import SSLTransports, TLSLink, native_config
from .transport import StreamTransport

# call_soon() builds asyncio's Handle itself, field by field, where the
# Handle has exactly these fields: the same object as asyncio's, without a
# Python __init__ that asks the loop for its debug mode (futures and tasks
# call call_soon for every wakeup).
_LEAN_HANDLES = getattr(events.Handle, "__slots__", None) == (
    "_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr", "__weakref__", "_context",
)
_new_handle = object.__new__
_copy_context = contextvars.copy_context


class EventLoop(SSLTransports, AsyncioServices, asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """asyncio's event loop on evloop, the ctypes path (see the package's
    documentation).

    A socket passed as ``sock=`` to create_server, create_connection,
    connect_accepted_socket or create_unix_server is read and written by the
    library through its fd: a ``socket.socket`` subclass's ``recv``/``send``
    overrides are bypassed, as on uvloop."""

    # asyncio's, not in the type stubs: fd -> transport, the ready callbacks,
    # the timers' heap, and the state _run_once reads.
    _transports: Any
    _ready: Any
    _scheduled: List[Any]
    _debug: bool
    _closed: bool
    _stopping: bool
    _clock_resolution: float
    _process_events: Callable[[List[Tuple[Any, int]]], None]

    def __init__(self) -> None:
        self._engine = Loop()
        self._loop_selector = LoopSelector(self._engine)
        super().__init__(self._loop_selector)
        self._loop_selector.serve(self, self._ready)

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> events.Handle:  # type: ignore[override]
        """asyncio's call_soon(); when debug mode is off, its Handle is made
        here (see _LEAN_HANDLES)."""
        handle: Any
        if self._debug or self._closed or not _LEAN_HANDLES:
            handle = super().call_soon(callback, *args, context=context)
            if handle._source_traceback:
                # asyncio's call_soon took its own frame off the traceback;
                # this one goes too, so that it ends at our caller.
                del handle._source_traceback[-1]
            return handle  # type: ignore[no-any-return]
        handle = _new_handle(events.Handle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def _run_once(self) -> None:
        """asyncio's BaseEventLoop._run_once, without the steps that have
        nothing to do when no timer is scheduled and debug mode is off (a
        busy server's usual iteration): the wait (none if a callback is
        ready), the events, the due timers, the ready callbacks. Otherwise
        asyncio's own."""
        if self._scheduled or self._debug:
            return super()._run_once()  # type: ignore[misc]
        ready = self._ready
        fds_ready = self._loop_selector.select_ms(0 if ready or self._stopping else -1)
        if fds_ready:
            self._process_events(fds_ready)
        if self._scheduled:
            # Scheduled by the events just handled: due ones run now, as
            # asyncio's would.
            end_time = self.time() + self._clock_resolution
            scheduled = self._scheduled
            while scheduled and scheduled[0]._when < end_time:
                handle = heapq.heappop(scheduled)
                handle._scheduled = False
                ready.append(handle)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()

    def _make_socket_transport(
        self, sock: socket.socket, protocol: Any, waiter: Any = None, *, extra: Any = None, server: Any = None
    ) -> StreamTransport:
        return StreamTransport(self, sock, protocol, waiter, extra, server)

    def _make_library_tls_transport(
        self, rawsock: socket.socket, protocol: Any, link: TLSLink, waiter: Any, extra: Any, server: Any
    ) -> StreamTransport:
        # The library's TLS stream: no SSLProtocol, no Python per record.
        return StreamTransport(self, rawsock, protocol, waiter, extra, server, tls=link)

    def _upgradable(self, transport: Any) -> bool:
        return type(transport) is StreamTransport and transport._tls is None

    def _upgrade_to_tls(self, transport: Any, link: TLSLink) -> None:
        tls_steps.start(link, transport, link.waiter)
        transport._tls = link

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: int) -> int:
        if not isinstance(transp, StreamTransport):
            return await super()._sendfile_native(transp, file, offset, count)  # type: ignore[misc,no-any-return]
        return await send_file(transp, file, offset, count)

    def _make_datagram_transport(
        self, sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
    ) -> Any:
        if not datagram.supports(sock):  # Unix-domain datagrams: asyncio's own
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)  # type: ignore[misc]
        return datagram.DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _new_engine(self) -> Engine:
        return Engine(self._engine)

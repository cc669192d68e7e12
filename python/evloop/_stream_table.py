"""The streams and listeners of a Loop, by the library's ids: who owns each
stream (an endpoint: evloop.Transport, or the asyncio loop's transport),
where its data goes (its receiver), and which Server each listener is.
What stream owners call goes through here (``Loop.streams``): opening,
the write queue, the library's stream functions in order with the writes.
"""

from __future__ import annotations

from ctypes import byref, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import _lib
from ._fds import fileobj_to_fd
from ._lib import check
from .streams import Server, StreamEndpoint, Transport

if TYPE_CHECKING:
    from ._exchange import Exchange
    from ._loop import Loop

Receiver = Callable[[bytes], Any]


class StreamTable:
    """A Loop's streams and listeners (see the module's documentation)."""

    def __init__(self, loop: "Loop", exchange: "Exchange") -> None:
        self._loop = loop
        self._exchange = exchange
        self.endpoints: Dict[int, StreamEndpoint] = {}
        #: Where each stream's data goes (see set_receiver).
        self.receivers: Dict[int, Receiver] = {}
        self.listeners: Dict[int, Server] = {}  # by key: their userdata
        self._keys = 0

    # ---- opening -------------------------------------------------------------

    def listen(
        self,
        factory: Callable[[], Any],
        host: Optional[str],
        port: int,
        backlog: int,
        reuse_port: bool,
        max_connections: Optional[int],
        idle_timeout: Optional[float],
    ) -> Server:
        self._keys += 1
        key = self._keys
        listener = c_uint64()
        flags = _lib.EVL_LISTEN_REUSEPORT if reuse_port else 0
        pointer = self._loop.pointer()
        check(_lib.evl_listen(pointer, _host(host), port, backlog, flags, _lib.NO_STREAM_CB, key, byref(listener)), "evl_listen")
        server = Server(self, listener.value, key, factory)
        self.listeners[key] = server
        try:
            if max_connections:
                server.set_max_connections(max_connections)
            if idle_timeout:
                server.set_idle_timeout(idle_timeout)
        except BaseException:
            server.close()
            raise
        return server

    def connect(self, factory: Callable[[], Any], host: str, port: int) -> Transport:
        stream = c_uint64()
        check(_lib.evl_connect(self._loop.pointer(), _host(host), port, _lib.NO_STREAM_CB, None, byref(stream)), "evl_connect")
        return self._new_transport(stream.value, -1, factory())

    def open(self, fd: int, factory: Callable[[], Any]) -> Transport:
        fd = fileobj_to_fd(fd)
        stream = c_uint64()
        check(_lib.evl_stream_open(self._loop.pointer(), fd, _lib.NO_STREAM_CB, None, byref(stream)), "evl_stream_open")
        transport = self._new_transport(stream.value, fd, factory())
        transport._stream_connected()
        return transport

    def accepted(self, stream: int, fd: int, key: int) -> None:
        """An ACCEPTED event of the listener `key`: a Transport for the new
        stream, with a protocol from its server's factory."""
        server = self.listeners.get(key)
        if server is None:  # closed since: the stream is not wanted
            _lib.evl_stream_abort(self._loop.pointer(), stream)
            return
        self._new_transport(stream, fd, server._factory())._stream_connected()

    def _new_transport(self, stream: int, fd: int, protocol: Any) -> Transport:
        """Its protocol's connection_made() and data come with _stream_connected()."""
        if fd < 0:
            fd = _lib.evl_stream_fd(self._loop.pointer(), stream)
        transport = Transport(self, stream, fd, protocol)
        self.endpoints[stream] = transport
        return transport

    def adopt(self, fd: int, endpoint: StreamEndpoint) -> int:
        """Makes a library stream of the connected fd, which the library then
        owns and closes, and returns its id. The stream's events go to
        `endpoint`; its data to the receiver set with set_receiver(), none
        until then (bytes read before are dropped: set it, or pause, first)."""
        fd = fileobj_to_fd(fd)
        stream = c_uint64()
        check(_lib.evl_stream_open(self._loop.pointer(), fd, _lib.NO_STREAM_CB, None, byref(stream)), "evl_stream_open")
        self.endpoints[stream.value] = endpoint
        return stream.value

    # ---- what stream owners use ------------------------------------------------

    def set_receiver(self, stream: int, receiver: Optional[Receiver]) -> None:
        """Where the stream's data goes from now on (None: dropped)."""
        if receiver is None:
            self.receivers.pop(stream, None)
        else:
            self.receivers[stream] = receiver

    def write_queue(self) -> Tuple[List[bytes], List[int], List[bytes]]:
        """The lists a write is appended to, one item to each: the stream id
        as 8 bytes (native order), the length, the bytes. They reach the
        library with the next iteration's exchange, in order."""
        exchange = self._exchange
        return exchange.write_streams, exchange.write_lens, exchange.write_data

    def call(self, function: Callable[..., int], *args: Any) -> int:
        """``function(loop pointer, *args)`` (one of the library's stream
        functions) once the writes made before are handed over, so that the
        order is kept; raises for a negative return."""
        if self._exchange.write_streams:
            self._exchange.send_writes()
        return check(function(self._loop.pointer(), *args), function.__name__)

    def queued(self, stream: int) -> int:
        """Bytes written to the stream that the kernel has not taken yet."""
        size = c_size_t()
        self.call(_lib.evl_stream_queued, stream, byref(size))
        return size.value

    def exists(self, stream: int) -> bool:
        """Whether the library's stream is still open."""
        return _lib.evl_stream_fd(self._loop.pointer(), stream) >= 0

    def is_closed(self) -> bool:
        """The loop is closed: the library's streams are gone."""
        return self._loop.is_closed()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        return self._loop.call_soon(callback, *args)

    def forget_listener(self, key: int) -> None:
        """A Server closed: accepted events of its listener are refused."""
        self.listeners.pop(key, None)

    # ---- the end of streams ------------------------------------------------------

    def ended(self, stream: int) -> Optional[StreamEndpoint]:
        """A CLOSED event: the stream's endpoint, which the table forgets."""
        self.receivers.pop(stream, None)
        return self.endpoints.pop(stream, None)

    def loop_closed(self) -> None:
        """The loop was freed with these open: their owners are told."""
        for endpoint in self.endpoints.values():
            endpoint._loop_closed()
        for server in self.listeners.values():
            server._loop_closed()
        self.endpoints.clear()
        self.receivers.clear()
        self.listeners.clear()


def _host(host: Optional[str]) -> bytes:
    return (host or "").encode("idna") if host else b""

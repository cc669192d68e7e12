"""UDP sockets of the library, in the shape of asyncio's datagram
transport and protocol (``Loop.udp_bind``, ``Loop.udp_open``).

The library receives with ``recvmmsg``: up to 32 datagrams come per event,
and reach the protocol in order. A protocol is any object with these
methods (all optional but ``datagram_received``; ``DatagramProtocol``
below provides empty ones):

- ``connection_made(transport)``: the socket is ready.
- ``datagram_received(data, addr)``: one whole datagram and its source.
- ``datagrams_received(batch)``: if defined, called instead of the two
  above and the one below with each event's list of ``(data, addr,
  truncated)``: one call per batch.
- ``datagram_truncated(data, addr)``: a datagram longer than the receive
  size (``set_recv_size``; 64 KiB by default, any datagram) came, and
  ``data`` is its start. Without it, ``error_received(OSError(EMSGSIZE))``
  reports it: a datagram is never cut short silently.
- ``error_received(exc)``: an ICMP error on a connected socket
  (``ConnectionRefusedError``), or a queued datagram the kernel refused.
- ``resume_writing()``: the send queue emptied after ``sendto`` refused a
  datagram for a full queue (``OSError(ENOBUFS)``).
- ``connection_lost(exc)``: the socket is closed; last.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from array import array
from ctypes import byref, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple

from . import _lib, _sockaddr
from ._datagrams import Sender
from ._fds import borrow_socket as _borrow, fileobj_to_fd, socket_info
from ._lib import check
from .streams import StreamEndpoint, _limits

if TYPE_CHECKING:
    from ._datagrams import Datagram
    from ._stream_table import StreamTable

# struct evl_udp_datagram: data, len, addr, addr_len, flags.
_DATAGRAM_STRUCT = struct.Struct("=QQQII")


class DatagramProtocol:
    """A base class with the methods a datagram protocol may define, empty."""

    def connection_made(self, transport: "DatagramTransport") -> None:
        pass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        pass


def bind(
    streams: "StreamTable", factory: Callable[[], Any], host: Optional[str], port: int, flags: int
) -> "DatagramTransport":
    """A socket bound to host:port (``Loop.udp_bind``)."""
    udp = c_uint64()
    host_bytes = host.encode("idna") if host else None
    check(_lib.evl_udp_bind(streams.pointer(), host_bytes, port, flags, _lib.NO_STREAM_CB, None, byref(udp)), "evl_udp_bind")
    return _made(streams, udp.value, factory)


def open_fd(streams: "StreamTable", fileobj: Any, factory: Callable[[], Any]) -> "DatagramTransport":
    """A socket of the caller's datagram socket (``Loop.udp_open``)."""
    fd = fileobj_to_fd(fileobj)
    udp = c_uint64()
    check(_lib.evl_udp_open(streams.pointer(), fd, _lib.NO_STREAM_CB, None, byref(udp)), "evl_udp_open")
    return _made(streams, udp.value, factory)


def _made(streams: "StreamTable", udp: int, factory: Callable[[], Any]) -> "DatagramTransport":
    try:
        protocol = factory()
    except BaseException:
        _lib.evl_udp_close(streams.pointer(), udp)
        raise
    transport = DatagramTransport(streams, udp, protocol)
    streams.endpoints[udp] = transport
    made = getattr(protocol, "connection_made", None)
    if made is not None:
        made(transport)
    return transport


class DatagramTransport(StreamEndpoint):
    """One UDP socket of the library, named by its id. Methods are for the
    loop's thread."""

    __slots__ = ("_streams", "_id", "_fd", "_family", "_protocol", "_closing", "_refused", "_extra", "_send")

    def __init__(self, streams: "StreamTable", udp: int, protocol: Any) -> None:
        self._streams = streams
        self._id = udp
        self._fd = streams.call(_lib.evl_udp_fd, udp)
        sock = _borrow(self._fd)
        self._family = sock.family
        sock.detach()
        self._protocol = protocol
        self._closing = False
        self._refused = False  # a send was refused for a full queue: resume_writing() on DRAINED
        self._extra: dict = {}
        self._send = Sender(streams.pointer(), udp).send

    def __repr__(self) -> str:
        return f"<evloop.DatagramTransport udp={self._id:#x} fd={self._fd}{' closing' if self._closing else ''}>"

    @property
    def udp_id(self) -> int:
        """The library's id of this socket (for the C API)."""
        return self._id

    @property
    def port(self) -> int:
        return self._call(_lib.evl_udp_port)

    def fileno(self) -> int:
        """The socket's fd. It belongs to the library: do not close it."""
        return self._fd

    def _call(self, function: Callable[..., int], *args: Any) -> int:
        return self._streams.call(function, self._id, *args)

    # ---- sending -------------------------------------------------------------

    def sendto(self, data: bytes, addr: Any = None) -> None:
        """Sends one datagram to `addr` (None: the connected peer): at once,
        or queued. Raises what the library refuses it for: OSError(ENOBUFS)
        when the queue is over its high mark (``resume_writing`` comes when
        it emptied), EMSGSIZE, EACCES (broadcast not allowed)...; nothing
        once closing (as asyncio, it is dropped)."""
        if self._closing:
            return
        raw = _sockaddr.encode(addr, self._family) if addr is not None else None
        code = self._send(data if data.__class__ is bytes else bytes(data), raw)
        if code < 0:
            if code == -errno.ENOBUFS:
                self._refused = True
            raise _lib.error(code, "sendto")

    def send_batch(self, datagrams: Iterable[Tuple[bytes, Any]]) -> List[Optional[OSError]]:
        """Sends ``(data, addr)`` pairs in order, in one call (``sendmmsg``
        for what the kernel takes at once). Returns, for each, None or the
        exception it was refused for (the others went on)."""
        items = [(bytes(data), _sockaddr.encode(addr, self._family) if addr is not None else None) for data, addr in datagrams]
        if not items or self._closing:
            return [None] * len(items)
        # The bytes and addresses end to end in two buffers, the structs
        # pointing into them: three allocations whatever the count.
        data_buffer = ctypes.create_string_buffer(b"".join(data for data, _ in items) or b"\0")
        addr_buffer = ctypes.create_string_buffer(b"".join(raw or b"" for _, raw in items) or b"\0")
        data_at, addr_at = ctypes.addressof(data_buffer), ctypes.addressof(addr_buffer)
        structs = bytearray()
        for data, raw in items:
            structs += _DATAGRAM_STRUCT.pack(data_at, len(data), addr_at if raw else 0, len(raw) if raw else 0, 0)
            data_at += len(data)
            addr_at += len(raw) if raw else 0
        batch = ctypes.create_string_buffer(bytes(structs), len(structs))
        status = array("i", bytes(4 * len(items)))
        self._call(_lib.evl_udp_send_batch, ctypes.addressof(batch), len(items), status.buffer_info()[0])
        if -errno.ENOBUFS in status:
            self._refused = True
        return [None if code == 0 else _lib.error(code, "send_batch") for code in status]  # type: ignore[misc]

    def connect(self, host: Optional[str], port: int = 0) -> None:
        """Sends to host:port when no address is given, receives only from
        there, and gets its ICMP errors; None dissolves the association."""
        self._call(_lib.evl_udp_connect, host.encode("idna") if host else None, port)
        self._extra.pop("peername", None)

    def get_write_buffer_size(self) -> int:
        """What the queue holds: each datagram's length plus 64."""
        size = c_size_t()
        self._call(_lib.evl_udp_queued, byref(size))
        return size.value

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Over `high` sends are refused (ENOBUFS) and receiving pauses,
        until the queue is down to `low` (1 MiB and 256 KiB by default)."""
        high, low = _limits(high, low)
        self._call(_lib.evl_udp_set_watermarks, high, low)

    # ---- receiving and options ---------------------------------------------------

    def pause_reading(self) -> None:
        if not self._closing:
            self._call(_lib.evl_udp_pause)

    def resume_reading(self) -> None:
        if not self._closing:
            self._call(_lib.evl_udp_resume)

    def set_recv_size(self, size: int) -> None:
        """The longest datagram received whole (1 to 65536)."""
        self._call(_lib.evl_udp_set_recv_size, size)

    def set_option(self, option: int, value: int) -> None:
        """An EVL_UDP_OPT_* option (``_lib``): broadcast, multicast loop
        and TTL, unicast TTL."""
        self._call(_lib.evl_udp_set_option, option, int(value))

    def join_group(self, group: str, interface: Optional[str] = None) -> None:
        self._call(_lib.evl_udp_membership, group.encode(), interface.encode() if interface else None, 1)

    def leave_group(self, group: str, interface: Optional[str] = None) -> None:
        self._call(_lib.evl_udp_membership, group.encode(), interface.encode() if interface else None, 0)

    def set_multicast_interface(self, interface: Optional[str]) -> None:
        self._call(_lib.evl_udp_set_multicast_interface, interface.encode() if interface else None)

    # ---- the rest of asyncio's transport -----------------------------------------

    def close(self) -> None:
        """Stops receiving, sends what is queued, then closes:
        connection_lost(None) follows."""
        if self._closing:
            return
        self._closing = True
        if not self._streams.is_closed():
            self._call(_lib.evl_udp_close)

    abort = close

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """'sockname', 'peername' (looked up when asked), 'socket' (a socket
        over the library's fd: never close it)."""
        return socket_info(self._fd, name, self._extra, default, self._closing)

    # ---- what the loop calls -----------------------------------------------------

    def _datagrams(self, batch: List["Datagram"]) -> None:
        protocol = self._protocol
        if self._closing:
            return
        whole = getattr(protocol, "datagrams_received", None)
        if whole is not None:
            whole(batch)
            return
        received = protocol.datagram_received
        for data, addr, truncated in batch:
            if not truncated:
                received(data, addr)
            elif hasattr(protocol, "datagram_truncated"):
                protocol.datagram_truncated(data, addr)
            else:
                self._udp_error(-errno.EMSGSIZE)

    def _udp_error(self, status: int) -> None:
        report = getattr(self._protocol, "error_received", None)
        if report is not None:
            report(_lib.error(status))

    def _stream_drained(self) -> None:
        if self._refused:
            self._refused = False
            resume = getattr(self._protocol, "resume_writing", None)
            if resume is not None:
                resume()

    def _loop_closed(self) -> None:
        self._closing = True

    def _stream_closed(self, status: int) -> None:
        self._closing = True
        sock = self._extra.pop("socket", None)
        if sock is not None:
            sock.detach()
        lost = getattr(self._protocol, "connection_lost", None)
        if lost is not None:
            lost(None if status == 0 else _lib.error(status))

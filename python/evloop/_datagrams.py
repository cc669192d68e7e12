"""The datagrams of an ``EVL_STREAM_DATAGRAMS`` event, as Python values.

The event's ``data`` points to ``len`` ``evl_udp_datagram`` structs, whose
bytes and source addresses lie in two regions of the loop that stay put
for its life (``evl_udp_read_buffer``): mapped once here, each datagram is
a slice of them, with one foreign read of the structs per event.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import byref, c_char, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, List, Optional, Tuple

from . import _lib, _sockaddr
from ._lib import check

# struct evl_udp_datagram: data, len, addr, addr_len, flags.
_DATAGRAM = struct.Struct("=QQQII")
assert _DATAGRAM.size == ctypes.sizeof(_lib.evl_udp_datagram)

#: One received datagram: its bytes, its source address (the socket
#: module's tuple), and whether it was truncated (longer than the socket's
#: receive size: only its start is here).
Datagram = Tuple[bytes, Any, bool]


class DatagramReader:
    """Decodes a loop's DATAGRAMS events (see the module's documentation)."""

    def __init__(self, loop: int) -> None:
        self._loop = loop
        self._data: Optional[Any] = None
        self._addrs: Optional[Any] = None
        self._data_start = self._addrs_start = 0
        self._addresses: dict = {}  # sockaddr bytes -> tuple (peers repeat)

    def _map(self) -> None:
        data, data_len, addrs, addrs_len = c_void_p(), c_size_t(), c_void_p(), c_size_t()
        check(
            _lib.evl_udp_read_buffer(self._loop, byref(data), byref(data_len), byref(addrs), byref(addrs_len)),
            "evl_udp_read_buffer",
        )
        self._data_start, self._addrs_start = data.value or 0, addrs.value or 0
        self._data = (c_char * data_len.value).from_address(self._data_start)
        self._addrs = (c_char * addrs_len.value).from_address(self._addrs_start)

    def decode(self, address: int, count: int) -> List[Datagram]:
        """The `count` datagrams of an event whose `data` is `address`,
        copied out (valid after the next poll)."""
        if self._data is None:
            self._map()
        data, data_start, addrs, addrs_start = self._data, self._data_start, self._addrs, self._addrs_start
        addresses = self._addresses
        structs = ctypes.string_at(address, _DATAGRAM.size * count)
        result = []
        for pointer, length, addr, addr_len, flags in _DATAGRAM.iter_unpack(structs):
            offset = pointer - data_start if pointer else 0
            payload = data[offset : offset + length] if length else b""  # type: ignore[index]
            offset = addr - addrs_start
            raw = addrs[offset : offset + addr_len]  # type: ignore[index]
            source = addresses.get(raw)
            if source is None:
                if len(addresses) > 4096:
                    addresses.clear()
                source = addresses[raw] = _sockaddr.decode(raw)
            result.append((payload, source, bool(flags & _lib.EVL_UDP_TRUNCATED)))
        return result


class Sender:
    """evl_udp_send for one socket, through the raw call (``_lib.raw_udp_send``):
    its loop and id made into ctypes arguments once. Only while the loop
    lives (its owner stops sending when the loop is freed)."""

    __slots__ = ("_loop", "_udp")

    def __init__(self, loop: int, udp: int) -> None:
        self._loop = byref(c_char.from_address(loop))
        self._udp = c_uint64(udp)

    def send(self, data: bytes, addr: Optional[bytes], _tuple: Any = None) -> int:
        """0, or the library's negative errno; `addr` None: the connected peer.
        (`_tuple`, the address as a tuple, is for callers that take one: the
        asyncio datagram transports' ``_send_to``.)"""
        return _lib.raw_udp_send(
            self._loop, self._udp, data, c_size_t(len(data)), addr, c_uint32(len(addr) if addr else 0)
        )

"""Socket addresses between Python's tuples and the kernel's bytes (a
``struct sockaddr_in`` or ``sockaddr_in6``), as the library takes and gives
them: a datagram's source and destination, a resolution's addresses.

Python's shapes are the socket module's: ``(host, port)`` for IPv4,
``(host, port, flowinfo, scope_id)`` for IPv6.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Dict, Optional, Tuple

_FAMILY = struct.Struct("=H")
# sin_family (native), sin_port (big-endian), sin_addr, sin_zero.
_IN = struct.Struct("=H")
_PORT = struct.Struct("!H")
_IN6_TAIL = struct.Struct("=I")  # sin6_flowinfo, sin6_scope_id are native u32s as the kernel keeps them

#: Encoded destinations, by the tuple given (a server answers the same peers).
_encoded: Dict[Any, bytes] = {}
_ENCODED_MAX = 1024


def decode(raw: bytes) -> Any:
    """The Python tuple of a sockaddr's bytes (an unknown family: the bytes)."""
    if len(raw) < 2:
        return raw
    family = _FAMILY.unpack_from(raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), _PORT.unpack_from(raw, 2)[0]
    if family == socket.AF_INET6 and len(raw) >= 28:
        flowinfo = struct.unpack_from("!I", raw, 4)[0]
        scope_id = _IN6_TAIL.unpack_from(raw, 24)[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), _PORT.unpack_from(raw, 2)[0], flowinfo, scope_id
    return raw


def encode(address: Any, family: Optional[int] = None) -> bytes:
    """The sockaddr bytes of `address`, a tuple as the socket module takes
    (a name is resolved, blocking, as socket.sendto does; numeric addresses
    never block). `family` (of the socket it is for) picks IPv4 or IPv6
    where a name could be either; an IPv4 address for an IPv6 socket
    becomes IPv4-mapped."""
    key = (address, family)
    raw = _encoded.get(key)
    if raw is None:
        raw = _encode(address, family)
        if len(_encoded) >= _ENCODED_MAX:
            _encoded.clear()
        _encoded[key] = raw
    return raw


def _encode(address: Any, family: Optional[int]) -> bytes:
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(f"an address is a (host, port) or (host, port, flowinfo, scope_id) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, not {port!r}")
    host = host.decode() if isinstance(host, bytes) else host
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    packed, found = _numeric(host)
    if packed is None:
        infos = socket.getaddrinfo(host, port, family or 0, socket.SOCK_DGRAM)
        found, sockaddr = infos[0][0], infos[0][4]
        packed = socket.inet_pton(found, str(sockaddr[0]))
    if found == socket.AF_INET and family == socket.AF_INET6:
        packed, found = b"\0" * 10 + b"\xff\xff" + packed, socket.AF_INET6
    if found == socket.AF_INET:
        return _IN.pack(socket.AF_INET) + _PORT.pack(port) + packed + b"\0" * 8
    flowinfo, scope_id = (address[2], address[3]) if len(address) == 4 else (0, 0)
    return (
        _IN.pack(socket.AF_INET6) + _PORT.pack(port) + struct.pack("!I", flowinfo) + packed + _IN6_TAIL.pack(scope_id)
    )


def _numeric(host: str) -> Tuple[Optional[bytes], int]:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, host), family
        except OSError:
            pass
    return None, 0

"""What asyncio's socket transports put in get_extra_info()'s dict, shared
by both asyncio paths' stream and datagram transports."""
import socket
from asyncio import trsock
from typing import Any, Dict


def add_socket_extra(extra: Dict[str, Any], sock: socket.socket) -> None:
    """'socket', 'sockname' and (unless given) 'peername', None where the
    socket cannot say, as asyncio's _SelectorTransport sets them."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None

"""What a Loop hands the library's thread pool and process watcher: name
resolutions (``Loop.getaddrinfo``) and child processes (``Loop.spawn``,
processes.py). Their outcomes come through one ctypes callback each per
loop, from inside the iteration's foreign call; what they bring is copied
there and the owner's Python runs as a call_soon, outside the call.
"""

from __future__ import annotations

import socket
from ctypes import byref, c_uint64
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from . import _lib, _sockaddr
from ._lib import check

if TYPE_CHECKING:
    from ._loop import Loop

#: What getaddrinfo gives, as socket.getaddrinfo: (family, type, proto, canonname, sockaddr).
AddrInfo = tuple


class Resolution:
    """A pending ``Loop.getaddrinfo``; cancel() it and its callback is not called."""

    __slots__ = ("_jobs", "request", "_callback", "cancelled")

    def __init__(self, jobs: "Jobs", request: int, callback: Callable[[Any], Any]) -> None:
        self._jobs = jobs
        self.request = request
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """The callback will not be called; the lookup's thread gives up
        (one under way finishes unseen)."""
        if self.cancelled:
            return
        self.cancelled = True
        self._jobs.cancel(self)


class Jobs:
    """A Loop's resolutions and children (see the module's documentation)."""

    def __init__(self, loop: "Loop") -> None:
        self._loop = loop
        self.resolutions: Dict[int, Resolution] = {}
        #: Children by the key their exits carry as userdata: an object with
        #: _exited(code, signal, core_dumped, status) (processes.Process).
        self.processes: Dict[int, Any] = {}
        self._keys = 0
        self.resolved_cb = _lib.evl_resolve_cb(self._resolved)
        self.exit_cb = _lib.evl_process_cb(self._exited)

    def pending(self) -> bool:
        return bool(self.resolutions or self.processes)

    # ---- name resolution -------------------------------------------------------

    def getaddrinfo(
        self, host: Any, port: Any, family: int, type: int, proto: int, flags: int, callback: Callable[[Any], Any]
    ) -> Resolution:
        node = _name(host, "idna")
        service = _name(port, "ascii")
        hints = _lib.evl_addrinfo_hints(flags=flags, family=family, socktype=type, protocol=proto)
        request = c_uint64()
        check(
            _lib.evl_getaddrinfo(self._loop.pointer(), node, service, byref(hints), self.resolved_cb, None, byref(request)),
            "evl_getaddrinfo",
        )
        resolution = Resolution(self, request.value, callback)
        self.resolutions[request.value] = resolution
        return resolution

    def cancel(self, resolution: Resolution) -> None:
        if resolution.request in self.resolutions and not self._loop.is_closed():
            _lib.evl_getaddrinfo_cancel(self._loop.pointer(), resolution.request)

    def _resolved(self, _loop: int, pointer: Any) -> None:
        result = pointer.contents
        resolution = self.resolutions.pop(result.request, None)
        if resolution is None or resolution.cancelled:
            return
        outcome: Any
        if result.status != 0:
            message = (result.message or b"").decode("utf-8", "replace")
            outcome = socket.gaierror(result.status, message)
        else:
            canonname = (result.canonname or b"").decode("utf-8", "replace")
            outcome = [_addrinfo(result.addrs[i], canonname if i == 0 else "") for i in range(result.count)]
        self._loop.call_soon(_deliver, resolution, outcome)

    # ---- children ----------------------------------------------------------------

    def new_key(self) -> int:
        self._keys += 1
        return self._keys

    def _exited(self, _loop: int, pointer: Any) -> None:
        info = pointer.contents
        process = self.processes.pop(info.userdata or 0, None)
        if process is not None:
            self._loop.call_soon(process._exited, info.exit_code, info.term_signal, bool(info.core_dumped), info.status)

    def clear(self) -> None:
        """The loop is freed: its children were killed, its lookups dropped."""
        self.resolutions.clear()
        processes, self.processes = list(self.processes.values()), {}
        for process in processes:
            process._loop_closed()


def _deliver(resolution: Resolution, outcome: Any) -> None:
    if not resolution.cancelled:
        resolution._callback(outcome)


def _name(value: Any, encoding: str) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return str(value).encode()
    return str(value).encode(encoding)


def _addrinfo(info: Any, canonname: str) -> AddrInfo:
    raw = bytes(info.addr)[: info.addrlen]
    family, socktype = info.family, info.socktype
    try:
        family, socktype = socket.AddressFamily(family), socket.SocketKind(socktype)
    except ValueError:
        pass
    return family, socktype, info.protocol, canonname, _sockaddr.decode(raw)


__all__ = ["Jobs", "Resolution", "AddrInfo"]

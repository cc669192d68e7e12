"""Child processes of the library (``Loop.spawn``), in the shape of
asyncio's subprocess transport and protocol.

The library starts the child with ``posix_spawn``, watches it through its
pidfd (never by reaping children it did not spawn), and gives its stdio
pipes back as streams, here ``Transport``s. A protocol is any object with
these methods (``SubprocessProtocol`` below provides empty ones):

- ``connection_made(process)``: the child runs.
- ``pipe_data_received(fd, data)``: bytes from its stdout (1) or stderr (2).
- ``pipe_connection_lost(fd, exc)``: that pipe closed.
- ``process_exited()``: the child ended (``process.get_returncode()``:
  its exit code, or minus the signal that ended it, as asyncio says).
- ``connection_lost(exc)``: the child ended and every pipe closed; last.
"""

from __future__ import annotations

import os
import signal
import subprocess
from ctypes import byref, c_char_p
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _lib
from ._fds import fileobj_to_fd
from ._lib import check
from .streams import Transport

if TYPE_CHECKING:
    from ._jobs import Jobs
    from ._stream_table import StreamTable

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL


class SubprocessProtocol:
    """A base class with the methods a process protocol may define, empty."""

    def connection_made(self, process: "Process") -> None:
        pass

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        pass

    def pipe_connection_lost(self, fd: int, exc: Optional[BaseException]) -> None:
        pass

    def process_exited(self) -> None:
        pass

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        pass


def _stdio(value: Any, index: int) -> "tuple[int, int]":
    """(EVL_STDIO_* mode, fd) of one stdio argument."""
    if value is None:
        return _lib.EVL_STDIO_INHERIT, -1
    if value == PIPE:
        return _lib.EVL_STDIO_PIPE, -1
    if value == DEVNULL:
        return _lib.EVL_STDIO_NULL, -1
    if value == STDOUT:
        if index != 2:
            raise ValueError("STDOUT is for stderr only")
        return _lib.EVL_STDIO_STDOUT, -1
    return _lib.EVL_STDIO_FD, fileobj_to_fd(value)


def _strings(values: Sequence[Any]) -> Any:
    encoded = [os.fsencode(value) for value in values]
    return (c_char_p * (len(encoded) + 1))(*encoded, None)


def spawn(streams: "StreamTable", jobs: "Jobs", protocol: Any, argv: Sequence[Any], **options: Any) -> "Process":
    """``Loop.spawn``: see the module's documentation; `options` are start()'s."""
    process: Optional[Process] = None
    child, pid, pipes = start(streams, jobs, lambda: process, argv, **options)
    process = Process(streams, child, pid, protocol)
    for fd, stream in pipes.items():
        pipe = _Pipe(process, fd)
        transport = Transport(streams, stream, -1, pipe)
        transport._fd = _lib.evl_stream_fd(streams.pointer(), stream)
        streams.endpoints[stream] = transport
        process._pipes[fd] = transport
    made = getattr(protocol, "connection_made", None)
    if made is not None:
        made(process)
    for transport in list(process._pipes.values()):
        transport._stream_connected()
    return process


def start(
    streams: "StreamTable",
    jobs: "Jobs",
    owner: Callable[[], Any],
    argv: Sequence[Any],
    *,
    executable: Any = None,
    env: Optional[Dict[Any, Any]] = None,
    cwd: Any = None,
    stdin: Any = PIPE,
    stdout: Any = PIPE,
    stderr: Any = PIPE,
    start_new_session: bool = False,
    process_group: Optional[int] = None,
    close_fds: bool = True,
) -> "Tuple[int, int, Dict[int, int]]":
    """evl_spawn as ``Loop.spawn`` describes it: (the library's id of the
    child, its pid, the stream id of each stdio pipe by fd). ``owner()``, an
    object with ``_exited(code, signal, core_dumped, status)``, gets the
    exit; the pipes' streams deliver nothing until they are given an
    endpoint and a receiver, which must happen before the loop runs again."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError("argv must be a non-empty sequence of arguments")
    if process_group not in (None, 0):
        raise ValueError("process_group: only 0 (a group of the child's own) is supported")
    options = _lib.evl_spawn_options()
    options.file = os.fsencode(executable) if executable is not None else None
    arguments = _strings(argv)
    options.argv = arguments
    environment = None
    if env is not None:
        environment = _strings([os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()])
        options.env = environment
    options.cwd = os.fsencode(cwd) if cwd is not None else None
    for index, value in enumerate((stdin, stdout, stderr)):
        options.stdio[index], options.stdio_fd[index] = _stdio(value, index)
    options.flags = (
        (_lib.EVL_SPAWN_SETSID if start_new_session else 0)
        | (_lib.EVL_SPAWN_SETPGROUP if process_group == 0 else 0)
        | (_lib.EVL_SPAWN_CLOSE_FDS if close_fds else 0)
    )
    key = jobs.new_key()
    options.exit_cb = jobs.exit_cb
    options.stream_cb = _lib.NO_STREAM_CB
    options.userdata = key
    spawned = _lib.evl_spawned()
    check(_lib.evl_spawn(streams.pointer(), byref(options), byref(spawned)), "evl_spawn")
    jobs.processes[key] = _Owner(owner)
    return spawned.process, spawned.pid, {fd: spawned.stdio[fd] for fd in (0, 1, 2) if spawned.stdio[fd]}


class _Owner:
    """The exit's way to the object start()'s caller made after the spawn."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Callable[[], Any]) -> None:
        self._owner = owner

    def _exited(self, code: int, signo: int, core_dumped: bool, status: int) -> None:
        self._owner()._exited(code, signo, core_dumped, status)

    def _loop_closed(self) -> None:
        self._owner()._loop_closed()


class _Pipe:
    """The protocol of one stdio pipe's Transport: to the process's protocol."""

    __slots__ = ("_process", "_fd")

    def __init__(self, process: "Process", fd: int) -> None:
        self._process, self._fd = process, fd

    def data_received(self, data: bytes) -> None:
        self._process._protocol.pipe_data_received(self._fd, data)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._process._pipe_lost(self._fd, exc)


class Process:
    """A child the library spawned: asyncio's SubprocessTransport's methods."""

    def __init__(self, streams: "StreamTable", process: int, pid: int, protocol: Any) -> None:
        self._streams = streams
        self._id = process
        self._pid = pid
        self._protocol = protocol
        self._pipes: Dict[int, Transport] = {}
        self._returncode: Optional[int] = None
        #: The signal that ended it (0: it exited), and whether it dumped core.
        self.exit_signal = 0
        self.core_dumped = False
        self._closed = False
        self._finished = False

    def __repr__(self) -> str:
        return f"<evloop.Process pid={self._pid} returncode={self._returncode}>"

    def get_pid(self) -> int:
        return self._pid

    def get_returncode(self) -> Optional[int]:
        """None while it runs; its exit code, or -signal (as asyncio)."""
        return self._returncode

    def get_pipe_transport(self, fd: int) -> Optional[Transport]:
        return self._pipes.get(fd)

    def get_protocol(self) -> Any:
        return self._protocol

    def send_signal(self, signo: int) -> None:
        """Sends `signo` through the child's pidfd (never to a process that
        reused its pid). ProcessLookupError once it has ended."""
        if self._returncode is not None or self._streams.is_closed():
            raise ProcessLookupError("the process has ended")
        code = _lib.evl_process_kill(self._streams.pointer(), self._id, int(signo))
        if code < 0:
            raise ProcessLookupError(_lib.strerror(code)) if code in (-2, -3) else _lib.error(code, "kill")

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Closes the pipes, and kills the child if it still runs (as asyncio)."""
        if self._closed:
            return
        self._closed = True
        for transport in list(self._pipes.values()):
            transport.close()
        if self._returncode is None and not self._streams.is_closed():
            _lib.evl_process_kill(self._streams.pointer(), self._id, signal.SIGKILL)

    def is_closing(self) -> bool:
        return self._closed

    # ---- what the loop calls ---------------------------------------------------

    def _exited(self, code: int, signo: int, core_dumped: bool, status: int) -> None:
        self.exit_signal, self.core_dumped = signo, core_dumped
        self._returncode = -signo if signo else code
        exited = getattr(self._protocol, "process_exited", None)
        if exited is not None:
            exited()
        self._try_finish()

    def _pipe_lost(self, fd: int, exc: Optional[BaseException]) -> None:
        lost = getattr(self._protocol, "pipe_connection_lost", None)
        if lost is not None:
            lost(fd, exc)
        self._pipes.pop(fd, None)
        self._try_finish()

    def _try_finish(self) -> None:
        if self._finished or self._returncode is None or self._pipes:
            return
        self._finished = True
        lost = getattr(self._protocol, "connection_lost", None)
        if lost is not None:
            lost(None)

    def _loop_closed(self) -> None:
        self._closed = True


__all__: List[str] = ["Process", "SubprocessProtocol", "spawn", "PIPE", "STDOUT", "DEVNULL"]

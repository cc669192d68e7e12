"""subprocess_exec and subprocess_shell of both asyncio paths on the
library's child processes (``evl_spawn``: posix_spawn, the exit through
the child's pidfd in the epoll set, the stdio pipes as library streams).

A call is served here when everything it asks is something evl_spawn does
as ``subprocess.Popen`` would (``covers``): argv or a shell command, stdio
as PIPE, DEVNULL, None, an fd or a file, STDOUT for stderr, ``cwd``,
``env``, ``executable``, ``start_new_session``, ``close_fds``,
``process_group=0``, every other Popen keyword at its default, and a
process whose signal mask is empty and which ignores no signal but
SIGPIPE and SIGXFSZ (the child starts with every signal at its default,
which is what Popen's ``restore_signals`` gives then). Anything else
(``preexec_fn``, ``pass_fds``, ``user``, ``umask``..., a ``subprocess.Popen``
replaced by a mock or a wrapper) is asyncio's own code, unchanged.

The transport is asyncio's ``BaseSubprocessTransport`` (its protocol
calls, ``get_pid``, ``get_returncode``, ``send_signal``, ``close``,
``_wait``...), with the child started by evl_spawn and the pipes'
protocols asyncio's ``ReadSubprocessPipeProto`` and
``WriteSubprocessPipeProto`` over library streams (``_PipeTransport``).
``get_extra_info('subprocess')`` is a ``_subprocess_popen.Child``. A
program that cannot start raises what Popen raises: the OSError of the
errno, with the program (or the ``cwd``) as its filename.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import warnings
from asyncio import base_subprocess, unix_events
from typing import Any, Dict, Optional

from . import _lib, _resolve
from ._subprocess_engine import Engine, engine_of
from ._subprocess_popen import Child
from .processes import start
from .streams import Transport

_POPEN = subprocess.Popen
# Popen's keywords of this Python, and the defaults this module takes.
_POPEN_KEYWORDS = frozenset(inspect.signature(_POPEN).parameters)
_SERVED = frozenset(("executable", "cwd", "env", "start_new_session", "close_fds", "process_group"))
_DEFAULTS: Dict[str, Any] = {
    "preexec_fn": None, "pass_fds": (), "restore_signals": True, "user": None, "group": None,
    "extra_groups": None, "umask": -1, "pipesize": -1, "startupinfo": None, "creationflags": 0,
}
_SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP)]
_STDIO_CONSTANTS = (subprocess.PIPE, subprocess.DEVNULL)
_UnixLoop = asyncio.SelectorEventLoop
_OWN_WATCHERS = tuple(
    getattr(unix_events, name) for name in ("ThreadedChildWatcher", "PidfdChildWatcher", "SafeChildWatcher", "MultiLoopChildWatcher")
    if hasattr(unix_events, name)
)


def _stdio(value: Any, index: int) -> bool:
    if value is None or value in _STDIO_CONSTANTS or (value == subprocess.STDOUT and index == 2):
        return True
    if type(value) is not int:
        fileno = getattr(value, "fileno", None)
        if fileno is None:
            return False
        try:
            value = fileno()
        except Exception:
            return False
    if not isinstance(value, int) or value < 0:
        return False
    try:
        os.get_inheritable(value)
    except OSError:
        return False  # not an open fd: Popen's error to give
    return True


def _encodable(value: Any) -> bool:
    try:
        return b"\0" not in os.fsencode(value)
    except Exception:
        return False


def _environment(env: Any) -> bool:
    try:
        return all(_encodable(k) and b"=" not in os.fsencode(k) and _encodable(v) for k, v in env.items())
    except Exception:
        return False


def _signals_as_popen_leaves_them() -> bool:
    """Whether the child gets from Popen what evl_spawn gives every child:
    no signal blocked, every one at its default."""
    if signal.pthread_sigmask(signal.SIG_BLOCK, ()):
        return False
    return all(signal.getsignal(s) is not signal.SIG_IGN for s in _SIGNALS)


def _asyncio_s_own_plumbing(loop: Any) -> bool:
    """Whether asyncio's code would spawn through Popen, the loop's pipe
    methods and a child watcher that are all asyncio's own: a replacement
    (a mock, a wrapper) of one of them is seen only on asyncio's path."""
    if subprocess.Popen is not _POPEN:
        return False
    for name in ("connect_read_pipe", "connect_write_pipe"):
        if name in vars(loop) or getattr(type(loop), name, None) is not getattr(_UnixLoop, name):
            return False
    # A child watcher set on the policy (up to 3.13): one that reaps only
    # the children it is told of, active, leaves ours to their pidfds; any
    # other (FastChildWatcher reaps every child, a custom one may too; an
    # inactive one makes asyncio refuse) is asyncio's to use.
    watcher = getattr(asyncio.get_event_loop_policy(), "_watcher", None)
    if watcher is not None:
        if type(watcher) not in _OWN_WATCHERS:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if not watcher.is_active():
                return False
    return True


def covers(loop: Any, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any, kwargs: Dict[str, Any]) -> bool:
    """Whether evl_spawn does what asyncio's code would for this call (see
    the module)."""
    if not _asyncio_s_own_plumbing(loop):
        return False
    for name, value in kwargs.items():
        if name not in _POPEN_KEYWORDS:
            return False  # Popen's TypeError
        if name in _SERVED:
            continue
        if name not in _DEFAULTS or value != _DEFAULTS[name]:
            if not (name == "pass_fds" and not value):
                return False
    if kwargs.get("process_group") not in (None, 0):
        return False
    if not all(_stdio(value, index) for index, value in enumerate((stdin, stdout, stderr))):
        return False
    argv = [args] if shell else list(args)
    executable = kwargs.get("executable")
    if not argv or not all(_encodable(a) for a in argv):
        return False
    for name in ("executable", "cwd"):
        if kwargs.get(name) is not None and not _encodable(kwargs[name]):
            return False
    env = kwargs.get("env")
    if env is not None:
        if not _environment(env):
            return False
        program = os.fsencode(executable if executable is not None else ("/bin/sh" if shell else argv[0]))
        try:
            if b"/" not in program and os.get_exec_path(env) != os.get_exec_path():
                return False  # Popen searches the child's PATH, evl_spawn the parent's
        except ValueError:
            return False  # PATH given as str and bytes: Popen's error
    return _signals_as_popen_leaves_them()


class _PipeTransport(Transport):
    """A child's stdio pipe: a library stream with what asyncio's pipe
    transports add (flow control of the writing side at asyncio's marks,
    write_eof() closing it); the Engine run soon after what must not wait."""

    __slots__ = ("_engine", "_high", "_low", "_writing_paused")

    def __init__(self, engine: Engine, stream: int, protocol: Any) -> None:
        streams = engine.loop.streams
        super().__init__(streams, stream, _lib.evl_stream_fd(streams.pointer(), stream), protocol)
        self._engine = engine
        self._high, self._low = 64 * 1024, 16 * 1024
        self._writing_paused = False
        streams.endpoints[stream] = self
        streams.call(_lib.evl_stream_set_watermarks, stream, 0, 0)

    def write(self, data: Any) -> None:
        if self._no_writes:
            return  # asyncio's pipe ignores writes once closing
        super().write(data)
        if self._writing_paused:
            return
        try:
            size = self.get_write_buffer_size()
        except OSError:
            return  # handing the write over ended the stream (EPIPE): its CLOSED follows
        if size > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        self.close()

    def get_write_buffer_limits(self) -> "tuple[int, int]":
        return self._low, self._high

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def _stream_drained(self) -> None:
        if self._writing_paused:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _stream_connected(self) -> None:
        if hasattr(self._protocol, "data_received"):
            super()._stream_connected()
        else:  # stdin's: nothing to receive
            self._protocol.connection_made(self)

    def close(self) -> None:
        super().close()
        self._engine.kick()

    def abort(self) -> None:
        super().abort()
        self._engine.kick()


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport over a child of evl_spawn."""

    def __init__(self, loop: Any, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
                 bufsize: int, waiter: Any = None, extra: Any = None, **kwargs: Any) -> None:
        self._engine = engine_of(loop)
        super().__init__(loop, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter, extra, **kwargs)

    def _start(self, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any, bufsize: int, **kwargs: Any) -> None:
        engine = self._engine
        executable = kwargs.pop("executable", None)
        argv = [executable if executable is not None else "/bin/sh", "-c", args] if shell else list(args)
        program = executable if executable is not None else argv[0]
        streams = engine.loop.streams
        options: Dict[str, Any] = {name: kwargs[name] for name in ("cwd", "env", "process_group") if name in kwargs}
        for name in ("start_new_session", "close_fds"):
            if name in kwargs:
                options[name] = bool(kwargs[name])
        try:
            child, pid, pipes = start(
                streams, engine.loop._jobs, lambda: self, argv, executable=executable,
                stdin=stdin, stdout=stdout, stderr=stderr, **options,
            )
        except OSError as exc:
            raise _popen_error(exc, program, kwargs.get("cwd")) from None

        def signal_child(signo: int) -> None:
            if not streams.is_closed():
                code = _lib.evl_process_kill(streams.pointer(), child, signo)
                if code < 0 and code not in (-2, -3):  # ENOENT, ESRCH: it has ended
                    raise _lib.error(code, "kill")

        self._proc = Child(args, pid, signal_child)  # type: ignore[assignment]  # Popen's interface
        # The pipes get their protocols now, before the Loop runs again
        # (their data would be dropped): asyncio's _connect_pipes, at once.
        for fd, stream in pipes.items():
            proto_class = base_subprocess.WriteSubprocessPipeProto if fd == 0 else base_subprocess.ReadSubprocessPipeProto
            proto = proto_class(self, fd)
            _PipeTransport(engine, stream, proto)._stream_connected()
            self._pipes[fd] = proto  # type: ignore[assignment]  # asyncio's own use of _pipes

    async def _connect_pipes(self, waiter: Any) -> None:
        loop = self._loop
        loop.call_soon(self._protocol.connection_made, self)
        for callback, data in self._pending_calls:
            loop.call_soon(callback, *data)
        self._pending_calls = None  # type: ignore[assignment]  # as asyncio's _connect_pipes
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    # ---- what the Loop calls ---------------------------------------------------

    def _exited(self, code: int, signo: int, core_dumped: bool, status: int) -> None:
        # 255 when the status is lost (reaped by someone else), as asyncio's
        # child watchers report it.
        self._process_exited(255 if status < 0 else (-signo if signo else code))

    def _loop_closed(self) -> None:
        pass  # the child was killed and reaped with the Loop


def _popen_error(exc: OSError, program: Any, cwd: Any) -> OSError:
    """Popen's exception for a child that could not start: the errno's
    OSError naming the program, or the directory it could not enter."""
    filename = program
    if cwd is not None and not (os.path.isdir(cwd) and os.access(cwd, os.X_OK)):
        filename = cwd
    return OSError(exc.errno, os.strerror(exc.errno or 0), filename)


class AsyncioServices:
    """What both asyncio loops take from here: subprocess_exec and
    subprocess_shell on evl_spawn where it ``covers`` the call, getaddrinfo
    on the library's pool (_resolve.py); asyncio's own otherwise. A loop
    says which evloop.Loop serves them with ``_new_engine()``."""

    _evloop_services: Optional[Engine] = None

    def _new_engine(self) -> Engine:
        raise NotImplementedError

    def _evloop_engine(self) -> Engine:
        if self._evloop_services is None:
            self._evloop_services = self._new_engine()
        return self._evloop_services

    def _close_engine(self) -> None:
        engine, self._evloop_services = self._evloop_services, None
        if engine is not None:
            engine.close()

    async def _make_subprocess_transport(  # type: ignore[no-untyped-def]
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        if covers(self, args, shell, stdin, stdout, stderr, kwargs):
            return await make_transport(self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs)
        return await super()._make_subprocess_transport(  # type: ignore[misc]
            protocol, args, shell, stdin, stdout, stderr, bufsize, extra=extra, **kwargs
        )

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        """On the library's thread pool (_resolve.py); asyncio's own in debug
        mode, which logs each lookup."""
        if self.get_debug():  # type: ignore[attr-defined]
            return await super().getaddrinfo(  # type: ignore[misc]
                host, port, family=family, type=type, proto=proto, flags=flags
            )
        return await _resolve.getaddrinfo(self, host, port, family, type, proto, flags)


async def make_transport(loop: Any, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
                         bufsize: int, extra: Any = None, **kwargs: Any) -> SubprocessTransport:
    """asyncio's _make_subprocess_transport (unix_events), on evl_spawn."""
    waiter = loop.create_future()
    transport = SubprocessTransport(
        loop, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=waiter, extra=extra, **kwargs
    )
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport


__all__ = ["AsyncioServices", "covers", "make_transport", "SubprocessTransport"]

"""What ``get_extra_info('subprocess')`` gives for a child the asyncio loop
spawned with evl_spawn (_subprocess.py): the ``subprocess.Popen`` that
asyncio's transport exposes, as far as a child whose pipes are the
library's streams can be one.

``pid``, ``args`` and ``returncode`` are Popen's; ``stdin``, ``stdout`` and
``stderr`` are None (the pipes are the transport's,
``get_pipe_transport(fd)``). ``poll()`` and ``wait()`` look at the child's
state with ``waitid(WNOWAIT)``: they see it end (and set ``returncode``, as
Popen's do) without reaping it, which stays the library's job through the
child's pidfd, so that the transport still hears of the exit.
``send_signal``, ``terminate`` and ``kill`` go through the pidfd and do
nothing once the child has ended (Popen's since 3.9).
"""

from __future__ import annotations

import ctypes
import errno
import signal
import subprocess
import time
from typing import Any, Callable, Optional

# waitid(2) through ctypes: os.waitid is not on PyPy. siginfo_t's fields as
# Linux lays them out for SIGCHLD; the struct is 128 bytes.
_P_PID = 1
_WEXITED, _WNOHANG, _WNOWAIT = 4, 1, 0x01000000
_CLD_EXITED = 1


class _SigInfo(ctypes.Structure):
    _fields_ = [
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("_pad", ctypes.c_int),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("si_status", ctypes.c_int),
        ("_rest", ctypes.c_char * 100),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.waitid.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_SigInfo), ctypes.c_int]


def _peek(pid: int, block: bool) -> Optional[int]:
    """The child's return code once it has ended (without reaping it), as
    Popen gives it (the code, or minus the signal); None while it runs, or
    when it is no longer there to look at (reaped: its exit is on its way
    to the transport)."""
    info = _SigInfo()
    options = _WEXITED | _WNOWAIT | (0 if block else _WNOHANG)
    while _libc.waitid(_P_PID, pid, ctypes.byref(info), options) < 0:
        if ctypes.get_errno() != errno.EINTR:
            return None
    if info.si_pid == 0:
        return None
    return info.si_status if info.si_code == _CLD_EXITED else -info.si_status


class Child:
    """A child of evl_spawn as a ``subprocess.Popen`` (see the module)."""

    def __init__(self, args: Any, pid: int, signal_child: Callable[[int], None]) -> None:
        self.args = args
        self.pid = pid
        self.returncode: Optional[int] = None
        self.stdin = self.stdout = self.stderr = None
        self.universal_newlines = self.text_mode = False
        self.encoding = self.errors = None
        self._signal_child = signal_child

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}: returncode: {self.returncode} args: {self.args!r}>"

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.returncode = _peek(self.pid, block=False)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Blocks until the child ends (subprocess.TimeoutExpired after
        `timeout` seconds), as Popen.wait does; it blocks the event loop too."""
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            code = _peek(self.pid, block=True)
        else:
            deadline, delay = time.monotonic() + timeout, 0.0005
            while True:
                code = _peek(self.pid, block=False)
                if code is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                delay = min(delay * 2, remaining, 0.05)
                time.sleep(delay)
        if self.returncode is None:
            # None only if the library reaped it meanwhile: the transport
            # sets the code it got in a moment.
            self.returncode = code
        return self.returncode if self.returncode is not None else 255

    def communicate(self, input: Any = None, timeout: Optional[float] = None) -> "tuple[None, None]":
        """No pipes here (they are the transport's): waits, as Popen's does
        for a child without pipes."""
        if input:
            raise ValueError("the pipes are the transport's: write to get_pipe_transport(0)")
        self.wait(timeout)
        return None, None

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self._signal_child(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.wait()


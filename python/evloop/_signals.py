"""Signals for a Loop: Python's own signal handling, a socket pair that
wakes the loop's wait when a signal comes (``signal.set_wakeup_fd``), and
Ctrl-C raising KeyboardInterrupt from run() even while it waits."""

from __future__ import annotations

import ctypes
import signal
import socket
import threading
from ctypes import c_int
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from . import _lib
from ._handles import Handle, ReadyQueue
from ._lib import check

if TYPE_CHECKING:
    from ._loop import Loop

Callback = Callable[..., Any]


# A foreign call that was interrupted by a signal returns to Python before
# the signal's Python handler has run (it raises KeyboardInterrupt on Ctrl-C),
# and a loop that waited again at once would leave Ctrl-C unanswered until its
# next event. CPython's own C function runs the pending handlers now. PyPy has
# no ctypes.pythonapi; its interpreter runs them at the next bytecode boundary,
# which calling a Python function is.
def _no_check() -> int:
    return 0


_check_signals: Callable[[], int] = _no_check
if hasattr(ctypes, "pythonapi"):
    _check_signals = ctypes.pythonapi.PyErr_CheckSignals
    _check_signals.restype, _check_signals.argtypes = c_int, []  # type: ignore[attr-defined]


def run_signal_handlers() -> None:
    """Runs the handlers of pending signals now; raises what they raise."""
    _check_signals()


class Signals:
    """A Loop's signal handlers and its wakeup socket pair."""

    def __init__(self, loop: "Loop", ready: ReadyQueue) -> None:
        self._loop = loop
        self._ready = ready
        #: The handlers, by signal number.
        self.handlers: Dict[int, Handle] = {}
        self._previous: Dict[int, Any] = {}
        self._wakeup: Optional[Tuple[socket.socket, socket.socket]] = None
        # run() is running in the main thread: a SIGINT read from the wakeup
        # socket must end it (see _sigint_arrived).
        self._in_run = False

    def add(self, signo: int, callback: Callback, args: Tuple[Any, ...]) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be added in the main thread")
        self._loop.pointer()
        self._ensure_wakeup()
        previous = signal.signal(signo, self._on_signal)
        self._previous.setdefault(signo, previous)
        self.handlers[signo] = Handle(callback, args)

    def remove(self, signo: int) -> bool:
        if self.handlers.pop(signo, None) is None:
            return False
        signal.signal(signo, self._previous.pop(signo, signal.SIG_DFL))
        return True

    def _on_signal(self, signo: int, _frame: Any) -> None:
        # Python runs this between two bytecodes of the main thread: queue.
        handle = self.handlers.get(signo)
        if handle is not None:
            self._ready.handles.append(Handle(handle._callback, handle._args))

    def _ensure_wakeup(self) -> None:
        """A socket pair whose reading end the loop watches: Python's C
        signal handler writes the signal number into it (set_wakeup_fd), so
        a signal wakes the wait even when it went to another thread or came
        just before the wait began."""
        if self._wakeup is not None:
            return
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            # Userdata 0: never a registration's serial (see _fds).
            check(_lib.evl_register(self._loop.pointer(), reader.fileno(), _lib.EVL_READ, _lib.NO_IO_CB, 0), "evl_register")
        except BaseException:
            reader.close()
            writer.close()
            raise
        self._wakeup = (reader, writer)

    def enter_run(self) -> Any:
        """run() begins in the main thread: signals wake its waits, and
        Ctrl-C ends it. Returns what leave_run() restores."""
        self._ensure_wakeup()
        assert self._wakeup is not None
        previous = signal.set_wakeup_fd(self._wakeup[1].fileno(), warn_on_full_buffer=False)
        # What is there is from before (a Ctrl-C that ended an earlier run).
        self._drain_wakeup()
        self._in_run = True
        return previous

    def leave_run(self, previous: Any) -> None:
        self._in_run = False
        signal.set_wakeup_fd(-1 if previous is None else previous)

    def woken(self, fd: int) -> None:
        """An event for one of the loop's own fds (userdata 0): if it is
        the wakeup socket, it is emptied, and Ctrl-C ends run()."""
        if self._wakeup is not None and fd == self._wakeup[0].fileno():
            if self._drain_wakeup() and self._in_run:
                self._sigint_arrived()

    def _drain_wakeup(self) -> bool:
        """Empties the wakeup socket; returns whether SIGINT was among the
        signal numbers Python's C handler wrote there."""
        assert self._wakeup is not None
        sigint = False
        try:
            while True:
                data = self._wakeup[0].recv(4096)
                if not data:
                    break
                sigint = sigint or signal.SIGINT in data
        except (BlockingIOError, InterruptedError):
            pass
        return sigint

    def _sigint_arrived(self) -> None:
        """Ctrl-C came while run() ran. Its Python handler runs now if it has
        not yet. If it has, but ran on entry to a callback the library called
        (a timer's), before that callback's own try, ctypes dropped its
        KeyboardInterrupt (it prints "Exception ignored" and goes on): raise
        it again, so that Ctrl-C always ends run(). One that a callback
        caught and kept is raised from run() already, before this."""
        run_signal_handlers()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler and self._ready.exception is None:
            raise KeyboardInterrupt

    def close(self) -> None:
        """The loop closes: the previous handlers come back, the sockets go."""
        for signo in list(self.handlers):
            self.remove(signo)
        if self._wakeup is not None:
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None

"""``python -m evloop``: what is installed, and whether it works.

Prints the package's version, the library it loaded and that library's ABI
version, which implementation of the asyncio loop runs (the native path or
the ctypes path; ``EVLOOP_IMPL`` chooses, see _implementation.py) and why,
then runs a short self-check: a loop, a timer, and a message echoed across a
socket pair, then echoed through the asyncio loop. It ends by itself within
seconds; the exit status is 0 if every check passed, 1 otherwise.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Callable, List

import evloop

from . import _implementation, _lib

#: However the checks go, the loop stops after this long.
DEADLINE_S = 5.0
TIMER_DELAY_S = 0.05
MESSAGE = b"evloop self-check"


def loaded_library() -> str:
    """The file this process mapped for the library (from /proc/self/maps),
    which is where the loader's search ended, whatever name it was given."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and "libevloop" in fields[5].rsplit("/", 1)[-1]:
                    return fields[5].strip()
    except OSError:
        pass
    return str(getattr(_lib.lib, "_name", "?"))


def self_check(report: Callable[[str, bool, str], None]) -> None:
    """A timer sends MESSAGE into one end of a socket pair, the other end
    echoes it back, and the first end's callback checks it and ends the
    loop. Each step reports (name, passed, detail)."""
    pinger, answerer = socket.socketpair()
    pinger.setblocking(False)
    answerer.setblocking(False)
    echoed: List[bytes] = []
    with evloop.Loop() as loop:

        def on_timer(started: float) -> None:
            late = time.monotonic() - started
            report("timer", late >= TIMER_DELAY_S, f"fired after {late * 1000:.0f} ms, not before {TIMER_DELAY_S * 1000:.0f}")
            pinger.send(MESSAGE)

        def on_answerer_readable(sock: socket.socket, _revents: int) -> None:
            sock.send(sock.recv(4096))

        def on_pinger_readable(sock: socket.socket, _revents: int) -> None:
            echoed.append(sock.recv(4096))
            if sum(map(len, echoed)) >= len(MESSAGE):
                loop.unregister(pinger)
                loop.unregister(answerer)
                give_up.cancel()

        def out_of_time() -> None:
            report("deadline", False, f"nothing came back within {DEADLINE_S} s")
            loop.stop()

        loop.register(answerer, evloop.READ, on_answerer_readable)
        loop.register(pinger, evloop.READ, on_pinger_readable)
        loop.call_later(TIMER_DELAY_S, on_timer, time.monotonic())
        give_up = loop.call_later(DEADLINE_S, out_of_time)
        loop.run()  # returns when nothing is left to wait for, or on stop()
    pinger.close()
    answerer.close()
    got = b"".join(echoed)
    report("socketpair echo", got == MESSAGE, f"{len(got)} bytes came back" + ("" if got == MESSAGE else f": {got!r}"))


def asyncio_check(report: Callable[[str, bool, str], None]) -> None:
    """MESSAGE through an asyncio echo server and client on evloop's asyncio
    loop (the implementation this process chose)."""
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

    async def echo() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(MESSAGE)
        got = await reader.readexactly(len(MESSAGE))
        writer.close()
        server.close()
        return got

    loop = evloop.new_event_loop()
    try:
        got = loop.run_until_complete(asyncio.wait_for(echo(), DEADLINE_S))
    finally:
        loop.close()
    report("asyncio echo", got == MESSAGE, f"{len(got)} bytes came back on {type(loop).__module__}.{type(loop).__name__}")


def main() -> int:
    print(f"evloop {evloop.__version__}")
    print(f"library: {loaded_library()}")
    abi = _lib.lib.evl_abi_version()
    print(f"ABI version: {abi} (the package needs {evloop.ABI_VERSION})")
    failures = []

    def report(name: str, passed: bool, detail: str) -> None:
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
        if not passed:
            failures.append(name)

    report("ABI", abi == evloop.ABI_VERSION, f"library {abi}, package {evloop.ABI_VERSION}")
    try:
        choice = _implementation.current()
        print(f"asyncio loop: the {choice.name} path ({choice.reason})")
    except ImportError as exc:
        report("asyncio loop", False, str(exc))
    try:
        self_check(report)
        if "asyncio loop" not in failures:
            asyncio_check(report)
    except Exception as exc:  # a broken install shows as a failed check, not a traceback alone
        report("self-check", False, f"{type(exc).__name__}: {exc}")
    print("self-check passed" if not failures else f"self-check FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""EvloopSelector against the selectors contract: the same results and the
same exceptions as the standard library's EpollSelector, and asyncio on it."""

import asyncio
import os
import selectors
import signal
import socket
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402


def outcome(action):
    """What an action gives: its result or the type of its exception."""
    try:
        return ("ok", action())
    except Exception as exc:  # noqa: BLE001: compared between selectors
        return ("raised", type(exc))


class SameAsEpollSelector(unittest.TestCase):
    def script(self, sel):
        """A series of uses and misuses; returns what each gave."""
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        results = []
        keys = lambda ready: sorted((key.fd == a.fileno(), key.data, events) for key, events in ready)  # noqa: E731
        steps = [
            lambda: sel.register(a, selectors.EVENT_READ, "a").events,
            lambda: sel.register(a, selectors.EVENT_READ),  # KeyError: twice
            lambda: sel.register(c, 0),  # ValueError
            lambda: sel.register(c, 4),  # ValueError
            lambda: sel.register("x", selectors.EVENT_READ),  # ValueError
            lambda: sel.register(-1, selectors.EVENT_READ),  # ValueError
            lambda: sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE, "c").events,
            lambda: keys(sel.select(0)),
            lambda: b.send(b"x") and keys(sel.select(1)),
            lambda: sel.modify(c, selectors.EVENT_READ, "c2").data,
            lambda: keys(sel.select(0)),
            lambda: sel.modify(d, selectors.EVENT_READ),  # KeyError: not registered
            lambda: sel.modify(c, 0).events,  # accepted, as EpollSelector does
            lambda: sel.get_key(a).data,
            lambda: sel.get_key(d),  # KeyError
            lambda: len(sel.get_map()),
            lambda: a in sel.get_map() and d not in sel.get_map(),
            lambda: sel.unregister(d),  # KeyError
            lambda: (a.close(), sel.unregister(a).data)[1],  # closed first: found by identity
            lambda: sel.select(-1) == [] or "not empty",
            lambda: sel.select(0.0) == [],
            lambda: sel.unregister(c).data,
            lambda: sel.close(),
            lambda: sel.get_map(),
            lambda: sel.get_key(c),  # RuntimeError
            lambda: sel.select(0),  # ValueError on a closed selector
        ]
        for step in steps:
            results.append(outcome(step))
        for s in (b, c, d):
            s.close()
        return results

    def test_same_outcomes_as_epoll_selector(self):
        ours = self.script(evloop.EvloopSelector())
        theirs = self.script(selectors.EpollSelector())
        for i, (mine, std) in enumerate(zip(ours, theirs)):
            self.assertEqual(mine, std, f"step {i}")

    def test_drop_in_names(self):
        self.assertIs(evloop.DefaultSelector, evloop.EvloopSelector)
        self.assertEqual((evloop.EVENT_READ, evloop.EVENT_WRITE), (selectors.EVENT_READ, selectors.EVENT_WRITE))
        self.assertTrue(issubclass(evloop.EvloopSelector, selectors.BaseSelector))
        with evloop.DefaultSelector() as sel:
            self.assertEqual(len(sel.get_map()), 0)
        self.assertIsNone(sel.get_map())


class Fileno(unittest.TestCase):
    def test_the_epoll_fd_is_readable_while_a_registered_fd_is_ready(self):
        import select

        with evloop.EvloopSelector() as sel:
            a, b = socket.socketpair()
            with a, b:
                fd = sel.fileno()
                self.assertGreaterEqual(fd, 0)
                self.assertEqual(fd, sel.fileno())
                sel.register(a, selectors.EVENT_READ)
                self.assertEqual(select.select([fd], [], [], 0)[0], [])
                b.send(b"x")
                self.assertEqual(select.select([fd], [], [], 5)[0], [fd])
                self.assertEqual([(key.fileobj, mask) for key, mask in sel.select(0)], [(a, selectors.EVENT_READ)])
        with self.assertRaises(ValueError):
            sel.fileno()  # closed


class Timeouts(unittest.TestCase):
    def setUp(self):
        self.sel = evloop.EvloopSelector()
        self.a, self.b = socket.socketpair()
        self.sel.register(self.a, selectors.EVENT_READ)

    def tearDown(self):
        self.sel.close()
        self.a.close()
        self.b.close()

    def test_timeout_is_waited_for_and_not_less(self):
        start = time.monotonic()
        self.assertEqual(self.sel.select(0.05), [])
        self.assertGreaterEqual(time.monotonic() - start, 0.05)

    def test_none_waits_until_ready(self):
        threading.Timer(0.05, self.b.send, (b"x",)).start()
        self.assertEqual(len(self.sel.select(None)), 1)

    def test_eintr_retries_with_the_remaining_timeout(self):
        got = []
        old = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
        try:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            start = time.monotonic()
            self.assertEqual(self.sel.select(0.3), [])
            elapsed = time.monotonic() - start
        finally:
            signal.signal(signal.SIGUSR1, old)
        self.assertEqual(got, [1])  # the handler ran
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 2)

    def test_a_raising_signal_handler_propagates(self):
        def handler(*_):
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGUSR1, handler)
        try:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            with self.assertRaises(KeyboardInterrupt):
                self.sel.select(10)
        finally:
            signal.signal(signal.SIGUSR1, old)

    def test_unusable_timeouts_raise_as_epoll_selectors_do(self):
        # Each of these raises at once from both (none of them may wait): an
        # infinity, more than an int of milliseconds (the first one over is
        # 2**31 ms), NaN. Before, EvloopSelector said "NaN" for infinity and
        # waited 24.8 days for the rest (infinity first: on such code the
        # test fails there instead of waiting).
        with selectors.EpollSelector() as epoll:
            for timeout in (float("inf"), 1e300, 2**64, 2**31 / 1000, float("nan")):
                mine = outcome(lambda: self.sel.select(timeout))
                self.assertEqual(mine[0], "raised", timeout)
                # PyPy's EpollSelector returns at once for 1e300 and waits
                # for the others: there ours still raises, as CPython's does.
                if sys.implementation.name == "cpython":
                    theirs = outcome(lambda: epoll.select(timeout))
                    self.assertEqual(mine, theirs, timeout)
            for timeout in (float("-inf"), -1e300):  # not positive: no wait
                self.assertEqual(outcome(lambda: self.sel.select(timeout)), ("ok", []))

    def test_many_fds_beyond_the_initial_array(self):
        pairs = [socket.socketpair() for _ in range(200)]
        for x, y in pairs:
            self.sel.register(x, selectors.EVENT_WRITE, y)
        ready = self.sel.select(0)
        self.assertEqual(len(ready), 200)
        for x, y in pairs:
            self.sel.unregister(x)
            x.close()
            y.close()


class EveryReadyFd(unittest.TestCase):
    """select() returns every ready fd, as EpollSelector does, however many."""

    def test_1500_writable_sockets(self):
        pairs = [socket.socketpair() for _ in range(750)]
        try:
            for cls in (selectors.EpollSelector, evloop.EvloopSelector):
                with cls() as sel:
                    for x, y in pairs:
                        sel.register(x, selectors.EVENT_WRITE)
                        sel.register(y, selectors.EVENT_WRITE)
                    ready = sel.select(0)
                    self.assertEqual(len(ready), 1500, cls.__name__)
                    self.assertEqual(len({key.fd for key, _ in ready}), 1500, cls.__name__)
        finally:
            for x, y in pairs:
                x.close()
                y.close()


def _cpython_selector_tests():
    """CPython's own selectors tests (test.test_selectors), which some
    distributions ship apart (Debian: libpython3.X-testsuite, and
    pypy3-lib-testsuite for PyPy; .ci/run installs them)."""
    try:
        from test import test_selectors
    except ImportError as exc:
        package = (
            "pypy3-lib-testsuite"
            if sys.implementation.name == "pypy"
            else f"libpython3.{sys.version_info[1]}-testsuite"
        )
        raise ImportError(
            f"CPython's test.test_selectors is needed: apt-get install {package} "
            "(.ci/run does this)"
        ) from exc
    return test_selectors


class CPythonScalableSelectorTest(_cpython_selector_tests().ScalableSelectorMixIn, unittest.TestCase):
    """CPython's test_above_fd_setsize: as many socket pairs as RLIMIT_NOFILE
    allows (its hard limit, up to 65536), all ready, all returned."""

    SELECTOR = evloop.EvloopSelector

    def make_socketpair(self):
        rd, wr = socket.socketpair()
        self.addCleanup(rd.close)
        self.addCleanup(wr.close)
        return rd, wr


class Asyncio(unittest.TestCase):
    def test_asyncio_runs_on_the_selector(self):
        async def main():
            async def handle(reader, writer):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            payload = os.urandom(1 << 20)
            writer.write(payload)
            writer.write_eof()
            echoed = await reader.read(-1)
            writer.close()
            await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()
            started = time.monotonic()
            await asyncio.sleep(0.02)
            return echoed == payload, time.monotonic() - started

        loop = asyncio.SelectorEventLoop(evloop.EvloopSelector())
        try:
            same, slept = loop.run_until_complete(main())
        finally:
            loop.close()
        self.assertTrue(same)
        self.assertGreaterEqual(slept, 0.02)


if __name__ == "__main__":
    unittest.main()

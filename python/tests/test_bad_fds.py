"""Fd numbers that name no open fd (issue 25): evloop's entry points raise
what the standard library raises for them (OSError EBADF for a closed fd
of any number, ValueError for a negative one, OverflowError past a C int),
at once, without growing the process; the library used to grow its table
to the number first (INT_MAX aborted the process, 1,000,000 cost 40 MiB).
A number past a C int must not reach the library cut to its low 32 bits,
which may name another, open fd."""

import asyncio
import errno
import os
import resource
import select
import selectors
import socket
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402


def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def closed_numbers():
    """The largest int, one of millions, the first number RLIMIT_NOFILE
    does not allow and the last it does, when not open (under valgrind the
    numbers at the limit are its own)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = min(soft, 2**31 - 1)
    numbers = [2**31 - 1, 1_000_000, soft, soft - 1, 2**31 - 2]
    return [fd for fd in numbers if not is_open(fd)]


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def outcome(call, fd):
    """What `call(fd)` gives: ("ok",) or the exception's type and errno."""
    try:
        call(fd)
        return ("ok",)
    except OSError as exc:
        return (type(exc), exc.errno)
    except (ValueError, OverflowError) as exc:
        return (type(exc),)


def ignore(*args):
    pass


class Protocol(asyncio.Protocol):
    pass


class NumbersThatAreNotOpen(unittest.TestCase):
    def setUp(self):
        self.to_close = []

    def tearDown(self):
        for thing in self.to_close:
            thing.close()

    def keep(self, thing):
        self.to_close.append(thing)
        return thing

    def check(self, evloop_call, stdlib_call):
        """For every closed number: the same outcome as the standard
        library's, EBADF, within a second and a few MiB."""
        numbers = closed_numbers()
        self.assertGreaterEqual(len(numbers), 3)
        for fd in numbers:
            with self.subTest(fd=fd):
                expected = outcome(stdlib_call, fd)
                self.assertEqual(expected, (OSError, errno.EBADF))
                before, start = rss_kib(), time.monotonic()
                got = outcome(evloop_call, fd)
                elapsed, grown = time.monotonic() - start, rss_kib() - before
                self.assertEqual(got, expected)
                self.assertLess(elapsed, 1.0)
                self.assertLess(grown, 8192)
        for fd in (-1, -(2**31)):
            with self.subTest(fd=fd):
                self.assertEqual(outcome(evloop_call, fd), (ValueError,))
                self.assertEqual(outcome(stdlib_call, fd), (ValueError,))

    def check_past_c_int(self, evloop_call, stdlib_call, still_free):
        """A number past a C int whose low 32 bits name an open fd: the
        standard library's OverflowError, and that fd left alone
        (`still_free(fd)` checks it)."""
        a, b = socket.socketpair()
        self.keep(a), self.keep(b)
        for fd in (2**32 + a.fileno(), 2**31, 2**64 + a.fileno()):
            with self.subTest(fd=fd):
                self.assertEqual(outcome(stdlib_call, fd), (OverflowError,))
                self.assertEqual(outcome(evloop_call, fd), (OverflowError,))
        still_free(a)

    def test_evloop_selector_register(self):
        sel = self.keep(evloop.EvloopSelector())
        std = self.keep(selectors.EpollSelector())
        self.check(
            lambda fd: sel.register(fd, selectors.EVENT_READ),
            lambda fd: std.register(fd, selectors.EVENT_READ),
        )
        self.assertEqual(len(sel.get_map()), 0)

        def still_free(a):
            sel.register(a, selectors.EVENT_WRITE)  # not registered already
            self.assertEqual([key.fileobj for key, _ in sel.select(0)], [a])

        self.check_past_c_int(
            lambda fd: sel.register(fd, selectors.EVENT_READ),
            lambda fd: std.register(fd, selectors.EVENT_READ),
            still_free,
        )

    def test_loop_register(self):
        loop = self.keep(evloop.Loop())
        epoll = self.keep(select.epoll())
        self.check(lambda fd: loop.register(fd, evloop.READ, ignore), lambda fd: epoll.register(fd, select.EPOLLIN))

        def still_free(a):
            loop.register(a, evloop.WRITE, ignore)
            loop.unregister(a)

        self.check_past_c_int(
            lambda fd: loop.register(fd, evloop.READ, ignore),
            lambda fd: epoll.register(fd, select.EPOLLIN),
            still_free,
        )

    def test_asyncio_add_reader_and_add_writer(self):
        loop = self.keep(evloop.new_event_loop())
        std = self.keep(asyncio.SelectorEventLoop(selectors.EpollSelector()))
        self.check(lambda fd: loop.add_reader(fd, ignore), lambda fd: std.add_reader(fd, ignore))
        self.check(lambda fd: loop.add_writer(fd, ignore), lambda fd: std.add_writer(fd, ignore))

        def still_free(a):
            loop.add_reader(a, ignore)
            self.assertTrue(loop.remove_reader(a))

        self.check_past_c_int(
            lambda fd: loop.add_reader(fd, ignore), lambda fd: std.add_reader(fd, ignore), still_free
        )

    def test_loop_open_stream(self):
        loop = self.keep(evloop.Loop())
        std = self.keep(selectors.EpollSelector())
        self.check(lambda fd: loop.open_stream(fd, Protocol), lambda fd: std.register(fd, selectors.EVENT_READ))

        def still_free(a):
            # Not taken over (a stream would own it and close it): still open and ours.
            self.assertTrue(is_open(a.fileno()))
            loop.register(a, evloop.WRITE, ignore)
            loop.unregister(a)

        self.check_past_c_int(
            lambda fd: loop.open_stream(fd, Protocol),
            lambda fd: std.register(fd, selectors.EVENT_READ),
            still_free,
        )


if __name__ == "__main__":
    unittest.main()

"""Reference counting and lifetime on the native loop: seeded random
connections (TCP, accepted natively) through Protocol and BufferedProtocol
servers whose callbacks echo, raise, close, abort, pause and resume
reading, write to other transports and stop the loop, from inside
data_received and the others; afterwards no transport, protocol, buffer or
handle is alive (weak references, after gc.collect()), and the exception
handler got only the exceptions raised. Then the process's memory over
many connections (EVLOOP_NATIVE_CONNECTIONS, 5,000 by default; 100,000 in
tests/native_loop.rs) stays within 1 MiB after a warm-up. CPython only (see
native_support).
"""

import asyncio
import gc
import os
import random
import socket
import sys
import unittest
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON, native_loop  # noqa: E402

SEEDS = range(int(os.environ.get("EVLOOP_NATIVE_SEEDS", 3)))
CONNECTIONS_PER_SEED = 800
MEMORY_CONNECTIONS = int(os.environ.get("EVLOOP_NATIVE_CONNECTIONS", 5_000))

# What a message asks the server's protocol to do (its first byte).
ECHO, RAISE, CLOSE, ABORT, PAUSE, WRITE_OTHER, STOP, EOF_RAISE = b"ercaxwsf"


class Tracker:
    """Weak references to everything made, and what was raised on purpose."""

    def __init__(self):
        self.refs = []
        self.raised = 0
        self.handled = []
        self.live = []  # server transports, for WRITE_OTHER

    def track(self, *objects):
        for obj in objects:
            self.refs.append(weakref.ref(obj))

    def alive(self):
        gc.collect()
        return [ref() for ref in self.refs if ref() is not None]


class Behaviour:
    """The server side's reactions, shared by both protocol kinds."""

    def setup(self, tracker, loop):
        self.tracker = tracker
        self.loop = loop

    def connection_made(self, transport):
        self.transport = transport
        self.tracker.track(self, transport)
        self.tracker.live.append(weakref.ref(transport))

    def react(self, data):
        tracker, transport = self.tracker, self.transport
        command = data[0]
        if command == RAISE:
            tracker.raised += 1
            raise ZeroDivisionError("asked to raise")
        if command == CLOSE:
            transport.write(data)
            transport.close()
        elif command == ABORT:
            transport.abort()
        elif command == PAUSE:
            transport.pause_reading()
            handle = self.loop.call_later(0.001, transport.resume_reading)
            tracker.track(handle)
            transport.write(data)
        elif command == WRITE_OTHER:
            for ref in tracker.live[-5:]:
                other = ref()
                if other is not None and other is not transport and not other.is_closing():
                    other.write(b"o")  # the other client ignores it
            transport.write(data)
        elif command == STOP:
            self.loop.stop()  # the test runs the loop again
            transport.write(data)
        else:
            handle = self.loop.call_soon(transport.write, data)
            tracker.track(handle)

    def eof_received(self):
        if self.tracker_eof_raise:
            self.tracker.raised += 1
            raise ValueError("asked to raise at EOF")
        return False

    tracker_eof_raise = False

    def connection_lost(self, exc):
        self.tracker.live = [ref for ref in self.tracker.live if ref() is not None and ref() is not self.transport]
        self.transport = None  # asyncio's protocols let go of theirs too


class ServerProtocol(Behaviour, asyncio.Protocol):
    def data_received(self, data):
        if data[0] == EOF_RAISE:
            self.tracker_eof_raise = True
            self.transport.write(data)
            return
        self.react(data)


class Buffer(bytearray):
    """A bytearray that weak references can follow."""


class ServerBuffered(Behaviour, asyncio.BufferedProtocol):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.buffer = Buffer(64)
        self.tracker.track(self.buffer)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        data = bytes(self.buffer[:nbytes])
        if data[0] == EOF_RAISE:
            self.tracker_eof_raise = True
            self.transport.write(data)
            return
        self.react(data)


class Client(asyncio.Protocol):
    """Sends its messages one at a time, each once the last came back
    (or the connection ended), then ends as its plan says."""

    def __init__(self, tracker, plan, done):
        self.tracker = tracker
        self.plan = plan
        self.done = done
        self.received = b""
        self.expected = None
        tracker.track(self)

    def connection_made(self, transport):
        self.transport = transport
        self.tracker.track(transport)
        self.next()

    def next(self):
        if not self.plan["messages"]:
            ending = self.plan["ending"]
            if ending == "abort":
                self.transport.abort()
            elif ending == "eof":
                self.transport.write_eof()
            else:
                self.transport.close()
            return
        message = self.plan["messages"].pop(0)
        self.expected = len(message) if message[0] not in (RAISE, ABORT) else None
        self.received = b""
        self.transport.write(message)
        if self.expected is None:
            self.plan["messages"].clear()

    def data_received(self, data):
        if data == b"o":
            return
        self.received += data.replace(b"o", b"")
        if self.expected is not None and len(self.received) >= self.expected:
            self.next()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)
        self.transport = None


def plan_for(rng):
    messages = []
    for _ in range(rng.randint(0, 4)):
        command = rng.choice([ECHO] * 6 + [RAISE, CLOSE, ABORT, PAUSE, WRITE_OTHER, STOP, EOF_RAISE])
        messages.append(bytes([command]) + b"x" * rng.choice((0, 10, 1000, 50)))
        if command in (RAISE, CLOSE, ABORT):
            break
    return {"messages": messages, "ending": rng.choice(("close", "abort", "eof"))}


def run_connections(loop, server_factory, tracker, rng, count, concurrency=50):
    """`count` clients, `concurrency` at a time, each with a random plan;
    runs the loop again whenever a protocol stopped it."""
    server = loop.run_until_complete(loop.create_server(server_factory, "127.0.0.1", 0))
    address = server.sockets[0].getsockname()[:2]

    async def one():
        done = loop.create_future()
        plan = plan_for(rng)
        try:
            await loop.create_connection(lambda: Client(tracker, plan, done), *address)
        except OSError:
            return
        await asyncio.wait_for(done, 30)

    async def batch(n):
        await asyncio.gather(*(one() for _ in range(n)))

    left = count
    while left:
        n = min(concurrency, left)
        task = loop.create_task(batch(n))
        task.add_done_callback(lambda task: loop.stop())
        while not task.done():
            loop.run_forever()  # again after a protocol's STOP
        task.result()
        left -= n
    server.close()
    loop.run_until_complete(server.wait_closed())
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0.01))


if CPYTHON:

    class RandomConnections(unittest.TestCase):
        def check(self, server_class):
            for seed in SEEDS:
                with self.subTest(seed=seed):
                    rng = random.Random(seed)
                    tracker = Tracker()
                    loop = native_loop()
                    # Only what the context says (keeping it would keep its
                    # transport and protocol alive).
                    loop.set_exception_handler(
                        lambda loop, context: tracker.handled.append(
                            (type(context.get("exception")).__name__, context["message"])
                        )
                    )

                    def factory():
                        protocol = server_class()
                        protocol.setup(tracker, loop)
                        return protocol

                    try:
                        run_connections(loop, factory, tracker, rng, CONNECTIONS_PER_SEED)
                    finally:
                        loop.close()
                    errors = [c for c in tracker.handled if c[0] not in ("ZeroDivisionError", "ValueError")]
                    self.assertEqual(errors, [], "unexpected exception-handler calls")
                    # Raised by a callback of a connection not already ended
                    # (then it reaches the handler once).
                    self.assertLessEqual(len(tracker.handled), tracker.raised)
                    self.assertGreater(len(tracker.handled), 0)
                    del loop, factory
                    alive = tracker.alive()
                    self.assertEqual(alive, [], f"seed {seed}: still alive: {alive[:5]}")
                    self.assertGreater(len(tracker.refs), CONNECTIONS_PER_SEED)

        def test_protocol(self):
            self.check(ServerProtocol)

        def test_buffered_protocol(self):
            self.check(ServerBuffered)

    class Memory(unittest.TestCase):
        def test_memory_is_flat_over_many_connections(self):
            """After a warm-up, the process's resident memory stays within
            1 MiB over MEMORY_CONNECTIONS connections (each: connect, one
            echo, then close or abort at random)."""
            loop = native_loop()
            rng = random.Random(1)
            tracker = Tracker()
            tracker.track = lambda *objects: None  # nothing kept
            tracker.live = []

            class Echo(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport

                def data_received(self, data):
                    self.transport.write(data)

            server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
            address = server.sockets[0].getsockname()[:2]

            async def one():
                done = loop.create_future()
                plan = {"messages": [b"e" + b"x" * rng.choice((1, 100))], "ending": rng.choice(("close", "abort"))}
                await loop.create_connection(lambda: Client(tracker, plan, done), *address)
                await done

            async def many(n, concurrency=100):
                for _ in range(n // concurrency):
                    await asyncio.gather(*(one() for _ in range(concurrency)))

            try:
                warm_up = min(20_000, MEMORY_CONNECTIONS)
                loop.run_until_complete(many(warm_up))
                gc.collect()
                before = resident()
                loop.run_until_complete(many(MEMORY_CONNECTIONS))
                gc.collect()
                after = resident()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()
            self.assertLessEqual(after - before, 1 << 20, f"grew {after - before} bytes over {MEMORY_CONNECTIONS} connections")

    def resident():
        """The process's resident memory in bytes (/proc/self/statm)."""
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

else:  # PyPy: no test here (test_native_core checks PyPy's side).
    pass


if __name__ == "__main__":
    unittest.main()

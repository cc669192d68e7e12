"""Loop.fileno() and Loop.timeout(), and evloop.attach: a Loop run inside a
running asyncio loop, its streams served, its timers fired, next to
asyncio's own work."""

import asyncio
import select
import socket
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402


class BackendFdAndTimeout(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()

    def tearDown(self):
        self.loop.close()

    def readable(self, timeout=0.0):
        return bool(select.select([self.loop.fileno()], [], [], timeout)[0])

    def test_timeout_follows_timers_calls_and_writes(self):
        self.assertIsNone(self.loop.timeout())
        handle = self.loop.call_later(60, lambda: None)
        timeout = self.loop.timeout()
        self.assertTrue(59 < timeout <= 60, timeout)
        handle.cancel()
        self.assertIsNone(self.loop.timeout())
        self.loop.call_soon(lambda: None)
        self.assertEqual(self.loop.timeout(), 0)
        self.loop.run_once(0)
        self.assertIsNone(self.loop.timeout())

    def test_fileno_is_readable_for_a_due_timer_and_quiet_after(self):
        fired = []
        # From before call_later: the timer is never early from its making
        # (taken after, a preempted test saw 13.6 ms on a loaded machine).
        start = time.monotonic()
        self.loop.call_later(0.02, fired.append, 1)
        self.assertFalse(self.readable())
        self.assertTrue(self.readable(10), "the fd never became readable for the timer")
        self.assertGreaterEqual(time.monotonic() - start, 0.019)
        self.loop.run_once(0)
        self.assertEqual(fired, [1])
        self.assertFalse(self.readable(0.02))
        self.assertIsNone(self.loop.timeout())

    def test_fileno_is_the_same_fd_each_time(self):
        self.assertEqual(self.loop.fileno(), self.loop.fileno())

    def test_a_closed_loop_refuses(self):
        self.loop.close()
        with self.assertRaises(RuntimeError):
            self.loop.fileno()
        with self.assertRaises(RuntimeError):
            self.loop.timeout()


class Echo(evloop.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Attached(unittest.TestCase):
    def test_streams_and_timers_run_inside_asyncio(self):
        async def scenario():
            host = asyncio.get_running_loop()
            with evloop.Loop() as loop:
                server = loop.start_server(Echo, "127.0.0.1", 0)
                attachment = evloop.attach(loop)
                fired = []
                loop.call_later(0.05, fired.append, "evloop")
                ticks = []
                host.call_later(0.01, ticks.append, "asyncio")
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                for size in (1, 1000, 1 << 20):
                    message = bytes(i % 251 for i in range(size))
                    writer.write(message)
                    self.assertEqual(await asyncio.wait_for(reader.readexactly(size), 20), message)
                deadline = host.time() + 10
                while not fired and host.time() < deadline:
                    await asyncio.sleep(0.01)
                self.assertEqual(fired, ["evloop"])
                self.assertEqual(ticks, ["asyncio"])
                writer.close()
                attachment.detach()
                self.assertIsNone(attachment._timer)

        asyncio.run(scenario())

    def test_writes_from_asyncio_callbacks_go_out_with_run_soon(self):
        async def scenario():
            host = asyncio.get_running_loop()
            with evloop.Loop() as loop:
                a, b = socket.socketpair()
                b.setblocking(False)
                transport = loop.open_stream(a.detach(), evloop.Protocol)
                attachment = evloop.attach(loop)
                transport.write(b"from asyncio")
                self.assertEqual(loop.timeout(), 0)
                attachment.run_soon()
                data = await asyncio.wait_for(host.sock_recv(b, 100), 10)
                self.assertEqual(data, b"from asyncio")
                attachment.detach()
                b.close()

        asyncio.run(scenario())

    def test_attach_needs_a_running_loop_or_one_given(self):
        with evloop.Loop() as loop:
            with self.assertRaises(RuntimeError):
                evloop.attach(loop)
            host = asyncio.new_event_loop()
            try:
                attachment = evloop.attach(loop, host)
                done = []
                loop.call_later(0.01, done.append, 1)
                host.run_until_complete(asyncio.sleep(0.2))
                self.assertEqual(done, [1])
                attachment.detach()
            finally:
                host.close()


if __name__ == "__main__":
    unittest.main()

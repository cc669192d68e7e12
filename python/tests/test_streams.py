"""Streams: start_server / open_connection with asyncio-shaped protocols."""

import errno
import os
import socket
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402


class Recorder(evloop.Protocol):
    """Records what happens; echoes if `echo`."""

    def __init__(self, echo=False, keep_open_on_eof=False):
        self.events = []
        self.data = bytearray()
        self.echo = echo
        self.keep_open_on_eof = keep_open_on_eof
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


class Streams(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()
        self.servers = []
        self.server = self.loop.start_server(self.server_protocol, "127.0.0.1", 0)

    def tearDown(self):
        self.loop.close()

    def server_protocol(self):
        protocol = Recorder(echo=True)
        self.servers.append(protocol)
        return protocol

    def test_echo_of_every_size_then_half_close(self):
        for size in (1, 1000, 4 << 20):
            payload = os.urandom(size)
            client = Recorder(keep_open_on_eof=False)

            class Sender(Recorder):
                def connection_made(inner, transport):  # noqa: N805
                    super(Sender, inner).connection_made(transport)
                    transport.write(payload[: size // 2])
                    transport.write(bytearray(payload[size // 2 :]))
                    transport.write_eof()
                    self.assertRaises(RuntimeError, transport.write, b"x")

            client = Sender()
            self.loop.open_connection(lambda: client, "127.0.0.1", self.server.port)
            while ("lost", None) not in client.events:
                self.loop.run_once(5)
            self.assertEqual(bytes(client.data), payload)
            self.assertEqual(client.events, ["made", "eof", ("lost", None)])
        self.assertEqual(len(self.servers), 3)

    def test_100_connections(self):
        clients = []
        for i in range(100):
            protocol = Recorder()
            clients.append(protocol)
            transport = self.loop.open_connection(lambda p=protocol: p, "127.0.0.1", self.server.port)
            transport.write(b"%d " % i * 100)
        while any(len(c.data) < len(b"%d " % i * 100) for i, c in enumerate(clients)):
            self.loop.run_once(5)
        for i, c in enumerate(clients):
            self.assertEqual(bytes(c.data), b"%d " % i * 100)
            c.transport.close()
        while any(("lost", None) not in c.events for c in clients):
            self.loop.run_once(5)

    def test_refused_connection(self):
        port = self.server.port
        self.server.close()
        self.server.close()  # twice is fine
        client = Recorder()
        self.loop.open_connection(lambda: client, "127.0.0.1", port)
        self.loop.run()
        self.assertEqual(len(client.events), 1)
        self.assertIsInstance(client.events[0][1], ConnectionRefusedError)

    def test_abort_pause_resume_and_extra_info(self):
        client = Recorder()
        transport = self.loop.open_connection(lambda: client, "127.0.0.1", self.server.port)
        while not self.servers:
            self.loop.run_once(5)
        server_transport = self.servers[0].transport
        self.assertEqual(server_transport.get_extra_info("sockname")[1], self.server.port)
        self.assertEqual(transport.get_extra_info("peername")[1], self.server.port)
        self.assertIsNone(transport.get_extra_info("nothing"))
        server_transport.pause_reading()
        self.assertFalse(server_transport.is_reading())
        transport.write(b"held")
        for _ in range(5):
            self.loop.run_once(0.02)
        self.assertEqual(self.servers[0].data, b"")
        server_transport.resume_reading()
        while client.data != b"held":
            self.loop.run_once(5)
        self.assertEqual(server_transport.get_write_buffer_size(), 0)
        server_transport.set_write_buffer_limits(high=1 << 16)
        with self.assertRaises(ValueError):
            server_transport.set_write_buffer_limits(high=1, low=2)
        transport.abort()
        self.assertTrue(transport.is_closing())
        transport.write(b"ignored")
        for _ in range(50):
            if ("lost", None) in client.events and any(isinstance(e, tuple) for e in self.servers[0].events):
                break
            self.loop.run_once(0.1)
        self.assertEqual(client.events, ["made", ("lost", None)], self.servers[0].events)
        self.assertEqual(self.servers[0].events[-1], ("lost", None))

    def test_idle_timeout_and_max_connections(self):
        self.server.set_idle_timeout(0.1)
        self.server.set_max_connections(1)
        client = Recorder()
        self.loop.open_connection(lambda: client, "127.0.0.1", self.server.port)
        while not self.servers or len(self.servers[0].events) < 2:
            self.loop.run_once(5)
        self.assertIsInstance(self.servers[0].events[-1][1], TimeoutError)

    def test_stream_over_a_pipe(self):
        reader, writer = os.pipe()
        got = Recorder()
        self.loop.open_stream(reader, lambda: got)
        out = self.loop.open_stream(writer, evloop.Protocol)
        out.write(b"through a pipe" * 1000)
        out.close()
        while len(got.events) < 3:
            self.loop.run_once(5)
        self.assertEqual(bytes(got.data), b"through a pipe" * 1000)
        self.assertEqual(got.events, ["made", "eof", ("lost", None)])

    def test_writes_leave_with_the_iteration_that_made_them(self):
        """run() hands an iteration's writes to the next one's exchange;
        run_once() and stop() must not keep them: they are out on return."""
        ours, theirs = socket.socketpair()
        theirs.settimeout(5)
        echo = Recorder(echo=True)
        self.loop.open_stream(ours.detach(), lambda: echo)
        theirs.sendall(b"ping")
        while not echo.data:
            self.loop.run_once(5)
        self.assertEqual(theirs.recv(16), b"ping")  # no further iteration

        self.loop.call_soon(echo.transport.write, b"from run")
        self.loop.call_soon(self.loop.stop)
        self.loop.run()
        self.assertEqual(theirs.recv(16), b"from run")
        theirs.close()

    def test_writes_of_every_size_and_count_in_one_iteration(self):
        """An iteration's writes all arrive, in order: a few (copied into the
        exchange), then more, and more bytes, than it takes (their own call)."""
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        transport = self.loop.open_stream(ours.detach(), evloop.Protocol)
        few = [os.urandom(n % 700) for n in range(500)]
        many = [os.urandom(n % 700) for n in range(3000)] + [os.urandom(1 << 20)]
        for chunks in (few, many):
            for chunk in chunks:
                transport.write(chunk)
            expected, got = b"".join(chunks), bytearray()
            while len(got) < len(expected):
                self.loop.run_once(0.01)
                try:
                    got += theirs.recv(1 << 20)
                except BlockingIOError:
                    pass
            self.assertEqual(bytes(got), expected)
        theirs.close()

    def test_protocol_exception_surfaces_and_nothing_is_lost(self):
        class Boom(Recorder):
            def data_received(inner, data):  # noqa: N805
                super(Boom, inner).data_received(data)
                if len(inner.data) == 3:
                    raise ValueError("boom")

        client = Boom()
        transport = self.loop.open_connection(lambda: client, "127.0.0.1", self.server.port)
        transport.write(b"abc")
        with self.assertRaises(ValueError):
            while True:
                self.loop.run_once(5)
        transport.write(b"def")
        while len(client.data) < 6:
            self.loop.run_once(5)
        self.assertEqual(bytes(client.data), b"abcdef")

    def test_errors(self):
        with self.assertRaises(OSError) as caught:
            self.loop.start_server(evloop.Protocol, "127.0.0.1", self.server.port)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        with self.assertRaises(ValueError):
            self.loop.start_server(evloop.Protocol, "127.0.0.1", 70000)
        with self.assertRaises(ValueError):
            self.loop.open_stream(-1, evloop.Protocol)
        with self.assertRaises(TypeError):
            transport = self.loop.open_connection(evloop.Protocol, "127.0.0.1", self.server.port)
            transport.write("text")
        with open(__file__, "rb") as f, self.assertRaises(PermissionError):
            self.loop.open_stream(os.dup(f.fileno()), evloop.Protocol)
        with self.assertRaises(ValueError):
            self.server.set_idle_timeout(-1)

    def test_module_level_functions(self):
        server = evloop.start_server(evloop.Protocol, "127.0.0.1", 0, loop=self.loop)
        self.assertTrue(server.is_serving())
        client = Recorder()
        evloop.open_connection(lambda: client, "127.0.0.1", server.port, loop=self.loop)
        while not client.events:
            self.loop.run_once(5)
        self.assertEqual(client.events, ["made"])
        with server:
            pass
        self.assertFalse(server.is_serving())


if __name__ == "__main__":
    unittest.main()

"""The native loop's transports, byte for byte, where test_asyncio_loop.py
(which runs its echo matrix on every implementation, the native one
included: TCP, 1 and 100 connections, 1 B to 4 MiB, half-close, a client
that never reads, resets) does not go: Unix sockets, BufferedProtocol
(with small buffers, read straight into them), and the transport's
methods. CPython only (see native_support).
"""

import asyncio
import os
import socket
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON, MIB, native_loop, pattern, run  # noqa: E402
from test_asyncio_loop import EchoProtocol, stream_echo  # noqa: E402  (the same servers)


class BufferedEcho(asyncio.BufferedProtocol):
    """get_buffer/buffer_updated (a buffer of `size` bytes)."""

    def __init__(self, size=10_000):
        self.buffer = bytearray(size)
        self.sizes = []

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.sizes.append(nbytes)
        self.transport.write(bytes(self.buffer[:nbytes]))

    def eof_received(self):
        return False


async def start(kind, unix_path=None):
    """An echo server of `kind` ("protocol", "buffered" or "streams"), and
    how to connect to it: (host, port), or a Unix socket's path."""
    loop = asyncio.get_running_loop()
    factory = {"protocol": EchoProtocol, "buffered": BufferedEcho}.get(kind)
    if unix_path:
        if factory:
            server = await loop.create_unix_server(factory, unix_path)
        else:
            server = await asyncio.start_unix_server(stream_echo, unix_path)
        return server, unix_path
    if factory:
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(stream_echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


async def connect(address):
    if isinstance(address, str):
        return await asyncio.open_unix_connection(address)
    return await asyncio.open_connection(*address)


async def exchange(address, payload, chunk=65536):
    """Sends `payload`, half-closes, and returns everything read until EOF."""
    reader, writer = await connect(address)

    async def send():
        for at in range(0, len(payload), chunk):
            writer.write(payload[at : at + chunk])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    received = await reader.read(-1)
    await sender
    writer.close()
    await writer.wait_closed()
    return received


KINDS = ("protocol", "buffered", "streams")

if CPYTHON:

    class Echo(unittest.TestCase):
        def check_echo(self, kind, conns, size, unix=False):
            async def main():
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "echo.sock") if unix else None
                    server, address = await start(kind, path)
                    async with server:
                        payloads = [pattern(size, seed) for seed in range(conns)]
                        replies = await asyncio.gather(*(exchange(address, p) for p in payloads))
                        for payload, reply in zip(payloads, replies):
                            self.assertEqual(len(reply), len(payload))
                            self.assertTrue(reply == payload, "the echo differs")

            run(main())

        def test_unix_sockets(self):
            for kind in KINDS:
                for conns, size in ((1, 1), (1, 4 * MIB), (20, 100_000)):
                    with self.subTest(kind=kind, conns=conns, size=size):
                        self.check_echo(kind, conns, size, unix=True)

        def test_buffered_protocol_reads_into_its_buffer(self):
            """Every buffer_updated() reports at most the buffer's 7 bytes,
            and the bytes are read into the protocol's own buffer."""
            protocols = []

            def factory():
                protocols.append(BufferedEcho(7))
                return protocols[-1]

            async def main():
                loop = asyncio.get_running_loop()
                server = await loop.create_server(factory, "127.0.0.1", 0)
                async with server:
                    payload = pattern(100_000, 5)
                    address = server.sockets[0].getsockname()[:2]
                    self.assertEqual(await exchange(address, payload), payload)

            run(main())
            sizes = protocols[0].sizes
            self.assertEqual(sum(sizes), 100_000)
            self.assertTrue(all(0 < n <= 7 for n in sizes))

    class TransportMethods(unittest.TestCase):
        """The transport's interface, each method native, as asyncio's."""

        def test_methods(self):
            async def main():
                loop = asyncio.get_running_loop()
                ours, theirs = socket.socketpair()
                transport, protocol = await loop.connect_accepted_socket(asyncio.Protocol, ours)
                try:
                    self.assertIsInstance(transport, asyncio.Transport)
                    self.assertIs(transport.get_protocol(), protocol)
                    self.assertIs(transport.get_extra_info("socket").fileno(), ours.fileno())
                    self.assertIsNone(transport.get_extra_info("nothing"))
                    self.assertEqual(transport.get_extra_info("nothing", 5), 5)
                    self.assertEqual(transport.get_write_buffer_limits(), (16 * 1024, 64 * 1024))
                    transport.set_write_buffer_limits(high=100)
                    self.assertEqual(transport.get_write_buffer_limits(), (25, 100))
                    transport.set_write_buffer_limits(low=10)
                    self.assertEqual(transport.get_write_buffer_limits(), (10, 40))
                    with self.assertRaises(ValueError):
                        transport.set_write_buffer_limits(high=1, low=2)
                    self.assertTrue(transport.is_reading())
                    transport.pause_reading()
                    self.assertFalse(transport.is_reading())
                    transport.resume_reading()
                    self.assertTrue(transport.is_reading())
                    transport.write(b"ab")
                    transport.write(bytearray(b"cd"))
                    transport.write(memoryview(b"xefx")[1:3])
                    transport.writelines([b"gh", bytearray(b"ij"), memoryview(b"kl")])
                    with self.assertRaisesRegex(TypeError, "bytes-like"):
                        transport.write("text")
                    transport.write(b"")
                    self.assertEqual(transport.get_write_buffer_size(), 0)
                    theirs.settimeout(5)
                    got = b""
                    while len(got) < 12:
                        got += theirs.recv(100)
                    self.assertEqual(got, b"abcdefghijkl")
                    self.assertTrue(transport.can_write_eof())
                    transport.write_eof()
                    with self.assertRaisesRegex(RuntimeError, "write_eof"):
                        transport.write(b"late")
                    self.assertEqual(theirs.recv(10), b"")
                    self.assertFalse(transport.is_closing())
                    other = asyncio.Protocol()
                    transport.set_protocol(other)
                    self.assertIs(transport.get_protocol(), other)
                    self.assertIn("fd=", repr(transport))
                finally:
                    transport.close()
                    self.assertTrue(transport.is_closing())
                    theirs.close()
                await asyncio.sleep(0)
                self.assertIn("closed", repr(transport))

            run(main())

        def test_a_transport_outliving_its_loop_closes_its_socket(self):
            """After loop.close() (which lets go of every transport, as
            asyncio's leaves them), the transport is closing and its close()
            closes the socket, without calling its protocol (asyncio raises
            RuntimeError there: the loop is closed)."""
            lost = []

            class Recorder(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.append(exc)

            loop = native_loop()
            ours, theirs = socket.socketpair()
            try:
                transport, _ = loop.run_until_complete(loop.connect_accepted_socket(Recorder, ours))
            finally:
                loop.close()
            self.assertTrue(transport.is_closing())
            self.assertGreaterEqual(ours.fileno(), 0)
            transport.write(b"dropped")
            transport.close()
            self.assertEqual(ours.fileno(), -1)
            self.assertEqual(lost, [])
            theirs.settimeout(5)
            self.assertEqual(theirs.recv(10), b"")
            theirs.close()

        def test_abort_drops_the_buffer_and_reports_none(self):
            lost = []

            class Recorder(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.append(exc)

            async def main():
                loop = asyncio.get_running_loop()
                ours, theirs = socket.socketpair()
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                transport, _ = await loop.connect_accepted_socket(Recorder, ours)
                transport.write(b"x" * MIB)
                self.assertGreater(transport.get_write_buffer_size(), 0)
                transport.abort()
                self.assertTrue(transport.is_closing())
                self.assertEqual(transport.get_write_buffer_size(), 0)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                self.assertEqual(lost, [None])
                theirs.close()

            run(main())

else:  # PyPy: the module defines no test (test_native_core checks PyPy's side).
    pass


if __name__ == "__main__":
    unittest.main()

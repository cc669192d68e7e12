"""evloop's asyncio loop (evloop.new_event_loop()): the uvloop-style entry
points, and, on every implementation of it that can run here (loops.py:
the ctypes path, the native path where it is built), byte-exact echo
through an asyncio Protocol server and an asyncio streams server: 1
connection from 1 B to 4 MiB and 100 from 1 B to 256 KiB, half-close, a
client that never reads (the server's memory bounded, pause_writing
called, drain() waiting), peers that reset, alone and among 100 echoes,
protocol callbacks that raise, and seeded random sequences (plain and over
the library's TLS) of writes and
pauses checked against what was sent.

CPython's own asyncio test suites are run against this loop by
tests/asyncio_loop.rs (through cpython_asyncio.py).
"""

import asyncio
import os
import random
import socket
import ssl
import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402  (after the path is set)
from evloop import _implementation  # noqa: E402
from loops import EVLOOP_LOOPS, run  # noqa: E402

MIB = 1 << 20


def rss_kib():
    """This process's resident memory, KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class OnEachImplementation(unittest.TestCase):
    """A scenario (a coroutine function) run on each implementation of
    evloop's asyncio loop that can run here, each a subTest."""

    def run_async(self, main, *args):
        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                run(factory, main, *args)


class EchoProtocol(asyncio.Protocol):
    """data_received -> write; pauses reading while the peer does not read."""

    paused_writing = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close once the replies are sent

    def pause_writing(self):
        EchoProtocol.paused_writing += 1
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def stream_echo(reader, writer):
    try:
        while True:
            data = await reader.read(1000)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def start(kind):
    """An echo server of `kind` ("protocol" or "streams") and its port."""
    loop = asyncio.get_running_loop()
    if kind == "protocol":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(stream_echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def exchange(port, payload, chunk=65536):
    """Sends `payload`, half-closes, and returns everything read until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

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


def reset(sock):
    """Closes `sock` with RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def pattern(size, seed):
    """`size` bytes that depend on `seed` (random.randbytes is 3.9+)."""
    return random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")


class EntryPoints(unittest.TestCase):
    def test_new_event_loop_is_an_asyncio_loop(self):
        loop = evloop.new_event_loop()
        try:
            self.assertIsInstance(loop, asyncio.AbstractEventLoop)
            self.assertIsInstance(loop, evloop.EventLoop)
            self.assertEqual(loop.run_until_complete(asyncio.sleep(0, "done")), "done")
        finally:
            loop.close()

    def test_run_returns_the_result_and_sets_debug(self):
        async def main():
            return asyncio.get_running_loop().get_debug(), type(asyncio.get_running_loop())

        self.assertEqual(evloop.run(main(), debug=True), (True, evloop.EventLoop))

    def test_policy_and_install(self):
        previous = asyncio.get_event_loop_policy()
        try:
            evloop.install()
            self.assertIsInstance(asyncio.get_event_loop_policy(), evloop.EventLoopPolicy)
            loop = asyncio.new_event_loop()
            self.assertIsInstance(loop, evloop.EventLoop)
            loop.close()
        finally:
            asyncio.set_event_loop_policy(previous)

    def test_loop_factory_of_runner_and_asyncio_run(self):
        """asyncio.Runner(loop_factory=) from 3.11, asyncio.run(loop_factory=)
        from 3.12: whichever this Python has."""

        async def main():
            return type(asyncio.get_running_loop())

        if sys.version_info >= (3, 12):
            self.assertIs(asyncio.run(main(), loop_factory=evloop.EventLoop), evloop.EventLoop)
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=evloop.new_event_loop) as runner:
                self.assertIsInstance(runner.get_loop(), evloop.EventLoop)
                self.assertIs(runner.run(main()), evloop.EventLoop)
        else:
            self.assertIs(evloop.run(main()), evloop.EventLoop)



class Echo(OnEachImplementation):
    """Both servers, byte for byte."""

    def check_echo(self, kind, conns, size):
        async def main():
            server, port = await start(kind)
            async with server:
                payloads = [pattern(size, seed) for seed in range(conns)]
                replies = await asyncio.gather(*(exchange(port, p) for p in payloads))
                for payload, reply in zip(payloads, replies):
                    self.assertEqual(len(reply), len(payload))
                    self.assertTrue(reply == payload, "the echo differs")

        self.run_async(main)

    def test_one_connection_every_size(self):
        for kind in ("protocol", "streams"):
            for size in (1, 1000, 64 * 1024 + 1, 4 * MIB):
                with self.subTest(kind=kind, size=size):
                    self.check_echo(kind, 1, size)

    def test_hundred_connections(self):
        for kind in ("protocol", "streams"):
            for size in (1, 4096, 256 * 1024):
                with self.subTest(kind=kind, size=size):
                    self.check_echo(kind, 100, size)

    def test_half_close_keeps_the_other_direction(self):
        """The client shuts down its side first; the server's replies still come."""

        async def main():
            for kind in ("protocol", "streams"):
                server, port = await start(kind)
                async with server:
                    payload = pattern(MIB, 1)
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(payload)
                    writer.write_eof()
                    self.assertTrue(writer.can_write_eof())
                    self.assertEqual(await reader.read(-1), payload)
                    writer.close()
                    await writer.wait_closed()

        self.run_async(main)

    def test_a_client_that_never_reads_gets_a_bounded_server(self):
        """The server's write buffer stays near its high limit: the Protocol
        server's pause_writing() stops it reading, the streams server's
        drain() waits. Its memory grows by far less than it is sent."""

        async def main():
            for kind in ("protocol", "streams"):
                EchoProtocol.paused_writing = 0
                server, port = await start(kind)
                async with server:
                    sock = socket.create_connection(("127.0.0.1", port))
                    sock.setblocking(False)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                    loop = asyncio.get_running_loop()
                    sent = 0
                    block = b"x" * 65536
                    rss_before = rss_kib()
                    # Sends until the server stops taking bytes (nothing is read).
                    while True:
                        try:
                            await asyncio.wait_for(loop.sock_sendall(sock, block), 1.0)
                        except asyncio.TimeoutError:
                            break
                        sent += len(block)
                        if sent > 256 * MIB:
                            self.fail("the server went on reading 256 MiB that it could not send")
                    growth = rss_kib() - rss_before
                    transports = [t for t in loop._transports.values() if not t.is_closing()]
                    server_side = [t for t in transports if t.get_extra_info("peername") == sock.getsockname()]
                    self.assertEqual(len(server_side), 1)
                    queued = server_side[0].get_write_buffer_size()
                    self.assertLessEqual(queued, 8 * MIB)
                    # Above the high limit (64 KiB): the protocol was paused.
                    self.assertGreater(queued, server_side[0].get_write_buffer_limits()[1])
                    if kind == "protocol":
                        self.assertGreaterEqual(EchoProtocol.paused_writing, 1)
                    self.assertLess(growth, 32 * 1024, f"{kind}: grew by {growth} KiB, {sent >> 10} KiB sent")
                    sock.close()  # with unread bytes: a reset, which ends the handler
                    for _ in range(100):
                        if server_side[0].is_closing():
                            break
                        await asyncio.sleep(0.01)
                    self.assertTrue(server_side[0].is_closing())

        self.run_async(main)

    def test_a_peer_that_resets_ends_its_connection_only(self):
        async def main():
            for kind in ("protocol", "streams"):
                server, port = await start(kind)
                async with server:
                    for _ in range(10):
                        sock = socket.create_connection(("127.0.0.1", port))
                        sock.sendall(b"x" * 100000)
                        reset(sock)
                    await asyncio.sleep(0.05)
                    self.assertEqual(await exchange(port, b"still here"), b"still here")

        self.run_async(main)

    def test_resets_among_a_hundred_echoes(self):
        """100 connections at once, one in four reset halfway through its
        64 KiB: the others get theirs back byte for byte."""

        async def resetter(port, payload):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            await reader.read(1000)  # the echo has begun
            # RST instead of FIN: SO_LINGER with a zero timeout, then abort.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        async def main():
            for kind in ("protocol", "streams"):
                server, port = await start(kind)
                async with server:
                    payloads = [pattern(64 * 1024, seed) for seed in range(100)]
                    replies = await asyncio.gather(
                        *(resetter(port, p) if i % 4 == 0 else exchange(port, p) for i, p in enumerate(payloads))
                    )
                    for i, (payload, reply) in enumerate(zip(payloads, replies)):
                        if i % 4:
                            self.assertTrue(reply == payload, f"{kind}: the echo of connection {i} differs")
                    self.assertEqual(await exchange(port, b"still here"), b"still here")

        self.run_async(main)


class CtypesPath(unittest.TestCase):
    """What the ctypes path's own structure must keep (its selector is the
    Loop of its streams; a stream's fd number is taken while its transport
    is open)."""

    def new_loop(self):
        return _implementation.event_loop_class("ctypes")()

    def test_selector_is_the_loop_of_the_streams(self):
        loop = self.new_loop()
        try:
            self.assertIs(loop._selector._engine, loop._engine)
        finally:
            loop.close()

    def test_a_stream_the_library_ended_keeps_its_fd_number_until_connection_lost(self):
        # The peer resets a connection whose connection_made() has not run
        # yet: the library closes its duplicate of the fd, and the transport
        # keeps the end for after connection_made(). The socket keeps the
        # fd's number meanwhile (asyncio refuses a new socket whose number
        # its map gives to a transport that is not closing), and closes once
        # connection_lost() has returned.
        loop = self.new_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        try:
            accepted.setblocking(False)
            fd = accepted.fileno()
            lost = []

            class Lost(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.append(accepted.fileno())

            transport = loop._make_socket_transport(accepted, Lost())
            reset(client)  # RST, there before the iteration below
            loop._run_once()  # connection_made() is due: the wait is 0
            self.assertTrue(transport._gone, "the library has read the reset and closed its fd")
            self.assertEqual(accepted.fileno(), fd)
            os.fstat(fd)  # still open
            loop.run_until_complete(asyncio.sleep(0.01))
            self.assertEqual(lost, [fd], "open while connection_lost() ran")
            self.assertEqual(accepted.fileno(), -1, "closed after")
            self.assertTrue(transport.is_closing())
        finally:
            client.close()
            listener.close()
            loop.close()

    def test_a_failed_early_write_ends_its_transport_in_the_same_iteration(self):
        # Data on two streams in one batch: their answers go out right after
        # it. One peer has gone meanwhile, so its write fails and the library
        # closes its fd; the transport learns it before the iteration's
        # callbacks run.
        loop = self.new_loop()
        pairs = [socket.socketpair() for _ in range(2)]
        try:
            class Answer(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport

                def data_received(self, data):
                    if self is protocols[0]:
                        pairs[0][0].close()  # the peer goes before the answer
                    self.transport.write(data)

            protocols = []
            transports = []
            for _, ours in pairs:
                transport, protocol = loop.run_until_complete(loop.connect_accepted_socket(Answer, ours))
                protocols.append(protocol)
                transports.append(transport)
            fd = transports[0]._sock_fd
            for theirs, _ in pairs:
                theirs.sendall(b"ping")
            loop._stopping = True  # the iteration below waits for nothing
            loop._run_once()
            self.assertEqual(pairs[1][0].recv(100), b"ping")
            # Closing: asyncio gives a socket the number again once its
            # transport is (the socket keeps it until connection_lost()).
            self.assertTrue(transports[0].is_closing())
            self.assertIs(loop._transports.get(fd), transports[0])
        finally:
            loop._stopping = False
            for theirs, _ in pairs:
                theirs.close()
            loop.close()


class CallbackErrors(OnEachImplementation):
    def test_data_received_raising_closes_that_transport_only(self):
        async def main():
            contexts = []
            lost = []

            class Faulty(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport

                def data_received(self, data):
                    if data.startswith(b"boom"):
                        raise ZeroDivisionError("boom")
                    self.transport.write(data)

                def connection_lost(self, exc):
                    lost.append(exc)

            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda loop, context: contexts.append(context))
            server = await loop.create_server(Faulty, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with server:
                bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
                good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
                bad_writer.write(b"boom")
                self.assertEqual(await bad_reader.read(), b"")
                good_writer.write(b"fine")
                self.assertEqual(await good_reader.readexactly(4), b"fine")
                for writer in (bad_writer, good_writer):
                    writer.close()
                    await writer.wait_closed()
                for _ in range(1000):
                    if len(lost) == 2:
                        break
                    await asyncio.sleep(0.01)
            self.assertEqual(len(contexts), 1, contexts)
            self.assertIsInstance(contexts[0]["exception"], ZeroDivisionError)
            self.assertIn("data_received", contexts[0]["message"])
            self.assertIsInstance(lost[0], ZeroDivisionError)
            self.assertEqual(len(lost), 2)

        self.run_async(main)


class BufferedEcho(asyncio.BufferedProtocol):
    SIZE = 97  # small, so one read fills many buffers (a prime: never aligned)

    def __init__(self, sizes, transports):
        self.buffer = bytearray(self.SIZE)
        self.sizes = sizes
        self.transports = transports

    def connection_made(self, transport):
        self.transport = transport
        self.transports.append(transport)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.sizes.append(nbytes)
        self.transport.write(bytes(self.buffer[:nbytes]))


class RandomSequences(OnEachImplementation):
    """Seeded random writes, pauses and resumes of the server's reading,
    and limit changes: what comes back is what was sent, in order."""

    SEEDS = range(8)

    def run_seed(self, seed, buffered, tls=False):
        server_ssl = client_ssl = None
        if tls:  # the library's TLS streams (evloop.create_default_context)
            import tls_certs

            server_ssl = evloop.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ssl.load_cert_chain(tls_certs.path("server.pem"), tls_certs.path("server.key"))
            client_ssl = evloop.create_default_context(cafile=tls_certs.path("ca.pem"))

        async def main():
            rng = random.Random(seed)
            transports = []
            sizes = []

            class Recorder(EchoProtocol):
                def connection_made(self, transport):
                    super().connection_made(transport)
                    transports.append(transport)

            loop = asyncio.get_running_loop()
            factory = (lambda: BufferedEcho(sizes, transports)) if buffered else Recorder
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl)
            port = server.sockets[0].getsockname()[1]
            async with server:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost" if tls else None
                )
                sent = bytearray()
                for _ in range(60):
                    op = rng.random()
                    if op < 0.6:
                        chunk = pattern(rng.choice((1, 10, 1000, 70000)), rng.random())
                        writer.write(chunk)
                        sent += chunk
                    elif op < 0.75 and transports:
                        transports[0].pause_reading()
                        self.assertFalse(transports[0].is_reading())
                    elif op < 0.9 and transports:
                        transports[0].resume_reading()
                        self.assertTrue(transports[0].is_reading())
                    elif transports:
                        high = rng.choice((0, 1, 4096, 1 << 16))
                        transports[0].set_write_buffer_limits(high=high)
                        self.assertEqual(transports[0].get_write_buffer_limits()[1], high)
                    await asyncio.sleep(0 if rng.random() < 0.8 else 0.001)
                if transports:
                    transports[0].resume_reading()
                # The library's TLS streams half-close (close_notify), on
                # both paths.
                self.assertTrue(writer.can_write_eof())
                writer.write_eof()
                received = await reader.read(-1)
                self.assertEqual(len(received), len(sent))
                self.assertTrue(received == bytes(sent), f"seed {seed}: the echo differs")
                writer.close()
                await writer.wait_closed()
            if buffered:
                self.assertTrue(all(0 < n <= BufferedEcho.SIZE for n in sizes))

        self.run_async(main)

    def test_protocol(self):
        for seed in self.SEEDS:
            with self.subTest(seed=seed):
                self.run_seed(seed, False)

    def test_buffered_protocol(self):
        for seed in self.SEEDS:
            with self.subTest(seed=seed):
                self.run_seed(seed, True)

    def test_protocol_over_tls(self):
        for seed in self.SEEDS:
            with self.subTest(seed=seed):
                self.run_seed(seed, False, tls=True)

    def test_buffered_protocol_over_tls(self):
        for seed in range(4):
            with self.subTest(seed=seed):
                self.run_seed(seed, True, tls=True)



class AsyncioSSLProtocol(OnEachImplementation):
    """ssl= with a plain ssl.SSLContext: asyncio's SSLProtocol over evloop's
    transports, with two of CPython's bugs fixed (evloop/_sslproto.py;
    asyncio's own loop has them from 3.11 on)."""

    async def connect(self, factory):
        from loops import client_ssl_context, server_ssl_context

        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ssl_context(), server_hostname="localhost"
        )
        return server, reader, writer

    def test_bytearray_buffer_gets_the_bytes_of_every_record(self):
        # Writes made together go out as one TCP send of many TLS records,
        # each 60 bytes: most 97-byte reads of the server's bytearray cross
        # a record's end, where CPython's read went into a copy of the rest.
        records = [pattern(60, n) for n in range(40)]

        async def main():
            received = bytearray()
            complete = asyncio.get_running_loop().create_future()

            class Collector(asyncio.BufferedProtocol):
                buffer = bytearray(97)

                def get_buffer(self, sizehint):
                    return self.buffer

                def buffer_updated(self, nbytes):
                    received.extend(self.buffer[:nbytes])
                    if len(received) >= 60 * len(records) and not complete.done():
                        complete.set_result(None)

            server, _reader, writer = await self.connect(Collector)
            for record in records:
                writer.write(record)
            await complete
            self.assertTrue(received == b"".join(records), "the bytes differ")
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_zero_high_water_pauses_only_above_it(self):
        # An echo that stops reading while its writing is paused: left
        # paused with nothing buffered, it would never read the client's
        # close_notify, and the client's shutdown would time out.
        async def main():
            echoes = []

            class Recorder(EchoProtocol):
                paused = False

                def connection_made(self, transport):
                    super().connection_made(transport)
                    echoes.append(self)

                def pause_writing(self):
                    self.paused = True
                    super().pause_writing()

                def resume_writing(self):
                    self.paused = False
                    super().resume_writing()

            server, reader, writer = await self.connect(Recorder)
            # A first echo: what the server's handshake left to send is sent.
            writer.write(b"ping")
            self.assertEqual(await reader.readexactly(4), b"ping")
            (echo,) = echoes
            self.assertEqual(echo.transport.get_write_buffer_size(), 0)
            echo.transport.set_write_buffer_limits(high=0)
            self.assertFalse(echo.paused, "paused with nothing buffered")
            echo.transport.set_write_buffer_limits(high=0)
            self.assertFalse(echo.paused, "paused with nothing buffered")
            sent = b"".join(pattern(size, size) for size in (1, 10, 1000, 70000, 3))
            for at in range(0, len(sent), 7000):
                writer.write(sent[at : at + 7000])
            received = await reader.readexactly(len(sent))
            self.assertTrue(received == sent, "the echo differs")
            self.assertFalse(echo.paused, "left paused with nothing buffered")
            self.assertTrue(echo.transport.is_reading())
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.run_async(main)

if __name__ == "__main__":
    unittest.main()


class BufferedReadsAsTheQueueDrains(OnEachImplementation):
    def test_a_read_in_the_readiness_that_empties_the_queue(self):
        """A BufferedProtocol echo whose write queue empties in the same
        readiness as bytes arrive (the peer reads everything, then sends):
        those bytes are the ones read into the protocol's buffer, announced
        by buffer_updated(), and echoed byte for byte."""

        async def main():
            loop = asyncio.get_running_loop()
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            sizes = []
            transport, protocol = await loop.connect_accepted_socket(
                lambda: BufferedEcho(sizes, []), ours
            )
            sent = bytearray()
            received = bytearray()

            async def until_echoed():
                while sum(sizes) < len(sent):
                    await asyncio.sleep(0.001)

            def read_all():
                while True:
                    try:
                        data = theirs.recv(1 << 20)
                    except BlockingIOError:
                        return
                    self.assertTrue(data, "the server closed")
                    received.extend(data)

            try:
                for round_ in range(20):
                    # The peer sends without reading until the server's
                    # echoes wait in its write queue.
                    while transport.get_write_buffer_size() == 0:
                        chunk = pattern(16384, len(sent))
                        theirs.sendall(chunk)
                        sent += chunk
                        await until_echoed()
                    # Then reads all (the queue can go out in one write) and
                    # sends, before the loop looks: both in one readiness.
                    read_all()
                    chunk = pattern(1000, -1 - len(sent))
                    theirs.sendall(chunk)
                    sent += chunk
                    await until_echoed()
                while len(received) < len(sent):
                    await asyncio.sleep(0.001)
                    read_all()
                self.assertEqual(len(received), len(sent))
                self.assertTrue(received == sent, "the echo differs")
            finally:
                transport.close()
                theirs.close()

        self.run_async(main)

"""What evloop's asyncio loop must do as asyncio's SelectorEventLoop does
(issue 25, item 3), each scenario run on both loops (see loops.py) with the
same expected outcome:

- a protocol's callbacks run in the contextvars context that was current
  when create_server, create_connection, connect_accepted_socket or
  create_unix_server made its transport (TLS servers included);
- in debug mode, a handle's source traceback ends at the caller of call_soon;
- the transport's socket stays open, and attached, until connection_lost
  has returned (then asyncio closes it);
- callbacks scheduled before the loop waits run before the I/O callbacks
  of that wait;
- resume_writing comes once the write buffer is down to the low-water
  mark, not only once it is empty;
- a socket.socket subclass given as sock= has its recv/send overrides
  bypassed on evloop (the library does the I/O on the fd), not on asyncio's.
"""

import asyncio
import contextvars
import os
import socket
import struct
import sys
import tempfile
import unittest

from loops import LOOPS, client_ssl_context, run, server_ssl_context

VAR = contextvars.ContextVar("evloop_test_var", default="unset")
MIB = 1 << 20
BIG = bytes(range(256)) * (MIB // 256)  # what a protocol answers to b"big"


def reset(sock):
    """Closes `sock` with RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def wait_until(predicate, seconds=10.0):
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true in time")


class _Recording:
    """Notes each callback with the value of VAR it sees. Answers b"big"
    with BIG through small kernel buffers and a 16 KiB high-water mark, so
    that pause_writing and resume_writing come; closes on EOF."""

    def __init__(self, seen, done):
        self.seen = seen
        self.done = done
        self.received = b""

    def note(self, name):
        self.seen.append((name, VAR.get()))

    def connection_made(self, transport):
        self.note("connection_made")
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.set_write_buffer_limits(high=16384)

    def got(self, data):
        self.received += data
        if self.received.endswith(b"big"):
            self.received = b""
            self.transport.write(BIG)

    def pause_writing(self):
        self.note("pause_writing")

    def resume_writing(self):
        self.note("resume_writing")

    def eof_received(self):
        self.note("eof_received")
        return False

    def connection_lost(self, exc):
        self.note("connection_lost")
        if not self.done.done():
            self.done.set_result(None)


class Recorder(_Recording, asyncio.Protocol):
    def data_received(self, data):
        self.note("data_received")
        self.got(data)


class BufferedRecorder(_Recording, asyncio.BufferedProtocol):
    def __init__(self, seen, done):
        super().__init__(seen, done)
        self.buffer = bytearray(1000)

    def get_buffer(self, sizehint):
        self.note("get_buffer")
        return self.buffer

    def buffer_updated(self, nbytes):
        self.note("buffer_updated")
        self.got(bytes(self.buffer[:nbytes]))


async def drive(loop, peer):
    """The peer of a Recorder: asks for BIG, reads it, then shuts down its
    side and reads until the Recorder closes."""
    peer.setblocking(False)
    await loop.sock_sendall(peer, b"big")
    got = 0
    while got < len(BIG):
        chunk = await loop.sock_recv(peer, 65536)
        if not chunk:
            raise AssertionError(f"EOF after {got} bytes")
        got += len(chunk)
    peer.shutdown(socket.SHUT_WR)
    while await loop.sock_recv(peer, 65536):
        pass
    peer.close()


class ProtocolContext(unittest.TestCase):
    """asyncio copies the context when it makes a transport: the protocol's
    callbacks see what was set before the call, not what is set after it,
    nor the context of whoever runs the loop."""

    ALL = {"connection_made", "data_received", "pause_writing", "resume_writing", "eof_received", "connection_lost"}

    def check(self, scenario, expected_value, protocol=Recorder, expected=None):
        if expected is None:
            expected = set(self.ALL)
            if protocol is BufferedRecorder:
                expected = (expected - {"data_received"}) | {"get_buffer", "buffer_updated"}
        names = {}
        for name, factory in LOOPS:
            with self.subTest(loop=name, protocol=protocol.__name__):
                seen = []

                async def main():
                    loop = asyncio.get_running_loop()
                    done = loop.create_future()
                    await scenario(loop, lambda: protocol(seen, done))
                    await asyncio.wait_for(done, 30)

                VAR.set("the runner's")
                run(factory, main)
                self.assertEqual({value for _, value in seen}, {expected_value}, seen)
                names[name] = {callback for callback, _ in seen}
                self.assertLessEqual(expected, names[name])
        self.assertEqual(len(set(map(frozenset, names.values()))), 1, f"callbacks differ between loops: {names}")

    def small_receive_buffer(self, sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def test_create_server(self):
        async def scenario(loop, factory):
            VAR.set("create_server")
            server = await loop.create_server(factory, "127.0.0.1", 0)
            VAR.set("after")
            peer = socket.socket()
            self.small_receive_buffer(peer)
            await loop.sock_connect(peer, server.sockets[0].getsockname())
            await drive(loop, peer)
            server.close()

        for protocol in (Recorder, BufferedRecorder):
            self.check(scenario, "create_server", protocol)

    def test_create_connection(self):
        async def scenario(loop, factory):
            listener = socket.create_server(("127.0.0.1", 0))
            self.small_receive_buffer(listener)  # the accepted socket's
            listener.setblocking(False)
            VAR.set("create_connection")
            await loop.create_connection(factory, *listener.getsockname())
            VAR.set("after")
            peer, _ = await loop.sock_accept(listener)
            listener.close()
            await drive(loop, peer)

        for protocol in (Recorder, BufferedRecorder):
            self.check(scenario, "create_connection", protocol)

    def test_connect_accepted_socket(self):
        async def scenario(loop, factory):
            ours, peer = socket.socketpair()
            self.small_receive_buffer(peer)
            VAR.set("connect_accepted_socket")
            await loop.connect_accepted_socket(factory, ours)
            VAR.set("after")
            await drive(loop, peer)

        self.check(scenario, "connect_accepted_socket")

    def test_create_unix_server(self):
        async def scenario(loop, factory):
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "sock")
                VAR.set("create_unix_server")
                server = await loop.create_unix_server(factory, path)
                VAR.set("after")
                peer = socket.socket(socket.AF_UNIX)
                self.small_receive_buffer(peer)
                await loop.sock_connect(peer, path)
                await drive(loop, peer)
                server.close()

        self.check(scenario, "create_unix_server")

    def test_tls_server(self):
        """asyncio's SSLProtocol over the loop's transport: the application
        protocol's callbacks come through it, in the same context."""

        async def scenario(loop, factory):
            VAR.set("tls")
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl_context())
            VAR.set("after")
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname(), ssl=client_ssl_context(), server_hostname="localhost"
            )
            writer.write(b"big")
            self.assertEqual(await reader.readexactly(len(BIG)), BIG)
            writer.close()
            server.close()

        self.check(scenario, "tls", expected={"connection_made", "data_received", "connection_lost"})


class DebugMode(unittest.TestCase):
    def test_source_traceback_names_the_caller_of_call_soon(self):
        def schedule(loop):
            return loop.call_soon(lambda: None)  # the frame the traceback must end with

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                loop = factory()
                try:
                    loop.set_debug(True)
                    handle = schedule(loop)
                    frame = handle._source_traceback[-1]
                    self.assertEqual((frame.name, frame.filename), ("schedule", __file__))
                    self.assertIn("call_soon", frame.line)
                    handle.cancel()
                finally:
                    loop.close()


class SocketUntilConnectionLost(unittest.TestCase):
    """The transport's socket is open until connection_lost has returned,
    also when the peer has reset the connection; asyncio closes it then."""

    def test_a_handler_of_a_reset_connection_can_ask_its_socket(self):
        connections = 50

        async def main():
            failures = []
            handled = []

            async def handler(reader, writer):
                try:
                    writer.get_extra_info("socket").getsockname()
                except OSError as exc:
                    failures.append(exc)
                handled.append(None)
                writer.close()

            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            for _ in range(connections):
                reset(socket.create_connection(server.sockets[0].getsockname()))
            await wait_until(lambda: len(handled) == connections)
            server.close()
            return failures

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                self.assertEqual(run(factory, main), [])

    def test_connection_lost_sees_the_socket_open_and_it_closes_after(self):
        async def main():
            loop = asyncio.get_running_loop()
            seen = {}
            done = loop.create_future()

            class Watcher(asyncio.Protocol):
                def connection_made(self, transport):
                    self.sock = transport.get_extra_info("socket")

                def connection_lost(self, exc):
                    seen["error"] = type(exc).__name__
                    seen["open in connection_lost"] = self.sock.fileno() != -1
                    seen["its address"] = self.sock.getsockname() == address
                    loop.call_soon(lambda: done.set_result(self.sock.fileno()))

            listener = socket.create_server(("127.0.0.1", 0))
            listener.setblocking(False)
            await loop.create_connection(Watcher, *listener.getsockname())
            peer, address = await loop.sock_accept(listener)
            listener.close()
            reset(peer)
            seen["fileno after connection_lost"] = await asyncio.wait_for(done, 10)
            return seen

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                self.assertEqual(
                    run(factory, main),
                    {
                        "error": "ConnectionResetError",
                        "open in connection_lost": True,
                        "its address": True,
                        "fileno after connection_lost": -1,
                    },
                )


class Order(unittest.TestCase):
    def test_callbacks_scheduled_before_a_wait_run_before_its_io_callbacks(self):
        async def main():
            loop = asyncio.get_running_loop()
            order = []
            ours, peer = socket.socketpair()

            class Reader(asyncio.Protocol):
                def data_received(self, data):
                    order.append("data_received")

            await loop.connect_accepted_socket(Reader, ours)
            await asyncio.sleep(0.01)  # connection_made and the reader are set up

            def before_the_wait():
                peer.send(b"x")  # ready when the loop next looks
                loop.call_soon(order.append, "call_soon")

            loop.call_soon(before_the_wait)
            await wait_until(lambda: len(order) == 2)
            peer.close()
            return order

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                self.assertEqual(run(factory, main), ["call_soon", "data_received"])


class FlowControl(unittest.TestCase):
    def test_resume_writing_comes_at_the_low_water_mark(self):
        high, low = 256 * 1024, 128 * 1024

        async def main():
            loop = asyncio.get_running_loop()
            sizes = {}

            class Writer(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport
                    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                    transport.set_write_buffer_limits(high=high, low=low)
                    transport.write(BIG)

                def pause_writing(self):
                    sizes["at pause"] = self.transport.get_write_buffer_size()

                def resume_writing(self):
                    sizes["at resume"] = self.transport.get_write_buffer_size()

            ours, peer = socket.socketpair()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            peer.setblocking(False)
            await loop.connect_accepted_socket(Writer, ours)
            got = 0
            while got < len(BIG):
                got += len(await loop.sock_recv(peer, 4096))
            peer.close()
            return sizes

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                sizes = run(factory, main)
                self.assertGreater(sizes["at pause"], high)
                self.assertGreater(sizes["at resume"], 0, "resume_writing came only once the buffer was empty")
                self.assertLessEqual(sizes["at resume"], low)


class SocketSubclass(unittest.TestCase):
    """evloop reads and writes the fd of a socket given as sock= itself
    (as uvloop does), so a subclass's recv/send are not called; asyncio's
    transport calls them. Either way the bytes arrive."""

    def test_recv_and_send_overrides_are_bypassed_on_evloop(self):
        calls = []

        class Spy(socket.socket):
            def recv(self, *args):
                calls.append("recv")
                return super().recv(*args)

            def recv_into(self, *args):
                calls.append("recv_into")
                return super().recv_into(*args)

            def send(self, *args):
                calls.append("send")
                return super().send(*args)

        async def main():
            loop = asyncio.get_running_loop()
            a, peer = socket.socketpair()
            ours = Spy(a.family, a.type, fileno=a.detach())
            reader, writer = await asyncio.open_connection(sock=ours)
            peer.sendall(b"ping")
            self.assertEqual(await reader.readexactly(4), b"ping")
            writer.write(b"pong")
            await writer.drain()
            peer.setblocking(False)
            self.assertEqual(await loop.sock_recv(peer, 4), b"pong")
            writer.close()
            peer.close()

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                calls.clear()
                run(factory, main)
                if name == "asyncio":
                    self.assertTrue(calls, "asyncio's transport calls the socket's methods")
                else:
                    self.assertEqual(calls, [])


if __name__ == "__main__":
    unittest.main()

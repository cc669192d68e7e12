"""The asyncio loops' TLS transports on the library's TLS streams
(``ssl=`` with evloop.create_default_context()), on each implementation of
evloop's asyncio loop (the native path and the ctypes path): byte-exact
Protocol and BufferedProtocol echoes of 1 B to 4 MiB, half-close
(close_notify), a self-signed certificate and a wrong host name refused
with the ssl module's exceptions, a server that stays up through a client
that stalls its handshake (bounded by ssl_handshake_timeout) and one that
sends garbage, and no transport or protocol left alive (weak references)
once the connections are closed, aborted or failed."""

import asyncio
import gc
import socket
import ssl
import sys
import unittest
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tls_certs  # noqa: E402
from loops import EVLOOP_LOOPS, KEYCERT, run  # noqa: E402
from test_asyncio_loop import pattern  # noqa: E402
from test_tls_streams import client_context, is_library_tls, server_context  # noqa: E402

SIZES = (1, 2, 1000, 16383, 16384, 16385, 100_003, 1 << 20, 4 << 20)


def setUpModule():
    tls_certs.cert_dir()


class Echo(asyncio.Protocol):
    """Echoes; an eof_received() keeps the transport open and answers b'bye'."""

    made = 0

    def connection_made(self, transport):
        type(self).made += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        self.transport.write(b"bye")
        self.transport.close()
        return True


class BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self):
        self.buffer = bytearray(4099)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.transport.write(bytes(self.buffer[:nbytes]))


class Collector(asyncio.Protocol):
    """A client that collects what it receives, and when it ends."""

    def __init__(self, loop):
        self.received = bytearray()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.wanted = 0
        self.enough = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += data
        if len(self.received) >= self.wanted and not self.enough.done():
            self.enough.set_result(None)

    def eof_received(self):
        self.eof.set_result(bytes(self.received))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class OnEvloop(unittest.TestCase):
    def run_async(self, main, *args):
        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                run(factory, main, *args)


class Echoes(OnEvloop):
    def echo_every_size(self, factory):
        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            for size in SIZES:
                transport, client = await loop.create_connection(
                    lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
                )
                self.assertTrue(is_library_tls(transport))
                payload = pattern(size, size)
                client.wanted = size
                transport.write(payload)
                await asyncio.wait_for(client.enough, 60)
                self.assertEqual(len(client.received), size)
                self.assertTrue(client.received == payload, f"{size} bytes: the echo differs")
                transport.close()
                self.assertIsNone(await asyncio.wait_for(client.lost, 30))
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_protocol_echo_1_byte_to_4_mib(self):
        self.echo_every_size(Echo)

    def test_buffered_protocol_echo_1_byte_to_4_mib(self):
        self.echo_every_size(BufferedEcho)

    def test_half_close_sends_close_notify_and_keeps_reading(self):
        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            transport, client = await loop.create_connection(
                lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
            )
            self.assertTrue(transport.can_write_eof())
            payload = pattern(300_000, 5)
            transport.write(payload)
            transport.write_eof()  # close_notify after the payload; the reading side stays open
            # The server echoes everything, hears the EOF, answers and closes.
            received = await asyncio.wait_for(client.eof, 60)
            self.assertEqual(len(received), len(payload) + 3)
            self.assertTrue(received == payload + b"bye")
            self.assertIsNone(await asyncio.wait_for(client.lost, 30))
            server.close()
            await server.wait_closed()

        self.run_async(main)


    def test_pause_reading_inside_a_chunk_holds_its_rest_until_resume(self):
        """A BufferedProtocol with small buffers (a TLS record's plaintext
        spans many) that pauses reading from buffer_updated() gets no data
        callback until resume_reading(); then the rest, in order, and the
        peer's EOF (close_notify) after all of it."""

        class Pausing(asyncio.BufferedProtocol):
            def __init__(self, loop):
                self.loop = loop
                self.buffer = bytearray(101)
                self.received = bytearray()
                self.updates = 0
                self.paused = False
                self.while_paused = 0
                self.eof_at = loop.create_future()

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, sizehint):
                return self.buffer

            def buffer_updated(self, nbytes):
                if self.paused:
                    self.while_paused += 1
                self.received += self.buffer[:nbytes]
                self.updates += 1
                if self.updates % 7 == 0 and not self.paused:
                    self.paused = True
                    self.transport.pause_reading()
                    self.loop.call_later(0.002, self.resume)

            def eof_received(self):
                self.eof_at.set_result(len(self.received))
                return True  # the client hears the transport close()

            def resume(self):
                self.paused = False
                self.transport.resume_reading()

        async def main():
            loop = asyncio.get_running_loop()
            protocols = []

            def factory():
                protocols.append(Pausing(loop))
                return protocols[-1]

            payload = pattern(200_000, 11)
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            transport, _client = await loop.create_connection(
                lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
            )
            try:
                transport.write(payload)
                transport.write_eof()
                while not protocols:
                    await asyncio.sleep(0.001)
                self.assertEqual(await asyncio.wait_for(protocols[0].eof_at, 60), len(payload))
                self.assertTrue(is_library_tls(protocols[0].transport))
                self.assertEqual(protocols[0].while_paused, 0, "buffer_updated() while paused")
                self.assertEqual(len(protocols[0].received), len(payload))
                self.assertTrue(protocols[0].received == payload, "the bytes differ")
            finally:
                transport.close()
                for protocol in protocols:  # kept open by eof_received(); from 3.12 wait_closed() waits for it
                    protocol.transport.close()
                server.close()
                await server.wait_closed()

        self.run_async(main)


class Refusals(OnEvloop):
    def test_a_self_signed_certificate_is_refused(self):
        async def main():
            loop = asyncio.get_running_loop()
            context = __import__("evloop").create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(KEYCERT)  # self-signed: the client's CA did not sign it
            Echo.made = 0
            server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=context)
            port = server.sockets[0].getsockname()[1]
            with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                await loop.create_connection(
                    lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
                )
            # rustls's reason (this certificate is a CA's, used as the server's).
            self.assertIn("CERTIFICATE_VERIFY_FAILED", str(caught.exception))
            self.assertIn("invalid peer certificate", caught.exception.verify_message)
            self.assertEqual(Echo.made, 0)  # the server's protocol was never connected
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_a_wrong_host_name_is_refused_and_the_protocol_never_connected(self):
        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            made = []

            class Client(Collector):
                def connection_made(self, transport):
                    made.append(transport)

                def connection_lost(self, exc):
                    made.append(exc)

            with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                await loop.create_connection(
                    lambda: Client(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="example.com"
                )
            self.assertEqual(caught.exception.verify_code, 62)
            self.assertIn("example.com", caught.exception.verify_message)
            await asyncio.sleep(0.05)
            self.assertEqual(made, [])  # neither connection_made nor connection_lost
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_start_tls_refused_raises_and_closes_the_transport(self):
        async def main():
            loop = asyncio.get_running_loop()
            accepted = loop.create_future()

            class Upgrading(asyncio.Protocol):
                def connection_made(self, transport):
                    loop.create_task(self.upgrade(transport))

                async def upgrade(self, transport):
                    try:
                        accepted.set_result(await loop.start_tls(transport, Echo(), server_context(), server_side=True))
                    except ssl.SSLError as exc:  # the client's alert: it refused the certificate
                        accepted.set_exception(exc)

            server = await loop.create_server(Upgrading, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            lost = []

            class Plain(Collector):
                def connection_lost(self, exc):
                    lost.append(exc)

            transport, _ = await loop.create_connection(lambda: Plain(loop), "127.0.0.1", port)
            upgraded = Plain(loop)
            with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                await loop.start_tls(transport, upgraded, client_context(), server_hostname="example.com")
            self.assertEqual(caught.exception.verify_code, 62)
            self.assertTrue(transport.is_closing())
            with self.assertRaises(ssl.SSLError):
                await asyncio.wait_for(accepted, 30)
            server.close()
            await server.wait_closed()

        self.run_async(main)


def blocking_client(port, send, timeout=30):
    """Connects, sends `send` (or nothing), and reads to the end: what came
    (bytes, or the error that ended the reading)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        if send:
            raw.sendall(send)
        received = b""
        try:
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    return received
                received += chunk
        except OSError as exc:
            return exc


class MisbehavingClients(OnEvloop):
    """Clients that stall or send garbage: the server ends them and serves
    the next one; its protocols never hear of them."""

    def check(self, send):
        async def main():
            loop = asyncio.get_running_loop()
            Echo.made = 0
            server = await loop.create_server(
                Echo, "127.0.0.1", 0, ssl=server_context(), ssl_handshake_timeout=0.3
            )
            port = server.sockets[0].getsockname()[1]
            started = loop.time()
            # The stalled (or garbage) client's connection is ended by the server.
            outcome = await loop.run_in_executor(None, blocking_client, port, send)
            if send is None:
                # The handshake timeout (0.3 s without a byte) ended it, not the client's 30 s.
                self.assertLess(loop.time() - started, 20)
                self.assertTrue(outcome == b"" or isinstance(outcome, ConnectionResetError), outcome)
            elif not isinstance(outcome, OSError):
                # At most a TLS alert before the end.
                self.assertLess(len(outcome), 64)
            self.assertEqual(Echo.made, 0)
            # The server serves the next client.
            transport, client = await loop.create_connection(
                lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
            )
            client.wanted = 5
            transport.write(b"still")
            await asyncio.wait_for(client.enough, 30)
            self.assertEqual(bytes(client.received), b"still")
            transport.close()
            await asyncio.wait_for(client.lost, 30)
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_a_stalled_handshake_is_bounded_by_the_handshake_timeout(self):
        self.check(None)

    def test_a_client_that_sends_garbage(self):
        self.check(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" * 3)

    def test_a_client_that_drops_after_its_hello(self):
        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]

            def hello_then_drop():
                context = ssl.create_default_context(cafile=tls_certs.path("ca.pem"))
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                    raw.sendall(outgoing.read())

            for _ in range(20):
                await loop.run_in_executor(None, hello_then_drop)
            transport, client = await loop.create_connection(
                lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
            )
            client.wanted = 2
            transport.write(b"ok")
            await asyncio.wait_for(client.enough, 30)
            transport.close()
            await asyncio.wait_for(client.lost, 30)
            server.close()
            await server.wait_closed()

        self.run_async(main)


class Lifetimes(OnEvloop):
    def test_no_transport_or_protocol_outlives_its_connection(self):
        refs = []

        async def main():
            loop = asyncio.get_running_loop()

            class Tracked(Echo):
                def connection_made(self, transport):
                    super().connection_made(transport)
                    refs.append(weakref.ref(transport))
                    refs.append(weakref.ref(self))

            server = await loop.create_server(Tracked, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            for how in ("close", "abort", "eof", "wrong name"):
                name = "example.com" if how == "wrong name" else "localhost"
                try:
                    transport, client = await loop.create_connection(
                        lambda: Collector(loop), "127.0.0.1", port, ssl=client_context(), server_hostname=name
                    )
                except ssl.SSLCertVerificationError:
                    continue
                refs.append(weakref.ref(transport))
                refs.append(weakref.ref(client))
                client.wanted = 100_000
                transport.write(pattern(100_000, 1))
                await asyncio.wait_for(client.enough, 30)
                if how == "close":
                    transport.close()
                elif how == "abort":
                    transport.abort()
                else:
                    transport.write_eof()
                await asyncio.wait_for(client.lost, 30)
                del transport, client
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)

        self.run_async(main)
        gc.collect()
        alive = [ref() for ref in refs if ref() is not None]
        self.assertEqual(alive, [])
        self.assertGreaterEqual(len(refs), 6 * len(EVLOOP_LOOPS))


if __name__ == "__main__":
    unittest.main()

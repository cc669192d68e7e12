"""TLS on the library's streams from Python: evloop.Loop's start_server(tls=),
open_connection(tls=) and Transport.start_tls(); the asyncio loop's ssl=
with evloop.create_default_context() (the library's TLS, no SSLProtocol),
byte-exact echoes, ALPN, refused names, the ssl module's exceptions,
interop with the standard library's ssl (OpenSSL) on both sides, start_tls,
get_extra_info compared with asyncio's own loop, timeouts, and a plain
ssl.SSLContext still on asyncio's SSLProtocol. Certificates: tls_certs.py."""

import asyncio
import socket
import ssl
import sys
import threading
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tls_certs  # noqa: E402
from loops import EVLOOP_LOOPS, REFERENCE, run  # noqa: E402
from test_asyncio_loop import pattern, stream_echo  # noqa: E402

import evloop  # noqa: E402
from evloop import TLSConfig  # noqa: E402
from evloop import _asyncio_tls as asyncio_tls  # noqa: E402
from evloop.tls import EvloopSSLContext  # noqa: E402

SIZES = (1, 1000, 16384, 100_003, 1 << 20)


def setUpModule():
    tls_certs.cert_dir()


def server_context(alpn=None):
    context = evloop.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_certs.path("server.pem"), tls_certs.path("server.key"))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def client_context(alpn=None):
    context = evloop.create_default_context(cafile=tls_certs.path("ca.pem"))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def server_der():
    return ssl.PEM_cert_to_DER_cert(Path(tls_certs.path("server.pem")).read_text())


def is_library_tls(transport):
    """The transport is a library TLS stream (not asyncio's SSLProtocol)."""
    return getattr(transport, "_tls", None) is not None


# ---- evloop.Loop ---------------------------------------------------------------------


class LoopEcho(evloop.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False


class LoopClient(evloop.Protocol):
    def __init__(self, loop, payload):
        self.loop, self.payload = loop, payload
        self.made, self.received, self.lost = None, bytearray(), "not yet"

    def connection_made(self, transport):
        session = transport.tls
        self.made = (session.version(), session.selected_alpn_protocol(), session.getpeercert(True), session.sni)
        self.transport = transport
        transport.write(self.payload)
        transport.write_eof()

    def data_received(self, data):
        self.received += data

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = exc
        self.loop.stop()


class LoopTLS(unittest.TestCase):
    def configs(self):
        server = TLSConfig(server=True)
        server.load_cert_chain(tls_certs.path("server.pem"), tls_certs.path("server.key"))
        server.set_alpn_protocols(["h2", "http/1.1"])
        client = TLSConfig(server=False)
        client.load_verify_locations(tls_certs.path("ca.pem"))
        client.set_alpn_protocols(["http/1.1"])
        return server, client

    def test_echo_through_tls_listener_and_tls_connect(self):
        server_config, client_config = self.configs()
        with evloop.Loop() as loop:
            accepted = []

            class Echo(LoopEcho):
                def connection_made(self, transport):
                    super().connection_made(transport)
                    accepted.append((transport.tls.version(), transport.tls.sni, transport.get_extra_info("cipher")))

            server = loop.start_server(Echo, "127.0.0.1", 0, tls=server_config)
            for size in SIZES:
                with self.subTest(size=size):
                    client = LoopClient(loop, pattern(size, size))
                    loop.open_connection(lambda: client, "127.0.0.1", server.port, tls=client_config,
                                         server_hostname="localhost")
                    loop.run()
                    self.assertIsNone(client.lost)
                    self.assertEqual(client.made, ("TLSv1.3", "http/1.1", server_der(), "localhost"))
                    self.assertTrue(bytes(client.received) == client.payload, f"{size} bytes: the echo differs")
            self.assertEqual(accepted[0][:2], ("TLSv1.3", "localhost"))
            self.assertEqual(accepted[0][2][1:], ("TLSv1.3", 256))
            server.close()

    def test_a_wrong_name_is_refused_with_a_certificate_error(self):
        server_config, client_config = self.configs()
        with evloop.Loop() as loop:
            server = loop.start_server(LoopEcho, "127.0.0.1", 0, tls=server_config)
            client = LoopClient(loop, b"never")
            loop.open_connection(lambda: client, "127.0.0.1", server.port, tls=client_config,
                                 server_hostname="example.com")
            loop.run()
            self.assertIsNone(client.made)  # no connection_made
            self.assertIsInstance(client.lost, ssl.SSLCertVerificationError)
            self.assertEqual(client.lost.verify_code, 62)
            self.assertIn("example.com", str(client.lost))
            server.close()

    def test_no_common_alpn_is_a_handshake_error(self):
        server_config, client_config = self.configs()
        client_config = TLSConfig(server=False)
        client_config.load_verify_locations(tls_certs.path("ca.pem"))
        client_config.set_alpn_protocols(["spdy/1"])
        with evloop.Loop() as loop:
            server = loop.start_server(LoopEcho, "127.0.0.1", 0, tls=server_config)
            client = LoopClient(loop, b"never")
            loop.open_connection(lambda: client, "127.0.0.1", server.port, tls=client_config,
                                 server_hostname="localhost")
            loop.run()
            self.assertIsNone(client.made)
            self.assertIsInstance(client.lost, ssl.SSLError)
            self.assertNotIsInstance(client.lost, ssl.SSLCertVerificationError)
            server.close()

    def test_start_tls_on_plain_streams(self):
        server_config, client_config = self.configs()
        with evloop.Loop() as loop:
            events = []

            class StartTLSServer(LoopEcho):
                def data_received(self, data):
                    if self.transport.tls is None:
                        events.append(("server plain", data))
                        self.transport.write(b"go ahead\n")
                        self.transport.start_tls(server_config)
                    else:
                        self.transport.write(data)

                def tls_started(self):
                    events.append(("server tls", self.transport.tls.version()))

            class StartTLSClient(LoopClient):
                def connection_made(self, transport):
                    self.transport = transport
                    transport.write(b"STARTTLS\n")

                def data_received(self, data):
                    if self.transport.tls is None:
                        events.append(("client plain", data))
                        self.transport.start_tls(client_config, "localhost")
                        self.transport.write(self.payload)
                        self.transport.write_eof()
                    else:
                        self.received += data

                def tls_started(self):
                    events.append(("client tls", self.transport.tls.selected_alpn_protocol()))

            server = loop.start_server(StartTLSServer, "127.0.0.1", 0)
            client = StartTLSClient(loop, pattern(200_000, 0))
            loop.open_connection(lambda: client, "127.0.0.1", server.port)
            loop.run()
            self.assertIsNone(client.lost)
            self.assertTrue(bytes(client.received) == client.payload)
            self.assertIn(("server plain", b"STARTTLS\n"), events)
            self.assertIn(("client plain", b"go ahead\n"), events)
            self.assertIn(("client tls", "http/1.1"), events)
            self.assertIn(("server tls", "TLSv1.3"), events)
            server.close()

    def test_configs_of_the_wrong_side_are_refused(self):
        server_config, client_config = self.configs()
        with evloop.Loop() as loop:
            with self.assertRaises(ValueError):
                loop.start_server(LoopEcho, "127.0.0.1", 0, tls=client_config)
            with self.assertRaises(ValueError):
                loop.open_connection(LoopEcho, "127.0.0.1", 1, tls=server_config)


# ---- asyncio -------------------------------------------------------------------------


class AsyncioEcho(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class OnEvloop(unittest.TestCase):
    def run_async(self, main, *args):
        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                run(factory, main, name, *args)


class AsyncioTLS(OnEvloop):
    def test_protocol_and_streams_echo_every_size(self):
        async def main(name):
            loop = asyncio.get_running_loop()
            protocol_server = await loop.create_server(AsyncioEcho, "127.0.0.1", 0, ssl=server_context(["h2"]))
            streams_server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_context(["h2"]))
            context = client_context(["h2", "http/1.1"])
            for server in (protocol_server, streams_server):
                port = server.sockets[0].getsockname()[1]
                for size in SIZES:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                                   server_hostname="localhost")
                    self.assertTrue(is_library_tls(writer.transport))
                    self.assertEqual(writer.get_extra_info("ssl_object").selected_alpn_protocol(), "h2")
                    payload = pattern(size, size)
                    writer.write(payload)
                    received = await reader.readexactly(size)
                    self.assertTrue(received == payload, f"{size} bytes: the echo differs")
                    writer.close()
                    await writer.wait_closed()
                server.close()
                await server.wait_closed()

        self.run_async(main)

    def test_wrong_hostname_raises_certificate_verification_error(self):
        async def main(name):
            server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_context())
            port = server.sockets[0].getsockname()[1]
            with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                await asyncio.open_connection("127.0.0.1", port, ssl=client_context(), server_hostname="example.com")
            self.assertEqual(caught.exception.verify_code, 62)  # X509_V_ERR_HOSTNAME_MISMATCH, as OpenSSL's
            self.assertIn("example.com", caught.exception.verify_message)
            # An unknown CA: the system's roots do not know the test CA.
            with self.assertRaises(ssl.SSLCertVerificationError):
                await asyncio.open_connection("127.0.0.1", port, ssl=evloop.create_default_context(),
                                              server_hostname="localhost")
            # The server's failed handshakes cost it nothing: it serves the next client.
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                           server_hostname="localhost")
            writer.write(b"still here")
            self.assertEqual(await reader.readexactly(10), b"still here")
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_start_tls_both_sides(self):
        async def main(name):
            loop = asyncio.get_running_loop()
            done = loop.create_future()

            class Upgrading(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport

                def data_received(self, data):
                    if data == b"STARTTLS\n":
                        self.transport.write(b"OK\n")
                        loop.create_task(self.upgrade())

                async def upgrade(self):
                    transport = await loop.start_tls(self.transport, AsyncioEcho(), server_context(), server_side=True)
                    transport.get_protocol().connection_made(transport)
                    done.set_result(transport)

            server = await loop.create_server(Upgrading, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            self.assertEqual(await reader.readline(), b"OK\n")
            transport = await loop.start_tls(writer.transport, writer.transport.get_protocol(), client_context(),
                                             server_hostname="localhost")
            server_transport = await done
            self.assertIs(transport, writer.transport)  # the same transport, now speaking TLS
            self.assertTrue(is_library_tls(transport))
            self.assertTrue(is_library_tls(server_transport))
            self.assertEqual(transport.get_extra_info("ssl_object").version(), "TLSv1.3")
            payload = pattern(300_000, 0)
            transport.write(payload)
            self.assertTrue(await reader.readexactly(len(payload)) == payload)
            transport.close()
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_handshake_timeout_aborts(self):
        async def main(name):
            with socket.socket() as silent:  # accepts (in the backlog) and says nothing
                silent.bind(("127.0.0.1", 0))
                silent.listen()
                port = silent.getsockname()[1]
                with self.assertRaises(ConnectionAbortedError):
                    await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                  server_hostname="localhost", ssl_handshake_timeout=0.2)

        self.run_async(main)

    def test_shutdown_timeout_bounds_a_close_whose_queue_is_not_read(self):
        # ssl_shutdown_timeout is an argument from Python 3.11 on; before, the
        # evloop loops' default (SSL_SHUTDOWN_TIMEOUT, made short here) bounds it.
        with mock.patch.object(asyncio_tls, "SSL_SHUTDOWN_TIMEOUT", 0.3):
            self._shutdown_timeout()

    def _shutdown_timeout(self):
        async def main(name):
            timeout = {"ssl_shutdown_timeout": 0.3} if sys.version_info >= (3, 11) else {}
            loop = asyncio.get_running_loop()
            lost = loop.create_future()

            class Flooder(asyncio.Protocol):
                def connection_made(self, transport):
                    transport.write(bytes(32 << 20))  # more than the sockets hold
                    transport.close()  # waits for the queue, which the client never reads

                def connection_lost(self, exc):
                    lost.set_result(exc)

            server = await loop.create_server(Flooder, "127.0.0.1", 0, ssl=server_context(), **timeout)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                           server_hostname="localhost")
            # Ended by the timeout, not by the peer, as asyncio's SSL transport ends.
            self.assertIsInstance(await asyncio.wait_for(lost, 60), TimeoutError)
            writer.close()
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_a_plain_ssl_context_still_goes_through_sslprotocol(self):
        async def main(name):
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(tls_certs.path("server.pem"), tls_certs.path("server.key"))
            client_ctx = ssl.create_default_context(cafile=tls_certs.path("ca.pem"))
            unsupported = client_context()
            unsupported.set_ciphers("ECDHE+AESGCM")  # the library takes no cipher list
            server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_ctx)
            port = server.sockets[0].getsockname()[1]
            for context in (client_ctx, unsupported):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                               server_hostname="localhost")
                self.assertFalse(is_library_tls(writer.transport))
                self.assertIsInstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
                writer.write(pattern(70_000, 0))
                self.assertTrue(await reader.readexactly(70_000) == pattern(70_000, 0))
                writer.close()
                await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.run_async(main)

    def test_the_native_config_is_kept_per_context_until_it_changes(self):
        context = client_context()
        first = context.native_config()
        self.assertIs(context.native_config(), first)
        context.set_alpn_protocols(["h2"])
        second = context.native_config()
        self.assertIsNot(second, first)
        context.check_hostname = False
        self.assertIsNot(context.native_config(), second)
        context.set_ciphers("ECDHE+AESGCM")
        self.assertIsNone(context.native_config())


class Interop(OnEvloop):
    """evloop's TLS against the standard library's (OpenSSL) on a loop of
    its own in another thread: each side as client and as server."""

    def stdlib_server(self, context):
        """An asyncio echo server on the standard library's loop with `context`, in a thread."""
        started = threading.Event()
        holder = {}

        def serve():
            loop = asyncio.new_event_loop()
            holder["loop"] = loop

            async def main():
                server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=context)
                holder["port"] = server.sockets[0].getsockname()[1]
                holder["stop"] = asyncio.Event()
                started.set()
                await holder["stop"].wait()
                server.close()
                await server.wait_closed()

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        self.assertTrue(started.wait(30))

        def stop():
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
            thread.join(30)

        self.addCleanup(stop)
        return holder["port"]

    def test_evloop_client_against_a_stdlib_server(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_certs.path("server.pem"), tls_certs.path("server.key"))
        context.set_alpn_protocols(["http/1.1", "h2"])
        port = self.stdlib_server(context)

        async def main(name):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(["h2"]),
                                                           server_hostname="localhost")
            self.assertTrue(is_library_tls(writer.transport))
            self.assertEqual(writer.get_extra_info("ssl_object").selected_alpn_protocol(), "h2")
            self.assertEqual(writer.get_extra_info("ssl_object").getpeercert(True), server_der())
            for size in (1, 1 << 20):
                writer.write(pattern(size, 7))
                self.assertTrue(await reader.readexactly(size) == pattern(size, 7))
            writer.close()
            await writer.wait_closed()

        self.run_async(main)

    def test_stdlib_client_against_an_evloop_server(self):
        results = []

        def client(port):
            context = ssl.create_default_context(cafile=tls_certs.path("ca.pem"))
            context.set_alpn_protocols(["h2"])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    payload = pattern(300_000, 3)
                    tls.sendall(payload)
                    received = bytearray()
                    while len(received) < len(payload):
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        received += chunk
                    results.append((tls.version(), tls.selected_alpn_protocol(), bytes(received) == payload))

        async def main(name):
            results.clear()
            server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_context(["h2"]))
            port = server.sockets[0].getsockname()[1]
            await asyncio.get_running_loop().run_in_executor(None, client, port)
            self.assertEqual(results, [("TLSv1.3", "h2", True)])
            server.close()
            await server.wait_closed()

        self.run_async(main)


class ExtraInfo(unittest.TestCase):
    """get_extra_info's TLS answers on evloop are asyncio's own loop's
    (OpenSSL), for the same contexts, where rustls can say the same."""

    @staticmethod
    async def answers(name):
        server_ctx = server_context(["h2"])
        client_ctx = client_context(["h2"])
        server_side = asyncio.get_running_loop().create_future()
        served = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            server_side.set_result(collect(writer.transport, server_ctx))
            await stream_echo(reader, writer)
            served.set_result(None)

        def collect(transport, context):
            ssl_object = transport.get_extra_info("ssl_object")
            return {
                "sslcontext is the context": transport.get_extra_info("sslcontext") is context,
                "peercert": transport.get_extra_info("peercert"),
                "cipher": transport.get_extra_info("cipher"),
                "compression": transport.get_extra_info("compression"),
                "version": ssl_object.version(),
                "alpn": ssl_object.selected_alpn_protocol(),
                "binary": ssl_object.getpeercert(True),
                "server_side": ssl_object.server_side,
                "server_hostname": ssl_object.server_hostname,
            }

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        client_side = collect(writer.transport, client_ctx)
        writer.close()
        await writer.wait_closed()
        answers = {"client": client_side, "server": await server_side}
        await asyncio.wait_for(served, 30)  # the server saw the end (its handler is not left to cancel)
        server.close()
        await server.wait_closed()
        return answers

    def test_answers_match_asyncio(self):
        expected = run(REFERENCE[1], self.answers, REFERENCE[0])
        self.assertEqual(expected["client"]["binary"], server_der())
        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                self.assertEqual(run(factory, self.answers, name), expected)


if __name__ == "__main__":
    unittest.main()

"""evloop.tls: TLSConfig over the library's evl_tls_config_* calls, and
create_default_context's EvloopSSLContext, which records what a program
sets on it and turns it into a TLSConfig. The certificates are made by
openssl (a CA and a server certificate it signs) in a temporary directory;
no private key is committed. The library's TLS streams are driven here
through the raw C calls (the Loop's own TLS streams come later)."""

import ctypes
import errno
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402
from evloop import _lib  # noqa: E402
from evloop.tls import (  # noqa: E402
    VERIFY_CHAIN_ONLY,
    VERIFY_NONE_DANGEROUS,
    VERIFY_PEER,
    EvloopSSLContext,
    TLSConfig,
    TLSUnsupported,
    create_default_context,
)

DIR = ""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def setUpModule():
    global DIR
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("openssl is needed to make the test certificates (apt-get install openssl)")
    DIR = tempfile.mkdtemp(prefix="evloop-tls-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=evloop test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=DIR)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=DIR)
    Path(DIR, "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "30", "-extfile", "ext", cwd=DIR)
    Path(DIR, "both.pem").write_text(Path(DIR, "server.pem").read_text() + Path(DIR, "server.key").read_text())
    # A directory as OpenSSL's c_rehash makes one: the CA under its hash.
    os.mkdir(path("capath"))
    shutil.copy(path("ca.pem"), path("capath/1a2b3c4d.0"))
    Path(DIR, "capath", "README").write_text("not a certificate")


def tearDownModule():
    if DIR:
        shutil.rmtree(DIR, ignore_errors=True)


def path(name):
    return os.path.join(DIR, name)


class EchoLoop:
    """A library loop on a thread of its own, driven by evl_stream_poll:
    a listener (TLS with the given server config) whose streams echo, and
    the CONNECTED statuses of TLS connects it makes."""

    def __init__(self, server_config):
        self.lp = ctypes.c_void_p()
        _lib.check(_lib.evl_loop_new(ctypes.byref(self.lp)))
        listener = ctypes.c_uint64()
        _lib.check(_lib.evl_listen(self.lp, b"127.0.0.1", 0, 0, 0, _lib.NO_STREAM_CB, None, ctypes.byref(listener)))
        _lib.check(_lib.evl_listener_set_tls(self.lp, listener.value, server_config.handle))
        self.port = _lib.check(_lib.evl_listener_port(self.lp, listener.value))
        self.connected = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        events = (_lib.evl_stream_event * 16)()
        while not self.stop.is_set():
            with self.lock:
                n = _lib.check(_lib.evl_stream_poll(self.lp, 20, events, 16))
                for e in events[:n]:
                    if e.kind == _lib.EVL_STREAM_DATA and e.stream not in self.connected:
                        _lib.evl_stream_write(self.lp, e.stream, ctypes.string_at(e.data, e.len), e.len)
                    elif e.kind == _lib.EVL_STREAM_EOF:
                        _lib.evl_stream_close(self.lp, e.stream)
                    elif e.kind == _lib.EVL_STREAM_CONNECTED:
                        self.connected[e.stream] = e.status

    def tls_connect(self, client_config, name=b"localhost"):
        stream = ctypes.c_uint64()
        with self.lock:
            _lib.check(_lib.evl_tls_connect(self.lp, b"127.0.0.1", self.port, client_config.handle, name,
                                            _lib.NO_STREAM_CB, None, ctypes.byref(stream)))
            self.connected[stream.value] = None
        return stream.value

    def wait_connected(self, stream, patience=30):
        for _ in range(patience * 100):
            with self.lock:
                status = self.connected.get(stream)
            if status is not None:
                return status
            threading.Event().wait(0.01)
        raise AssertionError("no CONNECTED")

    def close(self):
        self.stop.set()
        self.thread.join()
        _lib.evl_loop_free(self.lp)


def echo_through(port, context, server_hostname="localhost", size=100_000):
    """Python's ssl client: `size` bytes through an echo server, back whole."""
    data = bytes(range(256)) * (size // 256)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(data)
            back = b""
            while len(back) < len(data):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                back += chunk
            return back == data, tls.version(), tls.selected_alpn_protocol()


class TLSConfigTests(unittest.TestCase):
    def test_a_server_from_files_or_memory_serves_pythons_ssl_client(self):
        for load in ("files", "one file", "memory"):
            with self.subTest(load), TLSConfig(server=True) as config:
                if load == "files":
                    config.load_cert_chain(path("server.pem"), path("server.key"))
                elif load == "one file":
                    config.load_cert_chain(path("both.pem"))
                else:
                    config.load_cert_chain_pem(Path(path("server.pem")).read_bytes(),
                                               Path(path("server.key")).read_bytes())
                config.set_alpn_protocols(["h2", "http/1.1"])
                loop = EchoLoop(config)
                try:
                    # In use: frozen.
                    with self.assertRaises(OSError) as caught:
                        config.set_alpn_protocols(["h2"])
                    self.assertEqual(caught.exception.errno, errno.EBUSY)
                    client = ssl.create_default_context(cafile=path("ca.pem"))
                    client.set_alpn_protocols(["http/1.1", "h2"])
                    self.assertEqual(echo_through(loop.port, client), (True, "TLSv1.3", "h2"))
                finally:
                    loop.close()

    def test_a_client_config_trusts_what_it_is_given(self):
        with TLSConfig(server=True) as server:
            server.load_cert_chain(path("server.pem"), path("server.key"))
            loop = EchoLoop(server)
            try:
                cadata = Path(path("ca.pem")).read_text()
                der = ssl.PEM_cert_to_DER_cert(cadata)
                for how, trust, name, expected in [
                    ("cafile", dict(cafile=path("ca.pem")), b"localhost", 0),
                    ("cadata PEM", dict(cadata=cadata), b"localhost", 0),
                    ("cadata DER", dict(cadata=der), b"127.0.0.1", 0),
                    ("capath", dict(capath=path("capath")), b"localhost", 0),
                    ("wrong name", dict(cafile=path("ca.pem")), b"example.com", _lib.EVL_ETLS_CERT),
                    ("system roots", None, b"localhost", _lib.EVL_ETLS_CERT),
                ]:
                    with self.subTest(how):
                        client = TLSConfig(server=False)
                        if trust is None:
                            self.assertGreater(client.load_default_certs(), 0)
                        else:
                            self.assertEqual(client.load_verify_locations(**trust), 1)
                        stream = loop.tls_connect(client, name)
                        client.close()  # the stream keeps what it needs
                        self.assertEqual(loop.wait_connected(stream), expected)
                for verify in (VERIFY_CHAIN_ONLY, VERIFY_NONE_DANGEROUS):
                    with self.subTest(verify=verify), TLSConfig(server=False) as client:
                        client.load_verify_locations(cafile=path("ca.pem"))
                        client.set_verify(verify)
                        self.assertEqual(loop.wait_connected(loop.tls_connect(client, b"example.com")), 0)
            finally:
                loop.close()

    def test_errors_say_why(self):
        config = TLSConfig(server=True)
        with self.assertRaisesRegex(ssl.SSLError, "CERTIFICATE"):
            config.load_cert_chain_pem(b"junk", b"junk")
        with self.assertRaises(FileNotFoundError) as caught:
            config.load_cert_chain(path("missing.pem"))
        self.assertIn("missing.pem", str(caught.exception))
        with self.assertRaises(ValueError):
            config.set_alpn_protocols([""])
        with self.assertRaises(ValueError):
            config.set_versions(_lib.EVL_TLS_1_3, _lib.EVL_TLS_1_2)
        with self.assertRaises(ValueError):
            config.set_verify(99)
        with self.assertRaises(TypeError):
            config.load_verify_locations()
        config.set_verify(VERIFY_PEER)
        config.close()
        config.close()
        with self.assertRaisesRegex(ValueError, "closed"):
            config.set_alpn_protocols(["h2"])


class DefaultContextTests(unittest.TestCase):
    def test_defaults_are_the_stdlibs(self):
        for purpose in (ssl.Purpose.SERVER_AUTH, ssl.Purpose.CLIENT_AUTH):
            with self.subTest(purpose=purpose):
                ours = create_default_context(purpose, cafile=path("ca.pem"))
                theirs = ssl.create_default_context(purpose, cafile=path("ca.pem"))
                self.assertIsInstance(ours, ssl.SSLContext)
                self.assertIsInstance(ours, EvloopSSLContext)
                attributes = ["verify_mode", "check_hostname", "maximum_version"]
                if sys.version_info >= (3, 10):
                    # Before, the stdlib made PROTOCOL_TLS contexts with no
                    # floor; ours always have a role and TLS 1.2 at least.
                    attributes += ["protocol", "minimum_version"]
                for attribute in attributes:
                    self.assertEqual(getattr(ours, attribute), getattr(theirs, attribute), attribute)
        self.assertIs(evloop.create_default_context, create_default_context)
        self.assertIs(evloop.TLSConfig, TLSConfig)

    def test_what_is_set_becomes_a_working_tls_config(self):
        server_context = create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(path("server.pem"), path("server.key"))
        server_context.set_alpn_protocols(["http/1.1"])
        server = server_context.to_tls_config()
        self.assertTrue(server.server)
        loop = EchoLoop(server)
        try:
            # The stdlib client on one side, the recorded settings on the other.
            client = ssl.create_default_context(cafile=path("ca.pem"))
            client.set_alpn_protocols(["h2", "http/1.1"])
            self.assertEqual(echo_through(loop.port, client), (True, "TLSv1.3", "http/1.1"))
            cases = [
                ("cafile", dict(cafile=path("ca.pem")), None, b"localhost", 0),
                ("cadata", dict(cadata=Path(path("ca.pem")).read_text()), None, b"localhost", 0),
                ("no name check", dict(cafile=path("ca.pem")), "nohost", b"example.com", 0),
                ("name checked", dict(cafile=path("ca.pem")), None, b"example.com", _lib.EVL_ETLS_CERT),
                ("no verification", dict(cafile=path("ca.pem")), "none", b"example.com", 0),
                ("TLS 1.2 at most", dict(cafile=path("ca.pem")), "tls12", b"localhost", 0),
            ]
            for how, trust, change, name, expected in cases:
                with self.subTest(how):
                    context = create_default_context(**trust)
                    if change in ("nohost", "none"):
                        context.check_hostname = False
                    if change == "none":
                        context.verify_mode = ssl.CERT_NONE
                    if change == "tls12":
                        context.maximum_version = ssl.TLSVersion.TLSv1_2
                    with context.to_tls_config() as config:
                        stream = loop.tls_connect(config, name)
                    self.assertEqual(loop.wait_connected(stream), expected)
                    if change == "tls12":
                        with loop.lock:
                            self.assertEqual(_lib.evl_tls_version(loop.lp, stream), _lib.EVL_TLS_1_2)
        finally:
            loop.close()

    def test_what_the_library_cannot_do_is_named_and_the_context_still_works(self):
        server = create_default_context(ssl.Purpose.CLIENT_AUTH)
        with self.assertRaisesRegex(TLSUnsupported, "load_cert_chain"):
            server.to_tls_config()
        server.load_cert_chain(path("server.pem"), path("server.key"))
        server.set_ciphers("ECDHE+AESGCM")
        server.verify_mode = ssl.CERT_OPTIONAL
        missing = server.unsupported()
        self.assertTrue(any("cipher list" in m for m in missing), missing)
        self.assertTrue(any("CERT_OPTIONAL" in m for m in missing), missing)
        with self.assertRaises(TLSUnsupported):
            server.to_tls_config()
        # Still a plain ssl.SSLContext: the stdlib serves with it.
        server.verify_mode = ssl.CERT_NONE
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve():
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(100))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = create_default_context(cafile=path("ca.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                self.assertEqual(tls.recv(100), b"ping")
        thread.join(30)
        listener.close()


if __name__ == "__main__":
    unittest.main()

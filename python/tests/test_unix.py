"""Unix-domain streams on evloop.Loop (listen_unix, connect_unix): echo on
a path and on an abstract name, stale socket files, failed connects, peer
credentials, and passing fds with none leaked."""

import gc
import os
import socket
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import evloop  # noqa: E402
from waiting import run_until  # noqa: E402


def open_fds():
    """This process's fd count once what is unreachable is collected: an
    fd an earlier test left to the garbage collector must not close (or
    stay) in the middle of a count."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class Echo(evloop.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Client(evloop.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.events = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


class UnixTest(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()
        self.addCleanup(self.loop.close)
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.path = os.path.join(directory.name, "echo.sock")

    def echo(self, name):
        client = Client()
        self.loop.connect_unix(lambda: client, name)
        payload = os.urandom(300_000)
        run_until(self.loop, lambda: client.events)
        client.transport.write(payload)
        run_until(self.loop, lambda: len(client.data) >= len(payload))
        self.assertEqual(bytes(client.data), payload)
        return client

    def test_echo_on_a_path_removes_its_file_when_closed(self):
        server = self.loop.listen_unix(Echo, self.path)
        self.assertTrue(os.path.exists(self.path))
        self.echo(self.path)
        server.close()
        self.assertFalse(os.path.exists(self.path))

    def test_echo_on_an_abstract_name(self):
        name = f"\0evloop-test-{os.getpid()}-{id(self)}"
        self.loop.listen_unix(Echo, name)
        with socket.socket(socket.AF_UNIX) as taken:
            with self.assertRaises(OSError):
                taken.bind(name)  # the name is the listener's
        self.echo(name.encode())

    def test_a_stale_file_is_removed_only_when_asked(self):
        with socket.socket(socket.AF_UNIX) as crashed:
            crashed.bind(self.path)  # bound, never listening: what a crash leaves
        with self.assertRaises(OSError):
            self.loop.listen_unix(Echo, self.path)
        self.loop.listen_unix(Echo, self.path, remove_stale=True)
        self.echo(self.path)
        # A live listener is never removed.
        with self.assertRaises(OSError):
            self.loop.listen_unix(Echo, self.path, remove_stale=True)

    def test_a_file_that_is_no_socket_is_never_removed(self):
        Path(self.path).write_text("precious")
        with self.assertRaises(OSError):
            self.loop.listen_unix(Echo, self.path, remove_stale=True)
        self.assertEqual(Path(self.path).read_text(), "precious")

    def test_connecting_to_nothing_fails_in_connection_lost(self):
        client = Client()
        self.loop.connect_unix(lambda: client, self.path)
        run_until(self.loop, lambda: client.events)
        ((what, exc),) = client.events
        self.assertEqual(what, "lost")
        self.assertIsInstance(exc, FileNotFoundError)

    def test_peer_credentials(self):
        accepted = []

        class Server(Echo):
            def connection_made(self, transport):
                accepted.append(transport.peer_cred())

        self.loop.listen_unix(Server, self.path)
        client = Client()
        self.loop.connect_unix(lambda: client, self.path)
        run_until(self.loop, lambda: accepted and client.events)
        self.assertEqual(accepted, [(os.getpid(), os.getuid(), os.getgid())])
        self.assertEqual(client.transport.peer_cred(), (os.getpid(), os.getuid(), os.getgid()))

    def test_passing_fds_leaks_none(self):
        before = open_fds()
        received = []

        class Receiver(Echo):
            def connection_made(self, transport):
                super().connection_made(transport)
                transport.accept_fds()

            def fds_received(self, fds):
                for fd in fds:
                    received.append(os.read(fd, 100))
                    os.close(fd)

        class Ignorer(Echo):  # accepts fds but has no fds_received: they are closed for it
            def connection_made(self, transport):
                super().connection_made(transport)
                transport.accept_fds()

        for factory, expected in ((Receiver, [b"one", b"two"]), (Ignorer, [])):
            with self.subTest(factory.__name__):
                received.clear()
                server = self.loop.listen_unix(factory, self.path)
                client = Client()
                self.loop.connect_unix(lambda: client, self.path)
                run_until(self.loop, lambda: client.events)
                pipes = [os.pipe() for _ in range(2)]
                for (r, w), word in zip(pipes, (b"one", b"two")):
                    os.write(w, word)
                    os.close(w)
                client.transport.write_fds(b"x", [r for r, _ in pipes])
                for r, _ in pipes:
                    os.close(r)  # ours to close at once: the kernel holds its own
                client.transport.write(b"y")
                run_until(self.loop, lambda: len(client.data) == 2)
                self.assertEqual(bytes(client.data), b"xy")
                self.assertEqual(sorted(received), expected)
                client.transport.close()
                server.close()
                run_until(self.loop, lambda: len(client.events) == 2)
        for _ in range(3):
            self.loop.run_once(0)
        self.assertEqual(open_fds(), before)

    def test_bad_names(self):
        with self.assertRaises(OSError):  # ENAMETOOLONG
            self.loop.listen_unix(Echo, "/tmp/" + "x" * 200)
        with self.assertRaises(ValueError):
            self.loop.listen_unix(Echo, "")


if __name__ == "__main__":
    unittest.main()

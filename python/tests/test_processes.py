"""Child processes on evloop.Loop (spawn) and name resolution on its pool
(getaddrinfo, connect_host): pipes byte-exact, exit codes and signals,
kill, env and cwd, programs that cannot start; localhost, numeric names,
errors with their EAI text, cancelling."""

import os
import signal
import socket
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import evloop  # noqa: E402
from waiting import run_until  # noqa: E402
from evloop.processes import DEVNULL, PIPE, STDOUT, SubprocessProtocol  # noqa: E402


class Child(SubprocessProtocol):
    def __init__(self):
        self.out = {1: bytearray(), 2: bytearray()}
        self.events = []

    def connection_made(self, process):
        self.process = process

    def pipe_data_received(self, fd, data):
        self.out[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe lost", fd))

    def process_exited(self):
        self.events.append(("exited", self.process.get_returncode()))

    def connection_lost(self, exc):
        self.events.append("lost")


class SpawnTest(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()
        self.children = []
        self.addCleanup(self.close)

    def close(self):
        for child in self.children:  # on every path, failure included
            if child.process.get_returncode() is None:
                try:
                    child.process.kill()
                except ProcessLookupError:
                    pass
        self.loop.close()  # kills and reaps what is left

    def spawn(self, argv, **options):
        child = Child()
        self.loop.spawn(child, argv, **options)
        self.children.append(child)
        return child

    def finish(self, child):
        run_until(self.loop, lambda: "lost" in child.events)
        return child.process.get_returncode()

    def test_pipes_are_byte_exact(self):
        payload = os.urandom(1 << 20)
        child = self.spawn([sys.executable, "-c", "import sys; d = sys.stdin.buffer.read(); "
                            "sys.stdout.buffer.write(d); sys.stderr.buffer.write(d[::-1])"])
        stdin = child.process.get_pipe_transport(0)
        stdin.write(payload)
        stdin.write_eof()
        self.assertEqual(self.finish(child), 0)
        self.assertEqual(bytes(child.out[1]), payload)
        self.assertEqual(bytes(child.out[2]), payload[::-1])
        self.assertEqual(child.events[-1], "lost")
        self.assertIn(("exited", 0), child.events)
        self.assertEqual(sorted(e[1] for e in child.events if e[0] == "pipe lost"), [0, 1, 2])

    def test_exit_codes_and_signals(self):
        codes = self.spawn(["sh", "-c", "exit 42"], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        self.assertEqual(self.finish(codes), 42)
        self.assertEqual(codes.process.exit_signal, 0)
        killed = self.spawn(["sh", "-c", "kill -TERM $$"], stdin=DEVNULL)
        self.assertEqual(self.finish(killed), -signal.SIGTERM)
        self.assertEqual(killed.process.exit_signal, signal.SIGTERM)

    def test_kill(self):
        child = self.spawn(["sleep", "60"], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        self.assertGreater(child.process.get_pid(), 0)
        child.process.kill()
        self.assertEqual(self.finish(child), -signal.SIGKILL)
        with self.assertRaises(ProcessLookupError):
            child.process.kill()

    def test_env_cwd_and_stderr_to_stdout(self):
        with tempfile.TemporaryDirectory() as directory:
            child = self.spawn(["sh", "-c", 'echo "$EVLOOP_TEST $(pwd)"; echo err >&2'], env={"EVLOOP_TEST": "yes", "PATH": os.defpath},
                               cwd=directory, stdin=DEVNULL, stderr=STDOUT)
            self.assertEqual(self.finish(child), 0)
            self.assertEqual(bytes(child.out[1]), f"yes {os.path.realpath(directory)}\nerr\n".encode())
            self.assertIsNone(child.process.get_pipe_transport(2))

    def test_a_program_that_cannot_start_leaves_no_child(self):
        with self.assertRaises(FileNotFoundError):
            self.loop.spawn(Child(), ["/nonexistent/program"])
        with self.assertRaises(OSError):
            self.loop.spawn(Child(), ["true"], cwd="/nonexistent/directory")
        with self.assertRaises(ValueError):
            self.loop.spawn(Child(), [])
        self.assertFalse(self.loop._jobs.pending())

    def test_run_returns_once_the_child_is_done(self):
        child = self.spawn(["sh", "-c", "sleep 0.1; echo done"], stdin=DEVNULL)
        self.loop.run()
        self.assertEqual(bytes(child.out[1]), b"done\n")
        self.assertEqual(child.process.get_returncode(), 0)


class ResolveTest(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()
        self.addCleanup(self.loop.close)

    def resolve(self, *args, **kwargs):
        results = []
        self.loop.getaddrinfo(*args, results.append, **kwargs)
        run_until(self.loop, lambda: results)
        return results[0]

    def test_localhost_and_numeric_match_socket_getaddrinfo(self):
        for host, port in (("localhost", 80), ("127.0.0.1", "http"), ("::1", 0)):
            with self.subTest(host):
                options = dict(type=socket.SOCK_STREAM)
                try:
                    expected = socket.getaddrinfo(host, port, **options)
                except socket.gaierror as exc:
                    self.assertIsInstance(self.resolve(host, port, **options), socket.gaierror, exc)
                    continue
                self.assertEqual(self.resolve(host, port, **options), expected)

    def test_errors_carry_the_eai_code_and_text(self):
        result = self.resolve("no-such-host.invalid", 80, flags=socket.AI_NUMERICHOST)
        self.assertIsInstance(result, socket.gaierror)
        with self.assertRaises(socket.gaierror) as expected:
            socket.getaddrinfo("no-such-host.invalid", 80, flags=socket.AI_NUMERICHOST)
        self.assertEqual(result.args, expected.exception.args)
        self.assertEqual(result.errno, socket.EAI_NONAME)

    def test_cancel_means_no_callback(self):
        results = []
        cancelled = self.loop.getaddrinfo("localhost", 80, results.append)
        cancelled.cancel()
        self.loop.getaddrinfo("127.0.0.1", 80, results.append)
        self.loop.run()  # returns once both are settled
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0][0][4], ("127.0.0.1", 80))

    def test_connect_host_by_name(self):
        received = bytearray()
        lost = []

        class Echo(evloop.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(data)

        class Client(evloop.Protocol):
            def connection_made(self, transport):
                transport.write(b"by name")

            def data_received(self, data):
                received.extend(data)

            def connection_lost(self, exc):
                lost.append(exc)

        server = self.loop.start_server(Echo, "127.0.0.1", 0)
        self.loop.connect_host(Client, "localhost", server.port)
        run_until(self.loop, lambda: received == b"by name")
        with socket.socket() as refused:  # bound, not listening: refused
            refused.bind(("127.0.0.1", 0))
            self.loop.connect_host(Client, "127.0.0.1", refused.getsockname()[1])
            run_until(self.loop, lambda: lost)
        self.assertIsInstance(lost[0], ConnectionRefusedError)


if __name__ == "__main__":
    unittest.main()

"""asyncio's datagram endpoints, Unix-domain servers and connections,
getaddrinfo and subprocesses on evloop's loop, each scenario run on
asyncio's SelectorEventLoop too (tests/loops.py) with the same outcome
asserted: UDP echo on IPv4 and IPv6, remote_addr, sock=, allow_broadcast,
reuse_port, ICMP errors to error_received, sendto's errors, flow control,
pause_reading, write-buffer limits; Unix echo on a path and an abstract
name, sock=, the socket file removed at close (3.13); getaddrinfo's
results, errors and cancellation; subprocess pipes, exit codes, signals,
env and cwd."""

import asyncio
import errno
import os
import signal
import socket
import sys
import tempfile
import unittest

from loops import LOOPS, run
from waiting import PATIENCE, has_ipv6


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Recorder(asyncio.DatagramProtocol):
    def __init__(self):
        self.events = []
        self.queue = asyncio.Queue()

    def connection_made(self, transport):
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.events.append(("data", data, addr))
        self.queue.put_nowait((data, addr))

    def error_received(self, exc):
        self.events.append(("error", type(exc)))
        self.queue.put_nowait(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.queue.put_nowait("lost")


async def next_item(recorder):
    return await asyncio.wait_for(recorder.queue.get(), PATIENCE)


class EachLoop(unittest.TestCase):
    def each(self, scenario, *args):
        """The outcome of `scenario` on each loop, all asserted equal."""
        outcomes = {}
        for name, factory in LOOPS:
            with self.subTest(loop=name):
                outcomes[name] = run(factory, scenario, *args)
                self.assertEqual(outcomes[name], outcomes[LOOPS[0][0]])
        return outcomes[LOOPS[0][0]]


class DatagramTest(EachLoop):
    def test_echo(self):
        hosts = ["127.0.0.1"] + (["::1"] if has_ipv6() else [])

        async def scenario(host):
            loop = asyncio.get_running_loop()
            server, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, 0))
            port = server.get_extra_info("sockname")[1]
            client, recorder = await loop.create_datagram_endpoint(Recorder, remote_addr=(host, port))
            sizes = [1, 100, 65507 if host == "127.0.0.1" else 65000]
            for size in sizes:
                client.sendto(b"x" * size)
            got = [await next_item(recorder) for _ in sizes]
            with self.assertRaises(ValueError):  # connected: no other address
                client.sendto(b"x", (host, port + 1))
            with self.assertRaises(TypeError):
                client.sendto("text")
            client.close()
            server.close()
            await next_item(recorder)
            return [(len(data), addr[1] == port) for data, addr in got], recorder.events[0], recorder.events[-1]

        for host in hosts:
            self.assertEqual(self.each(scenario, host), ([(1, True), (100, True), (sizes_last(host), True)], "made", ("lost", None)))

    def test_sock_and_broadcast_and_reuse_port(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            server, _ = await loop.create_datagram_endpoint(Echo, sock=sock)
            port = sock.getsockname()[1]
            client, recorder = await loop.create_datagram_endpoint(
                Recorder, local_addr=("127.0.0.1", 0), allow_broadcast=True, reuse_port=True
            )
            options = client.get_extra_info("socket")
            flags = (options.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0,
                     options.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0)
            client.sendto(b"ping", ("127.0.0.1", port))
            data, addr = await next_item(recorder)
            client.close()
            server.close()
            await next_item(recorder)
            await asyncio.sleep(0)
            return flags, data, addr == ("127.0.0.1", port), sock.fileno()

        flags, data, same, fd = self.each(scenario)
        self.assertEqual((flags, data, same, fd), ((True, True), b"ping", True, -1))

    def test_icmp_error_and_kernel_refusals_go_to_error_received(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            client, recorder = await loop.create_datagram_endpoint(Recorder, remote_addr=("127.0.0.1", port))
            client.sendto(b"anyone?")
            refused = await next_item(recorder)
            other, other_recorder = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
            other.sendto(b"x" * 70000, ("127.0.0.1", port))  # EMSGSIZE
            too_big = await next_item(other_recorder)
            client.close()
            other.close()
            return type(refused), too_big.errno if isinstance(too_big, OSError) else too_big

        self.assertEqual(self.each(scenario), (ConnectionRefusedError, errno.EMSGSIZE))

    def test_pause_reading_holds_datagrams(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            server, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
            port = server.get_extra_info("sockname")[1]
            try:
                server.pause_reading()
            except NotImplementedError:
                server.close()
                return "cannot pause"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                for i in range(3):
                    peer.sendto(b"%d" % i, ("127.0.0.1", port))
                await asyncio.sleep(0.05)
                before = recorder.queue.qsize()
                server.resume_reading()
                got = [(await next_item(recorder))[0] for _ in range(3)]
            server.close()
            return before, got

        # asyncio's datagram transports pause from 3.11 (NotImplementedError
        # before); evloop's (the library's UDP, on both paths) always do.
        can_pause = "pause_reading" in vars(asyncio.selector_events._SelectorTransport)
        asyncios_transport = ("asyncio",)
        for name, factory in LOOPS:
            with self.subTest(loop=name):
                pauses = can_pause or name not in asyncios_transport
                expected = (0, [b"0", b"1", b"2"]) if pauses else "cannot pause"
                self.assertEqual(run(factory, scenario), expected)

    def test_datagram_received_raising_goes_to_the_handler_and_the_transport_goes_on(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            errors = []
            loop.set_exception_handler(lambda loop, context: errors.append(type(context.get("exception"))))

            class Flaky(Recorder):
                def datagram_received(self, data, addr):
                    if data == b"boom":
                        raise RuntimeError(data)
                    super().datagram_received(data, addr)

            server, recorder = await loop.create_datagram_endpoint(Flaky, local_addr=("127.0.0.1", 0))
            port = server.get_extra_info("sockname")[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.sendto(b"boom", ("127.0.0.1", port))
                peer.sendto(b"fine", ("127.0.0.1", port))
                data, _ = await next_item(recorder)
            closing = server.is_closing()
            server.close()
            return errors, data, closing

        self.assertEqual(self.each(scenario), ([RuntimeError], b"fine", False))

    def test_closing_and_aborting_leave_no_fd(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0)
            before = len(os.listdir("/proc/self/fd"))
            for i in range(20):
                transport, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
                transport.sendto(b"x", transport.get_extra_info("sockname"))
                transport.close() if i % 2 else transport.abort()
                while "lost" not in [item for item in list(recorder.queue._queue) if item == "lost"]:
                    await asyncio.sleep(0.001)
            return len(os.listdir("/proc/self/fd")) - before

        self.assertEqual(self.each(scenario), 0)

    def test_write_buffer_limits_and_size(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            sender, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
            sender.set_write_buffer_limits(high=4000, low=1000)
            limits = sender.get_write_buffer_limits()
            sender.sendto(b"x" * 100, sender.get_extra_info("sockname"))
            await next_item(recorder)
            size = sender.get_write_buffer_size()
            sender.close()
            return limits, size, "pause" in recorder.events

        self.assertEqual(self.each(scenario), ((1000, 4000), 0, False))


def sizes_last(host):
    return 65507 if host == "127.0.0.1" else 65000


class UnixTest(EachLoop):
    def scenario(self, name_of):
        async def scenario():
            loop = asyncio.get_running_loop()
            with tempfile.TemporaryDirectory() as directory:
                name = name_of(directory)

                async def echo(reader, writer):
                    writer.write(await reader.read())
                    await writer.drain()
                    writer.close()

                server = await asyncio.start_unix_server(echo, name)
                reader, writer = await asyncio.open_unix_connection(name)
                payload = bytes(range(256)) * 300
                writer.write(payload)
                writer.write_eof()
                back = await asyncio.wait_for(reader.read(), PATIENCE)
                writer.close()
                server.close()
                await server.wait_closed()
                exists = os.path.exists(name) if not name.startswith("\0") else None
                return back == payload, exists

        return scenario

    def test_echo_on_a_path_and_an_abstract_name(self):
        # The socket file is removed at close from 3.13 (cleanup_socket).
        removed = sys.version_info >= (3, 13)
        self.assertEqual(self.each(self.scenario(lambda d: os.path.join(d, "s"))), (True, not removed))
        self.assertEqual(self.each(self.scenario(lambda d: f"\0evloop-{os.getpid()}-{id(d)}")), (True, None))

    def test_unix_server_on_a_socket_given(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "s")
                sock = socket.socket(socket.AF_UNIX)
                sock.bind(path)
                got = loop.create_future()

                class Server(asyncio.Protocol):
                    def data_received(self, data):
                        got.set_result(data)

                server = await loop.create_unix_server(Server, sock=sock)
                transport, _ = await loop.create_unix_connection(asyncio.Protocol, path)
                transport.write(b"over sock=")
                data = await asyncio.wait_for(got, PATIENCE)
                transport.close()
                server.close()
                await server.wait_closed()
                return data

        self.assertEqual(self.each(scenario), b"over sock=")


class ResolveTest(EachLoop):
    def test_results_and_errors_are_socket_getaddrinfo_s(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            results = [
                await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM),
                await loop.getaddrinfo("127.0.0.1", "http", family=socket.AF_INET),
                await loop.getaddrinfo(None, 80, flags=socket.AI_PASSIVE, type=socket.SOCK_DGRAM),
            ]
            errors = []
            for host, port, flags in (("no-such.invalid", 80, socket.AI_NUMERICHOST), ("localhost", "no-such-service", 0)):
                try:
                    await loop.getaddrinfo(host, port, flags=flags)
                except socket.gaierror as exc:
                    errors.append(exc.args)
            for bad in (123, 1.5):
                try:
                    await loop.getaddrinfo(bad, 80) if bad == 123 else await loop.getaddrinfo("localhost", bad)
                except (TypeError, OSError) as exc:
                    errors.append(type(exc))
            return results, errors

        results, errors = self.each(scenario)
        self.assertEqual(results[0], socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))
        self.assertEqual(len(errors), 4)

    def test_a_cancelled_lookup_ends_quietly(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            task = loop.create_task(loop.getaddrinfo("localhost", 80))
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            return task.cancelled(), await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

        cancelled, after = self.each(scenario)
        self.assertTrue(cancelled)
        self.assertEqual(after[0][4], ("127.0.0.1", 80))


class SubprocessTest(EachLoop):
    def test_pipes_codes_signals_env_cwd(self):
        async def scenario():
            payload = os.urandom(200000)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d)",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(payload), PATIENCE)
            with tempfile.TemporaryDirectory() as directory:
                shell = await asyncio.create_subprocess_shell(
                    'echo "$EVLOOP_TEST $(pwd)"; exit 7', stdout=asyncio.subprocess.PIPE,
                    env={"EVLOOP_TEST": "yes", "PATH": os.defpath}, cwd=directory,
                )
                said, _ = await asyncio.wait_for(shell.communicate(), PATIENCE)
                expected = f"yes {os.path.realpath(directory)}\n".encode()
            sleeper = await asyncio.create_subprocess_exec("sleep", "60")
            sleeper.send_signal(signal.SIGTERM)
            killed = await asyncio.wait_for(sleeper.wait(), PATIENCE)
            return out == payload, proc.returncode, said == expected, shell.returncode, killed

        self.assertEqual(self.each(scenario), (True, 0, True, 7, -signal.SIGTERM))


if __name__ == "__main__":
    unittest.main()

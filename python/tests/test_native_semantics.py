"""asyncio's semantics on the native loop, each observed on it and on
asyncio.SelectorEventLoop and compared: a protocol's callbacks run in the
contextvars context of the call that made its transport; callbacks queued
with call_soon before a wait run before that wait's I/O callbacks; the
socket stays open and attached until connection_lost returns;
resume_writing comes at the low-water mark; in debug mode a handle's source
traceback names the caller of call_soon; exceptions in callbacks; handles;
KeyboardInterrupt. CPython only (see native_support).
"""

import asyncio
import contextvars
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON, LOOPS, native_loop, run  # noqa: E402

var = contextvars.ContextVar("var", default="unset")


def on_both(test, scenario, *args):
    """The scenario's observations on both loops, which must be equal;
    returns them."""
    seen = {name: run(scenario(*args), factory) for name, factory in LOOPS}
    test.assertEqual(seen["native"], seen["asyncio"])
    return seen["native"]


async def echo_once(address, message=b"ping"):
    """A client: sends `message`, reads it back, closes."""
    if isinstance(address, str):
        reader, writer = await asyncio.open_unix_connection(address)
    else:
        reader, writer = await asyncio.open_connection(*address)
    writer.write(message)
    reply = await reader.readexactly(len(message))
    writer.close()
    await writer.wait_closed()
    return reply


def recording_protocol(seen, name, echo=True):
    """A protocol class that records (name, callback, var's value), and
    echoes if `echo`."""

    class Recording(asyncio.Protocol):
        def connection_made(self, transport):
            seen.append((name, "made", var.get()))
            var.set("set in connection_made")
            self.transport = transport

        def data_received(self, data):
            seen.append((name, "data", var.get()))
            var.set("set in data_received")
            if echo:
                self.transport.write(data)

        def eof_received(self):
            seen.append((name, "eof", var.get()))

        def connection_lost(self, exc):
            seen.append((name, "lost", var.get()))
            done.set_result(None) if not done.done() else None

    done = asyncio.get_running_loop().create_future()
    return Recording, done


if CPYTHON:

    class Contextvars(unittest.TestCase):
        """A protocol's callbacks run in the context current when its
        transport was made: create_server's caller's for a server (not
        the client's, not whoever runs the loop), create_connection's,
        connect_accepted_socket's, create_unix_server's."""

        def test_server_and_client_protocols(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                seen = []
                server_factory, server_done = recording_protocol(seen, "server")
                var.set("create_server's caller")
                server = await loop.create_server(server_factory, "127.0.0.1", 0)
                var.set("later")
                address = server.sockets[0].getsockname()[:2]
                client_factory, client_done = recording_protocol(seen, "client", echo=False)

                async def client():
                    var.set("create_connection's caller")
                    transport, _ = await loop.create_connection(client_factory, *address)
                    var.set("after create_connection")
                    transport.write(b"x")
                    await asyncio.sleep(0.05)
                    transport.close()

                await asyncio.ensure_future(client())
                await client_done
                await server_done
                server.close()
                await server.wait_closed()
                return sorted(seen)

            observed = on_both(self, scenario)
            self.assertIn(("server", "made", "create_server's caller"), observed)
            self.assertIn(("client", "made", "create_connection's caller"), observed)

        def test_connect_accepted_socket_and_unix_server(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                seen = []
                factory, done = recording_protocol(seen, "accepted")
                ours, theirs = socket.socketpair()
                var.set("connect_accepted_socket's caller")
                await loop.connect_accepted_socket(factory, ours)
                var.set("later")
                await loop.sock_sendall(theirs, b"hello")
                await asyncio.sleep(0.05)
                theirs.shutdown(socket.SHUT_WR)
                await done
                theirs.close()
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "s.sock")
                    factory, done = recording_protocol(seen, "unix")
                    var.set("create_unix_server's caller")
                    server = await loop.create_unix_server(factory, path)
                    var.set("later")
                    self.assertEqual(await echo_once(path), b"ping")
                    await done
                    server.close()
                    await server.wait_closed()
                return seen

            on_both(self, scenario)

    class Order(unittest.TestCase):
        def test_callbacks_queued_before_a_wait_run_before_its_io(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                order = []
                ours, theirs = socket.socketpair()

                class Recorder(asyncio.Protocol):
                    def data_received(self, data):
                        order.append("data_received")

                transport, _ = await loop.connect_accepted_socket(Recorder, ours)
                await asyncio.sleep(0.01)

                def before_the_wait():
                    theirs.send(b"x")  # ready at the next wait
                    loop.call_soon(order.append, "call_soon")

                loop.call_soon(before_the_wait)
                for _ in range(50):
                    await asyncio.sleep(0.01)
                    if len(order) == 2:
                        break
                transport.close()
                theirs.close()
                return order

            self.assertEqual(on_both(self, scenario), ["call_soon", "data_received"])

        def test_timers_run_in_deadline_order_first_made_first(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                order = []
                now = loop.time()
                # Distinct deadlines: asyncio's heap does not keep the order
                # of equal ones.
                for i in range(5):
                    loop.call_at(now + 0.02 + i * 0.001, order.append, i)
                loop.call_at(now + 0.01, order.append, "earlier")
                loop.call_later(0.005, order.append, "earliest")
                cancelled = loop.call_later(0.001, order.append, "cancelled")
                cancelled.cancel()
                await asyncio.sleep(0.06)
                return order

            self.assertEqual(on_both(self, scenario), ["earliest", "earlier", 0, 1, 2, 3, 4])

        def test_odd_deadlines(self):
            """A NaN deadline is due at once (asyncio's max(0, nan) waits 0);
            an infinite one never, without stopping anything else."""

            async def scenario():
                loop = asyncio.get_running_loop()
                order = []
                loop.call_at(float("nan"), order.append, "nan")
                never = loop.call_at(float("inf"), order.append, "inf")
                loop.call_later(0.001, order.append, "later")
                await asyncio.sleep(0.02)
                never.cancel()
                return order

            # asyncio's own selectors (3.13.0's) raise on a NaN timeout: the
            # native loop alone is held to asyncio's documented max(0, nan).
            self.assertEqual(run(scenario(), native_loop), ["nan", "later"])

    class SocketLife(unittest.TestCase):
        """The socket stays open (and get_extra_info's socket works) until
        connection_lost has returned, as asyncio closes it after."""

        def test_in_connection_lost_the_socket_is_open(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                seen = []
                done = loop.create_future()

                class Probe(asyncio.Protocol):
                    def connection_made(self, transport):
                        self.transport = transport

                    def connection_lost(self, exc):
                        sock = self.transport.get_extra_info("socket")
                        seen.append(sock.fileno() >= 0)
                        seen.append(sock.getsockname() is not None)
                        done.set_result(None)

                ours, theirs = socket.socketpair()
                await loop.connect_accepted_socket(Probe, ours)
                theirs.close()  # end-of-file: eof_received returns None, the transport closes
                await done
                await asyncio.sleep(0)
                seen.append(ours.fileno())  # closed after connection_lost
                return seen

            self.assertEqual(on_both(self, scenario), [True, True, -1])

        def test_a_handler_sees_its_socket_after_the_client_reset(self):
            async def scenario():
                failures = []
                handled = asyncio.get_running_loop().create_future()

                async def handler(reader, writer):
                    try:
                        writer.get_extra_info("socket").getsockname()
                        writer.get_extra_info("peername")
                    except OSError as exc:
                        failures.append(repr(exc))
                    writer.close()
                    if not handled.done():
                        handled.set_result(None)

                server = await asyncio.start_server(handler, "127.0.0.1", 0)
                address = server.sockets[0].getsockname()[:2]
                for _ in range(20):
                    sock = socket.create_connection(address)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()  # a reset, right after connecting
                await handled
                await asyncio.sleep(0.1)
                server.close()
                await server.wait_closed()
                return failures

            self.assertEqual(on_both(self, scenario), [])

    class FlowControl(unittest.TestCase):
        def test_resume_writing_comes_at_the_low_water_mark(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                events = []
                resumed = loop.create_future()

                class Writer(asyncio.Protocol):
                    def connection_made(self, transport):
                        self.transport = transport

                    def pause_writing(self):
                        events.append("pause")

                    def resume_writing(self):
                        size = self.transport.get_write_buffer_size()
                        low, high = self.transport.get_write_buffer_limits()
                        events.append(("resume", size <= low, size > 0))
                        resumed.set_result(None)

                ours, theirs = socket.socketpair()
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                theirs.setblocking(False)
                transport, _ = await loop.connect_accepted_socket(Writer, ours)
                transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
                transport.write(b"x" * 200_000)
                events.append(("over high", transport.get_write_buffer_size() > 64 * 1024))
                while not resumed.done():
                    try:
                        theirs.recv(2048)
                    except BlockingIOError:
                        pass
                    await asyncio.sleep(0)
                transport.abort()
                theirs.close()
                return events

            self.assertEqual(on_both(self, scenario), ["pause", ("over high", True), ("resume", True, True)])

    class DebugMode(unittest.TestCase):
        def test_source_traceback_names_the_caller(self):
            def where_it_is_scheduled(loop):
                return [
                    loop.call_soon(print),
                    loop.call_later(10, print),
                    loop.call_at(loop.time() + 10, print),
                    loop.call_soon_threadsafe(print),
                ]

            async def scenario():
                loop = asyncio.get_running_loop()
                handles = where_it_is_scheduled(loop)
                names = [h._source_traceback[-1][2] for h in handles]
                for handle in handles:
                    handle.cancel()
                return names

            names = {name: run(scenario(), factory, debug=True) for name, factory in LOOPS}
            self.assertEqual(names["native"], names["asyncio"])
            self.assertEqual(names["native"], ["where_it_is_scheduled"] * 4)

        def test_a_coroutine_given_to_call_soon_is_refused(self):
            async def coroutine():
                pass

            async def scenario():
                loop = asyncio.get_running_loop()
                try:
                    loop.call_soon(coroutine)
                except TypeError as exc:
                    return str(exc)
                return None

            self.assertIn("coroutines cannot be used", str(on_both_debug(self, scenario)))

    def on_both_debug(test, scenario):
        seen = {name: run(scenario(), factory, debug=True) for name, factory in LOOPS}
        test.assertEqual(seen["native"], seen["asyncio"])
        return seen["native"]

    class Errors(unittest.TestCase):
        def test_an_exception_in_data_received_closes_that_transport_only(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                contexts = []
                loop.set_exception_handler(lambda loop, context: contexts.append(context))
                lost = []

                class Faulty(asyncio.Protocol):
                    def connection_made(self, transport):
                        self.transport = transport

                    def data_received(self, data):
                        if data.startswith(b"boom"):
                            raise ZeroDivisionError("boom")
                        self.transport.write(data)

                    def connection_lost(self, exc):
                        lost.append(type(exc).__name__)

                server = await loop.create_server(Faulty, "127.0.0.1", 0)
                address = server.sockets[0].getsockname()[:2]
                bad_reader, bad_writer = await asyncio.open_connection(*address)
                good_reader, good_writer = await asyncio.open_connection(*address)
                bad_writer.write(b"boom")
                closed = await bad_reader.read()
                good_writer.write(b"fine")
                echoed = await good_reader.readexactly(4)
                for writer in (bad_writer, good_writer):
                    writer.close()
                    await writer.wait_closed()
                await asyncio.sleep(0.05)
                server.close()
                await server.wait_closed()
                context = contexts[0]
                return (
                    closed,
                    echoed,
                    len(contexts),
                    sorted(context),
                    context["message"],
                    type(context["exception"]).__name__,
                    context["protocol"].__class__.__name__,
                    context["transport"].get_protocol() is context["protocol"],
                    sorted(lost),
                )

            observed = on_both(self, scenario)
            self.assertEqual(observed[4], "Fatal error: protocol.data_received() call failed.")

        def test_an_exception_in_a_callback_goes_to_the_handler(self):
            def faulty():
                raise ValueError("bad")

            async def scenario():
                loop = asyncio.get_running_loop()
                contexts = []
                loop.set_exception_handler(lambda loop, context: contexts.append(context))
                handle = loop.call_soon(faulty)
                await asyncio.sleep(0)
                context = contexts[0]
                return sorted(context), context["message"], type(context["exception"]).__name__, context["handle"] is handle

            observed = on_both(self, scenario)
            self.assertTrue(observed[1].startswith("Exception in callback "), observed[1])

        def test_keyboard_interrupt_leaves_run_forever_and_the_loop_goes_on(self):
            def scenario_on(factory):
                loop = factory()
                seen = []
                try:
                    ours, theirs = socket.socketpair()

                    class Interrupting(asyncio.Protocol):
                        def connection_made(self, transport):
                            self.transport = transport

                        def data_received(self, data):
                            if data == b"interrupt":
                                raise KeyboardInterrupt
                            self.transport.write(data)

                    transport, _ = loop.run_until_complete(loop.connect_accepted_socket(Interrupting, ours))
                    theirs.send(b"interrupt")
                    try:
                        loop.run_forever()
                    except KeyboardInterrupt:
                        seen.append("KeyboardInterrupt")
                    seen.append(loop.is_running())
                    theirs.send(b"again")
                    loop.call_later(0.05, loop.stop)
                    loop.run_forever()
                    seen.append(theirs.recv(100))
                    loop.call_soon(sys.exit, 3)
                    try:
                        loop.run_forever()
                    except SystemExit as exc:
                        seen.append(("SystemExit", exc.code))
                    transport.close()
                    loop.run_until_complete(asyncio.sleep(0))
                    theirs.close()
                finally:
                    loop.close()
                return seen

            seen = {name: scenario_on(factory) for name, factory in LOOPS}
            self.assertEqual(seen["native"], seen["asyncio"])
            self.assertEqual(seen["native"], ["KeyboardInterrupt", False, b"again", ("SystemExit", 3)])

        def test_running_the_loop_inside_a_callback_is_refused(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                sleep = asyncio.sleep(0)
                try:
                    loop.run_until_complete(sleep)
                except RuntimeError as exc:
                    return str(exc)
                finally:
                    sleep.close()

            on_both(self, scenario)

    class Handles(unittest.TestCase):
        def test_handle_interface(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                context = contextvars.copy_context()
                soon = loop.call_soon(print, "x", context=context)
                later = loop.call_later(100, print)
                at = loop.call_at(loop.time() + 50, print)
                observed = [
                    isinstance(soon, asyncio.Handle),
                    isinstance(later, asyncio.TimerHandle),
                    not soon.cancelled(),
                    "print" in repr(soon),
                    at < later,
                    sorted([later, at]) == [at, later],
                    abs(later.when() - loop.time() - 100) < 1,
                ]
                if sys.version_info >= (3, 12):
                    observed.append(soon.get_context() is context)
                soon.cancel()
                later.cancel()
                at.cancel()
                observed += [soon.cancelled(), later.cancelled(), "cancelled" in repr(later)]
                return observed

            self.assertTrue(all(on_both(self, scenario)))

        def test_call_soon_threadsafe_wakes_the_waiting_loop(self):
            async def scenario():
                loop = asyncio.get_running_loop()
                woken = loop.create_future()
                started = time.monotonic()

                def from_another_thread():
                    time.sleep(0.05)
                    loop.call_soon_threadsafe(woken.set_result, "woken")

                threading.Thread(target=from_another_thread).start()
                result = await asyncio.wait_for(woken, 10)
                return result, time.monotonic() - started < 5

            self.assertEqual(on_both(self, scenario), ("woken", True))

else:  # PyPy: no test here (test_native_core checks PyPy's side).
    pass


if __name__ == "__main__":
    unittest.main()

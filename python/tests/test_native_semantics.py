"""asyncio's semantics on the native loop, each observed on it and on
asyncio.SelectorEventLoop and compared, beyond what test_asyncio_semantics.py
checks on every implementation (contexts, the order of a wait's callbacks,
the socket until connection_lost, resume_writing at the low-water mark, the
source traceback in debug mode): timers' order and odd deadlines,
exceptions in callbacks, handles, KeyboardInterrupt, call_soon_threadsafe.
CPython only (see native_support).
"""

import asyncio
import contextvars
import socket
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON, LOOPS, native_loop, run  # noqa: E402

def on_both(test, scenario, *args):
    """The scenario's observations on both loops, which must be equal;
    returns them."""
    seen = {name: run(scenario(*args), factory) for name, factory in LOOPS}
    test.assertEqual(seen["native"], seen["asyncio"])
    return seen["native"]


if CPYTHON:

    class Order(unittest.TestCase):
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

    class DebugMode(unittest.TestCase):
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

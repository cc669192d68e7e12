"""The asyncio event loops the tests run on: asyncio's own
SelectorEventLoop (the reference), and each implementation of evloop's
asyncio loop that can run in this process (evloop/_implementation.py: the
ctypes path everywhere, the native path where it is built), whatever
EVLOOP_IMPL chose for evloop.new_event_loop().

Not a test module (its name does not start with "test"): the asyncio test
modules import it. ``LOOPS`` lists (name, factory) pairs, the reference
first; ``EVLOOP_LOOPS`` only evloop's. A test runs its scenario on each
(``subTest(loop=name)``) and asserts the same outcome.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evloop import _implementation  # noqa: E402  (after the path is set)

HERE = Path(__file__).resolve().parent
#: A self-signed certificate for "localhost" and 127.0.0.1 (until 2126), with its key.
KEYCERT = str(HERE / "keycert.pem")

REFERENCE = ("asyncio", asyncio.SelectorEventLoop)
EVLOOP_LOOPS = [
    (f"evloop-{name}", _implementation.event_loop_class(name))
    for name, unavailable in _implementation.availability().items()
    if unavailable is None
]
LOOPS = [REFERENCE] + EVLOOP_LOOPS


def run(factory, main, *args, debug=False):
    """``main(*args)`` to completion on a new loop from `factory`, as
    asyncio.run does (3.8 has no asyncio.Runner): then the tasks left are
    cancelled, the async generators closed, the loop closed."""
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.set_debug(debug)
        return loop.run_until_complete(main(*args))
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def server_ssl_context():
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(KEYCERT)
    return context


def client_ssl_context():
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(KEYCERT)
    return context

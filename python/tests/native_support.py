"""What the native loop's tests share (test_native_*.py): whether this
Python has the native loop, the two loops they compare (evloop's native
one and asyncio's SelectorEventLoop), and payloads.

Not a test module (its name does not start with "test").
"""

import asyncio
import platform
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evloop import _native  # noqa: E402

#: The native loop exists only on CPython; on PyPy the tests that need it are
#: not defined (test_native_core checks it says it is unavailable there).
CPYTHON = platform.python_implementation() == "CPython"

MIB = 1 << 20


def native_loop():
    return _native.EventLoop()


#: The two loops an asyncio behaviour is compared on: (name, factory).
LOOPS = (("native", native_loop), ("asyncio", asyncio.SelectorEventLoop))


def run(coro, factory=native_loop, debug=False):
    """Runs `coro` to its end on a fresh loop of `factory`, as asyncio.run."""
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.set_debug(debug)
        return loop.run_until_complete(coro)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def pattern(size, seed):
    """`size` bytes that depend on `seed` (random.randbytes is 3.9+)."""
    return random.Random(seed).getrandbits(8 * size).to_bytes(size, "little") if size else b""

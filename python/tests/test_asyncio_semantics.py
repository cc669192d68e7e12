"""What evloop's asyncio loop must do as asyncio's SelectorEventLoop does
(issue 25, item 3), each scenario run on both loops (see loops.py) with the
same expected outcome:

- in debug mode, a handle's source traceback ends at the caller of call_soon.
"""

import asyncio
import contextvars
import os
import socket
import struct
import sys
import tempfile
import unittest

from loops import LOOPS, client_ssl_context, run, server_ssl_context

VAR = contextvars.ContextVar("evloop_test_var", default="unset")
MIB = 1 << 20
BIG = bytes(range(256)) * (MIB // 256)  # what a protocol answers to b"big"


def reset(sock):
    """Closes `sock` with RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def wait_until(predicate, seconds=10.0):
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true in time")


class DebugMode(unittest.TestCase):
    def test_source_traceback_names_the_caller_of_call_soon(self):
        def schedule(loop):
            return loop.call_soon(lambda: None)  # the frame the traceback must end with

        for name, factory in LOOPS:
            with self.subTest(loop=name):
                loop = factory()
                try:
                    loop.set_debug(True)
                    handle = schedule(loop)
                    frame = handle._source_traceback[-1]
                    self.assertEqual((frame.name, frame.filename), ("schedule", __file__))
                    self.assertIn("call_soon", frame.line)
                    handle.cancel()
                finally:
                    loop.close()


if __name__ == "__main__":
    unittest.main()

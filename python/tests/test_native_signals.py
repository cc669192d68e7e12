"""Signals on the native loop, in a child process each, as on asyncio's
loop: Ctrl-C (SIGINT) ends run_forever with KeyboardInterrupt while the
loop waits and while it serves a busy echo; add_signal_handler's callback
runs in both cases; another thread runs while the loop waits (the GIL is
released around the wait). CPython only (see native_support).
"""

import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON  # noqa: E402

PYTHON_DIR = str(Path(__file__).resolve().parents[1])

# The child: a TCP echo server on the loop named by argv[1] ("native" or
# "asyncio"); with argv[2] == "busy", a thread keeps an echo going. It
# prints "ready" once serving, "usr1" when SIGUSR1's handler runs, and
# "ticks N" (a thread counting while the loop runs); SIGINT ends it.
CHILD = r"""
import asyncio, socket, sys, threading, time
sys.path.insert(0, PYTHON_DIR)
from evloop import _native

def factory():
    return _native.EventLoop() if sys.argv[1] == "native" else asyncio.SelectorEventLoop()

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

ticks = [0]
def count():
    while True:
        ticks[0] += 1
        time.sleep(0.001)

def busy(port):
    sock = socket.create_connection(("127.0.0.1", port))
    while True:
        sock.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(sock.recv(64 - got))

loop = factory()
server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
port = server.sockets[0].getsockname()[1]
loop.add_signal_handler(__import__("signal").SIGUSR1, lambda: print("usr1", flush=True))
threading.Thread(target=count, daemon=True).start()
if sys.argv[2] == "busy":
    threading.Thread(target=busy, args=(port,), daemon=True).start()
loop.call_later(0.3, lambda: print("ready", flush=True))
loop.call_later(0.6, lambda: print("ticks", ticks[0], flush=True))
try:
    loop.run_forever()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(0)
finally:
    server.close()
    loop.close()
print("run_forever returned", flush=True)
sys.exit(1)
""".replace("PYTHON_DIR", repr(PYTHON_DIR))


def run_child(loop_name, load):
    """The child's output lines after SIGUSR1 then SIGINT."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, loop_name, load],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT's default action, even if the test runs as a background job.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("ticks"):
                break
            if time.monotonic() > deadline:
                break
        child.send_signal(signal.SIGUSR1)
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("usr1"):
                break
        time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        lines += out.split()
        return lines, child.returncode, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


if CPYTHON:

    class Signals(unittest.TestCase):
        def check(self, load):
            for loop_name in ("native", "asyncio"):
                with self.subTest(loop=loop_name):
                    lines, status, err = run_child(loop_name, load)
                    self.assertEqual(status, 0, f"{lines}\n{err}")
                    self.assertIn("ready", lines)
                    self.assertIn("usr1", lines, f"{lines}\n{err}")
                    self.assertEqual(lines[-1], "KeyboardInterrupt", f"{lines}\n{err}")
                    ticks = [line for line in lines if line.startswith("ticks")]
                    # ~300 ticks in 0.3 s if the thread ran while the loop
                    # waited; a loop that held the GIL would starve it.
                    self.assertTrue(ticks and int(ticks[0].split()[1]) > 20, lines)

        def test_idle(self):
            self.check("idle")

        def test_under_load(self):
            self.check("busy")

else:  # PyPy: no test here (test_native_core checks PyPy's side).
    pass


if __name__ == "__main__":
    unittest.main()

"""What the tests of evloop.Loop's UDP, Unix-domain and process methods
share: waiting for a condition (patiently: the machine may be loaded), and
whether IPv6 loopback is here. Not a test module (its name does not start
with "test")."""

import socket
import time

#: Seconds a test waits for what it expects, on a loaded machine.
PATIENCE = 30


def run_until(loop, condition):
    """Runs `loop` (an evloop.Loop) until `condition()` is true."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        loop.run_once(0.5)


def has_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False

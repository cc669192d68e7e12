"""evloop.Loop's and EvloopSelector's crossings into the library on both
paths (evloop/_implementation.py's native_calls(): the native module's
functions on CPython, ctypes with EVLOOP_IMPL=ctypes and on PyPy).

Each scenario below runs in a child process once per path (EVLOOP_IMPL)
and prints what it saw; the two must agree, and agree with what the
contract says. The scenarios: callbacks that unregister and close other
fds of the same batch, stop the loop, raise; a signal handler's exception
during a wait; a callback's exception coming out of run() with the rest of
the batch kept; nothing left alive afterwards (weak references).
"""

import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import unittest
import weakref
from pathlib import Path

PYTHON_DIR = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, PYTHON_DIR)

import evloop  # noqa: E402
from evloop import _implementation  # noqa: E402

ON_CPYTHON = sys.implementation.name == "cpython"


class Gone:
    """An object whose weak reference says whether anything still holds it."""


def selector_batch(make_selector):
    """Four fds ready in one select(): the first callback unregisters and
    closes the third's and modifies the fourth's; what each sees."""
    sel = make_selector()
    pairs = [socket.socketpair() for _ in range(4)]
    seen = []
    for i, (a, b) in enumerate(pairs):
        sel.register(a, selectors.EVENT_READ, i)
        b.send(b"x")
    ready = sel.select(1)
    first = min(key.data for key, _ in ready)
    for key, mask in sorted(ready, key=lambda item: item[0].data):
        if key.data == first:
            victim = pairs[first + 2][0]
            sel.unregister(victim)
            victim.close()
            sel.modify(pairs[first + 3][0], selectors.EVENT_WRITE, 100)
        seen.append((key.data, mask, key.fd in sel.get_map()))
    again = sorted((key.data, mask) for key, mask in sel.select(0))
    sel.close()
    for a, b in pairs:
        a.close()
        b.close()
    return {"first": seen, "again": again}


def selector_signal():
    """A signal handler that raises during select(), and one that does not
    (the wait goes on for what is left of the timeout)."""
    sel = evloop.EvloopSelector()
    a, b = socket.socketpair()
    sel.register(a, selectors.EVENT_READ)
    outcome = {}

    class Alarm(Exception):
        pass

    def raising(signo, frame):
        raise Alarm()

    previous = signal.signal(signal.SIGALRM, raising)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        try:
            sel.select(5)
            outcome["raised"] = None
        except Alarm:
            outcome["raised"] = "Alarm"
        calls = []
        signal.signal(signal.SIGALRM, lambda signo, frame: calls.append(signo))
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        result = sel.select(0.3)
        outcome["waited_the_timeout"] = time.monotonic() - start >= 0.3
        outcome["handler_ran"] = calls == [signal.SIGALRM]
        outcome["result"] = result
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    sel.close()
    a.close()
    b.close()
    return outcome


def selector_lifetime():
    """Data and fileobjs of keys unregistered are not kept alive by the
    selector nor by the lists select() returned; reference counts stay."""
    sel = evloop.EvloopSelector()
    a, b = socket.socketpair()
    data = Gone()
    ref = weakref.ref(data)
    sel.register(a, selectors.EVENT_READ, data)
    b.send(b"x")
    counts = sys.getrefcount(data) if hasattr(sys, "getrefcount") else None
    for _ in range(1000):
        ready = sel.select(0)
    assert ready and ready[0][0].data is data
    del ready
    after = sys.getrefcount(data) if hasattr(sys, "getrefcount") else None
    sel.unregister(a)
    del data
    gc.collect()
    alive = ref() is not None
    sel.close()
    a.close()
    b.close()
    return {"counts_equal": counts == after, "alive": alive}


class Recorder(evloop.Protocol):
    def __init__(self, log, name):
        self.log, self.name, self.transport = log, name, None
        self.hook = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.hook is not None:
            hook, self.hook = self.hook, None
            return hook(data)
        # b's data may come before a's in the batch, or never: not logged.
        if self.name != "b":
            self.log.append([self.name, data.decode()])

    def connection_lost(self, exc):
        self.log.append([self.name, "lost", type(exc).__name__ if exc else None])


def loop_streams():
    """Three client streams whose data arrives in one iteration: the
    first's data_received closes the second, stops the loop and raises;
    the exception comes out of run_once(), the rest of the batch comes with
    the next; a timer's exception comes out of run(); nothing stays alive."""
    log = []
    loop = evloop.Loop()
    servers = []

    class Echo(evloop.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            servers.append(self)

        def data_received(self, data):
            self.transport.write(data)

    server = loop.start_server(Echo, "127.0.0.1", 0)
    clients = [Recorder(log, name) for name in ("a", "b", "c")]
    transports = [loop.open_connection(lambda p=p: p, "127.0.0.1", server.port) for p in clients]
    while len(servers) < 3 or any(p.transport is None for p in clients):
        loop.run_once(5)
    outcome = {}

    def first(data):
        log.append(["first", data.decode()])
        clients[1].transport.close()
        loop.stop()
        raise ValueError("boom")

    clients[0].hook = first
    for transport, name in zip(transports, "abc"):
        transport.write(name.encode())
    try:
        while True:
            loop.run_once(5)
    except ValueError as exc:
        outcome["raised"] = str(exc)
    while not any(entry[0] == "b" and entry[1] == "lost" for entry in log) or not any(entry == ["c", "c"] for entry in log):
        loop.run_once(5)
    outcome["log"] = sorted(log)

    def timer():
        raise KeyError("timer")

    loop.call_later(0.01, timer)
    try:
        loop.run()
        outcome["timer"] = None
    except KeyError as exc:
        outcome["timer"] = str(exc)
    refs = [weakref.ref(p) for p in clients + servers]
    for transport in transports:
        transport.close()
    server.close()
    while loop._has_work():
        loop.run_once(1)
    loop.close()
    del clients, servers, transports, transport, first, loop, server
    gc.collect()
    outcome["alive"] = sum(ref() is not None for ref in refs)
    return outcome


SCENARIOS = {
    "selector_batch": lambda: selector_batch(evloop.EvloopSelector),
    "selector_signal": selector_signal,
    "selector_lifetime": selector_lifetime,
    "loop_streams": loop_streams,
}


def run_child(scenario, impl):
    env = dict(os.environ, EVLOOP_IMPL=impl)
    try:
        done = subprocess.run(
            [sys.executable, __file__, scenario], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        raise AssertionError(f"{scenario} on {impl}: no answer in 120 s: {exc.stderr!r}") from None
    if done.returncode != 0:
        raise AssertionError(f"{scenario} on {impl}: status {done.returncode}\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


class BothPaths(unittest.TestCase):
    """Each scenario on the path this Python has, and on CPython on both."""

    def paths(self):
        return ["native", "ctypes"] if ON_CPYTHON else ["ctypes"]

    def outcomes(self, scenario):
        found = {impl: run_child(scenario, impl) for impl in self.paths()}
        first = next(iter(found.values()))
        for impl, outcome in found.items():
            self.assertEqual(outcome, first, f"{scenario}: {impl} differs: {found}")
        return first

    def test_which_path(self):
        calls = _implementation.native_calls()
        sel = evloop.EvloopSelector()
        self.addCleanup(sel.close)
        with evloop.Loop() as loop:
            dispatch = loop._exchange.native_dispatch
        if ON_CPYTHON and os.environ.get("EVLOOP_IMPL", "") != "ctypes":
            self.assertIsNotNone(calls)
            self.assertIsNotNone(sel._native_select)
            self.assertIsNotNone(dispatch)
        else:
            self.assertIsNone(calls)
            self.assertIsNone(sel._native_select)
            self.assertIsNone(dispatch)
        # Never an error for the Loop and the selector: ctypes where native cannot run.
        self.assertIsNone(_implementation._choose_calls({"EVLOOP_IMPL": "ctypes"}))
        if not ON_CPYTHON:
            self.assertIsNone(_implementation._choose_calls({"EVLOOP_IMPL": "native"}))

    def test_callbacks_unregister_close_and_modify_others_in_a_batch(self):
        outcome = self.outcomes("selector_batch")
        # As the standard library's selector: the list is made before the
        # callbacks run, so the closed fd's key is still in it, its fd no
        # longer in the map; the next select() no longer has it, and the
        # modified one is reported for its new interest.
        self.assertEqual(outcome, json.loads(json.dumps(selector_batch(selectors.EpollSelector))))
        self.assertEqual([entry[2] for entry in outcome["first"]], [True, True, False, True])
        self.assertEqual(outcome["again"], [[0, 1], [1, 1], [100, 2]])

    def test_signal_handler_raises_or_the_wait_goes_on(self):
        outcome = self.outcomes("selector_signal")
        self.assertEqual(
            outcome, {"raised": "Alarm", "waited_the_timeout": True, "handler_ran": True, "result": []}
        )

    def test_nothing_kept_alive_by_the_selector(self):
        self.assertEqual(self.outcomes("selector_lifetime"), {"counts_equal": True, "alive": False})

    def test_stream_callbacks_close_stop_and_raise(self):
        outcome = self.outcomes("loop_streams")
        self.assertEqual(outcome["raised"], "boom")
        self.assertEqual(outcome["timer"], "'timer'")
        self.assertEqual(outcome["alive"], 0)
        self.assertIn(["first", "a"], outcome["log"])
        self.assertIn(["c", "c"], outcome["log"])
        self.assertIn(["b", "lost", None], outcome["log"])


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in SCENARIOS:
        print(json.dumps(SCENARIOS[sys.argv[1]]()))
    else:
        unittest.main()

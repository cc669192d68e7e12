"""The one place that chooses the asyncio loop's implementation
(evloop/_implementation.py): the native path when it can run, else the
ctypes path; EVLOOP_IMPL chooses instead, and asking for one that cannot
run is an error that says why; python -m evloop says which runs. And the
library is loaded once, whatever is used."""

import asyncio
import os
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402
from evloop import _implementation  # noqa: E402

PATIENCE = 120
#: The native path runs exactly on CPython (its library has the layer).
CPYTHON = sys.implementation.name == "cpython"
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def run_python(code, **env):
    """`code` in a new interpreter with `env` set (None: removed)."""
    environ = dict(os.environ)
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          cwd=PACKAGE_DIR, timeout=PATIENCE)


class Choice(unittest.TestCase):
    def test_the_ctypes_path_runs_everywhere(self):
        self.assertIsNone(_implementation.availability()["ctypes"])
        cls = _implementation.event_loop_class("ctypes")
        self.assertTrue(issubclass(cls, asyncio.AbstractEventLoop))

    def test_the_native_path_runs_exactly_on_cpython(self):
        why = _implementation.availability()["native"]
        if CPYTHON:
            self.assertIsNone(why)
            cls = _implementation.event_loop_class("native")
            self.assertTrue(issubclass(cls, asyncio.AbstractEventLoop))
            self.assertEqual(cls.__module__, "evloop._native._loop")
        else:
            self.assertIn("CPython", why)
            with self.assertRaises(_implementation.Unavailable):
                _implementation.event_loop_class("native")

    def test_default_is_the_first_available(self):
        choice = _implementation.choose({})
        if CPYTHON:
            self.assertEqual((choice.name, choice.reason), ("native", "the first available"))
        else:
            self.assertEqual(choice.name, "ctypes")
            self.assertIn("native unavailable: it needs CPython", choice.reason)

    def test_evloop_impl_chooses(self):
        choice = _implementation.choose({"EVLOOP_IMPL": "ctypes"})
        self.assertEqual((choice.name, choice.reason), ("ctypes", "EVLOOP_IMPL=ctypes"))
        self.assertIs(choice.event_loop, _implementation.event_loop_class("ctypes"))

    def test_asking_for_what_cannot_run_is_an_error_saying_why(self):
        saved = dict(_implementation.PROVIDERS)

        def unavailable():
            raise _implementation.Unavailable("no layer in this library")

        try:
            _implementation.PROVIDERS["native"] = unavailable
            with self.assertRaises(ImportError) as caught:
                _implementation.choose({"EVLOOP_IMPL": "native"})
        finally:
            _implementation.PROVIDERS.update(saved)
        message = str(caught.exception)
        self.assertIn("EVLOOP_IMPL=native", message)
        self.assertIn("not available: no layer in this library", message)
        with self.assertRaises(ImportError) as caught:
            _implementation.choose({"EVLOOP_IMPL": "fast"})
        self.assertIn("native or ctypes", str(caught.exception))

    def test_a_new_implementation_plugs_in_with_one_provider(self):
        class Fake(asyncio.SelectorEventLoop):
            pass

        saved = dict(_implementation.PROVIDERS)
        try:
            _implementation.PROVIDERS["native"] = lambda: Fake
            self.assertIs(_implementation.choose({}).event_loop, Fake)
            self.assertIs(_implementation.choose({"EVLOOP_IMPL": "ctypes"}).event_loop,
                          saved["ctypes"]())
        finally:
            _implementation.PROVIDERS.clear()
            _implementation.PROVIDERS.update(saved)

    def test_the_public_names_use_the_choice(self):
        self.assertEqual(evloop.implementation(), _implementation.current().name)
        self.assertIs(evloop.EventLoop, _implementation.current().event_loop)
        loop = evloop.new_event_loop()
        try:
            self.assertIsInstance(loop, evloop.EventLoop)
        finally:
            loop.close()
        self.assertIsInstance(evloop.EventLoopPolicy().new_event_loop(), evloop.EventLoop)


class InAProcess(unittest.TestCase):
    """What a program sees, with the environment variable set or not."""

    def test_evloop_impl_chooses_in_a_process(self):
        """Each path where it runs; EVLOOP_IMPL=native off CPython fails on
        first use, saying why, and evloop works without its asyncio loop."""
        code = "import evloop\nloop = evloop.new_event_loop()\nprint(type(loop).__module__)\nloop.close()"
        runs = [("ctypes", "evloop._ctypes_asyncio.loop")] + ([("native", "evloop._native._loop")] if CPYTHON else [])
        for impl, module in runs:
            with self.subTest(impl=impl):
                result = run_python(code, EVLOOP_IMPL=impl)
                self.assertEqual(result.stdout, module + "\n", result.stderr)
        if CPYTHON:
            return
        result = run_python("import evloop\nevloop.new_event_loop()", EVLOOP_IMPL="native")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImplementationError: EVLOOP_IMPL=native: the native path is not available", result.stderr)
        self.assertTrue(issubclass(_implementation.ImplementationError, ImportError))
        # Without the asyncio loop, evloop works as before.
        result = run_python("import evloop\nevloop.Loop().close()\nprint('ok')", EVLOOP_IMPL="native")
        self.assertEqual(result.stdout, "ok\n", result.stderr)

    def test_python_m_evloop_says_which_path_runs(self):
        if CPYTHON:
            cases = (
                ({"EVLOOP_IMPL": None}, "asyncio loop: the native path (the first available)", 0),
                ({"EVLOOP_IMPL": "native"}, "asyncio loop: the native path (EVLOOP_IMPL=native)", 0),
            )
        else:
            cases = (
                ({"EVLOOP_IMPL": None}, "asyncio loop: the ctypes path (native unavailable: ", 0),
                ({"EVLOOP_IMPL": "native"}, "FAIL asyncio loop: EVLOOP_IMPL=native: the native path is not available", 1),
            )
        for env, line, status in cases + (
            ({"EVLOOP_IMPL": "ctypes"}, "asyncio loop: the ctypes path (EVLOOP_IMPL=ctypes)", 0),
        ):
            with self.subTest(env=env):
                result = run_python("import runpy; runpy.run_module('evloop', run_name='__main__')", **env)
                self.assertEqual(result.returncode, status, result.stdout + result.stderr)
                self.assertIn("\n" + line, result.stdout)
                if status == 0:
                    self.assertIn("ok   asyncio echo: 17 bytes came back", result.stdout)

    def test_the_library_is_loaded_once(self):
        # Every ctypes load of libevloop while evloop is imported and its
        # Loop, selector and asyncio loop are used.
        code = """
import ctypes
loads = []
original = ctypes.CDLL.__init__
def counting(self, name, *args, **kwargs):
    if name and "libevloop" in str(name):
        loads.append(name)
    original(self, name, *args, **kwargs)
ctypes.CDLL.__init__ = counting
import evloop
evloop.Loop().close()
evloop.EvloopSelector().close()
evloop.new_event_loop().close()
print(len(loads))
"""
        result = run_python(code)
        self.assertEqual(result.stdout.strip(), "1", result.stderr)


if __name__ == "__main__":
    unittest.main()

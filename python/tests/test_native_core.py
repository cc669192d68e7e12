"""The native layer's entry point (evl_cpython_init through ctypes.PyDLL):
what it returns on CPython, how it refuses what it cannot serve, and that
on PyPy the native loop says it is unavailable (the ctypes path serves it).
Run on every CPython by tests/native_loop.rs, and on PyPy by tests/python.rs.
"""

import ctypes
import platform
import sys
import unittest
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402
from evloop import _lib, _native  # noqa: E402
from evloop._native import _load  # noqa: E402

CPYTHON = platform.python_implementation() == "CPython"


# Only CPython has the layer (and a skip would fail the harness): PyPy runs
# the test below instead.
if CPYTHON:

    class EntryPoint(unittest.TestCase):
        def init(self):
            function = ctypes.PyDLL(_lib.lib._name).evl_cpython_init
            function.restype = ctypes.py_object
            function.argtypes = [ctypes.c_uint32]
            return function

        def test_returns_the_same_module_of_this_layer_version(self):
            core = self.init()(_load.LAYER_VERSION)
            self.assertIsInstance(core, ModuleType)
            self.assertEqual(core.__name__, "evloop._native.core")
            self.assertEqual(core.version, _load.LAYER_VERSION)
            self.assertIs(self.init()(_load.LAYER_VERSION), core)
            self.assertIs(_load.load(), core)
            self.assertTrue(_native.available())
            self.assertIsNone(_native.unavailable_reason())

        def test_uses_vectorcall_where_cpython_exports_it(self):
            # PyObject_Vectorcall is exported from 3.11 on (a static inline
            # function before): older ones fall back.
            self.assertEqual(_load.load().vectorcall, sys.version_info >= (3, 11))

        def test_another_layer_version_is_an_import_error(self):
            with self.assertRaisesRegex(ImportError, "CPython layer is version 1, the package asked for 2"):
                self.init()(2)

        def test_called_without_the_gil_it_returns_instead_of_crashing(self):
            # ctypes.CDLL releases the GIL around the call, and crashes on a NULL
            # py_object: the init takes the GIL itself and returns its error.
            function = ctypes.CDLL(_lib.lib._name).evl_cpython_init
            function.restype = ctypes.py_object
            function.argtypes = [ctypes.c_uint32]
            self.assertIs(function(_load.LAYER_VERSION), _load.load())
            error = function(3)
            self.assertIsInstance(error, ImportError)
            self.assertIn("asked for 3", str(error))


class Availability(unittest.TestCase):
    """What runs everywhere: the native loop is available exactly on CPython."""

    def test_available_exactly_on_cpython(self):
        self.assertEqual(_native.available(), CPYTHON)
        reason = _native.unavailable_reason()
        if CPYTHON:
            self.assertIsNone(reason)
        else:
            self.assertIn("needs CPython", reason)
            with self.assertRaisesRegex(ImportError, "needs CPython"):
                _load.load()
            # The ctypes path still serves asyncio there.
            loop = evloop.new_event_loop()
            try:
                self.assertEqual(loop.run_until_complete(_sleep_zero()), "slept")
            finally:
                loop.close()


async def _sleep_zero():
    import asyncio

    await asyncio.sleep(0)
    return "slept"


if __name__ == "__main__":
    unittest.main()

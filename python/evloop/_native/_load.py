"""Loading the native layer: ``libevloop.so``'s ``evl_cpython_init``,
called once through ``ctypes.PYFUNCTYPE`` on the package's one
loaded library (the GIL held, as ``ctypes.PyDLL`` calls), returns the module of
native types (``core``); nothing is called through ctypes after that.

Only on CPython: PyPy has no ``ctypes.PyDLL`` (and its emulation of
CPython's C API would make native code slower, not faster), so there the
package keeps its ctypes path and :func:`load` raises ``ImportError`` with
the reason.
"""

from __future__ import annotations

import ctypes
import platform
from types import ModuleType
from typing import Optional

#: The interface version of the library's CPython layer this package was
#: written for (EVL_CPYTHON_VERSION in src/cpython/mod.rs).
LAYER_VERSION = 1

_core: Optional[ModuleType] = None


def load() -> ModuleType:
    """The native module, loaded on the first call; ImportError when this
    Python cannot have it (not CPython, or a library without the layer)."""
    global _core
    if _core is None:
        _core = _load()
    return _core


def _load() -> ModuleType:
    implementation = platform.python_implementation()
    if implementation != "CPython" or not hasattr(ctypes, "PyDLL"):
        raise ImportError(f"evloop's native asyncio loop needs CPython, not {implementation}")
    from .._lib import lib  # the library the package found (one search, one copy)

    # The one library the package loaded, its entry point called as
    # PyDLL calls (PYFUNCTYPE: the GIL held, a Python error raised): no
    # second load of the library.
    prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_uint32)
    try:
        init = prototype(("evl_cpython_init", lib))
    except AttributeError:
        raise ImportError(f"evloop: {lib._name} has no CPython layer (evl_cpython_init): rebuild it") from None
    core = init(LAYER_VERSION)  # raises ImportError itself when something is missing
    if not isinstance(core, ModuleType):
        raise ImportError(f"evloop: evl_cpython_init returned {core!r}")
    return core

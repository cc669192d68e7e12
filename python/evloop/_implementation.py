"""Which implementation of evloop's asyncio loop runs: the one place that
decides what ``evloop.new_event_loop()``, ``evloop.EventLoop``,
``evloop.EventLoopPolicy``, ``evloop.install()`` and ``evloop.run()`` use.

- ``native``: the loop's hot path inside libevloop.so, calling CPython's
  own exported functions found at run time (``_native``; issue 26).
  CPython only (PyPy has no ``ctypes.PyDLL``), and a library with the
  CPython layer (``evl_cpython_init``).
- ``ctypes``: asyncio's SelectorEventLoop over an ``evloop.Loop`` driven
  through ctypes (``_ctypes_asyncio``). Every Python: CPython and PyPy.

By default the first available of ``native`` then ``ctypes``. The
environment variable ``EVLOOP_IMPL`` (``native`` or ``ctypes``) chooses
instead, so that the ctypes path runs (and stays tested) on CPython too;
asking for one that cannot run here is an error that says why. The choice
is made once per process, at the first use of one of the names above.

``evloop.Loop`` and ``EvloopSelector`` follow the same choice for their
crossings into the library (:func:`native_calls`): the native module's
functions on the native path, ctypes otherwise.

An implementation is a provider: a function that returns its event loop
class (a subclass of ``asyncio.AbstractEventLoop`` taking no argument), or
raises ``Unavailable`` saying why it cannot run here. A new one is a new
module plus one entry in ``PROVIDERS``.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Union

#: The environment variable that chooses the implementation.
ENV = "EVLOOP_IMPL"


class Unavailable(Exception):
    """An implementation cannot run in this process; the message says why."""


class ImplementationError(ImportError):
    """EVLOOP_IMPL names an implementation that is unknown or unavailable."""


def _native() -> type:
    if sys.implementation.name != "cpython":
        raise Unavailable(f"it needs CPython, this is {sys.implementation.name}")
    from . import _native as native

    reason = native.unavailable_reason()
    if reason is not None:
        raise Unavailable(reason)
    return native.EventLoop  # type: ignore[no-any-return]


def _ctypes() -> type:
    from ._ctypes_asyncio import EventLoop

    return EventLoop


#: Every implementation, by name, in the order the default tries them.
PROVIDERS: Dict[str, Callable[[], type]] = {"native": _native, "ctypes": _ctypes}


class Choice(NamedTuple):
    name: str
    event_loop: type
    #: Why it runs: EVLOOP_IMPL, or why the ones before it in PROVIDERS could not.
    reason: str


def event_loop_class(name: str) -> type:
    """The event loop class of the implementation `name`; Unavailable (or
    KeyError for an unknown name) if it cannot run here."""
    return PROVIDERS[name]()


def availability() -> Dict[str, Optional[str]]:
    """Each implementation: None if it can run here, else why not."""
    found: Dict[str, Optional[str]] = {}
    for name in PROVIDERS:
        try:
            event_loop_class(name)
            found[name] = None
        except Unavailable as why:
            found[name] = str(why)
    return found


def choose(environ: Mapping[str, str] = os.environ) -> Choice:
    """The implementation EVLOOP_IMPL asks for, or the first available one.
    ImplementationError for an unknown or unavailable one asked for."""
    wanted = environ.get(ENV, "").strip()
    if wanted:
        if wanted not in PROVIDERS:
            raise ImplementationError(f"{ENV}={wanted!r}: not an implementation of evloop ({' or '.join(PROVIDERS)})")
        try:
            return Choice(wanted, event_loop_class(wanted), f"{ENV}={wanted}")
        except Unavailable as why:
            raise ImplementationError(
                f"{ENV}={wanted}: the {wanted} path is not available: {why}; "
                f"unset {ENV}, or set it to {' or '.join(n for n in PROVIDERS if n != wanted)}"
            ) from None
    skipped: List[str] = []
    for name in PROVIDERS:
        try:
            return Choice(name, event_loop_class(name), "; ".join(skipped) or "the first available")
        except Unavailable as why:
            skipped.append(f"{name} unavailable: {why}")
    raise ImplementationError("no implementation of evloop's asyncio loop can run here: " + "; ".join(skipped))


_chosen: Optional[Choice] = None


def current() -> Choice:
    """The implementation this process uses (chosen at the first call)."""
    global _chosen
    if _chosen is None:
        _chosen = choose()
    return _chosen


#: native_calls()'s answer once made: the module, or False for none.
_calls: Optional[Union[ModuleType, bool]] = None


def native_calls() -> Optional[ModuleType]:
    """The library's native module, whose functions ``evloop.Loop`` and
    ``EvloopSelector`` call instead of their ctypes calls (``exchange``,
    ``exchange_writes``, ``dispatch_data``, ``select``: see
    src/cpython/loop_calls.rs); None where they keep ctypes:
    ``EVLOOP_IMPL=ctypes``, PyPy, a library without them. They never fail
    for want of the native path (``EVLOOP_IMPL=native`` where it cannot run
    fails at the first use of the asyncio names only). Decided once per
    process."""
    global _calls
    if _calls is None:
        _calls = _choose_calls(os.environ) or False
    return _calls if isinstance(_calls, ModuleType) else None


#: What native_calls() needs of the native module.
_CALLS = ("exchange", "exchange_writes", "dispatch_data", "select")


def _choose_calls(environ: Mapping[str, str]) -> Optional[ModuleType]:
    if environ.get(ENV, "").strip() == "ctypes" or sys.implementation.name != "cpython":
        return None
    from ._native import _load

    try:
        core = _load.load()
    except ImportError:
        return None
    return core if all(hasattr(core, name) for name in _CALLS) else None

"""The C ABI of libevloop, as ctypes sees it: loading the library (once),
one declaration per function of ``include/evloop.h`` (same order, same
names), the header's constants and structs, and the rule that turns a
negative return into an exception.

This is the one way the other modules talk to the library: through the
functions declared here (and, for the two calls of every loop iteration,
the raw forms of two of them, see ``raw_exchange``). Nothing here knows
about loops or selectors. A test fails when a function of the header has
no declaration here, or one with a different number of arguments.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

#: The ABI this package was written for (``EVL_ABI_VERSION``).
ABI_VERSION = 1

# ---- loading ---------------------------------------------------------------

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent.parent
_NAME = "libevloop.so"


def _candidates() -> Iterator[str]:
    """Where the library is looked for, in order (see the package README).
    A generator: the system search (which runs ldconfig) only if needed."""
    env = os.environ.get("EVLOOP_LIBRARY")
    if env:
        # An explicit choice is the only one: falling back would hide a typo.
        yield env
        return
    yield str(_PACKAGE_DIR / _NAME)
    yield str(_REPO_DIR / "target" / "release" / _NAME)
    yield str(_REPO_DIR / "target" / "debug" / _NAME)
    import ctypes.util  # imports subprocess and more: only when it is needed

    system = ctypes.util.find_library("evloop")
    if system:
        yield system


def _fix_command() -> str:
    if (_REPO_DIR / "Cargo.toml").is_file():
        return f"cd {_REPO_DIR} && cargo build --release"
    return "cargo build --release (in evloop's source tree), then set EVLOOP_LIBRARY=/path/to/libevloop.so"


def _load() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (no such file)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        try:
            abi = lib.evl_abi_version
        except AttributeError:
            tried.append(f"{path} (not libevloop: no evl_abi_version)")
            continue
        abi.restype, abi.argtypes = c_uint32, []
        version = abi()
        if version != ABI_VERSION:
            raise ImportError(
                f"evloop: {path} has ABI version {version}, this package needs {ABI_VERSION}; "
                f"rebuild the library to match the package: {_fix_command()}"
            )
        return lib
    raise ImportError(
        "evloop: libevloop.so not found. Looked for:\n  "
        + "\n  ".join(tried or ["ctypes.util.find_library('evloop') found nothing"])
        + f"\nFix: {_fix_command()}"
    )


lib = _load()

# ---- constants (include/evloop.h) ------------------------------------------

EVL_READ = 1
EVL_WRITE = 4
EVL_ERROR = 8
EVL_HUP = 16
EVL_RDHUP = 8192
EVL_EDGE = 2147483648
EVL_ONESHOT = 1073741824
EVL_EPANIC = -1000

EVL_STREAM_DATA = 1
EVL_STREAM_EOF = 2
EVL_STREAM_DRAINED = 3
EVL_STREAM_CLOSED = 4
EVL_STREAM_ACCEPTED = 5
EVL_STREAM_CONNECTED = 6
EVL_STREAM_IO = 7

EVL_LISTEN_REUSEPORT = 1

EVL_LINGER_DEFAULT_BYTES = 1048576
EVL_LINGER_DEFAULT_MS = 2000

EVL_STREAM_DATAGRAMS = 8
EVL_STREAM_UDP_ERROR = 9
EVL_STREAM_FDS = 10

EVL_UDP_REUSEPORT = 1
EVL_UDP_BROADCAST = 2
EVL_UDP_IPV6_ONLY = 4
EVL_UDP_TRUNCATED = 32
EVL_UDP_OPT_BROADCAST = 1
EVL_UDP_OPT_MULTICAST_LOOP = 2
EVL_UDP_OPT_MULTICAST_TTL = 3
EVL_UDP_OPT_TTL = 4
EVL_UDP_DATAGRAM_OVERHEAD = 64

EVL_UNIX_ABSTRACT = 1
EVL_UNIX_REMOVE_STALE = 2
EVL_MAX_FDS = 253

EVL_OP_WRITE = 1
EVL_OP_SHUTDOWN = 2
EVL_OP_CLOSE = 3
EVL_OP_ABORT = 4
EVL_OP_PAUSE = 5
EVL_OP_RESUME = 6

# Thread pool, name resolution, child processes (python/evloop/_jobs.py).
EVL_POOL_MAX_SIZE = 1024
EVL_EAI_CANCELED = -101
EVL_SOCKADDR_SIZE = 28
EVL_NAME_MAX = 1024
EVL_STDIO_INHERIT = 0
EVL_STDIO_NULL = 1
EVL_STDIO_PIPE = 2
EVL_STDIO_FD = 3
EVL_STDIO_STDOUT = 4
EVL_SPAWN_SETSID = 1
EVL_SPAWN_SETPGROUP = 2
EVL_SPAWN_CLOSE_FDS = 4
EVL_SPAWN_MAX_STRINGS = 1 << 20

EVL_HOOK_PREPARE = 1
EVL_HOOK_CHECK = 2
EVL_HOOK_IDLE = 3

# TLS (python/evloop/tls.py).
EVL_ETLS_HANDSHAKE = -1001
EVL_ETLS_CERT = -1002
EVL_ETLS_PROTOCOL = -1003
EVL_ETLS_CONFIG = -1004
EVL_TLS_VERIFY_PEER = 0
EVL_TLS_VERIFY_CHAIN_ONLY = 1
EVL_TLS_VERIFY_NONE_DANGEROUS = 2
EVL_TLS_1_2 = 0x0303
EVL_TLS_1_3 = 0x0304

# ---- types -----------------------------------------------------------------


class evl_event(Structure):
    _fields_ = [("fd", c_int), ("revents", c_uint32), ("userdata", c_void_p)]


class evl_stream_event(Structure):
    _fields_ = [
        ("kind", c_uint32),
        ("fd", c_int),
        ("stream", c_uint64),
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
        ("userdata", c_void_p),
        ("status", c_int),
        ("revents", c_uint32),
    ]


class evl_stream_op(Structure):
    _fields_ = [
        ("stream", c_uint64),
        ("op", c_uint32),
        ("status", c_int),
        ("data", c_void_p),
        ("len", c_size_t),
    ]


class evl_stream_exchange_args(Structure):
    _fields_ = [
        ("write_streams", c_void_p),
        ("write_lens", c_void_p),
        ("write_data", c_void_p),
        ("events", c_void_p),
        ("write_count", c_int),
        ("timeout_ms", c_int),
        ("max_events", c_int),
        ("write_failed", c_int),
        ("data_events", c_int),
        ("data_len", c_size_t),
    ]


class evl_udp_datagram(Structure):
    _fields_ = [
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
        ("addr", c_void_p),
        ("addr_len", c_uint32),
        ("flags", c_uint32),
    ]


class evl_addrinfo_hints(Structure):
    _fields_ = [("flags", c_int), ("family", c_int), ("socktype", c_int), ("protocol", c_int)]


class evl_addrinfo(Structure):
    _fields_ = [
        ("family", c_int),
        ("socktype", c_int),
        ("protocol", c_int),
        ("addrlen", c_uint32),
        ("addr", c_uint8 * EVL_SOCKADDR_SIZE),
    ]


class evl_resolve_result(Structure):
    _fields_ = [
        ("request", c_uint64),
        ("status", c_int),
        ("error", c_int),
        ("message", c_char_p),
        ("addrs", POINTER(evl_addrinfo)),
        ("count", c_size_t),
        ("canonname", c_char_p),
        ("userdata", c_void_p),
    ]


class evl_process_exit(Structure):
    _fields_ = [
        ("process", c_uint64),
        ("pid", c_int),
        ("exit_code", c_int),
        ("term_signal", c_int),
        ("core_dumped", c_int),
        ("status", c_int),
        ("userdata", c_void_p),
    ]


# The loop is opaque: a void pointer is all Python ever holds.
evl_loop_p = c_void_p
evl_io_cb = CFUNCTYPE(None, evl_loop_p, c_int, c_uint32, c_void_p)
evl_task_cb = CFUNCTYPE(None, evl_loop_p, c_void_p)
evl_timer_cb = CFUNCTYPE(None, evl_loop_p, c_uint64, c_void_p)
evl_signal_cb = CFUNCTYPE(None, evl_loop_p, c_int, c_void_p)
evl_hook_cb = CFUNCTYPE(None, evl_loop_p, c_uint64, c_void_p)
evl_stream_cb = CFUNCTYPE(None, evl_loop_p, POINTER(evl_stream_event))
# NULL callbacks: Python takes events from evl_poll and evl_stream_exchange.
evl_work_fn = CFUNCTYPE(None, c_void_p)
evl_work_done_cb = CFUNCTYPE(None, evl_loop_p, c_uint64, c_int, c_void_p)
evl_resolve_cb = CFUNCTYPE(None, evl_loop_p, POINTER(evl_resolve_result))
evl_process_cb = CFUNCTYPE(None, evl_loop_p, POINTER(evl_process_exit))


class evl_spawn_options(Structure):
    _fields_ = [
        ("file", c_char_p),
        ("argv", POINTER(c_char_p)),
        ("env", POINTER(c_char_p)),
        ("cwd", c_char_p),
        ("stdio", c_uint32 * 3),
        ("stdio_fd", c_int * 3),
        ("flags", c_uint32),
        ("exit_cb", evl_process_cb),
        ("stream_cb", evl_stream_cb),
        ("userdata", c_void_p),
    ]


class evl_spawned(Structure):
    _fields_ = [("process", c_uint64), ("pid", c_int), ("stdio", c_uint64 * 3)]


NO_IO_CB = evl_io_cb()
NO_STREAM_CB = evl_stream_cb()

# ---- functions, in the header's order --------------------------------------

_L, _I, _U32, _U64, _SZ, _P = evl_loop_p, c_int, c_uint32, c_uint64, c_size_t, c_void_p

#: Every function's (restype, argtypes), for the test that holds them to the header.
DECLARATIONS: Dict[str, Tuple[Any, List[Any]]] = {}


def _declare(name: str, restype: Any, argtypes: List[Any]) -> Any:
    """The library's function `name`, with its types set (ctypes then
    converts and checks each argument)."""
    function = getattr(lib, name)
    function.restype, function.argtypes = restype, argtypes
    DECLARATIONS[name] = (restype, argtypes)
    return function


evl_loop_new = _declare("evl_loop_new", c_int, [POINTER(evl_loop_p)])
evl_loop_free = _declare("evl_loop_free", c_int, [_L])
evl_register = _declare("evl_register", c_int, [_L, _I, _U32, evl_io_cb, _P])
evl_modify = _declare("evl_modify", c_int, [_L, _I, _U32])
evl_set_callback = _declare("evl_set_callback", c_int, [_L, _I, evl_io_cb, _P])
evl_unregister = _declare("evl_unregister", c_int, [_L, _I])
evl_run = _declare("evl_run", c_int, [_L])
evl_run_once = _declare("evl_run_once", c_int, [_L, _I])
evl_poll = _declare("evl_poll", c_int, [_L, _I, _P, _I])
evl_stop = _declare("evl_stop", c_int, [_L])
evl_wake = _declare("evl_wake", c_int, [_L])
evl_post = _declare("evl_post", c_int, [_L, evl_task_cb, _P])
evl_timer_start = _declare("evl_timer_start", c_int, [_L, _U64, _U64, evl_timer_cb, _P, POINTER(c_uint64)])
evl_timer_stop = _declare("evl_timer_stop", c_int, [_L, _U64])
evl_signal_start = _declare("evl_signal_start", c_int, [_L, _I, evl_signal_cb, _P])
evl_signal_stop = _declare("evl_signal_stop", c_int, [_L, _I])
evl_hook_start = _declare("evl_hook_start", c_int, [_L, _U32, evl_hook_cb, _P, POINTER(c_uint64)])
evl_hook_stop = _declare("evl_hook_stop", c_int, [_L, _U64])
evl_backend_fd = _declare("evl_backend_fd", c_int, [_L])
evl_backend_timeout = _declare("evl_backend_timeout", c_int, [_L])
evl_loop_fork = _declare("evl_loop_fork", c_int, [_L])
evl_listen = _declare("evl_listen", c_int, [_L, c_char_p, _I, _I, _U32, evl_stream_cb, _P, POINTER(c_uint64)])
evl_listener_port = _declare("evl_listener_port", c_int, [_L, _U64])
evl_listener_set_max_conns = _declare("evl_listener_set_max_conns", c_int, [_L, _U64, _I])
evl_listener_close = _declare("evl_listener_close", c_int, [_L, _U64])
evl_connect = _declare("evl_connect", c_int, [_L, c_char_p, _I, evl_stream_cb, _P, POINTER(c_uint64)])
evl_stream_open = _declare("evl_stream_open", c_int, [_L, _I, evl_stream_cb, _P, POINTER(c_uint64)])
# data: c_char_p passes a bytes object's own buffer, without a copy.
evl_stream_write = _declare("evl_stream_write", c_int, [_L, _U64, c_char_p, _SZ])
evl_stream_shutdown = _declare("evl_stream_shutdown", c_int, [_L, _U64])
evl_stream_close = _declare("evl_stream_close", c_int, [_L, _U64])
evl_stream_abort = _declare("evl_stream_abort", c_int, [_L, _U64])
evl_stream_pause = _declare("evl_stream_pause", c_int, [_L, _U64])
evl_stream_resume = _declare("evl_stream_resume", c_int, [_L, _U64])
evl_stream_set_watermarks = _declare("evl_stream_set_watermarks", c_int, [_L, _U64, _SZ, _SZ])
evl_stream_set_idle_timeout = _declare("evl_stream_set_idle_timeout", c_int, [_L, _U64, _U32])
evl_stream_set_linger = _declare("evl_stream_set_linger", c_int, [_L, _U64, _SZ, _U32])
evl_stream_set_callback = _declare("evl_stream_set_callback", c_int, [_L, _U64, evl_stream_cb, _P])
evl_stream_fd = _declare("evl_stream_fd", c_int, [_L, _U64])
evl_stream_queued = _declare("evl_stream_queued", c_int, [_L, _U64, POINTER(c_size_t)])
evl_stream_read_buffer = _declare("evl_stream_read_buffer", c_int, [_L, POINTER(c_void_p), POINTER(c_size_t)])
evl_stream_poll = _declare("evl_stream_poll", c_int, [_L, _I, _P, _I])
evl_stream_submit = _declare("evl_stream_submit", c_int, [_L, _P, _I])
# streams and data: c_char_p passes a bytes object's own buffer, without a copy.
evl_stream_write_batch = _declare("evl_stream_write_batch", c_int, [_L, c_char_p, _P, _I, c_char_p])
evl_stream_exchange = _declare("evl_stream_exchange", c_int, [_L, _P])
evl_stream_exchange_writes = _declare("evl_stream_exchange_writes", c_int, [_L, _P])
evl_udp_bind = _declare("evl_udp_bind", c_int, [_L, c_char_p, _I, _U32, evl_stream_cb, _P, POINTER(c_uint64)])
evl_udp_open = _declare("evl_udp_open", c_int, [_L, _I, evl_stream_cb, _P, POINTER(c_uint64)])
evl_udp_connect = _declare("evl_udp_connect", c_int, [_L, _U64, c_char_p, _I])
evl_udp_send = _declare("evl_udp_send", c_int, [_L, _U64, c_char_p, _SZ, c_char_p, _U32])
evl_udp_send_batch = _declare("evl_udp_send_batch", c_int, [_L, _U64, _P, _I, _P])
evl_udp_close = _declare("evl_udp_close", c_int, [_L, _U64])
evl_udp_port = _declare("evl_udp_port", c_int, [_L, _U64])
evl_udp_fd = _declare("evl_udp_fd", c_int, [_L, _U64])
evl_udp_queued = _declare("evl_udp_queued", c_int, [_L, _U64, POINTER(c_size_t)])
evl_udp_set_watermarks = _declare("evl_udp_set_watermarks", c_int, [_L, _U64, _SZ, _SZ])
evl_udp_set_recv_size = _declare("evl_udp_set_recv_size", c_int, [_L, _U64, _SZ])
evl_udp_pause = _declare("evl_udp_pause", c_int, [_L, _U64])
evl_udp_resume = _declare("evl_udp_resume", c_int, [_L, _U64])
evl_udp_set_callback = _declare("evl_udp_set_callback", c_int, [_L, _U64, evl_stream_cb, _P])
evl_udp_set_option = _declare("evl_udp_set_option", c_int, [_L, _U64, _U32, _I])
evl_udp_set_multicast_interface = _declare("evl_udp_set_multicast_interface", c_int, [_L, _U64, c_char_p])
evl_udp_membership = _declare("evl_udp_membership", c_int, [_L, _U64, c_char_p, c_char_p, _I])
evl_udp_read_buffer = _declare(
    "evl_udp_read_buffer", c_int, [_L, POINTER(c_void_p), POINTER(c_size_t), POINTER(c_void_p), POINTER(c_size_t)]
)
evl_listen_unix = _declare("evl_listen_unix", c_int, [_L, c_char_p, _I, _U32, evl_stream_cb, _P, POINTER(c_uint64)])
evl_connect_unix = _declare("evl_connect_unix", c_int, [_L, c_char_p, _U32, evl_stream_cb, _P, POINTER(c_uint64)])
evl_stream_peer_cred = _declare(
    "evl_stream_peer_cred", c_int, [_L, _U64, POINTER(c_int), POINTER(c_uint32), POINTER(c_uint32)]
)
evl_stream_write_fds = _declare("evl_stream_write_fds", c_int, [_L, _U64, c_char_p, _SZ, POINTER(c_int), _I])
evl_stream_accept_fds = _declare("evl_stream_accept_fds", c_int, [_L, _U64, _I])
evl_stream_take_fds = _declare("evl_stream_take_fds", c_int, [_L, _U64, POINTER(c_int), _I])
# TLS (python/evloop/tls.py): configurations are opaque pointers too.
_C = c_void_p
evl_tls_config_new_server = _declare("evl_tls_config_new_server", c_int, [POINTER(_C)])
evl_tls_config_new_client = _declare("evl_tls_config_new_client", c_int, [POINTER(_C)])
evl_tls_config_free = _declare("evl_tls_config_free", c_int, [_C])
evl_tls_config_last_error = _declare("evl_tls_config_last_error", c_char_p, [_C])
evl_tls_config_set_certificate_pem = _declare(
    "evl_tls_config_set_certificate_pem", c_int, [_C, c_char_p, _SZ, c_char_p, _SZ]
)
evl_tls_config_set_certificate_files = _declare("evl_tls_config_set_certificate_files", c_int, [_C, c_char_p, c_char_p])
evl_tls_config_add_ca_pem = _declare("evl_tls_config_add_ca_pem", c_int, [_C, c_char_p, _SZ])
evl_tls_config_add_ca_file = _declare("evl_tls_config_add_ca_file", c_int, [_C, c_char_p])
evl_tls_config_add_system_roots = _declare("evl_tls_config_add_system_roots", c_int, [_C])
evl_tls_config_set_alpn = _declare("evl_tls_config_set_alpn", c_int, [_C, POINTER(c_char_p), _I])
evl_tls_config_set_verify = _declare("evl_tls_config_set_verify", c_int, [_C, _U32])
evl_tls_config_set_versions = _declare("evl_tls_config_set_versions", c_int, [_C, _U32, _U32])
evl_listener_set_tls = _declare("evl_listener_set_tls", c_int, [_L, _U64, _C])
evl_tls_connect = _declare(
    "evl_tls_connect", c_int, [_L, c_char_p, _I, _C, c_char_p, evl_stream_cb, _P, POINTER(c_uint64)]
)
evl_tls_start = _declare("evl_tls_start", c_int, [_L, _U64, _C, c_char_p])
evl_tls_handshaking = _declare("evl_tls_handshaking", c_int, [_L, _U64])
evl_tls_version = _declare("evl_tls_version", c_int, [_L, _U64])
evl_tls_cipher_suite = _declare("evl_tls_cipher_suite", c_int, [_L, _U64])
evl_tls_alpn = _declare("evl_tls_alpn", c_int, [_L, _U64, _P, _SZ])
evl_tls_server_name = _declare("evl_tls_server_name", c_int, [_L, _U64, _P, _SZ])
evl_tls_peer_certificate = _declare("evl_tls_peer_certificate", c_int, [_L, _U64, _SZ, _P, _SZ])
evl_tls_error_reason = _declare("evl_tls_error_reason", c_int, [_L, _U64, _P, _SZ])
evl_work_submit = _declare(
    "evl_work_submit", c_int, [_L, evl_work_fn, evl_work_done_cb, _P, POINTER(c_uint64)]
)
evl_work_cancel = _declare("evl_work_cancel", c_int, [_L, _U64])
evl_pool_set_size = _declare("evl_pool_set_size", c_int, [_L, _U32])
evl_pool_size = _declare("evl_pool_size", c_int, [_L])
evl_getaddrinfo = _declare(
    "evl_getaddrinfo",
    c_int,
    [_L, c_char_p, c_char_p, POINTER(evl_addrinfo_hints), evl_resolve_cb, _P, POINTER(c_uint64)],
)
evl_getaddrinfo_cancel = _declare("evl_getaddrinfo_cancel", c_int, [_L, _U64])
evl_connect_host = _declare("evl_connect_host", c_int, [_L, c_char_p, _I, evl_stream_cb, _P, POINTER(c_uint64)])
evl_spawn = _declare("evl_spawn", c_int, [_L, POINTER(evl_spawn_options), POINTER(evl_spawned)])
evl_process_kill = _declare("evl_process_kill", c_int, [_L, _U64, _I])
evl_process_pid = _declare("evl_process_pid", c_int, [_L, _U64])
evl_strerror = _declare("evl_strerror", c_char_p, [_I])
evl_version = _declare("evl_version", c_char_p, [])
evl_abi_version = _declare("evl_abi_version", c_uint32, [])



def _raw(function: Any, prototype: Any) -> Callable[..., int]:
    """`function` of the library called through `prototype` (returning an
    int, declaring no argument), so that ctypes passes the arguments as they
    are, without the declared conversions and checks."""
    raw = prototype(c_int)(ctypes.cast(function, c_void_p).value)
    raw.argtypes = None
    return raw  # type: ignore[no-any-return]


# The two calls of every loop iteration, without argument conversion: given
# byref() objects made once, ctypes skips the argtypes' conversions and
# checks, which cost more than the call itself (a call of two such
# arguments costs about 2,200 instructions; evl_stream_write_batch's five
# cost 4,600 with c_void_p arguments, 3,300 with byref()s). Both are the
# loaded library's own functions, by address. raw_exchange_writes keeps the
# GIL (a PYFUNCTYPE), since a write never waits; raw_exchange releases it
# for the wait.
raw_exchange = _raw(evl_stream_exchange, CFUNCTYPE)
raw_exchange_writes = _raw(evl_stream_exchange_writes, getattr(ctypes, "PYFUNCTYPE", CFUNCTYPE))
# A datagram's send, the same way (it never waits): the declared form costs
# about 11,600 instructions a call, this one about 6,600 (callgrind, 64-byte
# datagrams). See _datagrams.Sender.
raw_udp_send = _raw(evl_udp_send, getattr(ctypes, "PYFUNCTYPE", CFUNCTYPE))

# ---- errors ----------------------------------------------------------------


def strerror(code: int) -> str:
    """What a return value means, in the library's words."""
    return lib.evl_strerror(code).decode("utf-8", "replace")


class EvloopPanic(RuntimeError):
    """A bug in the library: a Rust panic, caught at the C boundary."""


def error(code: int, what: Optional[str] = None) -> Exception:
    """The exception for a negative return `code` of function `what`:
    ValueError for bad arguments (EINVAL), EvloopPanic for EVL_EPANIC, and
    otherwise the OSError subclass of the errno (FileExistsError,
    FileNotFoundError, PermissionError, InterruptedError...)."""
    text = strerror(code)
    if what:
        text = f"{what}: {text}"
    if code == -_errno.EINVAL:
        return ValueError(text)
    if code == EVL_EPANIC:
        return EvloopPanic(text)
    # OSError(errno, text) is constructed as the matching subclass.
    return OSError(-code, text)


def check(code: int, what: Optional[str] = None) -> int:
    """`code` if it is not negative; otherwise raises error(code, what)."""
    if code < 0:
        raise error(code, what)
    return code


def version() -> str:
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return lib.evl_version().decode()


__all__ = ["lib", "check", "error", "strerror", "version", "ABI_VERSION", "EvloopPanic"]

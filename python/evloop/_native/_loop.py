"""The native asyncio event loop: ``EventLoop`` (evloop/_implementation.py's
``native``).

``EventLoop`` derives from the library's native ``EventLoop`` type (the
iteration, the ready queue and timers, ``call_soon`` & co., the socket
transports) and from asyncio's ``SelectorEventLoop``, which serves what has
no native path as asyncio wrote it: datagrams, pipes,
signals, ``sock_*``, ``add_reader``/``add_writer`` (registered natively
through :class:`_Selector`), SSL (asyncio's ``SSLProtocol``, two of its bugs
fixed in ``evloop/_sslproto.py``, over the native transport), executors.
Subprocesses and getaddrinfo are the library's, as on the ctypes path
(evloop/_subprocess.py), through an ``evloop.Loop`` run inside this loop.
This module is the glue: the per-connection steps that depend on the Python
version (extra info, servers), and the messages and debug logs the native
code asks for (``core.configure``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
import signal
import socket
import sys
import threading
from asyncio import base_events, constants, events, format_helpers, futures, trsock
from asyncio.log import logger
from typing import Any, Callable, Dict, Optional, Tuple

from .._socket_extra import add_socket_extra
from .. import _lib
from .._asyncio_tls import EXTRA_NAMES as TLS_EXTRA_NAMES
from .._asyncio_tls import SSLTransports, TLSLink, log_handshake, native_config, stream_failure
from .._subprocess import AsyncioServices
from .._subprocess_engine import Engine, attached
from .._tls_session import session_info
from . import _datagram, _load

core = _load.load()

# asyncio.Server counts its transports with _attach()/_detach(), which take
# the transport from 3.13 on.
_SERVER_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1  # type: ignore[attr-defined]
# 3.12+ formats a callback's source with debug=.
_FORMAT_TAKES_DEBUG = "debug" in inspect.signature(format_helpers._format_callback_source).parameters
# 3.13+ splits run_forever's setup and cleanup into methods.
_HAS_RUN_FOREVER_SETUP = hasattr(base_events.BaseEventLoop, "_run_forever_setup")
_ACCEPT_RESOURCE_ERRORS = (
    __import__("errno").EMFILE,
    __import__("errno").ENFILE,
    __import__("errno").ENOBUFS,
    __import__("errno").ENOMEM,
)


class _Transport(core.Transport):  # type: ignore[misc,name-defined]
    """A socket transport of the native loop (the methods are native)."""

    # _tls: a TLS transport's TLSLink (see _TLSTransport), here so that
    # start_tls() can make a transport one (same layout).
    __slots__ = ("__weakref__", "_tls")
    # Native members (attributes of the native type), for the type checker.
    _empty_waiter: Any
    _start_tls_compatible = True
    # loop.sendfile(): os.sendfile() on the socket once the buffer is empty
    # (asyncio's _sendfile_native), or the fallback through write().
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        sock = getattr(self, "_sock", None)
        if sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = getattr(self, "_loop", None)
        if sock is not None and loop is not None and not loop.is_closed():
            info.append("read=polling" if self.is_reading() else "read=idle")
            info.append(f"write=<bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def _make_empty_waiter(self) -> Any:
        """asyncio's: a future done once the write buffer is empty; writes
        are refused until _reset_empty_waiter() (native sendfile)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter = self._loop.create_future()
        self._empty_waiter = waiter  # type: ignore[misc]  # a native member, not a slot
        if not self.get_write_buffer_size():
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None  # type: ignore[misc]  # a native member

    def _server_detach(self, server: Any) -> None:
        """Called by the native code when the transport has ended."""
        server._detach(*((self,) if _SERVER_TAKES_TRANSPORT else ()))


class _TLSTransport(_Transport):
    """A native transport over a TLS stream of the library (``ssl=`` with
    an evloop context: see evloop/_asyncio_tls.py); the native code calls
    the ``_tls_*`` methods as its handshake ends."""

    __slots__ = ()
    _tls: TLSLink

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in TLS_EXTRA_NAMES:
            return self._tls.extra(name, default)
        return super().get_extra_info(name, default)

    def close(self) -> None:
        # close() waits for the queue to be sent (close_notify follows):
        # bounded by ssl_shutdown_timeout without a byte moving, then
        # connection_lost(TimeoutError), as from asyncio.
        if not self._closing and not self._tls.handshaking and self.get_write_buffer_size():
            self._tls_idle_timeout(self._tls.shutdown_ms)
        super().close()

    def _tls_handshake_done(self, info: Any) -> None:
        link = self._tls
        link.new_session(loaded=session_info(info))
        loop = self._loop
        if loop.get_debug():
            loop.call_soon(log_handshake, self)
        # connection_made() is queued already: the waiter hears after it.
        waiter, link.waiter = link.waiter, None
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]

    def _tls_handshake_failed(self, status: int, reason: Optional[bytes]) -> None:
        link = self._tls
        link.handshaking = False
        link.settle(link.failure(status, _text(reason)))

    def _tls_failure(self, status: int, reason: Optional[bytes]) -> BaseException:
        return stream_failure(status, _text(reason), self._tls.server_hostname)


def _text(reason: Optional[bytes]) -> Optional[str]:
    return None if reason is None else reason.decode("utf-8", errors="replace")


class _Selector(selectors._BaseSelectorImpl):  # type: ignore[name-defined,misc]
    """asyncio's selector, as BaseSelectorEventLoop uses it (its
    readers and writers), registering with the native loop, which runs
    their handles itself: select() is never called."""

    # _BaseSelectorImpl's, which the type stubs leave out.
    _fd_to_key: Dict[int, selectors.SelectorKey]
    _fileobj_lookup: Callable[[Any], int]

    def __init__(self, loop: "EventLoop") -> None:
        super().__init__()
        self._loop: Optional[EventLoop] = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        try:
            self._native().watch(key.fd, events, data)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        if self._loop is not None:
            self._loop._unwatch_fd(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if (not events) or (events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        self._native().watch(key.fd, events, data)
        key = key._replace(events=events, data=data)
        self._fd_to_key[key.fd] = key
        return key

    def _native(self) -> "_Watcher":
        if self._loop is None:
            raise RuntimeError("Event loop is closed")
        return _Watcher(self._loop)

    def select(self, timeout: Optional[float] = None) -> list:
        raise RuntimeError("evloop's native loop waits for its fds itself")

    def close(self) -> None:
        super().close()
        self._loop = None


class _Watcher:
    __slots__ = ("_loop",)

    def __init__(self, loop: "EventLoop") -> None:
        self._loop = loop

    def watch(self, fd: int, events: int, data: Any) -> None:
        self._loop._watch_fd(fd, events, data)


class _Accepting:
    """What the native loop calls with each connection it accepted on a
    server's socket (or with -errno when accepting failed): asyncio's
    ``_accept_connection`` and ``_accept_connection2``, without the task."""

    def __init__(
        self, loop: "EventLoop", protocol_factory: Callable[[], Any], sock: socket.socket, server: Any,
        backlog: int, more: Tuple[Any, ...], options: dict, sslcontext: Any = None,
        tls: Optional[Callable[[], TLSLink]] = None,
    ) -> None:
        self._tls = tls  # each connection's TLSLink, for a TLS server of the library
        self._sslcontext = sslcontext
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sock = sock
        self._server = server
        self._backlog = backlog
        self._more = more
        self._options = options

    def __call__(self, fd: int) -> None:
        if fd < 0:
            self._failed(-fd)
            return
        sock = self._sock
        try:
            conn = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        protocol = None
        try:
            conn.setblocking(False)
            protocol = self._protocol_factory()
            if self._tls is None:
                self._loop._make_socket_transport(conn, protocol, server=self._server)
            else:
                # A failed handshake ends unseen, as asyncio's does outside
                # debug mode (no waiter).
                self._loop._make_library_tls_transport(conn, protocol, self._tls(), None, None, self._server)
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            if self._loop.get_debug():
                context = {"message": "Error on transport creation for incoming connection", "exception": exc}
                if protocol is not None:
                    context["protocol"] = protocol
                self._loop.call_exception_handler(context)

    def _failed(self, errno: int) -> None:
        exc = OSError(errno, os.strerror(errno))
        loop = self._loop
        if errno in _ACCEPT_RESOURCE_ERRORS:
            # The native side stopped serving; asyncio's retry, later.
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(self._sock),
                }
            )
            loop.call_later(constants.ACCEPT_RETRY_DELAY, self._retry)
        else:
            loop.call_exception_handler({"message": "Error on accepting a connection", "exception": exc})

    def _retry(self) -> None:
        if self._sock.fileno() != -1 and not self._loop.is_closed():
            self._loop._start_serving(
                self._protocol_factory, self._sock, self._sslcontext, self._server, self._backlog, *self._more,
                **self._options,
            )


class EventLoop(SSLTransports, core.EventLoop, AsyncioServices, asyncio.SelectorEventLoop):  # type: ignore[misc,name-defined]
    """asyncio's event loop with evloop's native hot path (see the module)."""

    # asyncio's, which the type stubs leave out.
    _thread_id: Optional[int]
    _csock: Optional[socket.socket]
    _signal_handlers: dict

    def __init__(self) -> None:
        super().__init__(_Selector(self))

    def run_forever(self) -> None:
        """asyncio's run_forever, with the iterations run natively; in the
        main thread, signals wake the wait through asyncio's self-pipe."""
        wakeup = self._wakeup_on_signals()
        try:
            if _HAS_RUN_FOREVER_SETUP:
                try:
                    self._run_forever_setup()
                    self._run_until_stopped()
                finally:
                    self._run_forever_cleanup()
            else:
                self._run_forever_before_313()
        finally:
            if wakeup is not None:
                wakeup()

    def _run_forever_before_313(self) -> None:
        # BaseEventLoop.run_forever of 3.8 to 3.12, the loop made native.
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook)
            events._set_running_loop(self)
            self._run_until_stopped()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def _wakeup_on_signals(self) -> Optional[Callable[[], None]]:
        """A signal (Ctrl-C) that comes while native code runs between two
        waits is seen at the next wait only if something wakes it: the
        wakeup fd, pointed at the loop's self-pipe (as add_signal_handler
        does) unless one is set already. Returns what undoes it."""
        if threading.current_thread() is not threading.main_thread() or self._csock is None:
            return None
        fd = self._csock.fileno()
        try:
            previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            return None
        if previous not in (-1, fd):
            signal.set_wakeup_fd(previous)
            return None

        def restore() -> None:
            try:
                if signal.set_wakeup_fd(-1) != fd:
                    signal.set_wakeup_fd(fd)  # someone else's since: keep it
                elif self._signal_handlers:
                    signal.set_wakeup_fd(fd)  # add_signal_handler's, still needed
            except (ValueError, OSError):
                pass

        return restore

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._close_engine()
        super().close()
        self._close_native()

    def _new_engine(self) -> Engine:
        """subprocesses and getaddrinfo: an evloop.Loop run inside this one."""
        return attached(self)

    def _make_socket_transport(
        self, sock: socket.socket, protocol: Any, waiter: Any = None, *, extra: Any = None, server: Any = None
    ) -> Any:
        transport = self._make_transport(_Transport, sock, protocol, self._socket_extra(sock, extra), server)
        self._attach(transport, server)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]
        return transport

    @staticmethod
    def _socket_extra(sock: socket.socket, extra: Any) -> dict:
        """get_extra_info()'s dict of a socket transport (TCP_NODELAY set)."""
        if extra is None:
            extra = {}
        add_socket_extra(extra, sock)
        base_events._set_nodelay(sock)  # type: ignore[attr-defined]
        return extra

    def _attach(self, transport: Any, server: Any) -> None:
        if server is not None:
            server._attach(*((transport,) if _SERVER_TAKES_TRANSPORT else ()))
        self._transports[transport._sock_fd] = transport

    def _make_library_tls_transport(
        self, rawsock: socket.socket, protocol: Any, link: TLSLink, waiter: Any, extra: Any, server: Any
    ) -> Any:
        """A native transport over a TLS stream of the library (see
        evloop/_asyncio_tls.py): connection_made() once the handshake is
        done, then the waiter's result; its failure to the waiter."""
        extra = self._socket_extra(rawsock, extra)
        link.waiter = waiter
        link.handshaking = True
        transport, status = self._make_tls_transport(
            _TLSTransport, rawsock, protocol, extra, server, link.config.handle, link.server_name, link.handshake_ms
        )
        transport._tls = link
        self._attach(transport, server)
        if status:
            link.handshaking = False
            link.waiter = None
            raise _lib.error(status, "TLS")
        return transport

    def _upgradable(self, transport: Any) -> bool:
        return type(transport) is _Transport

    def _upgrade_to_tls(self, transport: Any, link: TLSLink) -> None:
        transport.__class__ = _TLSTransport
        transport._tls = link
        link.handshaking = True
        status = transport._tls_upgrade(link.config.handle, link.server_name, link.handshake_ms)
        if status:
            link.handshaking = False
            transport.__class__ = _Transport
            del transport._tls
            raise _lib.error(status, "TLS")

    def _make_datagram_transport(
        self, sock: socket.socket, protocol: Any, address: Any = None, waiter: Any = None, extra: Any = None
    ) -> Any:
        if not _datagram.supports(sock):  # Unix-domain datagrams: asyncio's own
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        return _datagram.DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _start_serving(
        self, protocol_factory: Any, sock: socket.socket, sslcontext: Any = None, server: Any = None,
        backlog: int = 100, *more: Any, **options: Any,
    ) -> None:
        tls = None
        if sslcontext is not None:
            tls = _tls_links(sslcontext, *more, **options)
            if tls is None:  # asyncio's SSLProtocol
                super()._start_serving(protocol_factory, sock, sslcontext, server, backlog, *more, **options)
                return
        accepting = _Accepting(self, protocol_factory, sock, server, backlog, more, options, sslcontext, tls)
        self._serve(sock, accepting, backlog)

    def _stop_serving(self, sock: socket.socket) -> None:
        if sock.fileno() != -1:
            self._unserve(sock.fileno())
        super()._stop_serving(sock)


def _tls_links(
    sslcontext: Any, ssl_handshake_timeout: Optional[float] = None, ssl_shutdown_timeout: Optional[float] = None,
) -> Optional[Callable[[], TLSLink]]:
    """What makes the TLSLink of each connection a TLS server accepts, when
    the library serves its context; None: asyncio's SSLProtocol."""
    config = native_config(sslcontext, True)
    if config is None:
        return None

    def link() -> TLSLink:
        return TLSLink(
            config, sslcontext, server_side=True, server_hostname=None,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    return link


# ---- what the native code asks of Python -----------------------------------


def _callback_error(handle: Any, exc: BaseException) -> None:
    """asyncio's Handle._run report of a callback's exception."""
    event_loop = handle._loop
    if _FORMAT_TAKES_DEBUG:
        source = format_helpers._format_callback_source(  # type: ignore[call-arg]  # 3.12+
            handle._callback, handle._args, debug=event_loop.get_debug()
        )
    else:
        source = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    event_loop.call_exception_handler(context)


def _source_traceback() -> Any:
    """Debug mode: the stack of the code that called call_soon & co. (the
    native method has no frame: the caller is this function's caller)."""
    return format_helpers.extract_stack(sys._getframe(1))


def _slow_callback(event_loop: Any, what: Any, seconds: float) -> None:
    if seconds >= event_loop.slow_callback_duration:
        described = base_events._format_handle(what) if hasattr(what, "_callback") else repr(what)  # type: ignore[attr-defined]
        logger.warning("Executing %s took %.3f seconds", described, seconds)


def _debug_log(message: str, transport: Any, exc: BaseException) -> None:
    logger.debug("%r: %s", transport, message, exc_info=exc)


core.configure(
    callback_error=_callback_error,
    source_traceback=_source_traceback,
    slow_callback=_slow_callback,
    debug_log=_debug_log,
)

"""``ssl=`` on the library's TLS streams, for the ctypes path's transports.

An ``evloop.EvloopSSLContext`` (``evloop.create_default_context()``) whose
settings the library can honour (``native_config``) makes a transport's
stream a TLS stream of the library (``evl_tls_start``): rustls encrypts and
decrypts inside the library, so no Python runs per record. Any other
``ssl.SSLContext`` (or one asking for what rustls cannot do: a cipher list,
a password-protected key...) goes through asyncio's SSLProtocol as before.

``TLSLink`` is the TLS half of a StreamTransport: it starts the handshake,
bounds it (``ssl_handshake_timeout``: the transport is aborted and the
waiter gets asyncio's ConnectionAbortedError), announces the connection
when it is done (connection_made() then, as asyncio's SSL transport does),
turns a failure into the ssl module's exception for the waiter
(ssl.SSLCertVerificationError with verify_code and verify_message, or
ssl.SSLError, with the library's reason), bounds a close that waits for
its queue (``ssl_shutdown_timeout``: then connection_lost(TimeoutError)),
and answers
get_extra_info('sslcontext' | 'ssl_object' | 'peercert' | 'cipher' |
'compression') as asyncio's SSL transport does, as far as rustls can say.

Both bounds are the stream's idle timeout in the library (the handshake's
bound there): no Python timer, so the loop's iterations stay on their fast
path (a cancelled asyncio timer stays in the heap until it is due). So they
count the time without a byte moving, where asyncio counts from the start.
"""

from __future__ import annotations

import ssl
from asyncio import constants
from typing import TYPE_CHECKING, Any, Optional

import errno

from .. import _lib
from .._timeouts import idle_ms
from .._tls_session import TLSSession
from ..tls import EvloopSSLContext, TLSConfig

if TYPE_CHECKING:
    from .transport import StreamTransport

SSL_HANDSHAKE_TIMEOUT = getattr(constants, "SSL_HANDSHAKE_TIMEOUT", 60.0)
SSL_SHUTDOWN_TIMEOUT = getattr(constants, "SSL_SHUTDOWN_TIMEOUT", 30.0)
EXTRA_NAMES = frozenset(("sslcontext", "ssl_object", "peercert", "cipher", "compression"))


def native_config(sslcontext: Any, server_side: bool) -> Optional[TLSConfig]:
    """The library's configuration for `sslcontext` (kept by the context,
    made again when it changes), or None: asyncio's SSLProtocol then."""
    if not isinstance(sslcontext, EvloopSSLContext):
        return None
    config = sslcontext.native_config()
    if config is None or config.server != server_side:
        return None
    return config


class TLSLink:
    """The TLS half of a StreamTransport (see the module's documentation)."""

    def __init__(
        self,
        config: TLSConfig,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: Optional[str],
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
        upgrade: bool = False,
    ) -> None:
        if not server_side and not server_hostname and sslcontext.check_hostname:
            raise ValueError("server_hostname is required when the context checks host names")
        self._config = config
        self.sslcontext = sslcontext
        self.server_side = server_side
        self.server_hostname = server_hostname
        self._handshake_timeout = SSL_HANDSHAKE_TIMEOUT if ssl_handshake_timeout is None else ssl_handshake_timeout
        self._shutdown_timeout = SSL_SHUTDOWN_TIMEOUT if ssl_shutdown_timeout is None else ssl_shutdown_timeout
        # start_tls() on a transport whose protocol is connected already: it
        # gets connection_lost() if the handshake fails; a new one does not.
        self._upgrade = upgrade
        self.handshaking = False
        self.session: Optional[TLSSession] = None
        self._transport: Optional["StreamTransport"] = None
        self._waiter: Any = None

    def start(self, transport: "StreamTransport", waiter: Any) -> None:
        """The handshake begins on the transport's stream; `waiter` (a
        future) gets None once it is done, or its failure."""
        self._transport, self._waiter = transport, waiter
        name = None
        if not self.server_side:
            # A name that is no DNS name (an IP address...) is checked as
            # the library checks IP addresses; without one (check_hostname
            # off), the context checks the chain only, any name will do.
            name = (self.server_hostname or "localhost").encode("idna")
        streams, stream = transport._streams, transport._stream
        streams.call(_lib.evl_stream_set_idle_timeout, stream, idle_ms(self._handshake_timeout))
        streams.call(_lib.evl_tls_start, stream, self._config.handle, name)
        self.handshaking = True

    def handshake_done(self) -> None:
        """The library's CONNECTED event with status 0."""
        transport = self._transport
        if not self.handshaking or transport is None:
            return
        self.handshaking = False
        streams, stream = transport._streams, transport._stream
        streams.call(_lib.evl_stream_set_idle_timeout, stream, 0)  # asyncio's transports have none
        self.session = TLSSession(
            lambda function, *args: streams.call(function, stream, *args),
            server_side=self.server_side,
            server_hostname=self.server_hostname,
            context=self.sslcontext,
            verified=self.sslcontext.verify_mode != ssl.CERT_NONE,
        )
        self.session.load()  # while the stream is open: it answers after the end too
        if transport._loop.get_debug():
            transport._loop.call_soon(_log_handshake, transport)
        if self._upgrade:
            self._settle(None)
        else:
            transport._connection_up(self._waiter)
        self._waiter = None

    def handshake_failed(self, status: int) -> None:
        """The stream ended before its handshake was done."""
        transport = self._transport
        self.handshaking = False
        if transport is None:
            return
        exc: BaseException
        if status == -errno.ETIMEDOUT:
            exc = ConnectionAbortedError(
                f"SSL handshake is taking longer than {self._handshake_timeout} seconds: aborting the connection"
            )
        elif status:
            exc = transport._streams.failure(transport._stream, status, self.server_hostname)
        else:
            exc = ConnectionResetError("Connection lost during the TLS handshake")
        if not self._upgrade:
            transport._protocol_connected = False  # connection_made() never ran
        self._settle(exc)

    def _settle(self, exc: Optional[BaseException]) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.cancelled():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    def closing(self) -> None:
        """close() waits for the queue to be sent (close_notify follows it):
        if nothing moves for ssl_shutdown_timeout, the library ends the
        stream, and connection_lost() gets TimeoutError, as from asyncio."""
        transport = self._transport
        if transport is not None and not self.handshaking and not transport._gone:
            try:
                transport._streams.call(_lib.evl_stream_set_idle_timeout, transport._stream, idle_ms(self._shutdown_timeout))
            except FileNotFoundError:
                pass  # ended meanwhile: its CLOSED event is on its way

    def extra(self, name: str, default: Any) -> Any:
        """get_extra_info() of the TLS names, as asyncio's SSL transport."""
        if name == "sslcontext":
            return self.sslcontext
        session = self.session
        if session is None:
            return default
        if name == "ssl_object":
            return session
        if name == "peercert":
            return session.getpeercert()
        if name == "cipher":
            return session.cipher()
        return session.compression()  # "compression"


def _log_handshake(transport: "StreamTransport") -> None:
    from asyncio.log import logger

    logger.debug("%r: TLS handshake done", transport)

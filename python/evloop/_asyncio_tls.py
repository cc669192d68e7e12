"""``ssl=`` for both asyncio loops (the ctypes path's and the native one):
which context runs on the library's TLS streams, and what each of their
transports shares about it.

An ``evloop.EvloopSSLContext`` (``evloop.create_default_context()``) whose
settings the library can honour (``native_config``) makes the transport's
stream a TLS stream of the library: rustls encrypts and decrypts inside the
library, so no Python runs per record. Any other ``ssl.SSLContext`` (or one
asking for what rustls cannot do: a cipher list, a password-protected
key...) goes through asyncio's SSLProtocol, as asyncio's own loop does.
``SSLTransports._make_ssl_transport`` makes that choice for both loops.

``TLSLink`` is what a TLS transport keeps of its handshake, whichever path
made it: the bound on it (``ssl_handshake_timeout``: the transport is
aborted and the waiter gets asyncio's ConnectionAbortedError), the waiter
and when it is told, the ssl module's exception a failure becomes
(ssl.SSLCertVerificationError with verify_code and verify_message, or
ssl.SSLError, with the library's reason), the bound on a close that waits
for its queue (``ssl_shutdown_timeout``: then connection_lost(TimeoutError)),
and get_extra_info('sslcontext' | 'ssl_object' | 'peercert' | 'cipher' |
'compression') as asyncio's SSL transport answers, as far as rustls can say.

Both bounds are the stream's idle timeout in the library: no Python timer,
so the loop's iterations stay on their fast path (a cancelled asyncio timer
stays in the heap until it is due). So they count the time without a byte
moving, where asyncio counts from the start.
"""

from __future__ import annotations

import errno
import ssl
from asyncio import constants
from asyncio.log import logger
from typing import Any, Optional

from . import _lib
from ._sslproto import SSLProtocol
from ._timeouts import idle_ms
from ._tls_session import TLSSession, is_tls_status, tls_error
from .tls import EvloopSSLContext, TLSConfig

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


class SSLTransports:
    """The asyncio loops' ``_make_ssl_transport``: the library's TLS stream
    for a context it can serve (``_make_library_tls_transport``, each
    loop's own), asyncio's SSLProtocol over a plain transport otherwise."""

    def _make_ssl_transport(
        self,
        rawsock: Any,
        protocol: Any,
        sslcontext: Any,
        waiter: Any = None,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        extra: Any = None,
        server: Any = None,
        **timeouts: Any,  # ssl_handshake_timeout, and ssl_shutdown_timeout from 3.11
    ) -> Any:
        config = native_config(sslcontext, server_side)
        if config is not None:
            link = TLSLink(config, sslcontext, server_side=server_side, server_hostname=server_hostname, **timeouts)
            return self._make_library_tls_transport(rawsock, protocol, link, waiter, extra, server)
        ssl_protocol = SSLProtocol(self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)  # type: ignore[attr-defined]
        return ssl_protocol._app_transport

    def _make_library_tls_transport(
        self, rawsock: Any, protocol: Any, link: "TLSLink", waiter: Any, extra: Any, server: Any
    ) -> Any:
        raise NotImplementedError

    async def start_tls(
        self,
        transport: Any,
        protocol: Any,
        sslcontext: Any,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
    ) -> Any:
        """asyncio's start_tls(); with an evloop context on one of the
        loop's plain transports, TLS in the library on the same stream, and
        the same transport (now speaking TLS) is returned."""
        config = native_config(sslcontext, server_side)
        if config is None or not self._upgradable(transport):
            timeouts = {"ssl_handshake_timeout": ssl_handshake_timeout}
            if ssl_shutdown_timeout is not None:
                timeouts["ssl_shutdown_timeout"] = ssl_shutdown_timeout
            return await super().start_tls(  # type: ignore[misc]
                transport, protocol, sslcontext, server_side=server_side, server_hostname=server_hostname, **timeouts
            )
        if transport.is_closing():
            raise ConnectionResetError("start_tls() on a closing transport")
        link = TLSLink(
            config, sslcontext, server_side=server_side, server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout, upgrade=True,
        )
        link.waiter = waiter = self.create_future()  # type: ignore[attr-defined]
        transport.set_protocol(protocol)
        self._upgrade_to_tls(transport, link)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport

    def _upgradable(self, transport: Any) -> bool:
        """Whether start_tls() can make `transport` speak the library's TLS."""
        return False

    def _upgrade_to_tls(self, transport: Any, link: "TLSLink") -> None:
        """The handshake starts on `transport`'s stream; `link.waiter` hears."""
        raise NotImplementedError


class TLSLink:
    """A TLS transport's handshake and TLS answers (see the module's
    documentation); each path's transport calls it as its stream goes."""

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
        self.config = config
        self.sslcontext = sslcontext
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.handshake_timeout = SSL_HANDSHAKE_TIMEOUT if ssl_handshake_timeout is None else ssl_handshake_timeout
        self.shutdown_timeout = SSL_SHUTDOWN_TIMEOUT if ssl_shutdown_timeout is None else ssl_shutdown_timeout
        # start_tls() on a transport whose protocol is connected already: it
        # gets connection_lost() if the handshake fails; a new one does not.
        self.upgrade = upgrade
        self.handshaking = False
        self.session: Optional[TLSSession] = None
        self.waiter: Any = None

    @property
    def server_name(self) -> Optional[bytes]:
        """The name a client's session asks for (None for a server). One
        that is no DNS name (an IP address...) is checked as the library
        checks IP addresses; without one (check_hostname off), the context
        checks the chain only, and any name will do."""
        if self.server_side:
            return None
        return (self.server_hostname or "localhost").encode("idna")

    @property
    def handshake_ms(self) -> int:
        return idle_ms(self.handshake_timeout)

    @property
    def shutdown_ms(self) -> int:
        return idle_ms(self.shutdown_timeout)

    def new_session(self, query: Any = None, loaded: Optional[dict] = None) -> TLSSession:
        """The ssl.SSLObject look-alike of the handshake just done."""
        self.handshaking = False
        self.session = TLSSession(
            query,
            server_side=self.server_side,
            server_hostname=self.server_hostname,
            context=self.sslcontext,
            verified=self.sslcontext.verify_mode != ssl.CERT_NONE,
            loaded=loaded,
        )
        return self.session

    def failure(self, status: int, reason: Optional[str]) -> BaseException:
        """The exception of a stream that ended with `status` (negative, or
        0) during its handshake, as asyncio's SSL transport raises it."""
        if status == -errno.ETIMEDOUT:
            return ConnectionAbortedError(
                f"SSL handshake is taking longer than {self.handshake_timeout} seconds: aborting the connection"
            )
        if status == 0:
            return ConnectionResetError("Connection lost during the TLS handshake")
        return stream_failure(status, reason, self.server_hostname)

    def settle(self, exc: Optional[BaseException]) -> None:
        """The waiter (if any) gets None, or the handshake's failure."""
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.cancelled():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

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


def stream_failure(status: int, reason: Optional[str], server_hostname: Optional[str] = None) -> Exception:
    """The exception for a stream's end with a negative `status`: the ssl
    module's for a TLS failure (with the library's reason), else the
    OSError of the errno."""
    if is_tls_status(status):
        return tls_error(status, reason or "", server_hostname)
    return _lib.error(status)


def log_handshake(transport: Any) -> None:
    logger.debug("%r: TLS handshake done", transport)

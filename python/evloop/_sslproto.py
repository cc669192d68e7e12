"""asyncio's ``SSLProtocol``, as both asyncio loops of evloop run a plain
``ssl.SSLContext`` (``ssl=`` of create_connection/create_server), with two
bugs of CPython's 3.11+ ``asyncio/sslproto.py`` fixed. asyncio's own
SelectorEventLoop has both (they are CPython's, not the transport's):

- Over a ``BufferedProtocol`` whose ``get_buffer()`` returns a
  ``bytearray``, a read that crosses a TLS record boundary goes into
  ``buf[offset:]``: a *copy* of the rest of the bytearray. Those bytes are
  lost, yet ``buffer_updated()`` counts them: the protocol sees stale bytes
  of the right length (CPython gh-156275). Here the reads go through a
  memoryview, released before ``buffer_updated()`` so that the protocol may
  resize its buffer then.
- Write flow control pauses the protocol when the buffer is *at* the
  high-water mark (``>=``), where asyncio's transports pause above it. With
  ``set_write_buffer_limits(high=0)``, every check on an empty buffer
  flips the protocol between paused and resumed, and a protocol left
  paused with nothing buffered is never resumed: an echo that stops
  reading while paused never reads the peer's close_notify, and the peer's
  shutdown times out. Here, as in asyncio's transports, the protocol pauses
  above the high-water mark and resumes at or below the low one; read flow
  control (the same comparison) likewise.

Python 3.8 to 3.10 have the older SSLProtocol (a plain Protocol over
``_SSLPipe``), without either bug. Its transport lacks
``get_write_buffer_limits()`` on 3.8 (the flow-control mixin's, which it
inherits, raises AttributeError): there it asks the socket transport, as
3.9 does.
"""

from __future__ import annotations

from asyncio import sslproto
from typing import Any

_FIXABLE = all(
    hasattr(sslproto.SSLProtocol, name)
    for name in ("_do_read__buffered", "_control_app_writing", "_control_ssl_reading", "_call_eof_received")
)


# Their private attributes differ by version (typeshed knows the old ones).
_AsyncioSSLProtocol: Any = sslproto.SSLProtocol
_AsyncioAppTransport: Any = sslproto._SSLProtocolTransport  # type: ignore[attr-defined]


class _FixedSSLProtocol(_AsyncioSSLProtocol):
    """CPython's 3.11+ SSLProtocol, its two bugs fixed (see the module)."""

    _app_writing_paused: bool
    _ssl_reading_paused: bool

    def _do_read__buffered(self) -> None:
        buffer = self._app_protocol_get_buffer(self._get_read_buffer_size())
        filled = 0
        count = 1  # 0 once the peer's close_notify is read
        with memoryview(buffer) as exported, exported.cast("B") as view:
            wants = len(view)
            try:
                while filled < wants:
                    count = self._sslobj.read(wants - filled, view[filled:])
                    if not count:
                        break
                    filled += count
                else:
                    # Full: more may wait in the session for the next call.
                    self._loop.call_soon(self._do_read)
            except sslproto.SSLAgainErrors:
                pass
        if filled:
            self._app_protocol_buffer_updated(filled)
        if not count:
            self._call_eof_received()
            self._start_shutdown()

    def _control_app_writing(self) -> None:
        size = self._get_write_buffer_size()
        if size > self._outgoing_high_water and not self._app_writing_paused:
            self._app_writing_paused = True
            self._tell_app("pause_writing")
        elif size <= self._outgoing_low_water and self._app_writing_paused:
            self._app_writing_paused = False
            self._tell_app("resume_writing")

    def _tell_app(self, name: str) -> None:
        """The app protocol's pause_writing or resume_writing; its error goes
        to the loop's exception handler, as asyncio does."""
        try:
            getattr(self._app_protocol, name)()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self._app_transport,
                    "protocol": self,
                }
            )

    def _control_ssl_reading(self) -> None:
        size = self._get_read_buffer_size()
        if size > self._incoming_high_water and not self._ssl_reading_paused:
            self._ssl_reading_paused = True
            self._transport.pause_reading()
        elif size <= self._incoming_low_water and self._ssl_reading_paused:
            self._ssl_reading_paused = False
            self._transport.resume_reading()


class _AppTransport38(_AsyncioAppTransport):
    """3.8's SSL transport with 3.9's get_write_buffer_limits()."""

    def get_write_buffer_limits(self) -> Any:
        return self._ssl_protocol._transport.get_write_buffer_limits()


class _SSLProtocol38(_AsyncioSSLProtocol):
    """3.8's SSLProtocol, its transport given get_write_buffer_limits()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same object, of the subclass: made anew, the first one would
        # close the connection when collected.
        self._app_transport.__class__ = _AppTransport38


#: The SSLProtocol class evloop's loops make for a plain ``ssl.SSLContext``.
SSLProtocol: Any = (
    _FixedSSLProtocol
    if _FIXABLE
    else sslproto.SSLProtocol
    if "get_write_buffer_limits" in vars(_AsyncioAppTransport)
    else _SSLProtocol38
)

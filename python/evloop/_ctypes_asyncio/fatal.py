"""What both of the ctypes path's transports (streams and datagrams) do
with an error that ends them, as asyncio's own transports do: an OSError is
the peer's or the network's (logged in debug mode only), anything else goes
to the loop's exception handler; then the transport closes at once."""

from __future__ import annotations

from asyncio.log import logger
from typing import Any, Callable, Optional


class FatalErrors:
    """Mixed into a transport that has these (and its own _force_close)."""

    _loop: Any
    _protocol: Any
    _force_close: Callable[[Optional[BaseException]], None]

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc)

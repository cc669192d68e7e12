"""loop.sendfile() on a transport of the ctypes path: the library owns the
stream's fd (asyncio's os.sendfile would need the socket in the selector),
so the file's bytes go through the stream, a block at a time, waiting for
the queue to empty between blocks, so that a peer that stops reading stops
the sending."""

from __future__ import annotations

import io
import os
from asyncio import exceptions
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport import StreamTransport

# What is read from the file and written at a time.
BLOCK = 64 * 1024


async def send_file(transport: "StreamTransport", file: Any, offset: int, count: int) -> int:
    """asyncio's _sendfile_native(): `count` bytes (0: to the end) of `file`
    from `offset`; the file's position is left after what was sent.
    Returns the bytes sent."""
    try:
        fd = file.fileno()
        size = os.fstat(fd).st_size
    except (AttributeError, io.UnsupportedOperation, OSError) as err:
        raise exceptions.SendfileNotAvailableError("not a regular file") from err
    count = count or max(size - offset, 0)
    try:
        return await _send_blocks(transport, fd, offset, count)
    finally:
        sent = transport._sent_by_sendfile
        if sent > 0:
            file.seek(offset + sent)


async def _send_blocks(transport: "StreamTransport", fd: int, offset: int, count: int) -> int:
    transport._sending_file = True
    transport._update_fast_write()
    sent = 0
    try:
        while sent < count:
            if transport._conn_lost or transport._closing:
                raise ConnectionError("Connection is closed by peer")
            block = os.pread(fd, min(count - sent, BLOCK), offset + sent)
            if not block:
                break
            transport._queue_write(block)
            sent += len(block)
            if transport.get_write_buffer_size():
                transport._drain_waiter = transport._loop.create_future()
                await transport._drain_waiter
        return sent
    finally:
        transport._sending_file = False
        if transport._loop is not None:
            transport._update_fast_write()
        transport._sent_by_sendfile = sent

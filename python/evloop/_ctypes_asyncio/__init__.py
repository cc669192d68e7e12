"""The asyncio event loop of the ctypes path: ``EventLoop``.

It is asyncio's own ``SelectorEventLoop`` over a selector that is an
``evloop.Loop`` (selector.py): asyncio's timers, callbacks, raw fds
(add_reader, sock_*, pipes, signals) run as asyncio
wrote them, and the wait of each iteration is the Loop's one foreign call,
``evl_stream_exchange``. UDP endpoints are the library's UDP sockets
(datagram.py); subprocesses are the library's children and getaddrinfo
runs on its thread pool, as on the native path (evloop/_subprocess.py,
evloop/_resolve.py). Socket transports (TCP and Unix: create_server,
create_connection, connect_accepted_socket, start_tls, and so asyncio's
streams) are replaced by transports on the library's buffered streams
(transport.py, with reading.py, writing.py and sendfile.py): the library
reads, writes and queues, and the bytes written in an iteration go out in
one call (right after a batch of data from several streams, or with the
next exchange), so a round trip costs no foreign call of its own. Stream
events and raw fd events come out of the same call. call_soon() and
_run_once() are asyncio's, made leaner where debug mode is off and no timer
is due (loop.py).

Protocols see what asyncio's transports do: connection_made before any
data, Protocol and BufferedProtocol, eof_received, flow control with
pause_writing()/resume_writing() at the write-buffer limits (64 KiB high by
default, resumed at the low mark), pause_reading()/resume_reading(),
exceptions in protocol callbacks reported to the loop's exception handler,
closing that transport only; each callback in a copy of the contextvars
context that made the transport; callbacks ready before a wait run before
that wait's stream callbacks; the socket open until connection_lost() has
returned.

TLS (``ssl=``, ``start_tls``) with an ``evloop.EvloopSSLContext`` the
library can honour runs on the library's TLS streams (tls.py): rustls
encrypts and decrypts in the library, no Python runs per record; any other
``ssl.SSLContext`` goes through asyncio's SSLProtocol over these transports.

A socket given as ``sock=`` (create_server, create_connection,
connect_accepted_socket, create_unix_server, open_connection...) is read and
written by the library through its fd: the ``recv``/``send`` methods of a
``socket.socket`` subclass are not called (as on uvloop); its other methods
(getsockname, setsockopt...) work until connection_lost() has returned.
"""

from .loop import EventLoop

__all__ = ["EventLoop"]

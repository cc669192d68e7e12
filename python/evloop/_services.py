"""What a Loop offers besides fds, timers and TCP streams (issue 28): UDP
sockets (datagrams.py), Unix-domain listeners and connects, connecting by
name, name resolution on the library's thread pool and child processes
(_jobs.py, processes.py). A mixin of Loop: each method is a thin wrapper
over one of the library's calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

from . import _lib, datagrams, processes
from ._jobs import Jobs, Resolution
from .streams import Server, Transport

if TYPE_CHECKING:
    from ._stream_table import StreamTable


class Services:
    """Loop's UDP, Unix-domain, resolution and process methods."""

    streams: "StreamTable"
    _jobs: Jobs

    # ---- UDP ---------------------------------------------------------------------

    def udp_bind(
        self,
        protocol_factory: Callable[[], Any],
        host: Optional[str] = "127.0.0.1",
        port: int = 0,
        *,
        reuse_port: bool = False,
        allow_broadcast: bool = False,
        ipv6_only: bool = False,
    ) -> datagrams.DatagramTransport:
        """A UDP socket bound to host:port (None or "": every IPv4 address;
        "::": every address, IPv4 too unless `ipv6_only`; port 0: any, see
        the transport's ``port``). Its datagrams go to a protocol from
        `protocol_factory()` (see evloop.datagrams)."""
        flags = (
            (_lib.EVL_UDP_REUSEPORT if reuse_port else 0)
            | (_lib.EVL_UDP_BROADCAST if allow_broadcast else 0)
            | (_lib.EVL_UDP_IPV6_ONLY if ipv6_only else 0)
        )
        return datagrams.bind(self.streams, protocol_factory, host, port, flags)

    def udp_open(self, sock: Any, protocol_factory: Callable[[], Any]) -> datagrams.DatagramTransport:
        """A UDP socket of `sock` (a datagram socket or its fd, bound or
        not), which the library then owns and closes: detach() a
        socket.socket first."""
        return datagrams.open_fd(self.streams, sock, protocol_factory)

    # ---- Unix-domain sockets and connecting by name --------------------------------

    def listen_unix(
        self,
        protocol_factory: Callable[[], Any],
        path: Any,
        *,
        backlog: int = 0,
        remove_stale: bool = False,
        max_connections: Optional[int] = None,
        idle_timeout: Optional[float] = None,
    ) -> Server:
        """Listens on the Unix-domain socket `path` (str, bytes or a path;
        a leading NUL byte: Linux's abstract namespace). `remove_stale`:
        a socket file nobody listens on any more is removed first (never
        anything else: FileExistsError... stays OSError(EADDRINUSE)). The
        file is removed when the server closes. Accepted streams are
        Transports, with ``peer_cred()`` and fd passing."""
        return self.streams.listen_unix(protocol_factory, path, backlog, remove_stale, max_connections, idle_timeout)

    def connect_unix(self, protocol_factory: Callable[[], Any], path: Any) -> Transport:
        """Connects to the Unix-domain socket `path` (as listen_unix names
        it). connection_made() comes in the next iteration, or
        connection_lost(ConnectionRefusedError, FileNotFoundError...) alone."""
        return self.streams.connect_unix(protocol_factory, path)

    def connect_host(self, protocol_factory: Callable[[], Any], host: str, port: int) -> Transport:
        """Connects to host:port without blocking: a name is resolved on the
        library's pool, then its addresses are tried with Happy Eyeballs
        (RFC 8305: IPv6 and IPv4 alternate, a new attempt every 250 ms).
        connection_made() once one connects, or connection_lost(the last
        error) alone."""
        return self.streams.connect_host(protocol_factory, host, port)

    # ---- name resolution -------------------------------------------------------------

    def getaddrinfo(
        self,
        host: Any,
        port: Any,
        callback: Callable[[Any], Any],
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Resolution:
        """Runs getaddrinfo on the library's thread pool, then calls
        ``callback(result)`` on the loop: the list socket.getaddrinfo would
        return, or the socket.gaierror it would raise (with its EAI code and
        text). The returned Resolution's cancel() means no callback."""
        return self._jobs.getaddrinfo(host, port, family, type, proto, flags, callback)

    def set_pool_size(self, size: int) -> None:
        """At most `size` threads in the library's pool (1 to 1024; default:
        the number of CPUs), which resolutions run on."""
        _lib.check(_lib.evl_pool_set_size(self.pointer(), size), "evl_pool_set_size")

    # ---- child processes -------------------------------------------------------------

    def spawn(
        self,
        protocol: Any,
        argv: Sequence[Any],
        *,
        executable: Any = None,
        env: Optional[Dict[Any, Any]] = None,
        cwd: Any = None,
        stdin: Any = processes.PIPE,
        stdout: Any = processes.PIPE,
        stderr: Any = processes.PIPE,
        start_new_session: bool = False,
        process_group: Optional[int] = None,
        close_fds: bool = True,
    ) -> processes.Process:
        """Starts `argv` (the program found in PATH unless `executable`),
        with `env` (a dict; None: this process's), `cwd`, and each stdio
        PIPE (a Transport of the process: ``get_pipe_transport(fd)``),
        DEVNULL, None (this process's), an fd or a file (stderr: also
        STDOUT). Its events go to `protocol` (see evloop.processes). Raises
        FileNotFoundError, PermissionError... when it cannot start (no
        child is left then)."""
        return processes.spawn(
            self.streams,
            self._jobs,
            protocol,
            argv,
            executable=executable,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=start_new_session,
            process_group=process_group,
            close_fds=close_fds,
        )

    def pointer(self) -> int:  # Loop's
        raise NotImplementedError

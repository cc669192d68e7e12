#!/usr/bin/env python3
"""stream_echo_server.py: echo on evloop's buffered streams, the fast one.

The library accepts, reads, queues and writes; this program only says what
to do with each event, in the shape of an asyncio Protocol: echo the data,
close on EOF. Python crosses into the library about twice per loop
iteration, not per connection or per message. Mirrors
c-examples/stream_echo_server.c (without --workers: one interpreter runs
Python code on one core at a time).

    stream_echo_server.py [--host H] [--port P] [--idle-timeout MS] [--max-conns N] [--quiet]
"""

from common import evloop, not_negative, parse_options, say, stop_loop_on_signals


class Echo(evloop.Protocol):
    def connection_made(self, transport: evloop.Transport) -> None:
        self.transport = transport
        self.fd = transport.fileno()
        peer = transport.get_extra_info("peername") if not options.quiet else None
        say(f"new connection from ('{peer[0]}', {peer[1]}) on fd {self.fd}" if peer else "")

    def data_received(self, data: bytes) -> None:
        # A write that fails closes the stream; connection_lost says why.
        self.transport.write(data)

    def eof_received(self) -> None:
        # The client has sent everything: close once its echo is out.
        return None

    def connection_lost(self, exc: "OSError | None") -> None:
        say(f"connection on fd {self.fd} closed: {evloop.strerror(-exc.errno if exc else 0)}")


def add_options(parser) -> None:
    parser.add_argument("--idle-timeout", type=not_negative, default=0, metavar="MS")
    parser.add_argument("--max-conns", type=not_negative, default=0, metavar="N")


options = parse_options("Echo server on evloop's buffered streams, default 127.0.0.1:10000.", 10000, add_options)


def main() -> int:
    with evloop.Loop() as loop:
        server = loop.start_server(
            Echo,
            options.host,
            options.port,
            max_connections=options.max_conns or None,
            idle_timeout=options.idle_timeout / 1000 or None,
        )
        if options.port == 0:
            print(server.port, flush=True)
        say(f"stream echo server on {options.host} port {server.port}, 1 worker")
        stop_loop_on_signals(loop)
        loop.run()
        say("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

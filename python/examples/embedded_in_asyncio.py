#!/usr/bin/env python3
"""embedded_in_asyncio.py: an asyncio program whose TCP echo is served by
evloop's buffered streams, run inside the asyncio loop (evloop.attach), next
to an asyncio timer that ticks every 100 ms. The asyncio application keeps
its loop; evloop's streams serve the sockets. Mirrors c-examples/glib_embed.c.
SIGINT or SIGTERM ends it; it then says how often the asyncio timer ticked.

    embedded_in_asyncio.py [--host H] [--port P] [--idle-timeout MS] [--quiet]
"""

import asyncio
import signal

from common import evloop, not_negative, parse_options, say


class Echo(evloop.Protocol):
    def connection_made(self, transport: evloop.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # A write that fails closes the stream; connection_lost says why.
        self.transport.write(data)

    def eof_received(self) -> None:
        # The client has sent everything: close once its echo is out.
        return None


def add_options(parser) -> None:
    parser.add_argument("--idle-timeout", type=not_negative, default=0, metavar="MS")


options = parse_options("Echo server on evloop's streams inside an asyncio loop, default 127.0.0.1:10000.", 10000,
                        add_options)


async def main() -> int:
    host = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signo in (signal.SIGINT, signal.SIGTERM):
        host.add_signal_handler(signo, stop.set)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.1)
            ticks += 1

    with evloop.Loop() as loop:
        server = loop.start_server(Echo, options.host, options.port, idle_timeout=options.idle_timeout / 1000 or None)
        if options.port == 0:
            print(server.port, flush=True)
        say(f"embedded_in_asyncio: stream echo server on {options.host} port {server.port} inside an asyncio loop")
        attachment = evloop.attach(loop)
        ticker = asyncio.create_task(tick())
        await stop.wait()
        ticker.cancel()
        attachment.detach()
    print(f"asyncio timer ticked {ticks} times", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

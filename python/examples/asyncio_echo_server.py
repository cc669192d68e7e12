#!/usr/bin/env python3
"""asyncio_echo_server.py: the articles' selectors echo server (S5) written
with asyncio streams, on evloop's asyncio loop (--loop asyncio: on asyncio's
own, to compare). The log lines are S5's (see selectors_echo_server.py).

Each connection reads up to 1000 bytes, writes them back and awaits
drain(), so a client that sends and never reads stops being read once 64 KiB
wait for it; EOF closes the connection once the replies are sent; a reset
closes that connection only.

    asyncio_echo_server.py [--host H] [--port P] [--loop evloop|asyncio] [--quiet]
"""

import asyncio
import signal

from common import address, evloop, parse_options, say


def add_options(parser) -> None:
    parser.add_argument("--loop", choices=("evloop", "asyncio"), default="evloop", help="the event loop (evloop)")


options = parse_options("Echo server with asyncio streams (S5), default 127.0.0.1:10000.", 10000, add_options)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    peer = writer.get_extra_info("peername")
    text = f"<socket fd={sock.fileno()}, laddr={address(sock.getsockname())}, raddr={address(peer)}>"
    say("accepted", text, "from", address(peer))
    try:
        while True:
            data = await reader.read(1000)
            if not data:
                break
            if not options.quiet:
                say("echoing", repr(data), "to", text)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the peer has gone: this connection only
    say("closing", text)
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def main() -> None:
    server = await asyncio.start_server(echo, options.host, options.port)
    if options.port == 0:
        print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signo, stop.set)
    say("starting up on", options.host, "port", server.sockets[0].getsockname()[1])
    async with server:
        await stop.wait()


if options.loop == "evloop":
    evloop.run(main())
else:
    asyncio.run(main())

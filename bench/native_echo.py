#!/usr/bin/env python3
"""Echo servers on one of four asyncio loops, for bench/native_bench.py.

    native_echo.py --loop asyncio|uvloop|native|evloop --server protocol|streams [--port P] [--quiet]

native: evloop's native loop (evloop._native, CPython); evloop: its ctypes
loop; asyncio: asyncio.SelectorEventLoop; uvloop: uvloop's.
protocol: data_received -> transport.write. streams: asyncio.start_server,
await reader.read(1000), writer.write, await writer.drain(). The port is
printed on the first line (--port 0: any free one); SIGTERM or SIGINT ends
it with status 0.
"""
import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asyncio_echo import Echo, echo  # noqa: E402  (bench/: the same two servers)


def loop_factory(name):
    if name == "native":
        from evloop import _native

        return _native.EventLoop
    if name == "evloop":
        import evloop

        return evloop.new_event_loop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.SelectorEventLoop


async def serve(kind, port):
    loop = asyncio.get_running_loop()
    if kind == "protocol":
        server = await loop.create_server(Echo, "127.0.0.1", port)
    else:
        server = await asyncio.start_server(echo, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "native", "evloop"), required=True)
    parser.add_argument("--server", choices=("protocol", "streams"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    loop = loop_factory(args.loop)()
    try:
        loop.run_until_complete(serve(args.server, args.port))
    finally:
        loop.close()


if __name__ == "__main__":
    main()

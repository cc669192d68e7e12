#!/usr/bin/env python3
"""The two echo servers of bench/asyncio_bench.py, on one of three loops.

    asyncio_echo.py --loop asyncio|uvloop|evloop --server protocol|streams [--port P] [--quiet]

protocol: data_received -> transport.write. streams: asyncio.start_server,
await reader.read(1000), writer.write, await writer.drain(). With --port 0
the port is printed on the first line; SIGTERM ends it with status 0.
"""
import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(1000)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main(args):
    loop = asyncio.get_running_loop()
    if args.server == "protocol":
        server = await loop.create_server(Echo, "127.0.0.1", args.port)
    else:
        server = await asyncio.start_server(echo, "127.0.0.1", args.port)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "evloop"), required=True)
    parser.add_argument("--server", choices=("protocol", "streams"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.loop == "asyncio":
        asyncio.run(main(args))
    else:
        module = __import__(args.loop)
        module.run(main(args))


if __name__ == "__main__":
    run()

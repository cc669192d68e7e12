#!/usr/bin/env python3
"""The two echo servers of bench/asyncio_bench.py, on any asyncio event loop.

    asyncio_echo.py --loop NAME|MODULE:CALLABLE --server protocol|streams [--port P] [--quiet]

--loop names the loop factory: `asyncio`, `uvloop` and `evloop` stand for
their `new_event_loop`; anything else is MODULE:CALLABLE, a callable taking no
argument and returning a new asyncio event loop (`evloop:new_event_loop`,
`asyncio:SelectorEventLoop`, a native loop added later...). The repository's
python/ directory comes first on sys.path, so `evloop` is the checkout's.

protocol: data_received -> transport.write. streams: asyncio.start_server,
await reader.read(1000), writer.write, await writer.drain(). With --port 0
the port is printed on the first line; SIGTERM ends it with status 0.
"""
import argparse
import asyncio
import importlib
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

# The short names of the usual factories.
FACTORIES = {
    "asyncio": "asyncio:new_event_loop",
    "uvloop": "uvloop:new_event_loop",
    "evloop": "evloop:new_event_loop",
}


def loop_factory(spec):
    """The callable a `--loop` value names."""
    spec = FACTORIES.get(spec, spec)
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise SystemExit(f"--loop {spec!r}: expected asyncio, uvloop, evloop or MODULE:CALLABLE")
    factory = importlib.import_module(module)
    for attribute in name.split("."):
        factory = getattr(factory, attribute)
    return factory


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


def run_on(factory, coroutine):
    """asyncio.run(coroutine) on a loop from `factory` (asyncio.Runner's
    loop_factory, which Python 3.8 to 3.10 lack)."""
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(coroutine)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", required=True, help="asyncio, uvloop, evloop or MODULE:CALLABLE")
    parser.add_argument("--server", choices=("protocol", "streams"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    run_on(loop_factory(args.loop), main(args))


if __name__ == "__main__":
    run()

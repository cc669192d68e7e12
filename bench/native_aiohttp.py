#!/usr/bin/env python3
"""aiohttp's "hello world" on one of four asyncio loops, for
bench/native_cpu.py and bench/aiohttp_callgrind.py: GET / answers
"Hello, World!" (keep-alive).

    native_aiohttp.py --loop asyncio|uvloop|native|ctypes|evloop [--port P] [--quiet]

The port is printed on the first line (--port 0: any free one); SIGTERM
ends it with status 0. Needs aiohttp (bench/native_bench.py's venv has it).
"""
import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asyncio_echo import loop_factory  # noqa: E402  (bench/, beside this script)


async def hello(request):
    return web.Response(text="Hello, World!")


async def serve(port):
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "native", "ctypes", "evloop"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="accepted for bench/echo_bench.py (nothing else is printed)")
    args = parser.parse_args()
    loop = loop_factory(args.loop)()
    try:
        loop.run_until_complete(serve(args.port))
    finally:
        loop.close()


if __name__ == "__main__":
    main()

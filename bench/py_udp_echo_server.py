#!/usr/bin/env python3
"""A UDP echo server on an asyncio DatagramProtocol, for
bench/py_udp_echo_bench.py: `--loop asyncio|uvloop|evloop`, `--port 0`
(prints the port chosen on its first line), `--quiet`; exits 0 on SIGTERM."""
import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def serve(port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    print(transport.get_extra_info("sockname")[1], flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    transport.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop", "evloop"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop as module
        factory = module.new_event_loop
    elif args.loop == "evloop":
        import evloop as module
        factory = module.new_event_loop
    else:
        factory = asyncio.SelectorEventLoop
    loop = factory()
    try:
        loop.run_until_complete(serve(args.port))
    finally:
        loop.close()


if __name__ == "__main__":
    main()

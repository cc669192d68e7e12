"""The native loop's datagram endpoints (src/cpython/datagram.rs and
evloop/_native/_datagram.py), beyond what test_asyncio_services.py
compares with asyncio:

- lifetime: seeded random endpoints (IPv4 and IPv6, connected and not)
  whose protocols echo, raise, close, abort, pause and resume reading and
  send to other endpoints from inside datagram_received; afterwards every
  protocol heard connection_lost exactly once, the exception handler got
  exactly the exceptions raised, no transport or protocol is alive (weak
  references, after gc.collect()) and no fd is left;
- flow control: with the library's sends held (as if the kernel's buffer
  were full), datagrams past the high-water mark wait in order,
  pause_writing() comes once, then resume_writing() once they are sent,
  and a close() waits for them;
- byte-exact: seeded random datagrams (1 byte to 65,000), each checked
  byte for byte in its echo, to destinations given as the same tuple, as
  an equal new tuple, as a name, and to the connected peer, alternating
  between two servers, so that sendto's native destinations (the last
  source, the last destination) and its Python way are all taken.

``EVLOOP_MODEL_SEED=N`` replays one seed. CPython only (see native_support).
"""

import asyncio
import gc
import os
import random
import socket
import sys
import unittest
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from native_support import CPYTHON, native_loop, run  # noqa: E402
from waiting import PATIENCE, has_ipv6  # noqa: E402

SEEDS = [int(os.environ["EVLOOP_MODEL_SEED"])] if "EVLOOP_MODEL_SEED" in os.environ else range(3)
HOSTS = ["127.0.0.1"] + (["::1"] if has_ipv6() else [])

# What a datagram asks the server's protocol to do (its first byte).
ECHO, RAISE, CLOSE, ABORT, PAUSE, OTHER = b"ercapo"


def random_bytes(rng, size):
    return rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""


class Server(asyncio.DatagramProtocol):
    def __init__(self, world):
        self.world = world
        self.lost = 0
        world.track(self)

    def connection_made(self, transport):
        self.transport = transport
        self.world.track(transport)
        self.world.servers.append(transport)

    def datagram_received(self, data, addr):
        world, transport = self.world, self.transport
        command = data[0]
        if command == RAISE:
            raise ZeroDivisionError("asked to raise")
        if command == CLOSE:
            transport.sendto(data, addr)
            transport.close()
        elif command == ABORT:
            transport.abort()
        elif command == PAUSE:
            transport.pause_reading()
            world.loop.call_later(0.001, transport.resume_reading)
            transport.sendto(data, addr)
        elif command == OTHER:
            others = [t for t in world.servers if t is not transport and not t.is_closing()]
            if others:
                other = world.random.choice(others)
                other.sendto(b"stray", transport.get_extra_info("sockname"))
            transport.sendto(data, addr)
        else:
            transport.sendto(data, addr)

    def error_received(self, exc):
        pass

    def connection_lost(self, exc):
        self.lost += 1
        self.world.lost += 1


class Client(asyncio.DatagramProtocol):
    def __init__(self, world):
        self.world = world
        self.replies = asyncio.Queue()
        self.lost = 0
        world.track(self)

    def connection_made(self, transport):
        self.world.track(transport)

    def datagram_received(self, data, addr):
        self.replies.put_nowait((data, addr))

    def error_received(self, exc):
        pass

    def connection_lost(self, exc):
        self.lost += 1
        self.world.lost += 1


class World:
    def __init__(self, seed):
        self.random = random.Random(seed)
        self.refs = []
        self.servers = []
        self.raised = 0
        self.handled = []
        self.lost = 0
        self.loop = None

    def track(self, obj):
        self.refs.append(weakref.ref(obj))

    def alive(self):
        gc.collect()
        return [ref() for ref in self.refs if ref() is not None]


async def endpoints(world, rng):
    loop = world.loop
    host = rng.choice(HOSTS)
    server, server_protocol = await loop.create_datagram_endpoint(lambda: Server(world), local_addr=(host, 0))
    address = server.get_extra_info("sockname")
    if rng.random() < 0.5:
        client, client_protocol = await loop.create_datagram_endpoint(lambda: Client(world), remote_addr=address[:2])
        destination = None
    else:
        client, client_protocol = await loop.create_datagram_endpoint(lambda: Client(world), local_addr=(host, 0))
        destination = address
    return server, server_protocol, client, client_protocol, destination


async def lifetime(seed):
    world = World(seed)
    loop = world.loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: world.handled.append(type(context.get("exception"))))
    rng = world.random
    pairs = [await endpoints(world, rng) for _ in range(24)]
    for _ in range(300):
        server, server_protocol, client, client_protocol, destination = rng.choice(pairs)
        if client.is_closing():
            continue
        command = rng.choice([ECHO, ECHO, ECHO, RAISE, PAUSE, OTHER, CLOSE, ABORT])
        payload = bytes([command]) + random_bytes(rng, rng.randrange(0, 2000))
        gone = server.is_closing()
        client.sendto(payload, destination)
        world.raised += command == RAISE and not gone
        if command in (ECHO, PAUSE, OTHER, CLOSE) and not gone:
            while True:
                data, _ = await asyncio.wait_for(client_protocol.replies.get(), PATIENCE)
                if data != b"stray":
                    break
            assert data == payload, (seed, len(data), len(payload))
        elif command == RAISE and not gone:
            while len(world.handled) < world.raised:
                await asyncio.sleep(0.001)
        elif command == ABORT and not gone:
            while not server.is_closing():
                await asyncio.sleep(0.001)
        if rng.random() < 0.05:
            client.close() if rng.random() < 0.5 else client.abort()
    for server, _, client, _, _ in pairs:
        server.close()
        client.abort() if rng.random() < 0.5 else client.close()
    protocols = [p for _, server_protocol, _, client_protocol, _ in pairs for p in (server_protocol, client_protocol)]
    while any(p.lost == 0 for p in protocols):
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    world.servers.clear()
    world.loop = None
    return world, [p.lost for p in protocols]


class LifetimeTest(unittest.TestCase):
    def test_random_endpoints_leave_nothing_alive(self):
        before = len(os.listdir("/proc/self/fd"))
        for seed in SEEDS:
            with self.subTest(seed=seed):
                world, lost = run(lifetime(seed))
                self.assertEqual(set(lost), {1}, "connection_lost exactly once each")
                self.assertEqual(world.handled, [ZeroDivisionError] * world.raised)
                self.assertEqual(world.alive(), [])
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)

    def test_a_transport_left_open_is_released_with_its_loop(self):
        refs = []

        async def scenario():
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.create_datagram_endpoint(_Replies, local_addr=("127.0.0.1", 0))
            refs.extend([weakref.ref(transport), weakref.ref(protocol)])
            return transport.get_extra_info("socket").fileno()

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            run(scenario())
            gc.collect()
        self.assertEqual([ref() for ref in refs], [None, None])


async def byte_exact(seed):
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    checked = 0
    for host in HOSTS:
        servers = [await loop.create_datagram_endpoint(Echo, local_addr=(host, 0)) for _ in range(2)]
        addresses = [server.get_extra_info("sockname") for server, _ in servers]
        unconnected, free = await loop.create_datagram_endpoint(_Replies, local_addr=(host, 0))
        connected, tied = await loop.create_datagram_endpoint(_Replies, remote_addr=addresses[0][:2])
        for _ in range(120):
            size = rng.choice([1, 2, 63, 64, 1000, 1472, 8192, rng.randrange(1, 65000)])
            data = random_bytes(rng, size)
            which = rng.randrange(2)
            how = rng.choice(["same", "equal", "name", "connected"])
            if how == "connected":
                connected.sendto(data)
                got, addr = await asyncio.wait_for(tied.queue.get(), PATIENCE)
                expected = addresses[0]
            else:
                destination = addresses[which]
                if how == "equal":
                    destination = tuple(list(destination))
                elif how == "name" and host == "127.0.0.1":
                    destination = ("localhost", destination[1])
                unconnected.sendto(data, destination)
                got, addr = await asyncio.wait_for(free.queue.get(), PATIENCE)
                expected = addresses[which]
            assert got == data, (seed, host, how, len(got), len(data))
            assert addr == expected, (addr, expected)
            checked += 1
        for transport in [unconnected, connected] + [server for server, _ in servers]:
            transport.close()
        await asyncio.sleep(0)
    return checked


class _Replies(asyncio.DatagramProtocol):
    def __init__(self):
        self.queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr))


class ByteExactTest(unittest.TestCase):
    def test_random_datagrams_come_back_byte_for_byte(self):
        for seed in SEEDS:
            with self.subTest(seed=seed):
                self.assertEqual(run(byte_exact(seed), native_loop), 120 * len(HOSTS))


class _Flow(_Replies):
    def __init__(self):
        super().__init__()
        self.events = []

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


async def flow_control(close_early):
    loop = asyncio.get_running_loop()
    receiver, received = await loop.create_datagram_endpoint(_Replies, local_addr=("127.0.0.1", 0))
    sender, flow = await loop.create_datagram_endpoint(_Flow, local_addr=("127.0.0.1", 0))
    await asyncio.sleep(0)
    sender.set_write_buffer_limits(high=1000, low=200)
    sender._hold_sends(True)
    address = receiver.get_extra_info("sockname")
    datagrams = [b"%03d" % i + b"x" * 97 for i in range(30)]
    for i, data in enumerate(datagrams):
        # The same tuple (native sends) and equal new ones (the Python way).
        sender.sendto(data, address if i % 2 else tuple(address))
    queued = sender.get_write_buffer_size()
    paused = list(flow.events)
    if close_early:
        sender.close()
    sender._hold_sends(False)
    got = [(await asyncio.wait_for(received.queue.get(), PATIENCE))[0] for _ in datagrams]
    if not close_early:
        while "resume" not in flow.events:
            await asyncio.sleep(0.001)
        sender.close()
    while not flow.events or flow.events[-1] != ("lost", None):
        await asyncio.sleep(0.001)
    receiver.close()
    return queued > 1000, paused, got == datagrams, flow.events


class FlowControlTest(unittest.TestCase):
    def test_a_full_queue_pauses_the_protocol_and_keeps_the_order(self):
        self.assertEqual(run(flow_control(False)), (True, ["pause"], True, ["pause", "resume", ("lost", None)]))

    def test_close_waits_for_what_overflowed(self):
        self.assertEqual(run(flow_control(True)), (True, ["pause"], True, ["pause", ("lost", None)]))


if not CPYTHON:  # the native loop is CPython's: nothing to test (test_native_core checks PyPy says so)
    del LifetimeTest, ByteExactTest, FlowControlTest

if __name__ == "__main__":
    unittest.main()

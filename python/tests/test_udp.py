"""UDP sockets on evloop.Loop (udp_bind, udp_open): echo on IPv4 and IPv6,
batches, truncation reported, connected sockets and their ICMP errors,
the send queue's bound, and a seeded random exchange checked against what
was sent (no datagram duplicated or corrupted, truncation flagged)."""

import errno
import os
import random
import socket
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import evloop  # noqa: E402
from waiting import PATIENCE, has_ipv6, run_until  # noqa: E402
from evloop.datagrams import DatagramProtocol  # noqa: E402


class Echo(DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Recorder(DatagramProtocol):
    def __init__(self):
        self.received = []  # (data, addr)
        self.truncated = []
        self.errors = []
        self.lost = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.append((data, addr))

    def datagram_truncated(self, data, addr):
        self.truncated.append((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost.append(exc)


class UdpTest(unittest.TestCase):
    def setUp(self):
        self.loop = evloop.Loop()
        self.addCleanup(self.loop.close)

    def echo_pair(self, host):
        server = self.loop.udp_bind(Echo, host, 0)
        client = self.loop.udp_bind(Recorder, host, 0)
        return server, client, client.get_protocol()

    def test_echo_ipv4(self):
        server, client, recorder = self.echo_pair("127.0.0.1")
        for size in (0, 1, 1000, 65507):
            client.sendto(bytes([size % 251]) * size, ("127.0.0.1", server.port))
        run_until(self.loop, lambda: len(recorder.received) == 4)
        self.assertEqual([len(data) for data, _ in recorder.received], [0, 1, 1000, 65507])
        self.assertEqual({addr for _, addr in recorder.received}, {("127.0.0.1", server.port)})
        self.assertEqual(recorder.received[2][0], bytes([1000 % 251]) * 1000)
        self.assertEqual(client.get_extra_info("sockname"), ("127.0.0.1", client.port))
        client.close()
        run_until(self.loop, lambda: recorder.lost)
        self.assertEqual(recorder.lost, [None])

    def test_echo_ipv6_and_dual_stack(self):
        if not has_ipv6():  # a machine without IPv6: binding says so
            with self.assertRaises(OSError):
                self.loop.udp_bind(Recorder, "::1", 0)
            return
        server = self.loop.udp_bind(Echo, "::", 0)
        v6 = self.loop.udp_bind(Recorder, "::1", 0)
        v4 = self.loop.udp_bind(Recorder, "127.0.0.1", 0)
        v6.sendto(b"six", ("::1", server.port))
        v4.sendto(b"four", ("127.0.0.1", server.port))
        run_until(self.loop, lambda: v6.get_protocol().received and v4.get_protocol().received)
        data, addr = v6.get_protocol().received[0]
        self.assertEqual((data, addr[:2]), (b"six", ("::1", server.port)))
        self.assertEqual(len(addr), 4)
        self.assertEqual(v4.get_protocol().received, [(b"four", ("127.0.0.1", server.port))])

    def test_truncation_is_reported(self):
        server, client, recorder = self.echo_pair("127.0.0.1")
        client.set_recv_size(100)
        client.sendto(b"a" * 100, ("127.0.0.1", server.port))
        client.sendto(b"b" * 101, ("127.0.0.1", server.port))
        run_until(self.loop, lambda: len(recorder.received) + len(recorder.truncated) == 2)
        self.assertEqual(recorder.received, [(b"a" * 100, ("127.0.0.1", server.port))])
        self.assertEqual(recorder.truncated, [(b"b" * 100, ("127.0.0.1", server.port))])

    def test_truncation_without_a_handler_is_an_error_received(self):
        class Plain(DatagramProtocol):
            def __init__(self):
                self.events = []

            def datagram_received(self, data, addr):
                self.events.append(data)

            def error_received(self, exc):
                self.events.append(exc)

        server = self.loop.udp_bind(Echo, "127.0.0.1", 0)
        client = self.loop.udp_bind(Plain, "127.0.0.1", 0)
        client.set_recv_size(4)
        client.sendto(b"12345", ("127.0.0.1", server.port))
        run_until(self.loop, lambda: client.get_protocol().events)
        (event,) = client.get_protocol().events
        self.assertIsInstance(event, OSError)
        self.assertEqual(event.errno, errno.EMSGSIZE)

    def test_batches_in_and_out(self):
        class Batches(Recorder):
            def __init__(self):
                super().__init__()
                self.batches = []

            def datagrams_received(self, batch):
                self.batches.append(batch)

        server = self.loop.udp_bind(Echo, "127.0.0.1", 0)
        client = self.loop.udp_bind(Batches, "127.0.0.1", 0)
        peer = ("127.0.0.1", server.port)
        refused = client.send_batch([(b"%d" % i, peer) for i in range(50)] + [(b"x" * 70000, peer)])
        self.assertEqual(refused[:50], [None] * 50)
        self.assertEqual(refused[50].errno, errno.EMSGSIZE)
        batches = client.get_protocol().batches
        run_until(self.loop, lambda: sum(map(len, batches)) == 50)
        self.assertEqual(sorted(int(data) for batch in batches for data, _, _ in batch), list(range(50)))
        self.assertTrue(all(not truncated and addr == peer for batch in batches for _, addr, truncated in batch))

    def test_connected_socket_gets_icmp_errors(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        client = self.loop.udp_bind(Recorder, "127.0.0.1", 0)
        client.connect("127.0.0.1", port)
        self.assertEqual(client.get_extra_info("peername"), ("127.0.0.1", port))
        client.sendto(b"anyone?")
        run_until(self.loop, lambda: client.get_protocol().errors)
        self.assertIsInstance(client.get_protocol().errors[0], ConnectionRefusedError)

    def test_udp_open_takes_a_socket(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        transport = self.loop.udp_open(sock.detach(), Echo)
        self.assertEqual(transport.port, port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(PATIENCE)
            peer.sendto(b"ping", ("127.0.0.1", port))
            run_until(self.loop, lambda: transport.get_write_buffer_size() == 0 and _readable(peer))
            self.assertEqual(peer.recv(100), b"ping")

    def test_bad_input_is_an_error(self):
        client = self.loop.udp_bind(Recorder, "127.0.0.1", 0)
        with self.assertRaises(TypeError):
            client.sendto(b"x", "127.0.0.1")
        with self.assertRaises(OverflowError):
            client.sendto(b"x", ("127.0.0.1", 70000))
        with self.assertRaises(OSError) as caught:
            client.sendto(b"x")  # not connected
        self.assertEqual(caught.exception.errno, errno.EDESTADDRREQ)
        with self.assertRaises(OSError):
            self.loop.udp_bind(Recorder, "127.0.0.1", client.port)  # in use
        with self.assertRaises(ValueError):
            self.loop.udp_bind(Recorder, "127.0.0.1", 70000)

    def test_seeded_random_exchange(self):
        """Random sizes, batches and receive sizes on several sockets: every
        datagram received was sent (no corruption), at most once, from the
        socket that sent it, truncated exactly when it was longer than the
        receiver's receive size. Loopback drops nothing while the receivers
        keep up, so all of them come."""
        seed = int(os.environ.get("EVLOOP_MODEL_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        sockets = [self.loop.udp_bind(Recorder, "127.0.0.1", 0) for _ in range(4)]
        recv_sizes = {}
        for transport in sockets:
            recv_sizes[transport.port] = rng.choice([65536, 1000, 100, 1])
            transport.set_recv_size(recv_sizes[transport.port])
        sent = {}  # payload -> (source port, destination port)
        received = lambda: sum(len(t.get_protocol().received) + len(t.get_protocol().truncated) for t in sockets)  # noqa: E731
        for step in range(200):
            source, destination = rng.choice(sockets), rng.choice(sockets)
            count = rng.choice([1, 1, 5, 40])
            batch = []
            for i in range(count):
                tag = b"%d:%d:%d:" % (seed, step, i)
                payload = tag + bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 10, 300, 2000])))
                sent[payload] = (source.port, destination.port)
                batch.append((payload, ("127.0.0.1", destination.port)))
            if count == 1:
                source.sendto(*batch[0])
            else:
                self.assertEqual(source.send_batch(batch), [None] * count, f"seed {seed}")
            # The kernel drops what a receiver's buffer cannot hold: each
            # step's datagrams (at most 40 of 2 KB) are received before the
            # next step sends, so none may be missing.
            run_until(self.loop, lambda: received() >= len(sent))
        expected = len(sent)
        seen = set()
        for transport in sockets:
            recorder, size = transport.get_protocol(), recv_sizes[transport.port]
            for data, addr, truncated in [(d, a, False) for d, a in recorder.received] + [
                (d, a, True) for d, a in recorder.truncated
            ]:
                whole = data if not truncated else next((p for p in sent if p.startswith(data) and len(p) > size), None)
                if truncated and size < 20:
                    # Too short to name its datagram: its length says enough.
                    self.assertEqual(len(data), size, f"seed {seed}")
                    continue
                self.assertIn(whole, sent, f"seed {seed}: a datagram that was never sent")
                self.assertNotIn(whole, seen, f"seed {seed}: a datagram received twice")
                seen.add(whole)
                self.assertEqual(sent[whole], (addr[1], transport.port), f"seed {seed}")
                self.assertEqual(truncated, len(whole) > size, f"seed {seed}")
                if truncated:
                    self.assertEqual(data, whole[:size], f"seed {seed}")
        self.assertEqual(received(), expected, f"seed {seed}: more datagrams than were sent")


def _readable(sock):
    import select

    return bool(select.select([sock], [], [], 0)[0])


if __name__ == "__main__":
    unittest.main()

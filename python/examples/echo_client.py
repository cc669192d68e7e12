#!/usr/bin/env python3
"""echo_client.py: the articles' echo clients (C1, C2, C3, C4), on evloop.Loop.
Mirrors c-examples/echo_client.c.

C1 opens 2 sockets; for each of its three messages it sends the message on
every socket, then reads the reply on every socket. C2 is the same with
10,000 sockets (--conns 10000). C3 (--interactive) sends each line read from
stdin and prints the reply. C4 (--hello) sends "PID hello" on one socket and
prints the reply, again and again, --rounds times or for --seconds (without
either, until SIGINT/SIGTERM); its default port is S8's, 8083.

Fixed: the original took one recv(1024) for the whole reply; here every
socket reads until its whole reply has come back, and every byte is checked
(upper case with --upper, upper + "_SB" with --sb). Sends and reads are
driven by the loop, so a large message (--size) never deadlocks against a
server that stops reading until its replies are read. Exit status: 0 every
reply right, 1 not (the first difference is reported, or no reply came for
--timeout seconds), 2 bad arguments. (C4 printed one recv(1024), whatever it
was, and could only be stopped by killing it.)

    echo_client.py [--host H] [--port P] [--conns N] [--size BYTES [--independent]]
                   [--rounds R] [--upper | --sb] [--interactive | --hello [--seconds S]]
                   [--timeout S] [--quiet]
"""

import os
import signal
import socket
import sys

from common import evloop, make_reply, parse_options, positive, printable, say

MESSAGES = [b"This is the message. ", b"It will be sent ", b"in parts."]


def add_options(parser) -> None:
    parser.add_argument("--conns", type=positive, default=2)
    parser.add_argument("--size", type=positive, default=0, metavar="BYTES")
    parser.add_argument("--rounds", type=positive, default=None, help="default 1 (--hello: no limit)")
    parser.add_argument("--upper", action="store_true")
    parser.add_argument("--sb", action="store_true")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--interactive", action="store_true", help="lines from stdin on one socket (C3)")
    modes.add_argument("--hello", action="store_true", help='"PID hello" in a loop on one socket (C4), port 8083')
    parser.add_argument("--seconds", type=positive, default=0, metavar="S", help="--hello: stop after S seconds")
    parser.add_argument("--independent", action="store_true")
    parser.add_argument("--timeout", type=positive, default=60, metavar="S")


options = parse_options("Sends the articles' three messages (or one of BYTES bytes), R times, on N sockets "
                        "to 127.0.0.1:10000 and checks every reply byte for byte.",
                        lambda o: 8083 if o.hello else 10000, add_options)
for wrong, why in ((options.independent and not options.size, "--independent needs --size"),
                   (options.hello and options.size, "--hello sends its own message: no --size"),
                   (options.seconds and not options.hello, "--seconds is for --hello")):
    if wrong:
        print(why, file=sys.stderr)
        sys.exit(2)
rounds_given = options.rounds is not None
if not rounds_given:
    options.rounds = 1
if options.sb:
    options.upper = True


class Failed(Exception):
    pass


class Peer:
    def __init__(self, client: "Client", sock: socket.socket) -> None:
        self.client = client
        self.sock = sock
        name = sock.getsockname()
        self.name = f"('{name[0]}', {name[1]})"
        self.sent = self.received = 0
        self.repeats_left = 0
        self.interest = evloop.READ

    def set_interest(self, interest: int) -> None:
        if interest != self.interest:
            self.client.loop.modify(self.sock, interest)
            self.interest = interest

    def send_more(self) -> None:
        message = self.client.message
        while self.sent < len(message):
            try:
                self.sent += self.sock.send(message[self.sent:self.sent + (1 << 20)])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                raise Failed(f"{self.name}: send: {e.strerror}") from None
        self.set_interest(evloop.READ | (evloop.WRITE if self.sent < len(message) else 0))

    def receive(self) -> None:
        client = self.client
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            raise Failed(f"{self.name}: recv: {e.strerror}") from None
        if not data:
            say(f"closing socket {self.name}")
            raise Failed(f"{self.name}: the server closed the connection after {self.received} of "
                         f"{len(client.expected)} reply bytes")
        if not options.quiet and not options.hello:
            say(f'{self.name}: received "{printable(data, chr(34))}"')
        expected = client.expected[self.received:self.received + len(data)]
        if len(data) > len(expected):
            raise Failed(f"{self.name}: {len(data) - len(expected)} bytes more than the reply")
        if data != expected:
            at = next(i for i in range(len(data)) if data[i] != expected[i])
            raise Failed(f"{self.name}: reply byte {self.received + at} is 0x{data[at]:02x}, "
                         f"expected 0x{expected[at]:02x}")
        self.received += len(data)
        if self.received < len(client.expected):
            return
        client.replies += 1
        if options.hello:
            say(printable(client.expected))  # C4: print(data.decode())
        self.repeats_left -= 1
        if self.repeats_left > 0 and not client.time_up:  # --independent, --hello: the next one at once
            self.sent = self.received = 0
            self.send_more()
        else:
            client.waiting -= 1
            if client.waiting == 0:
                client.loop.stop()


def on_peer(sock: socket.socket, revents: int, peer: Peer) -> None:
    if revents & evloop.WRITE:
        peer.send_more()
    if revents & (evloop.READ | evloop.ERROR | evloop.HUP):
        peer.receive()  # recv() reports the error


class Client:
    def __init__(self) -> None:
        self.loop = evloop.Loop()
        self.message = self.expected = b""
        self.waiting = 0
        self.replies = self.replies_at_last_tick = 0  # for the --timeout watchdog
        self.stopped = self.time_up = False
        self.peers = []

    def connect(self, count: int) -> None:
        say(f"connecting to {options.host} port {options.port}")
        for _ in range(count):
            sock = socket.create_connection((options.host, options.port))
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = Peer(self, sock)
            self.loop.register(sock, evloop.READ, on_peer, peer)
            self.peers.append(peer)

    def exchange(self, message: bytes, repeats: int = 1) -> None:
        """Sends `message` on every socket and waits for every reply, `repeats`
        times in a row on each socket; raises Failed on a wrong reply."""
        self.message, self.expected = message, make_reply(options, message)
        self.waiting = len(self.peers)
        for peer in self.peers:
            if not options.quiet:
                say(f'{peer.name}: sending "{printable(message, chr(34))}"')
            peer.sent = peer.received = 0
            peer.repeats_left = repeats
            peer.send_more()
        while self.waiting and not self.stopped:
            self.loop.run()

    def stop(self) -> None:
        self.stopped = True
        self.loop.stop()

    def watchdog(self) -> None:
        """Every --timeout seconds: fails unless some reply was completed since."""
        if self.replies == self.replies_at_last_tick:
            raise Failed(f"timed out: no reply for {options.timeout} s, {self.waiting} of {len(self.peers)} "
                         "replies incomplete")
        self.replies_at_last_tick = self.replies
        self.loop.call_later(options.timeout, self.watchdog)

    def end_of_time(self) -> None:
        """--seconds: the exchange under way is the last."""
        self.time_up = True


def send_messages(client: Client) -> None:
    if options.size:
        sized = bytes(97 + i % 26 for i in range(26)) * (options.size // 26 + 1)
        sized = sized[:options.size]
        if options.independent:
            client.exchange(sized, options.rounds)
            return
        for _ in range(options.rounds):
            client.exchange(sized)
        return
    for _ in range(options.rounds):
        for message in MESSAGES:
            client.exchange(message)
            if client.stopped:
                return


def send_hellos(client: Client) -> None:
    if options.seconds:
        client.loop.call_later(options.seconds, client.end_of_time)
    client.exchange(b"%d hello" % os.getpid(), options.rounds if rounds_given else 1 << 62)


def send_lines(client: Client) -> None:
    while not client.stopped:
        if not options.quiet:
            print("please input: ", end="", flush=True)
        line = sys.stdin.buffer.readline()
        if not line:
            if not options.quiet:
                print()
            return
        line = line.rstrip(b"\n")
        if line:  # nothing to send, so no reply would come
            client.exchange(line)


def main() -> int:
    client = Client()
    client.loop.add_signal_handler(signal.SIGINT, client.stop)
    client.loop.add_signal_handler(signal.SIGTERM, client.stop)
    if not options.interactive:  # a person at the keyboard takes the time they need
        client.loop.call_later(options.timeout, client.watchdog)
    failed = False
    try:
        client.connect(1 if options.interactive or options.hello else options.conns)
        if options.interactive:
            send_lines(client)
        elif options.hello:
            send_hellos(client)
        else:
            send_messages(client)
    except Failed as e:
        print(e, file=sys.stderr)
        failed = True
    except OSError as e:
        print(f"connect: {e.strerror}", file=sys.stderr)
        failed = True
    for peer in client.peers:
        if not failed:
            say(f"closing socket {peer.name}")
        client.loop.unregister(peer.sock)
        peer.sock.close()
    client.loop.close()
    return 1 if failed or client.stopped else 0


if __name__ == "__main__":
    raise SystemExit(main())

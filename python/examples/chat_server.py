#!/usr/bin/env python3
"""chat_server.py: the articles' chat server (S9), on evloop.Loop.
127.0.0.1:8801. Mirrors c-examples/chat_server.c.

Each message a client sends is shown to the operator, who types the reply at
the prompt "reply to client #N>>>"; the reply goes to that client. The
original calls input() inside its select() loop, so while the operator types,
no one else is accepted, read or answered. Here standard input is one more
registration in the same loop: the server goes on accepting, reading and
sending while the operator thinks. The messages wait in the order they came
and the prompt names the oldest; a line "#N text" answers client #N out of
turn, so no client waits on another's reply.

Like the original, each turn of the loop (at most 5 s when nothing happens)
prints how many sources were ready, and ">>" and which.

Fixed: a client that leaves (b'' or a reset) is closed and forgotten, instead
of being asked about and sent to; numbers are given once per client (the
original used the index in its list, which shifts when one leaves); an empty
reply line would send nothing and leave the client waiting forever: it is
refused; the end of standard input is not a crash (EOFError): the server goes
on serving, without an operator; a partial send() keeps the rest;
SIGINT/SIGTERM end it cleanly.

    chat_server.py [--host H] [--port P] [--quiet]
"""

import os
import socket
import sys

from common import accept_all, address, evloop, open_listener, parse_options, pause_listener, say, stop_loop_on_signals

options = parse_options("Chat server (S9), default 127.0.0.1:8801: the operator answers each message on stdin, "
                        'at the prompt "reply to client #N>>>", or any client with a line "#N text".', 8801)
STDIN = sys.stdin.fileno()
loop = evloop.Loop()


class Client:
    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.peer = address(sock.getpeername())
        self.out = bytearray()
        self.interest = evloop.READ


class Chat:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.clients = {}  # number -> Client
        self.by_sock = {}  # socket -> Client
        self.last_number = 0
        self.asking = []  # numbers of the clients whose message waits for a reply, oldest first
        self.prompted = 0  # the number the prompt on screen names, 0: no prompt
        self.typed = b""  # what the operator typed since the last newline
        self.operator_gone = False

    # ---- the prompt ----

    def prompt(self) -> None:
        """The prompt for the oldest message waiting, if not on screen yet.
        Shown even with --quiet: the operator needs it."""
        if self.operator_gone or not self.asking or self.prompted == self.asking[0]:
            return
        self.prompted = self.asking[0]
        print(f"reply to client #{self.prompted}>>>", end="", flush=True)

    def interrupt_prompt(self) -> None:
        """Ends a prompt line left open, before another line is printed."""
        if self.prompted:
            print(flush=True)
            self.prompted = 0

    # ---- clients ----

    def accept(self, note) -> None:
        for sock, _ in accept_all(self.listener, lambda: pause_listener(loop, self.listener)):
            self.last_number += 1
            c = Client(sock, self.last_number)
            self.clients[c.number] = c
            self.by_sock[sock] = c
            loop.register(sock, evloop.READ, note)
            self.interrupt_prompt()
            say(f"client #{c.number}: <socket fd={sock.fileno()}, laddr={address(sock.getsockname())}, "
                f"raddr={c.peer}>")
            self.prompt()

    def leave(self, c: Client) -> None:
        self.interrupt_prompt()
        say(f"client #{c.number} left")
        self.asking = [n for n in self.asking if n != c.number]
        del self.clients[c.number]
        del self.by_sock[c.sock]
        loop.unregister(c.sock)
        c.sock.close()
        self.prompt()

    def update(self, c: Client) -> None:
        interest = evloop.READ | (evloop.WRITE if c.out else 0)
        if interest != c.interest:
            loop.modify(c.sock, interest)
            c.interest = interest

    def flush(self, c: Client) -> bool:
        """Sends what waits for `c`; returns False if it has gone."""
        try:
            del c.out[:c.sock.send(c.out)]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.leave(c)
            return False
        self.update(c)
        return True

    def on_client(self, c: Client, revents: int) -> None:
        if revents & evloop.WRITE and not self.flush(c):
            return
        if not revents & (evloop.READ | evloop.ERROR | evloop.HUP):
            return
        try:
            data = c.sock.recv(1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.leave(c)
            return
        self.interrupt_prompt()
        say(f"client #{c.number}: {data.decode('utf-8', 'replace')}")
        self.asking.append(c.number)
        self.prompt()

    # ---- the operator ----

    def reply(self, number: int, text: bytes) -> None:
        c = self.clients.get(number)
        if c is None:
            say(f"there is no client #{number}")
            return
        if number in self.asking:
            self.asking.remove(number)
        c.out += text
        if c.interest & evloop.WRITE:  # behind what is queued
            return
        self.flush(c)

    def on_line(self, line: bytes) -> None:
        """'#N text' answers client N, anything else the oldest message."""
        number = self.asking[0] if self.asking else 0
        head, _, rest = line.partition(b" ")
        if head[:1] == b"#" and head[1:].isdigit() and rest:
            number, line = int(head[1:]), rest
        self.prompted = 0  # the operator's newline ended the prompt line
        if not line:
            say("an empty reply would send nothing: type some text")
        elif not number:
            say('no message waits for a reply ("#N text" writes to client N)')
        else:
            self.reply(number, line)
        self.prompt()

    def on_stdin(self) -> None:
        try:
            data = os.read(STDIN, 4096)
        except InterruptedError:
            return
        if not data:  # the end of input; a last line without its newline counts
            if self.typed:
                self.on_line(self.typed)
            self.interrupt_prompt()
            say("end of standard input: no more replies; still serving")
            loop.unregister(STDIN)
            self.operator_gone = True
            return
        *lines, self.typed = (self.typed + data).split(b"\n")
        for line in lines:
            self.on_line(line.rstrip(b"\r"))

    # ---- the loop ----

    def print_ready(self, ready: list) -> None:
        """The original's print('>>', r), before the events are handled."""
        names = []
        for fileobj, _ in ready:
            if fileobj == STDIN:
                names.append("<stdin>")
            elif fileobj is self.listener:
                names.append(address(self.listener.getsockname()))
            else:
                names.append(self.by_sock[fileobj].peer)
        say(len(ready))
        say(">> [" + ", ".join(names) + "]")

    def run(self) -> None:
        ready = []

        def note(fileobj: object, revents: int) -> None:
            ready.append((fileobj, revents))

        loop.register(self.listener, evloop.READ, note)
        try:
            loop.register(STDIN, evloop.READ, note)
        except OSError as e:  # a regular file or /dev/null: epoll cannot watch it
            say(f"standard input cannot be watched ({e.strerror}): no operator, no replies")
            self.operator_gone = True
        stopping = stop_loop_on_signals(loop)
        while not stopping:
            ready.clear()
            loop.run_once(5.0)  # select(inputs, [], [], 5)
            if stopping:
                break
            if not self.prompted:  # unless it would break the operator's line
                self.print_ready(ready)
            # Handling an event closes at most its own connection, never
            # another one of the batch, so every event here is for an open one.
            for fileobj, revents in ready:
                if fileobj is self.listener:
                    self.accept(note)
                elif fileobj == STDIN:
                    self.on_stdin()
                else:
                    self.on_client(self.by_sock[fileobj], revents)
        self.interrupt_prompt()
        for c in list(self.clients.values()):
            loop.unregister(c.sock)
            c.sock.close()
        if not self.operator_gone:
            loop.unregister(STDIN)
        loop.unregister(self.listener)


def main() -> int:
    listener = open_listener(options)
    Chat(listener).run()
    listener.close()
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

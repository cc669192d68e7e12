"""TLS peers from Python's ssl module, for tests/tls_interop.rs.

  tls_peers.py client PORT CAFILE NAME [ALPN,...]
      connects, prints "version ALPN", echoes 1 B, 1000 B and 300 KB
      through the server byte for byte, sends close_notify (unwrap) and
      expects the server's; exits 0 when all went right.
  tls_peers.py server CERT KEY [ALPN,...]
      an echo server (threads, blocking sockets): prints its port, then for
      each connection echoes until close_notify and prints "alpn ALPN".
  tls_peers.py misbehave PORT SECONDS
      opens a client that sends garbage, one that stalls in the middle of
      its ClientHello, and one that sends a whole ClientHello then drops;
      prints "server closed garbage" (and "... stalled") as the server ends
      those connections, waiting at most SECONDS.
"""

import socket
import ssl
import sys
import threading
import time


def pattern(n, seed):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def recv_exact(sock, n):
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(65536, n - len(got)))
        if not chunk:
            raise SystemExit("the server ended after %d of %d bytes" % (len(got), n))
        got += chunk
    return bytes(got)


def client(port, cafile, name, alpn):
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn.split(","))
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    sock = ctx.wrap_socket(raw, server_hostname=name)
    print(sock.version(), sock.selected_alpn_protocol(), flush=True)
    # One thread, in lockstep: an SSL object must not be read and written
    # from two threads at once (OpenSSL's rule; doing so corrupted records
    # on a loaded machine). A piece of 16 KiB fits in the socket buffers
    # both ways, so the echo of each piece comes back before the next goes.
    for seed, size in enumerate([1, 1000, 300_000]):
        data = pattern(size, seed)
        back = bytearray()
        for start in range(0, size, 16384):
            piece = data[start : start + 16384]
            sock.sendall(piece)
            back += recv_exact(sock, len(piece))
        if back != data:
            raise SystemExit("echo of %d bytes differs" % size)
    # close_notify both ways: the server answers ours with its own.
    sock.unwrap()
    raw.close()
    print("ok", flush=True)


def server(cert, key, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn.split(","))
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)

    def serve(conn):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            print("alpn", tls.selected_alpn_protocol(), flush=True)
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                tls.sendall(data)
            tls.unwrap()
        except (OSError, ssl.SSLError) as e:
            print("error", e, flush=True)
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def client_hello():
    """The bytes of a real ClientHello, from a memory BIO."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def misbehave(port, seconds):
    addr = ("127.0.0.1", int(port))
    garbage = socket.create_connection(addr)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" * 10)
    hello = client_hello()
    stalled = socket.create_connection(addr)
    stalled.sendall(hello[: len(hello) // 2])
    dropped = socket.create_connection(addr)
    dropped.sendall(hello)
    dropped.close()
    pending = {"garbage": garbage, "stalled": stalled}
    deadline = time.monotonic() + float(seconds)
    while pending and time.monotonic() < deadline:
        for name, sock in list(pending.items()):
            sock.settimeout(0.05)
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                print("server closed", name, flush=True)
                sock.close()
                del pending[name]
    for sock in pending.values():
        sock.close()


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "client":
        client(*args[:3], args[3] if len(args) > 3 else None)
    elif what == "server":
        server(*args[:2], args[2] if len(args) > 2 else None)
    elif what == "misbehave":
        misbehave(*args)
    else:
        raise SystemExit(__doc__)

"""The articles' select client (C1), as written there but for Python 3: two
sockets, three messages sent on every socket, one recv(1024) per socket.
Used by tests/echo_servers.rs to check that our servers answer the original client.

    python3 c1_client.py PORT [--upper | --sb]
"""
import socket
import sys

messages = ['This is the message. ',
            'It will be sent ',
            'in parts.',
            ]
server_address = ('127.0.0.1', int(sys.argv[1]))

# Create a TCP/IP socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM),
         socket.socket(socket.AF_INET, socket.SOCK_STREAM),
         ]

# Connect the socket to the port where the server is listening
print('connecting to %s port %s' % server_address)
for s in socks:
    s.connect(server_address)

for message in messages:

    # Send messages on both sockets
    for s in socks:
        print('%s: sending "%s"' % (s.getsockname(), message))
        s.send(message.encode())

    # Read responses on both sockets
    for s in socks:
        data = s.recv(1024).decode()
        print('%s: received "%s"' % (s.getsockname(), data))
        if not data:
            print('closing socket', s.getsockname())
            s.close()

for s in socks:
    s.close()

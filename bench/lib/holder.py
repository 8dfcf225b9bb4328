"""Holds N established loopback connections to itself (2N sockets) for the bench scripts.

Usage: holder.py PORT N READY_FILE. Listens on 127.0.0.1:PORT, connects N times and accepts
each, writes its pid to READY_FILE when all are established, then sleeps for an hour.
"""
import os
import socket
import sys
import time

port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(4096)
held = []
while len(held) < 2 * n:
    batch = min(1000, n - len(held) // 2)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
    held.extend(listener.accept()[0] for _ in range(batch))
    held.extend(clients)
with open(ready, "w") as f:
    f.write(str(os.getpid()))
time.sleep(3600)

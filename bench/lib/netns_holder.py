"""Holds N established loopback connections (2N sockets) in each of several named network
namespaces, for bench/netns.sh. One process serves many namespaces: it enters each with setns(2)
(through ctypes, so any Python 3 works), listens on 127.0.0.1:PORT there, connects N times and
accepts each; sockets stay in the namespace they were created in.

Usage: netns_holder.py PORT N READY_FILE NS [NS...]. Writes its pid to READY_FILE when every
connection is established, then sleeps for an hour (the bench kills it).
"""
import ctypes
import os
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
port, n, ready, names = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
held = []
for name in names:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns {name}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(n)
    held.append(listener)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    held.extend(listener.accept()[0] for _ in range(n))
    held.extend(clients)
with open(ready, "w") as f:
    f.write(str(os.getpid()))
time.sleep(3600)

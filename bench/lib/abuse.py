"""A fixed, bounded abuse mix against an iperf3-protocol server on 127.0.0.1:PORT for SECONDS.

Workers (each a thread, each with a fixed number of connections at most):
  garbage    20 connections/s that send random bytes and close
  slowloris  40 connections kept open that never send a byte
  probe      150 connections kept open that send the probe magic and then nothing
  drip       10 connections that send a cookie, then the parameter JSON one byte per second
  large      one 8 x 16 MiB-block test every 2 s that sends 1 MiB per stream and vanishes
  vanish     one 1-stream test every second that sends a little, then closes everything
Prints one line per worker with what it did. Usage: abuse.py PORT SECONDS
"""
import json, os, random, socket, string, struct, sys, threading, time

PORT, SECONDS = int(sys.argv[1]), float(sys.argv[2])
END = time.time() + SECONDS
MAGIC = b"NBPROBE1"
counts = {}
lock = threading.Lock()

def count(what, n=1):
    with lock:
        counts[what] = counts.get(what, 0) + n

def cookie():
    return "".join(random.choice(string.ascii_lowercase + "234567") for _ in range(36)).encode() + b"\0"

def conn(timeout=5):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    return s

def keep(name, n, hello):
    """Keeps n connections open, reopening the ones the server closed."""
    socks = []
    while time.time() < END:
        alive = []
        for s in socks:
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    s.close(); count(name + " closed by server"); continue
            except BlockingIOError:
                pass
            except OSError:
                s.close(); count(name + " closed by server"); continue
            alive.append(s)
        socks = alive
        while len(socks) < n and time.time() < END:
            try:
                s = conn(); s.sendall(hello); socks.append(s); count(name + " opened")
            except OSError:
                count(name + " refused"); break
        time.sleep(0.2)
    for s in socks:
        s.close()

def garbage():
    while time.time() < END:
        try:
            s = conn(); s.sendall(os.urandom(random.randint(1, 300))); s.close(); count("garbage sent")
        except OSError:
            count("garbage refused")
        time.sleep(0.05)

def drip():
    def one():
        try:
            s = conn(); s.sendall(cookie()); s.recv(1)
            s.sendall(struct.pack(">I", 200))
            while time.time() < END:
                s.sendall(b" "); time.sleep(1)
            s.close()
        except OSError:
            count("drip dropped by server")
    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads: t.start(); count("drip started")
    for t in threads: t.join()

def test(params, streams, send):
    c = cookie(); s = conn()
    s.sendall(c)
    if s.recv(1) != bytes([9]):
        count("test refused"); s.close(); return
    j = json.dumps(params).encode(); s.sendall(struct.pack(">I", len(j)) + j)
    st = s.recv(1)
    if st != bytes([10]):
        count("test refused at parameters"); s.close(); return
    data = []
    for _ in range(streams):
        d = conn(); d.sendall(c); data.append(d)
    s.recv(2)
    for d in data:
        try: d.sendall(b"x" * send)
        except OSError: pass
    for d in data: d.close()
    s.close(); count("test vanished")

def repeat(every, f, *a):
    while time.time() < END:
        try: f(*a)
        except OSError: count("test error")
        time.sleep(every)

workers = [
    threading.Thread(target=garbage),
    threading.Thread(target=keep, args=("slowloris", 40, b"")),
    threading.Thread(target=keep, args=("probe", 150, MAGIC)),
    threading.Thread(target=drip),
    threading.Thread(target=repeat, args=(2, test, {"tcp": True, "time": 1, "parallel": 8, "len": 16 << 20}, 8, 1 << 20)),
    threading.Thread(target=repeat, args=(1, test, {"tcp": True, "time": 10, "parallel": 1}, 1, 1 << 16)),
]
for w in workers: w.start()
for w in workers: w.join()
for k in sorted(counts):
    print(f"  {k}: {counts[k]}")

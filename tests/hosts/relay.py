"""A TCP relay that delays what passes through it: tests/hosts/ puts it in
front of PostgreSQL on host `db` when the kernel has no tc netem
(CONFIG_NET_SCH_NETEM unset, as on the VM these tests were written on), so
the "slow, lossy links to db" scenario still runs.

    python3 relay.py LISTEN_IP:PORT TARGET_IP:PORT CONTROL_FILE

CONTROL_FILE holds "DELAY_MS JITTER_MS LOSS_PERCENT" (read twice a second;
missing or empty: no delay). Every chunk read from either side is held
DELAY ± JITTER ms (uniform) before it is written on, per direction, never
reordered (a later chunk waits for an earlier one, as TCP would deliver
them). Loss is emulated by what it does to a TCP stream: a lost segment
stalls the stream until it is retransmitted, so with LOSS_PERCENT
probability a chunk waits a further 200 ms (Linux's minimum retransmission
timeout) on top. This is an emulation at the stream level, not packets
dropped on the wire: docs/hosts.md says so next to its figures.
"""
import os
import random
import socket
import sys
import threading
import time
from collections import deque

RTO_S = 0.2


class Shape:
    def __init__(self, path):
        self.path = path
        self.delay = self.jitter = self.loss = 0.0
        threading.Thread(target=self.watch, daemon=True).start()

    def watch(self):
        while True:
            try:
                with open(self.path) as f:
                    parts = f.read().split()
                d, j, l_ = (float(x) for x in parts[:3]) if len(parts) >= 3 else (0.0, 0.0, 0.0)
            except (OSError, ValueError):
                d, j, l_ = 0.0, 0.0, 0.0
            self.delay, self.jitter, self.loss = d / 1000, j / 1000, l_ / 100
            time.sleep(0.5)

    def hold(self, rng):
        if self.delay <= 0 and self.loss <= 0:
            return 0.0
        h = max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter))
        if rng.random() < self.loss:
            h += RTO_S
        return h


def pump(src, dst, shape, rng):
    """src -> dst, each chunk released at its time, in order."""
    q = deque()
    cv = threading.Condition()
    done = [False]

    def writer():
        while True:
            with cv:
                while not q and not done[0]:
                    cv.wait()
                if not q:
                    break
                at, data = q.popleft()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    last = 0.0
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        at = max(last, time.monotonic() + shape.hold(rng))
        last = at
        with cv:
            q.append((at, data))
            cv.notify()
    with cv:
        done[0] = True
        cv.notify()
    t.join()


def serve(conn, target, shape):
    try:
        up = socket.create_connection(target)
    except OSError:
        conn.close()
        return
    for s in (conn, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rng = random.Random()
    a = threading.Thread(target=pump, args=(conn, up, shape, rng), daemon=True)
    a.start()
    pump(up, conn, shape, random.Random())
    a.join()
    conn.close()
    up.close()


def main():
    lh, lp = sys.argv[1].rsplit(":", 1)
    th, tp = sys.argv[2].rsplit(":", 1)
    shape = Shape(sys.argv[3])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lh, int(lp)))
    srv.listen(256)
    print("relay: %s:%s -> %s:%s (pid %d)" % (lh, lp, th, tp, os.getpid()), flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, (th, int(tp)), shape), daemon=True).start()


if __name__ == "__main__":
    main()

"""A lossy, slow cable between two network namespaces, in user space.

This machine's kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` is not set), so
``tc qdisc ... netem delay 100ms loss 2%`` is not available. This process plays the
same part at the same layer: it owns one TAP device in each namespace (an Ethernet
interface as far as the namespace's kernel is concerned) and carries every frame from
one to the other after ``--delay`` seconds, dropping each one with probability
``--loss``, independently in both directions: exactly what netem does on the egress
of both ends of a link. Frames keep their order (a constant delay).

TAP devices are created without offloads, so the kernel hands us finished,
checksummed, MTU-sized frames: a loss drops one packet, as on a real wire.

    python3 wire.py NS_A IF_A NS_B IF_B --delay 0.1 --loss 0.02 --stats FILE

Prints ``ready`` on stdout once both devices exist; on SIGTERM it writes counters
(JSON) to ``--stats`` and exits. Only the standard library.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import fcntl
import json
import os
import random
import selectors
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(netns: str, ifname: str) -> int:
    """A TAP device named ``ifname`` inside ``netns`` (it lives as long as the fd)."""
    _setns(netns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifr = struct.pack("16sH22x", ifname.encode(), IFF_TAP | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    os.set_blocking(fd, False)
    return fd


class _Stop(Exception):
    pass


class Direction:
    def __init__(self, src: int, dst: int, delay: float, loss: float, rng: random.Random):
        self.src, self.dst = src, dst
        self.delay, self.loss, self.rng = delay, loss, rng
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.frames = self.dropped = self.sent = self.bytes = self.failed = 0

    def receive(self, now: float) -> None:
        for _ in range(256):  # bounded: the other direction gets its turn
            try:
                frame = os.read(self.src, 65536)
            except BlockingIOError:
                return
            except OSError:  # the device went down
                return
            self.frames += 1
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            self.queue.append((now + self.delay, frame))

    def send_due(self, now: float) -> None:
        q = self.queue
        while q and q[0][0] <= now:
            _due, frame = q.popleft()
            try:
                os.write(self.dst, frame)
                self.sent += 1
                self.bytes += len(frame)
            except OSError:  # the far device is down (a cut cable) or its queue is full
                self.failed += 1

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def stats(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "sent": self.sent,
            "bytes": self.bytes,
            "failed": self.failed,
        }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("ns_a")
    p.add_argument("if_a")
    p.add_argument("ns_b")
    p.add_argument("if_b")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stats", default=None)
    args = p.parse_args(argv)

    fd_a = open_tap(args.ns_a, args.if_a)
    fd_b = open_tap(args.ns_b, args.if_b)
    rng = random.Random(args.seed)
    ab = Direction(fd_a, fd_b, args.delay, args.loss, rng)
    ba = Direction(fd_b, fd_a, args.delay, args.loss, rng)

    def on_term(_sig: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sel = selectors.DefaultSelector()
    sel.register(fd_a, selectors.EVENT_READ, ab)
    sel.register(fd_b, selectors.EVENT_READ, ba)
    print("ready", flush=True)
    try:
        while True:
            now = time.monotonic()
            dues = [d for d in (ab.next_due(), ba.next_due()) if d is not None]
            events = sel.select(max(0.0, min(dues) - now) if dues else None)
            now = time.monotonic()
            for key, _mask in events:
                key.data.receive(now)
            ab.send_due(now)
            ba.send_due(now)
    except _Stop:
        pass
    if args.stats:
        with open(args.stats + ".tmp", "w") as f:
            json.dump({"a_to_b": ab.stats(), "b_to_a": ba.stats()}, f)
        os.rename(args.stats + ".tmp", args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

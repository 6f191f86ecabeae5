"""The measured runs of ``delta_cpu.py``, each in its own process (own /proc io counters).

``yeet_run``: yeet's sender and receiver in one process, phase by phase, the
wire being msgspec-encoded values; ``rsync_run``: rsync between two local
paths, its ``--stats`` parsed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yeet.delta import (
    Data,
    DeltaOp,
    changed_ranges,
    fine_params,
    finish,
    match,
    match_signatures,
    params_for,
    patch,
    region_signature,
    regions,
    signature,
)
from yeet.replica.write.inplace import apply_inplace, should_apply_inplace

MiB = 1 << 20


def proc_io() -> dict[str, int]:
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out


def io_delta(before: dict[str, int]) -> dict[str, int]:
    after = proc_io()
    return {k: after[k] - before[k] for k in ("rchar", "wchar", "write_bytes")}


class Counted:
    """Counts the encoded size of the ops passing through."""

    def __init__(self, ops: Iterator[DeltaOp]) -> None:
        self.ops = ops
        self.bytes = 0
        self.literal = 0
        self.count = 0

    def __iter__(self) -> Iterator[DeltaOp]:
        enc = msgspec.msgpack.Encoder()
        for op in self.ops:
            self.bytes += len(enc.encode(op))
            self.count += 1
            if isinstance(op, Data):
                self.literal += len(op.data)
            yield op


def yeet_run(src: str, dst: str, jdir: str, variant: str, digest_hex: str) -> dict[str, Any]:
    """Sender and receiver in one process, phase by phase (the wire is msgspec)."""
    io0 = proc_io()
    t: dict[str, float] = {}
    wire: dict[str, int] = {}
    enc = msgspec.msgpack.encode
    old_size, new_size = os.path.getsize(dst), os.path.getsize(src)
    fs, fd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)

    def read_src(o: int, n: int) -> bytes:
        return os.pread(fs, n, o)

    def read_dst(o: int, n: int) -> bytes:
        return os.pread(fd, n, o)

    expected = bytes.fromhex(digest_hex)
    out: dict[str, Any] = {}

    def sign(key: str, path: str, size: int, dig: bool) -> None:
        with open(path, "rb", buffering=0) as f:
            out[key] = signature(f, size, params=params_for(old_size), digest=dig)

    if variant == "cached":  # signatures made by the scans that noticed the change: not timed
        sign("base", dst, old_size, False)
        sign("new", src, new_size, True)
        io0 = proc_io()
    start = time.perf_counter()
    if variant in ("join", "cached"):  # both sides sign at once, then the sender joins
        if variant == "join":
            th = [
                threading.Thread(target=sign, args=("base", dst, old_size, False)),
                threading.Thread(target=sign, args=("new", src, new_size, True)),
            ]
            for x in th:
                x.start()
            for x in th:
                x.join()
            t["sign both"] = time.perf_counter() - start
        sig = out["base"]
        expected = out["new"].digest
        a = time.perf_counter()
        plan = list(match_signatures(out["new"], sig))
        t["join"] = time.perf_counter() - a
    else:
        with open(dst, "rb", buffering=0) as f:
            sig = signature(f, old_size)
        t["receiver sign"] = time.perf_counter() - start
        a = time.perf_counter()
        with open(src, "rb", buffering=0) as f:
            plan = list(match(f, sig))
        t["sender match"] = time.perf_counter() - a
    wire["signature"] = len(enc(sig))
    a = time.perf_counter()
    want = regions(plan, sig)
    wire["regions"] = len(enc(want))
    fp = fine_params(sig.params)
    fine = [region_signature(read_dst, r, fp) for r in want]
    wire["fine signatures"] = len(enc(fine))
    t["refine"] = time.perf_counter() - a
    a = time.perf_counter()
    ops = Counted(finish(plan, fine, read_src))
    changed = changed_ranges(plan)
    # a hard-linked file is never changed in place: the other names would change too
    inplace = should_apply_inplace(old_size, new_size, changed) and os.stat(dst).st_nlink == 1
    stats: dict[str, Any] = {}
    if inplace:
        st = apply_inplace(dst, ops, new_size, expected, jdir)
        stats = {
            "journal": st.journal_bytes,
            "in place": st.inplace_bytes,
            "appended": st.appended_bytes,
        }
    else:  # stage and rename, as the ordinary writer does
        stage = dst + ".yeet-stage"
        h = blake3(max_threads=blake3.AUTO)
        with open(stage, "wb") as f:
            for piece in patch(read_dst, ops, piece=4 * MiB):
                h.update(piece)
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        if h.digest() != expected:
            raise SystemExit("staged result has the wrong digest")
        os.replace(stage, dst)
        dfd = os.open(os.path.dirname(dst), os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        stats = {"staged": new_size}
    t["finish+apply"] = time.perf_counter() - a
    wire["ops"] = ops.bytes
    total = time.perf_counter() - start
    os.close(fs)
    os.close(fd)
    return {
        "wall": total,
        "phases": t,
        "wire": wire,
        "wire total": sum(wire.values()),
        "literal": ops.literal,
        "ops": ops.count,
        "regions": len(want),
        "region bytes": sum(r.length for r in want),
        "coarse": sig.params.avg_size,
        "fine": fp.avg_size,
        "mode": "in place" if inplace else "staged",
        "receiver": stats,
        "io": io_delta(io0),
    }


def rsync_run(src: str, dst: str, inplace: bool) -> dict[str, Any]:
    io0 = proc_io()
    args = ["rsync", "-I", "--no-whole-file", "--stats"] + (["--inplace"] if inplace else [])
    t0 = time.perf_counter()
    out = subprocess.run([*args, src, dst], check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0

    def stat(name: str) -> int:
        m = re.search(rf"{name}: ([\d,]+)", out)
        return int(m.group(1).replace(",", "")) if m else -1

    sent, recv = stat("Total bytes sent"), stat("Total bytes received")
    return {
        "wall": wall,
        "wire total": sent + recv,
        "literal": stat("Literal data"),
        "io": io_delta(io0),
    }

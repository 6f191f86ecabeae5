"""Subprocess for the kill -9 test: apply an in-place delta or recover, slowly observable.

Usage: python -m tests.delta.crash_worker apply|recover <file> <journal_dir> <ops> <phases>
"""

from __future__ import annotations

import sys

import msgspec

from yeet.delta import DeltaOp
from yeet.replica.write.inplace import apply_inplace, recover


class Job(msgspec.Struct):
    ops: list[DeltaOp]
    new_size: int
    digest: bytes


def main() -> None:
    mode, path, jdir, ops_file, phases_file = sys.argv[1:6]
    with open(phases_file, "a", buffering=1) as log:
        if mode == "apply":
            with open(ops_file, "rb") as f:
                job = msgspec.msgpack.decode(f.read(), type=Job)
            print("ready", flush=True)
            apply_inplace(
                path,
                job.ops,
                job.new_size,
                job.digest,
                jdir,
                on_phase=lambda p: log.write(p + "\n"),
            )
        else:
            print("ready", flush=True)
            for r in recover(jdir):
                log.write(f"recovered {r.action}\n")


if __name__ == "__main__":
    main()

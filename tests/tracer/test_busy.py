"""The change journal on a busy machine: a storm of writers elsewhere on the same
filesystem (hard links, renames, paths deeper than PATH_MAX, many small files)
must not make the answers for roots it does not touch incomplete - and every
change in a root must still be answered.

The storm runs in its own process; the journal is the real service. The figure
(the share of complete answers) is printed; the test requires all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from yeet.replica.changes import ask

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")

STORM = textwrap.dedent("""
    import os, sys, time
    base, seconds = sys.argv[1], float(sys.argv[2])
    os.makedirs(f"{base}/links", exist_ok=True)
    os.makedirs(f"{base}/other-names", exist_ok=True)
    os.makedirs(f"{base}/edits", exist_ok=True)
    os.makedirs(f"{base}/copies", exist_ok=True)
    links = []
    for i in range(50):  # a package store: files with a second name
        p = f"{base}/links/f{i}"
        with open(p, "wb") as f:
            f.write(b"0" * 8192)
        os.link(p, f"{base}/other-names/f{i}")
        links.append(os.open(p, os.O_RDWR))
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):  # deeper than PATH_MAX, and than the kernel's ancestor walk
        os.mkdir("d" * 200, dir_fd=fd)
        nfd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    deep = fd
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for lfd in links:  # hard-linked files written
            os.pwrite(lfd, b"%d" % n, (n * 512) % 8000)
        tmp = f"{base}/edits/.tmp{n % 7}"  # an editor's save: write, then rename over
        with open(tmp, "wb") as f:
            f.write(b"v%d" % n)
        os.rename(tmp, f"{base}/edits/file{n % 7}")
        name = f"x{n % 13}"  # deep files made, written, renamed
        dfd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644, dir_fd=deep)
        os.write(dfd, b"deep %d" % n)
        os.close(dfd)
        os.rename(name, f"y{n % 13}", src_dir_fd=deep, dst_dir_fd=deep)
        d = f"{base}/copies/c{n % 5}"  # a copy of many small files, replaced
        os.makedirs(d, exist_ok=True)
        for j in range(40):
            with open(f"{d}/{j}", "wb") as f:
                f.write(b"c" * 100)
        n += 1
    print(n)
""")


def test_a_storm_elsewhere_holds_back_no_root(tmp_path: Path, journal_socket: Path) -> None:
    touched, untouched, storm = tmp_path / "touched", tmp_path / "untouched", tmp_path / "storm"
    for root in (touched, untouched):
        for i in range(20):
            (root / f"d{i}").mkdir(parents=True)
            (root / f"d{i}" / "f").write_bytes(b"0" * 1000)
    storm.mkdir()
    sock = str(journal_socket)
    cursors = {r: ask(str(r), None, sock).cursor for r in (touched, untouched)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STORM, str(storm), "6"], stdout=subprocess.PIPE, text=True
    )
    answers = complete = misses = 0
    reasons: list[str] = []
    try:
        time.sleep(0.5)  # the storm is under way
        for i in range(20):
            changed = touched / f"d{i}" / "f"
            with open(changed, "r+b") as f:
                f.seek(100)
                f.write(b"round %d" % i)
            (touched / f"d{(i + 7) % 20}" / f"new{i}").write_text("new")
            for root in (touched, untouched):
                c = ask(str(root), cursors[root], sock)
                answers += 1
                if c.complete:
                    complete += 1
                    cursors[root] = c.cursor
                    if root is touched:
                        files = dict(c.files)
                        named = f"d{i}/f" in files and f"d{(i + 7) % 20}" in c.dirs
                        misses += not named
                    elif c.dirs or c.files:
                        misses += 1  # nothing happened there
                else:
                    reasons.append(c.reason)
            time.sleep(0.15)
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    share = complete / answers
    print(
        f"\nbusy machine: {out.strip()} storm rounds; {complete}/{answers} answers complete "
        f"({share:.0%}), {misses} misses"
    )
    subprocess.run(["rm", "-rf", str(storm)], check=False)
    assert misses == 0
    assert share == 1.0, reasons[:3]

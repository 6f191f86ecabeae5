"""What the tracer reports for each kind of write, on the real kernel."""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kio import Aio, Uring
from oracle import file_id
from workload import fallocate

from yeet.model.errors import TracerUnavailable
from yeet.tracer import END, WHOLE, RangeSet, Tracer
from yeet.tracer.paths import mount_of

KB = 1024


@pytest.fixture
def tree(base: Path) -> Path:
    """A tree on ext4 or on tmpfs (``base``): both must report every write."""
    root = base / "tree"
    (root / "sub").mkdir(parents=True)
    return root


def _by_syscall(t: Tracer) -> bool:
    return t.by_syscall


def _file(path: Path, size: int = 64 * KB) -> int:
    path.write_bytes(b"\x01" * size)
    return os.open(path, os.O_RDWR)


def _only(tracer: Tracer, path: Path) -> object:
    d = tracer.dirty_files()
    assert not d.rescan, d.reasons
    return d.get(file_id(str(path)))


def test_exact_ranges_per_call(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "sub" / "f"
    fd = _file(p)
    other = _file(tree / "src")
    t = open_tracer([tree])
    t.dirty_files()

    def expect(ranges: list[tuple[int, int]]) -> None:
        assert _only(t, p) == RangeSet(ranges)

    os.lseek(fd, 100, os.SEEK_SET)
    os.write(fd, b"x" * 10)
    expect([(100, 110)])
    os.pwrite(fd, b"x" * 10, 5000)
    expect([(5000, 5010)])
    os.lseek(fd, 7000, os.SEEK_SET)
    os.writev(fd, [b"a" * 3, b"b" * 4])
    expect([(7000, 7007)])
    os.pwritev(fd, [b"a" * 3, b"b" * 4], 9000)
    expect([(9000, 9007)])
    os.lseek(fd, 11000, os.SEEK_SET)
    os.pwritev(fd, [b"c" * 5], -1, os.RWF_DSYNC)  # pwritev2 at the file position
    expect([(11000, 11005)])
    os.pwrite(fd, b"1", 20), os.pwrite(fd, b"2", 21), os.pwrite(fd, b"3", 30)
    expect([(20, 22), (30, 31)])  # coalesced in the kernel
    fallocate(fd, 0x3, 8192, 4096)  # punch a hole
    expect([(8192, 12288)])
    try:
        fallocate(fd, 0x10, 100, 50)  # zero range
    except OSError as e:
        assert e.errno == errno.EOPNOTSUPP  # tmpfs has none
    else:
        expect([(100, 150)])
    os.copy_file_range(other, fd, 100, 0, 30000)
    expect([(30000, 30100)])
    os.lseek(fd, 40000, os.SEEK_SET)
    os.copy_file_range(other, fd, 100, 0)
    expect([(40000, 40100)])
    os.lseek(fd, 41000, os.SEEK_SET)
    os.sendfile(fd, other, 0, 200)
    expect([(41000, 41200)])
    r, w = os.pipe()
    os.write(w, b"z" * 64)
    os.splice(r, fd, 64, offset_dst=42000)
    expect([(42000, 42064)])
    aio = Aio()
    aio.pwrite(fd, b"q" * 33, 43000)
    # Usually exact; when the kernel completes buffered AIO from a worker (under
    # load) the tracer sees the dirtied folio instead: wider, never narrower.
    got = _only(t, p)
    assert got == RangeSet([(43000, 43033)]) or (
        got.covers(43000, 43033) and got.total() <= 2 << 20
    ), got
    aio.close()
    os.ftruncate(fd, 60 * KB)
    expect([(60 * KB, END)])
    os.pwrite(fd, b"e" * 10, 100 * KB)  # past the end: the hole counts too
    expect([(60 * KB, 100 * KB + 10)])
    app = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(app, b"tail")
    size = os.fstat(fd).st_size
    expect([(size - 4, size)])
    os.pwritev(fd, [b"t" * 6], 0, os.RWF_APPEND)
    expect([(size, size + 6)])
    for x in (fd, other, app, r, w):
        os.close(x)


def test_direct_io(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "dio"
    _file(p, 256 * KB)
    t = open_tracer([tree])
    t.dirty_files()
    fd = os.open(p, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, 8192)
    buf.write(b"D" * 8192)
    os.pwrite(fd, buf, 16384)
    assert _only(t, p) == RangeSet([(16384, 24576)])
    os.close(fd)


def test_whole_file_marks(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    """By system call these cannot be placed (whole file); where they land in the
    filesystem they are exact."""
    p = tree / "w"
    fd = _file(p)
    t = open_tracer([tree])
    t.dirty_files()

    def covered(lo: int, hi: int) -> None:
        got = _only(t, p)
        if _by_syscall(t):
            assert got is WHOLE
        else:
            assert isinstance(got, RangeSet) and got.covers(lo, hi), got

    ring = Uring()
    assert ring.write(fd, b"u" * 10, 500) == 10
    covered(500, 510)  # io_uring
    ring.close()
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    covered(0, 64 * KB)  # O_TRUNC
    os.ftruncate(fd, 1000)
    os.truncate(p, 10)
    covered(10, 1000)  # truncate(path)
    Aio().pwritev(fd, [b"a", b"b"], 0)
    covered(0, 2)  # vectored AIO
    os.close(fd)


def test_shared_mapping_stays_dirty_while_mapped(
    tree: Path, open_tracer: Callable[..., Tracer]
) -> None:
    p = tree / "m"
    fd = _file(p)
    t = open_tracer([tree])
    t.dirty_files()
    m = mmap.mmap(fd, 64 * KB)
    if _by_syscall(t):  # mapped writable: whole at once
        assert _only(t, p) is WHOLE
    m[0:1] = b"x"  # (where changes land: its first page faulted in)
    assert _only(t, p) is WHOLE
    m[10:20] = b"y" * 10  # after the drain: must still be reported
    assert _only(t, p) is WHOLE
    m.close()
    assert _only(t, p) is WHOLE  # written before the unmap
    assert _only(t, p) is None
    # private or read-only mappings are not writes
    with mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE) as priv:
        priv[0:1] = b"z"
    ro = os.open(p, os.O_RDONLY)
    with mmap.mmap(ro, 4096, prot=mmap.PROT_READ):
        pass
    os.close(ro)
    assert _only(t, p) is None
    os.close(fd)


def test_mapping_made_before_the_tracer(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "early"
    _file(p)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import mmap, os, sys
            fd = os.open({str(p)!r}, os.O_RDWR)
            m = mmap.mmap(fd, 4096)
            print("mapped", flush=True)
            sys.stdin.readline()
            m[0:5] = b"later"
            print("written", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "mapped\n"
    t = open_tracer([tree])
    t.dirty_files()
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline() == "written\n"
    assert _only(t, p) is WHOLE
    child.stdin.write("\n")
    child.stdin.close()
    child.wait()


def test_subtree_filter_and_links(tmp_path: Path, open_tracer: Callable[..., Tracer]) -> None:
    inside = tmp_path / "in"
    (inside / "a" / "b").mkdir(parents=True)
    outside = tmp_path / "out"
    outside.mkdir()
    fin = inside / "a" / "b" / "f"
    fout = outside / "g"
    for x in (fin, fout):
        x.write_bytes(b"0" * 100)
    linked = outside / "link-to-f"
    os.link(fin, linked)
    single = outside / "single"
    single.write_bytes(b"0" * 100)
    t = open_tracer([inside, single])
    t.dirty_files()
    fout.write_bytes(b"1" * 100)
    with open(linked, "r+b") as f:  # through a name outside the tree
        f.write(b"L")
    with open(single, "r+b") as f:  # a root that is a single file
        f.seek(50)
        f.write(b"S")
    d = t.dirty_files()
    assert file_id(str(fout)) not in d
    assert d[file_id(str(fin))] == RangeSet([(0, 1)])
    assert d[file_id(str(single))] == RangeSet([(50, 51)])
    t.remove_root(str(single))
    single.write_bytes(b"2" * 100)
    assert file_id(str(single)) not in t.dirty_files()


def test_identity_and_paths(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "sub" / "name"
    p.write_bytes(b"0" * 100)
    t = open_tracer([tree])
    t.dirty_files()
    with open(p, "r+b") as f:
        f.write(b"1")
    d = t.dirty_files()
    (fid,) = d
    assert fid == file_id(str(p))
    assert fid.gen != 0  # ext4 keeps an inode generation
    assert t.path_of(fid) == str(p)
    moved = tree / "moved"
    p.rename(moved)
    assert t.path_of(fid) == str(moved)  # through a file handle now
    moved.unlink()
    assert t.path_of(fid) is None
    # a new file may reuse the inode number; the generation tells them apart
    q = tree / "new"
    q.write_bytes(b"x")
    assert file_id(str(q)) != fid


def test_asyncio_wakeup_without_polling(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "a"
    p.write_bytes(b"0" * 10)
    t = open_tracer([tree])
    t.dirty_files()

    async def main() -> object:
        loop = asyncio.get_running_loop()
        woke: list[float] = []
        t.attach_loop(loop, on_dirty=lambda: woke.append(time.monotonic()))
        waiter = asyncio.ensure_future(t.wait_dirty())
        await asyncio.sleep(0.05)
        assert not waiter.done() and not woke  # nothing written: no wakeup
        await loop.run_in_executor(None, p.write_bytes, b"1" * 10)
        await asyncio.wait_for(waiter, 5)
        assert woke
        return t.dirty_files().get(file_id(str(p)))

    got = asyncio.run(main())  # write_bytes opens with O_TRUNC
    assert got is WHOLE or (isinstance(got, RangeSet) and got.covers(0, 10)), got


def test_ignore_self(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    p = tree / "s"
    p.write_bytes(b"0" * 10)
    t = open_tracer([tree], ignore_self=True)
    t.dirty_files()
    with open(p, "r+b") as f:
        f.write(b"mine")
    assert file_id(str(p)) not in t.dirty_files()
    subprocess.run([sys.executable, "-c", f"open({str(p)!r}, 'r+b').write(b'theirs')"], check=True)
    assert t.dirty_files()[file_id(str(p))] == RangeSet([(0, 6)])


_INT80 = textwrap.dedent("""
    import ctypes, mmap, os, sys
    MAP_32BIT = 0x40
    mem = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_32BIT,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    # push rbx; mov eax,4 (i386 write); mov ebx,edi; mov ecx,esi; int 0x80; pop rbx; ret
    code = bytes.fromhex("53b80400000089fb89f1cd805bc3")
    mem[:len(code)] = code
    mem[2048:2053] = b"int80"
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint32)(base)
    fd = os.open(sys.argv[1], os.O_RDWR)
    print(fn(fd, base + 2048, 5))
""")


def test_32bit_syscalls(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    """int $0x80 from a 64-bit process takes the i386 syscall table."""
    p = tree / "compat"
    p.write_bytes(b"0" * 100)
    t = open_tracer([tree])
    t.dirty_files()
    out = subprocess.run([sys.executable, "-c", _INT80, str(p)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"no IA32 emulation in this kernel ({out.returncode})")
    assert out.stdout.strip() == "5"
    assert p.read_bytes()[:5] == b"int80"
    d = t.dirty_files()
    got = d[file_id(str(p))]
    if _by_syscall(t):
        assert got is WHOLE  # the i386 table: not placed
    else:
        assert got == RangeSet([(0, 5)])  # exact where it landed


def test_unprivileged_user_gets_a_reason(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from yeet.tracer import Tracer, TracerUnavailable  # before losing /root
        import yeet.tracer.libbpf, yeet.tracer.paths
        os.setgid(65534); os.setuid(65534)
        try:
            Tracer.open(["/tmp"])
        except TracerUnavailable as e:
            print(e.exit_code, e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("8 ") and "root" in out.stdout, out


def test_unavailable_is_a_yeet_error() -> None:
    assert TracerUnavailable("x").exit_code == 8


def test_open_file_moved_into_the_tree(tmp_path: Path, open_tracer: Callable[..., Tracer]) -> None:
    """The kernel caches "is this open file watched?"; renames and new roots
    must invalidate it."""
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    f = outside / "f"
    f.write_bytes(b"0" * 100)
    t = open_tracer([inside])
    t.dirty_files()
    fd = os.open(f, os.O_RDWR)
    os.pwrite(fd, b"a", 0)  # outside: not reported, and now cached as such
    assert file_id(str(f)) not in t.dirty_files()
    os.rename(f, inside / "f")
    os.pwrite(fd, b"b", 10)  # same open file, now inside
    assert t.dirty_files()[file_id(str(inside / "f"))] == RangeSet([(10, 11)])
    g = outside / "g"
    g.write_bytes(b"0" * 100)
    gfd = os.open(g, os.O_RDWR)
    os.pwrite(gfd, b"a", 0)
    assert file_id(str(g)) not in t.dirty_files()
    t.add_root(str(outside))
    os.pwrite(gfd, b"c", 20)
    assert t.dirty_files()[file_id(str(g))] == RangeSet([(20, 21)])
    os.close(fd)
    os.close(gfd)


def test_hooks_report(tree: Path, open_tracer: Callable[..., Tracer]) -> None:
    """The filesystem hooks are always attached; the system-call hooks only while
    a root on a filesystem without them is watched (they run for every call)."""
    t = open_tracer([tree])
    assert t.hooks["ext4_da_write_end"] == "attached"
    by_syscall = mount_of(str(tree)).fstype != "ext4"  # type: ignore[union-attr]
    assert t.by_syscall == by_syscall
    assert t.hooks["sys_enter"] == t.hooks["sys_exit"] == ("attached" if by_syscall else "loaded")
    t.remove_root(str(tree))
    assert t.hooks["sys_enter"] == "loaded" and not t.by_syscall
    fentry = t.hooks["fentry (fast path, unused)"]
    assert fentry == "available" or fentry.startswith("refused")


def test_mapping_of_a_file_already_whole_stays_dirty(
    tree: Path, open_tracer: Callable[..., Tracer]
) -> None:
    """A file whose entry is whole already this epoch (truncated, then written) and
    then mapped: the mapping must still make it stay dirty while mapped."""
    p = tree / "t"
    p.write_bytes(b"0" * 8192)
    t = open_tracer([tree])
    t.dirty_files()
    fd = os.open(p, os.O_RDWR | os.O_TRUNC)
    os.write(fd, b"1" * 8192)
    ring = Uring()  # (by system call: whole)
    ring.write(fd, b"2", 0)
    ring.close()
    m = mmap.mmap(fd, 8192)
    m[0:1] = b"3"
    assert _only(t, p) is WHOLE
    m[4096:4097] = b"4"  # after the drain, through the mapping
    assert _only(t, p) is WHOLE
    m.close()
    os.close(fd)


def test_a_sequential_stream_is_covered_in_each_epoch(
    tree: Path, open_tracer: Callable[..., Tracer]
) -> None:
    """A sequential writer (the dd case of ``bench/tracer_overhead.py``): every byte of
    the stream is covered, a write back inside it or elsewhere in the file too, and at
    most 1 MiB more than was written (a later cheaper path may run marks ahead of a
    stream, never everywhere); the next epoch holds only what was written since."""
    p = tree / "sub" / "stream"
    fd = _file(p, 8 << 20)
    t = open_tracer([tree])
    t.dirty_files()
    for off in range(0, 3 << 20, 4 * KB):
        os.pwrite(fd, b"s" * (4 * KB), off)
    os.pwrite(fd, b"i" * 10, 100 * KB)  # back inside what the stream covers
    os.pwrite(fd, b"o" * 10, 6 << 20)  # elsewhere: a stream of its own
    got = _only(t, p)
    assert isinstance(got, RangeSet), got
    assert got.covers(0, 3 << 20) and got.covers(6 << 20, (6 << 20) + 10), got
    assert got.total() <= (3 << 20) + (1 << 20) + (1 << 20), got  # ahead, not everywhere
    # the next epoch starts afresh: the stream's next writes are recorded again
    for off in range(3 << 20, 5 << 20, 4 * KB):
        os.pwrite(fd, b"s" * (4 * KB), off)
    got = _only(t, p)
    assert isinstance(got, RangeSet) and got.covers(3 << 20, 5 << 20), got
    assert not got.covers(0, 4 * KB), got  # nothing of the drained epoch comes back
    os.close(fd)

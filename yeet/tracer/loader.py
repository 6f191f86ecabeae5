"""The tracer: load the kernel object, watch roots, hand out dirty ranges.

Invariant owned here: ``dirty_files()`` returns, for every watched file
changed since the previous call (or since ``open()`` returned), a range set
that covers every changed byte or ``WHOLE`` - or it sets ``rescan`` (the
kernel could not record something: a drop, an unplaceable write, an
unresolvable ``truncate(path)``, a program run the kernel skipped). Nothing is
lost between two calls: the kernel tags every record with an epoch;
``dirty_files()`` bumps the epoch, waits until no BPF program still runs (a
map-in-map update makes the kernel ``synchronize_rcu``) and only then reads and
deletes the old epoch's records; a record made while its change was still
landing (``F_FLUX``: fallocate, truncate) is returned only after the file's
inode lock, which that change holds, could be taken. Files with a shared
writable mapping stay ``WHOLE`` in every result until no process maps them any
more; files a writer inside the kernel wrote (``F_KWRITE``) stay ``WHOLE`` for
good.

Which hooks see a root's changes depends on its filesystem: on ext4 the
filesystem's own tracepoints, where every change lands (``bpf/yeet_fs.h``:
nothing runs for other system calls); elsewhere the system-call tracepoints,
attached only while such a root is watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from yeet.model.errors import TracerUnavailable
from yeet.tracer import abi, kernel, libbpf
from yeet.tracer.paths import (
    Found,
    HandleResolver,
    Mount,
    mount_of,
    mounts,
    pid_alive,
    shared_mappings,
)
from yeet.tracer.paths import generation as inode_generation
from yeet.tracer.ranges import WHOLE, Ranges, RangeSet, from_kernel, merge

FS, SYS = "fs", "sys"  # program groups: the filesystem hooks, the system-call hooks

# program name -> (tracepoint it needs, group, required by its group)
_PROGRAMS: dict[str, tuple[str, str, bool]] = {
    "yeet_ext4_da_write_end": ("ext4_da_write_end", FS, True),
    "yeet_ext4_write_end": ("ext4_write_end", FS, True),
    "yeet_ext4_journalled_write_end": ("ext4_journalled_write_end", FS, True),
    "yeet_ext4_truncate": ("ext4_truncate_enter", FS, True),
    "yeet_ext4_mark_inode_dirty": ("ext4_mark_inode_dirty", FS, True),
    "yeet_ext4_punch_hole": ("ext4_punch_hole", FS, True),
    "yeet_ext4_zero_range": ("ext4_zero_range", FS, True),
    "yeet_ext4_fallocate": ("ext4_fallocate_enter", FS, True),
    "yeet_ext4_collapse_range": ("ext4_collapse_range", FS, True),
    "yeet_ext4_insert_range": ("ext4_insert_range", FS, True),
    "yeet_filemap_fault": ("mm_filemap_fault", FS, True),
    "yeet_filemap_map_pages": ("mm_filemap_map_pages", FS, True),
    "yeet_dio_begin": ("iomap_dio_rw_begin", FS, True),
    "yeet_dio_complete": ("iomap_dio_complete", FS, True),
    "yeet_sys_enter": ("sys_enter", SYS, True),
    "yeet_sys_exit": ("sys_exit", SYS, True),
    "yeet_mark_inode_dirty": ("writeback_mark_inode_dirty", SYS, False),
    "yeet_dirty_folio": ("writeback_dirty_folio", SYS, False),
    "yeet_uring_submit": ("io_uring_submit_req", SYS, False),
    "yeet_uring_complete": ("io_uring_complete", SYS, False),
}
_PAIRS = (("yeet_dio_begin", "yeet_dio_complete"), ("yeet_uring_submit", "yeet_uring_complete"))
# the system-call hooks also need these where the filesystem hooks are absent
_SYS_TOO = ("yeet_dio_begin", "yeet_dio_complete", "yeet_ext4_mark_inode_dirty")
# filesystems whose changes the filesystem hooks see where they land
FS_HOOKED = ("ext4",)
GEN_EPOCH, GEN_ROOTS, GEN_NAMES = 0, 2, 5  # slots of the `gens` map (1, 3, 4: kernel's)
_RESCAN_STATS = {
    abi.STAT_DROPS: "the kernel dropped changes",
    abi.STAT_UNPLACEABLE: "writes the tracer cannot place",
}


class FileId(NamedTuple):
    """A file as the kernel knows it. ``dev`` is a userspace ``st_dev``."""

    dev: int
    ino: int
    gen: int


@dataclass(frozen=True)
class DirtyFiles(Mapping[FileId, Ranges]):
    """What changed since the previous drain.

    ``rescan``: the tracer cannot vouch for the interval; scan everything.
    """

    files: dict[FileId, Ranges]
    rescan: bool = False
    reasons: tuple[str, ...] = ()
    stats: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: FileId) -> Ranges:
        return self.files[key]

    def __iter__(self) -> Iterator[FileId]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class TraceEvent:
    """One operation seen by the kernel (verbose mode, for ``yeet trace``)."""

    ts_ns: int
    pid: int
    tid: int
    comm: str
    op: str
    file: FileId
    start: int  # the mark (what the sync engine is told)
    end: int
    op_start: int  # the call's own bytes, where known
    op_end: int
    flags: int
    ret: int
    path: str


def _pow2_at_least(n: int, floor: int = 4096) -> int:
    size = floor
    while size < n:
        size <<= 1
    return size


class Tracer:
    """A loaded tracer. Use ``Tracer.open(roots)``; ``close()`` detaches.

    Not thread-safe: use one tracer from one thread (normally the event loop's).
    Usage by a session: open the tracer, *then* scan (changes after ``open``
    returns are traced), then loop: ``await wait_dirty()``, ``dirty_files()``,
    read and ship the reported ranges (or rescan when ``rescan`` is set).
    """

    def __init__(self) -> None:
        self._obj = 0
        self._links: dict[str, int] = {}  # program -> link
        self._progs: dict[str, int] = {}
        self._fs_ok = False  # every filesystem hook loaded and attached
        self._sys_devs: set[int] = set()  # kdevs watched by system call
        self._fs_devs: set[int] = set()  # kdevs the filesystem hooks watch
        self._skipped: dict[str, int] = {}  # program -> runs the kernel skipped, seen
        self._kwritten: dict[FileId, str] = {}  # written from inside the kernel: whole
        self._names_gen = 0
        self._rb = libbpf.RingBuffer()
        self._closed = False
        self.hooks: dict[str, str] = {}
        self._roots: dict[tuple[int, int], str] = {}  # (kdev, ino) -> path
        self._root_devs: dict[int, int] = {}  # kdev -> refcount
        self._handles = HandleResolver()
        self._hints: OrderedDict[FileId, str] = OrderedDict()
        self._extra: dict[FileId, Ranges] = {}
        self._extra_reasons: list[str] = []
        self._sticky: dict[FileId, str] = {}
        self._seen_stats = [0] * abi.STAT_MAX
        self._on_notice: list[Callable[[], None]] = []
        self._on_event: Callable[[TraceEvent], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._woke = False

    # ---- opening ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        roots: Sequence[str | os.PathLike[str]],
        *,
        verbose: bool = False,
        max_files: int = 16384,
        notice_ring: int = 256 * 1024,
        verbose_ring: int = 8 * 1024 * 1024,
        ignore_self: bool = False,
        object_path: str | None = None,
    ) -> Tracer:
        """Load and attach; changes under ``roots`` after this returns are traced.

        Raises ``TracerUnavailable`` saying why when the kernel will not have it.
        """
        kernel.check_environment()
        t = cls()
        try:
            t._load(
                object_path or kernel.object_path(),
                verbose=verbose,
                max_files=max_files,
                notice_ring=notice_ring,
                verbose_ring=verbose_ring,
                ignore_self=ignore_self,
            )
            t.hooks["fentry (fast path, unused)"] = kernel.probe_fentry(object_path)
            for root in roots:
                t.add_root(os.fspath(root))
            t._seen_stats = t._read_stats()
        except BaseException:
            t.close()
            raise
        return t

    def _load(
        self,
        path: str,
        *,
        verbose: bool,
        max_files: int,
        notice_ring: int,
        verbose_ring: int,
        ignore_self: bool,
    ) -> None:
        try:
            libbpf.lib()
        except OSError as e:
            raise TracerUnavailable(
                f"libbpf.so.1 cannot be loaded ({e})", hint="install libbpf1"
            ) from e
        if not os.path.exists(path):
            raise TracerUnavailable(f"tracer object missing: {path}")
        try:
            self._obj = libbpf.object_open(path)
        except libbpf.LibbpfError as e:
            raise TracerUnavailable(f"cannot open the tracer object: {e}") from e
        present = libbpf.kernel_has_types(
            [(f"btf_trace_{tp}", libbpf.BTF_KIND_TYPEDEF) for tp, _g, _r in _PROGRAMS.values()]
        )
        progs = {libbpf.program_name(p): p for p in libbpf.programs(self._obj)}
        fs_ok = True
        for name, prog in progs.items():
            tp, group, required = _PROGRAMS.get(name, ("", "", False))
            if not tp:
                libbpf.program_set_autoload(prog, False)
                continue
            if not present[f"btf_trace_{tp}"]:
                if required and group == SYS:
                    raise TracerUnavailable(f"the kernel has no tracepoint {tp}")
                fs_ok = fs_ok and not (required and group == FS)
                libbpf.program_set_autoload(prog, False)
                self.hooks[tp] = "absent from this kernel"
        for a, b in _PAIRS:  # half a pair is useless
            if not (libbpf.program_autoload(progs[a]) and libbpf.program_autoload(progs[b])):
                libbpf.program_set_autoload(progs[a], False)
                libbpf.program_set_autoload(progs[b], False)
                fs_ok = fs_ok and _PROGRAMS[a][1] != FS

        m = {libbpf.map_name(x): x for x in libbpf.maps(self._obj)}
        # entries of two epochs coexist while one is being drained
        libbpf.map_set_max_entries(m["dirty"], 2 * max_files)
        libbpf.map_set_max_entries(m["notices"], _pow2_at_least(notice_ring))
        libbpf.map_set_max_entries(m["verbose_rb"], _pow2_at_least(verbose_ring if verbose else 0))
        rodata = next(x for n, x in m.items() if n.endswith(".rodata"))
        # ext4 grows a file in setattr without a tracepoint of its own: the
        # filesystem hooks need to know that code (else ext4 goes by system call)
        setattr_code = kernel.text_range("ext4_setattr")
        if setattr_code is None:
            fs_ok = False
        cfg = abi.ConfigC(
            verbose=int(verbose),
            self_tgid=os.getpid() if ignore_self else 0,
            abi=abi.ABI_VERSION,
            setattr_lo=setattr_code[0] if setattr_code else 0,
            setattr_hi=setattr_code[1] if setattr_code else 0,
        )
        size = libbpf.map_initial_size(rodata)
        raw = bytes(cfg)
        libbpf.map_set_initial_value(rodata, raw + bytes(max(0, size - len(raw))))
        try:
            libbpf.object_load(self._obj)
        except libbpf.LibbpfError as e:
            raise TracerUnavailable(kernel.explain_load_failure(e)) from e
        self._progs = {n: p for n, p in progs.items() if libbpf.program_autoload(p)}
        if fs_ok:
            try:
                for name in self._progs:
                    if _PROGRAMS[name][1] == FS:
                        self._attach(name)
                self._fs_ok = True
            except libbpf.LibbpfError:
                self._detach(FS)  # every root then goes by system call
        for name in _PROGRAMS:
            tp = _PROGRAMS[name][0]
            self.hooks.setdefault(tp, "attached" if name in self._links else "loaded")
        self._fd_dirty = libbpf.map_fd(m["dirty"])
        self._fd_gens = libbpf.map_fd(m["gens"])
        self._fd_sync_outer = libbpf.map_fd(m["sync_outer"])
        self._fd_sync_inner = libbpf.map_fd(m["sync_inner"])
        self._epoch = 0
        self._roots_gen = 0
        self._ncpus = libbpf.possible_cpus()
        self._fd_devs = libbpf.map_fd(m["watched_devs"])
        self._fd_bss = libbpf.map_fd(next(x for n, x in m.items() if n.endswith(".bss")))
        self._fd_dirs = libbpf.map_fd(m["watched_dirs"])
        self._fd_stats = libbpf.map_fd(m["stats"])
        self._rb.add(libbpf.map_fd(m["notices"]), self._notice)
        if verbose:
            self._rb.add(libbpf.map_fd(m["verbose_rb"]), self._verbose)

    # ---- roots ------------------------------------------------------------------

    def add_root(self, path: str) -> None:
        """Watch everything below ``path`` (a directory or a single file)."""
        path = os.path.abspath(path)
        st = os.stat(path)
        m = mount_of(path)
        udev = m.dev if m is not None and m.dev != st.st_dev else st.st_dev
        kdev = abi.kernel_dev(udev)
        by_fs = self._fs_ok and m is not None and hooked_by_fs(m)
        watch = abi.WATCH_SUBTREES | (abi.WATCH_FS if by_fs else 0)
        if not by_fs and kdev not in self._sys_devs:
            self._attach_sys()  # before the device is watched: no write slips through
            self._sys_devs.add(kdev)
        key = abi.DirKeyC(ino=st.st_ino, dev=kdev)
        libbpf.update(self._fd_dirs, key, ctypes.c_uint32(1))
        self._roots[(kdev, st.st_ino)] = path
        self._root_devs[kdev] = self._root_devs.get(kdev, 0) + 1
        libbpf.update(self._fd_devs, ctypes.c_uint32(kdev), ctypes.c_uint32(watch))
        if by_fs:
            self._fs_devs.add(kdev)
            self._publish_fs_devs()
        self._roots_changed()
        self._handles.learn(path, udev)
        if not self._closed and self._obj:
            self._sticky_from_existing_mappings()  # mapped before this root was watched

    def _roots_changed(self) -> None:
        """The kernel's cached per-file answers are stale now."""
        self._roots_gen += 1
        libbpf.update(self._fd_gens, ctypes.c_uint32(GEN_ROOTS), ctypes.c_uint64(self._roots_gen))

    def remove_root(self, path: str) -> None:
        path = os.path.abspath(path)
        for (kdev, ino), p in list(self._roots.items()):
            if p != path:
                continue
            libbpf.delete(self._fd_dirs, abi.DirKeyC(ino=ino, dev=kdev))
            del self._roots[(kdev, ino)]
            self._root_devs[kdev] -= 1
            if not self._root_devs[kdev]:
                del self._root_devs[kdev]
                libbpf.delete(self._fd_devs, ctypes.c_uint32(kdev))
                if kdev in self._fs_devs:
                    self._fs_devs.discard(kdev)
                    self._publish_fs_devs()
                self._sys_devs.discard(kdev)
                if not self._sys_devs:
                    self._detach(SYS)  # nothing left that needs them
            self._roots_changed()

    def _publish_fs_devs(self) -> None:
        """The filesystem hooks' first test (``fs_devs`` in the object's .bss)."""
        devs = sorted(self._fs_devs)
        value = abi.FsDevsC(n=len(devs) if len(devs) <= abi.FS_DEVS else abi.FS_DEVS + 1)
        for i, d in enumerate(devs[: abi.FS_DEVS]):
            value.dev[i] = d
        libbpf.update(self._fd_bss, ctypes.c_uint32(0), value)

    def names_changed(self) -> None:
        """A name was bound below a root (fanotify said so): the kernel's cached
        "is it watched?" answers are stale (the system-call hooks notice renames
        themselves; the filesystem hooks learn it here)."""
        self._names_gen += 1
        libbpf.update(self._fd_gens, ctypes.c_uint32(GEN_NAMES), ctypes.c_uint64(self._names_gen))

    @property
    def by_syscall(self) -> bool:
        """Whether the system-call hooks are attached (a root needs them)."""
        return "yeet_sys_enter" in self._links

    # ---- attaching -----------------------------------------------------------------

    def _attach(self, name: str) -> None:
        if name in self._links or name not in self._progs:
            return
        tp = _PROGRAMS[name][0]
        try:
            self._links[name] = libbpf.program_attach(self._progs[name])
        except libbpf.LibbpfError as e:
            self.hooks[tp] = f"refused: {e.strerror}"
            if _PROGRAMS[name][2]:
                raise
            return
        self.hooks[tp] = "attached"

    def _attach_sys(self) -> None:
        try:
            for name in [*_SYS_TOO, *(n for n, v in _PROGRAMS.items() if v[1] == SYS)]:
                self._attach(name)
        except libbpf.LibbpfError as e:
            raise TracerUnavailable(f"the kernel refused the system-call hooks: {e}") from e

    def _detach(self, group: str) -> None:
        for name in [n for n in self._links if _PROGRAMS[n][1] == group]:
            if group == SYS and name in _SYS_TOO and self._fs_ok:
                continue  # the filesystem hooks use them too
            libbpf.link_destroy(self._links.pop(name))
            self.hooks[_PROGRAMS[name][0]] = "loaded"

    @property
    def roots(self) -> list[str]:
        return sorted(set(self._roots.values()))

    def _under_roots(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in self._roots.values())

    # ---- draining -----------------------------------------------------------------

    def dirty_files(self) -> DirtyFiles:
        """Everything changed since the previous call; see the module invariant."""
        self._check_open()
        old = self._epoch
        self._epoch += 1
        libbpf.update(self._fd_gens, ctypes.c_uint32(GEN_EPOCH), ctypes.c_uint64(self._epoch))
        # updating a map-in-map returns only after every BPF program that was
        # running has finished (synchronize_rcu): none still writes epoch `old`
        libbpf.update(self._fd_sync_outer, ctypes.c_uint32(0), ctypes.c_uint32(self._fd_sync_inner))
        self._rb.consume()
        stats = self._read_stats()
        reasons = list(self._extra_reasons)
        skipped = self._skipped_runs()
        if skipped:
            reasons.append(f"the kernel skipped tracer programs ({skipped} runs)")
        for idx, why in _RESCAN_STATS.items():
            if stats[idx] != self._seen_stats[idx]:
                reasons.append(f"{why} ({stats[idx] - self._seen_stats[idx]})")
        delta = {
            abi.STAT_NAMES[i]: stats[i] - self._seen_stats[i]
            for i in range(abi.STAT_MAX)
            if i != abi.STAT_TRUNC_SEQ
        }
        self._seen_stats = stats
        self._extra_reasons.clear()

        files: dict[FileId, Ranges] = dict(self._extra)
        self._extra.clear()
        fd = self._fd_dirty
        value = abi.DirtyC()
        # collect first: deleting while iterating makes get_next_key restart; older
        # epochs too: a drain that failed half-way left them behind
        old_keys = [k for k in libbpf.keys(fd, abi.KeyC) if k.epoch <= old]
        for key in old_keys:
            if not libbpf.lookup(fd, key, value):
                continue
            libbpf.delete(fd, key)
            fid = FileId(abi.user_dev(key.id.dev), key.id.ino, key.id.gen)
            if value.flags & abi.F_FLUX and not self._landed(fid):
                reasons.append(f"could not wait for a change to inode {fid.ino} to land")
            if value.flags & abi.F_KWRITE:
                self._kwritten[fid] = self._hints.get(fid, "")
            nr = min(value.nr, abi.MAX_RANGES)
            r = from_kernel(
                ((value.r[i].start, value.r[i].end) for i in range(nr)),
                bool(value.flags & abi.F_WHOLE),
            )
            files[fid] = merge(files[fid], r) if fid in files else r
            if value.flags & abi.F_MMAP:
                self._sticky[fid] = self._hints.get(fid, "")
        for fid in list(self._kwritten):
            found = self.locate(fid)
            if found.path is None and found.known:
                del self._kwritten[fid]  # gone
            else:
                files[fid] = WHOLE
        if self._sticky:
            for fid in self._sticky:
                files[fid] = WHOLE
            still = shared_mappings({f.dev for f in self._sticky})
            for fid in list(self._sticky):
                if (fid.dev, fid.ino) not in still:
                    del self._sticky[fid]
        return DirtyFiles(files, bool(reasons), tuple(reasons), delta)

    def _landed(self, fid: FileId) -> bool:
        """Wait until a change recorded while landing has landed: it holds the
        inode's lock (ext4 fallocate, setattr), which seeking for data takes."""
        try:
            fd = self._handles.open(fid.dev, fid.ino, fid.gen, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True  # gone: its removal is a name event
        except OSError:
            return False
        try:
            os.lseek(fd, 0, os.SEEK_DATA)
        except OSError:
            pass  # ENXIO: no data - the lock was taken all the same
        finally:
            os.close(fd)
        return True

    def _skipped_runs(self) -> int:
        """Runs the kernel skipped since the last call, over every attached program."""
        total = 0
        for name in self._links:
            try:
                skipped = libbpf.program_runs(libbpf.program_fd(self._progs[name]))[2]
            except OSError:
                continue
            total += skipped - self._skipped.get(name, 0)
            self._skipped[name] = skipped
        return total

    def program_costs(self) -> dict[str, tuple[int, int]]:
        """Attached program -> (runs, ns) (counted while kernel.bpf_stats_enabled is 1)."""
        out = {}
        for name in self._links:
            runs, ns, _skipped = libbpf.program_runs(libbpf.program_fd(self._progs[name]))
            out[name] = (runs, ns)
        return out

    @property
    def drops(self) -> int:
        """Changes the kernel could not record or place, since ``open()``."""
        s = self._read_stats()
        return s[abi.STAT_DROPS] + s[abi.STAT_UNPLACEABLE]

    def stats(self) -> dict[str, int]:
        s = self._read_stats()
        return {abi.STAT_NAMES[i]: s[i] for i in range(abi.STAT_MAX)}

    def _read_stats(self) -> list[int]:
        out = []
        per_cpu = (ctypes.c_uint64 * self._ncpus)()
        for i in range(abi.STAT_MAX):
            libbpf.lookup(self._fd_stats, ctypes.c_uint32(i), per_cpu)
            out.append(sum(per_cpu))
        return out

    def _sticky_from_existing_mappings(self) -> None:
        devs = {abi.user_dev(k) for k in self._root_devs}
        for (dev, ino), path in shared_mappings(devs).items():
            if path and self._under_roots(path):
                gen = inode_generation(path)
                self._sticky[FileId(dev, ino, gen or 0)] = path

    # ---- ring buffer events -----------------------------------------------------------

    def _notice(self, data: bytes) -> None:
        ev = abi.EventC.from_buffer_copy(data[: ctypes.sizeof(abi.EventC)])
        if ev.type == abi.EV_DIRTY:
            fid = FileId(abi.user_dev(ev.id.dev), ev.id.ino, ev.id.gen)
            path = self._event_path(ev)
            if path:
                self._hints[fid] = path
                self._hints.move_to_end(fid)
                while len(self._hints) > 65536:
                    self._hints.popitem(last=False)
        elif ev.type == abi.EV_PATH_TRUNC:
            self._path_truncated(ev)
        self._woke = True

    def _verbose(self, data: bytes) -> None:
        if self._on_event is None:
            return
        ev = abi.EventC.from_buffer_copy(data[: ctypes.sizeof(abi.EventC)])
        self._on_event(
            TraceEvent(
                ts_ns=ev.ts_ns,
                pid=ev.pid,
                tid=ev.tid,
                comm=ev.comm.decode("utf-8", "replace"),
                op=abi.OP_NAMES.get(ev.op, str(ev.op)),
                file=FileId(abi.user_dev(ev.id.dev), ev.id.ino, ev.id.gen),
                start=ev.start,
                end=ev.end,
                op_start=ev.op_start,
                op_end=ev.op_end,
                flags=ev.flags,
                ret=ev.ret,
                path=self._event_path(ev),
            )
        )

    def _event_path(self, ev: abi.EventC) -> str:
        names = [
            bytes(ev.names[i].value).decode("utf-8", "surrogateescape")
            for i in range(min(ev.depth, abi.PATH_DEPTH))
        ]
        if not names:
            return ""
        if ev.complete and ev.root_ino:
            root = self._roots.get((ev.id.dev, ev.root_ino))
            if root is not None:
                rel = list(reversed(names[:-1]))
                return os.path.join(root, *rel) if rel else root
        if ev.complete:  # reached the filesystem root: find where it is mounted
            for m in _mounts_of_dev(abi.user_dev(ev.id.dev)):
                if m.root == "/":
                    return os.path.join(m.point, *reversed(names[:-1]))
        return os.path.join("…", *reversed(names))

    def _path_truncated(self, ev: abi.EventC) -> None:
        raw = bytes(ev.names)
        path = os.fsdecode(raw.split(b"\0", 1)[0])
        fid = self._resolve_path(ev, path)
        if fid is None:
            if ev.end == 0:  # the kernel found no inode either
                self._extra_reasons.append(f"truncate({path!r}) by pid {ev.pid} unresolved")
            return
        kdev = abi.kernel_dev(fid.dev)
        if kdev in self._root_devs and kdev in self._sys_devs:  # (else the fs hooks saw it)
            self._extra[fid] = WHOLE

    def _resolve_path(self, ev: abi.EventC, path: str) -> FileId | None:
        candidates = []
        absolute = path.startswith("/")
        if pid_alive(ev.pid):
            base = f"/proc/{ev.pid}/root" if absolute else f"/proc/{ev.pid}/cwd"
            candidates.append(os.path.join(base, path.lstrip("/")))
        anchor = ev.root if path.startswith("/") else ev.cwd
        if anchor.ino:
            fid = FileId(abi.user_dev(anchor.dev), anchor.ino, anchor.gen)
            d = self._directory_path(fid)
            if d is not None:
                candidates.append(os.path.join(d, path.lstrip("/")))
        for c in candidates:
            try:
                st = os.stat(c)
            except OSError:
                continue
            gen = inode_generation(c)
            return FileId(st.st_dev, st.st_ino, gen if gen is not None else 0)
        return None

    def _directory_path(self, fid: FileId) -> str | None:
        """Where a directory (a task's cwd or root) is: ours, or found by handle
        through any mount of its filesystem."""
        try:
            st = os.stat("/")
            if (st.st_dev, st.st_ino) == (fid.dev, fid.ino):
                return "/"
        except OSError:
            pass
        found = self.path_of(fid)
        if found is None and not self._handles.knows(fid.dev):
            for m in _mounts_of_dev(fid.dev):
                if m.root == "/" and self._handles.learn(m.point, fid.dev):
                    found = self.path_of(fid)
                    break
        return found

    # ---- paths -------------------------------------------------------------------------

    def path_of(self, fid: FileId) -> str | None:
        """A current path of the file, or None (deleted, or the fs keeps no handles)."""
        return self.locate(fid).path

    def locate(self, fid: FileId) -> Found:
        """Where the file is now (``paths.Found``): the path the kernel last named
        it by if that still is this very inode - number *and* generation: a
        reused inode number is another file - else through its file handle."""
        hint = self._hints.get(fid)
        if hint:
            try:
                st = os.lstat(hint)
            except OSError:
                st = None
            if (
                st is not None
                and (st.st_ino, st.st_dev) == (fid.ino, fid.dev)
                and inode_generation(hint) == fid.gen
            ):
                return Found(hint, True, st.st_nlink)
        return self._handles.lookup(fid.dev, fid.ino, fid.gen)

    # ---- asyncio -----------------------------------------------------------------------

    def fileno(self) -> int:
        """The epoll fd that becomes readable when the kernel has news."""
        return self._rb.epoll_fd()

    def attach_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        on_dirty: Callable[[], None] | None = None,
        on_event: Callable[[TraceEvent], None] | None = None,
    ) -> None:
        """Consume kernel news from ``loop`` (``add_reader`` - no thread, no timer)."""
        self._check_open()
        self._loop = loop
        self._wakeup = asyncio.Event()
        if on_dirty is not None:
            self._on_notice.append(on_dirty)
        if on_event is not None:
            self._on_event = on_event
        loop.add_reader(self.fileno(), self._readable)

    def set_event_callback(self, on_event: Callable[[TraceEvent], None] | None) -> None:
        self._on_event = on_event

    def consume(self) -> None:
        """Process whatever the kernel has sent, now (callbacks run here)."""
        self._check_open()
        self._readable()

    def _readable(self) -> None:
        self._woke = False
        self._rb.consume()
        if self._woke:
            if self._wakeup is not None:
                self._wakeup.set()
            for cb in self._on_notice:
                cb()

    async def wait_dirty(self) -> None:
        """Return once some watched file became dirty (after ``attach_loop``)."""
        assert self._wakeup is not None, "call attach_loop() first"
        await self._wakeup.wait()
        self._wakeup.clear()

    def poll(self, timeout_ms: int) -> int:
        """Blocking alternative to asyncio: wait for and process kernel news."""
        self._check_open()
        return self._rb.poll(timeout_ms)

    # ---- closing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("tracer is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                self._loop.remove_reader(self.fileno())
        for link in self._links.values():
            libbpf.link_destroy(link)
        self._links.clear()
        self._rb.free()
        if self._obj:
            libbpf.object_close(self._obj)
            self._obj = 0
        self._handles.close()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mounts_of_dev(dev: int) -> list[Mount]:
    return [m for m in mounts() if m.dev == dev]


def hooked_by_fs(m: Mount) -> bool:
    """Does the filesystem hook group see every change on this mount's filesystem?
    (ext4 without DAX, whose writes bypass the page cache and its tracepoints)"""
    return m.fstype in FS_HOOKED and "dax" not in m.options.split(",")


__all__ = ["DirtyFiles", "FileId", "RangeSet", "TraceEvent", "Tracer"]

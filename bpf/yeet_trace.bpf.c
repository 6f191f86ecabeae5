// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * yeet_trace.bpf.c - record which byte ranges of which files are written.
 *
 * Invariant: every change to the content or size of a regular file on a
 * watched filesystem, below a watched directory, made after the programs are
 * attached, ends up - after the change has landed - either as a byte range
 * that contains it, or as a whole-file mark, in the current epoch's range map,
 * or it bumps the DROPS / UNPLACEABLE counters (userspace then rescans). Marks
 * may be wider than the change; they are never narrower.
 *
 * Where the marks come from (x86_64 syscall numbers; the object is x86_64):
 *   tp_btf/sys_enter + sys_exit: write, writev, pwrite64, pwritev, pwritev2,
 *     sendfile, splice and copy_file_range into files, ftruncate, fallocate,
 *     open/openat/openat2/creat with O_TRUNC, truncate(path), shared writable
 *     mmap (whole file, sticky in userspace while mapped), clone/exchange
 *     ioctls, io_submit (AIO), lseek (position race detection), 32-bit
 *     syscalls (whole file or rescan).
 *   tp_btf/io_uring_complete, io_uring_submit_req: io_uring writes -> whole.
 *   tp_btf/iomap_dio_rw_begin + iomap_dio_complete: direct I/O, exact, at
 *     completion (catches asynchronous AIO / io_uring DIO after it lands).
 *   tp_btf/writeback_dirty_folio: a page cache folio dirtied outside any
 *     traced syscall (page faults on mappings, kernel writers) -> that folio.
 *   tp_btf/writeback_mark_inode_dirty, ext4_mark_inode_dirty: find the inode
 *     of truncate(path), which has no file descriptor.
 *
 * Marks go into a per-inode range map (struct yeet_dirty, coalesced under a
 * spin lock), keyed by file and epoch. Userspace bumps the epoch, waits for
 * running programs (synchronize_rcu, via sync_outer) and then reads and
 * deletes the old epoch's entries at leisure: no mark is lost between reads.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "yeet_kernel.h"
#include "yeet_trace.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#ifndef EEXIST
#define EEXIST 17
#endif

/* x86_64 syscall numbers */
#define NR_write 1
#define NR_open 2
#define NR_lseek 8
#define NR_mmap 9
#define NR_ioctl 16
#define NR_pwrite64 18
#define NR_writev 20
#define NR_sendfile 40
#define NR_truncate 76
#define NR_ftruncate 77
#define NR_creat 85
#define NR_io_submit 209
#define NR_openat 257
#define NR_splice 275
#define NR_fallocate 285
#define NR_pwritev 296
#define NR_copy_file_range 326
#define NR_pwritev2 328
#define NR_openat2 437
#define X32_SYSCALL_BIT 0x40000000

/* i386 numbers, seen for 32-bit tasks and int $0x80 */
#define NR32_write 4
#define NR32_open 5
#define NR32_creat 8
#define NR32_ioctl 54
#define NR32_old_mmap 90
#define NR32_truncate 92
#define NR32_ftruncate 93
#define NR32_writev 146
#define NR32_pwrite64 181
#define NR32_sendfile 187
#define NR32_mmap2 192
#define NR32_truncate64 193
#define NR32_ftruncate64 194
#define NR32_sendfile64 239
#define NR32_io_submit 248
#define NR32_openat 295
#define NR32_splice 313
#define NR32_fallocate 324
#define NR32_pwritev 334
#define NR32_copy_file_range 377
#define NR32_pwritev2 379
#define NR32_openat2 437
#define TS_COMPAT 0x0002

#define S_IFMT 00170000
#define S_IFREG 0100000
#define O_TRUNC 01000
#define O_APPEND 02000
#define FMODE_WRITE 0x2
#define RWF_APPEND 0x10
#define MAP_SHARED 0x01
#define MAP_SHARED_VALIDATE 0x03
#define MAP_TYPE 0x0f
#define MAP_ANONYMOUS 0x20
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#define FALLOC_FL_INSERT_RANGE 0x20

#define FICLONE 0x40049409u
#define FICLONERANGE 0x4020940du
#define EXT4_IOC_SWAP_BOOT 0x6611u
#define XFS_IOC_EXCHANGE_RANGE 0x40285881u
#define XFS_IOC_COMMIT_RANGE 0x40585883u
#define BTRFS_IOC_ENCODED_WRITE 0x40809440u
#define BTRFS_IOC_ENCODED_WRITE_32 0x40789440u

#define IOCB_CMD_PWRITE 1
#define IOCB_CMD_PWRITEV 8
#define AIO_MAX_SCAN 64

#define IORING_OP_WRITEV 2
#define IORING_OP_WRITE_FIXED 5
#define IORING_OP_FALLOCATE 17
#define IORING_OP_OPENAT 18
#define IORING_OP_WRITE 23
#define IORING_OP_OPENAT2 28
#define IORING_OP_SPLICE 30
#define IORING_OP_FTRUNCATE 55
#define IORING_OP_WRITEV_FIXED 61
#define REQ_F_CQE_SKIP (1ULL << 6)

const volatile struct yeet_config cfg = {};

/* ---- maps ---------------------------------------------------------------- */

/* The range map. Keys carry the epoch they were recorded in; userspace bumps
 * `epoch`, waits for running programs (see sync_outer), then drains and
 * deletes the entries of the previous epoch while new ones keep arriving. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct yeet_key);
	__type(value, struct yeet_dirty);
} dirty SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} epoch SEC(".maps");

/* Never read by the programs: updating a map-in-map makes the kernel wait
 * for every running BPF program (synchronize_rcu) before returning, which is
 * how userspace knows no program still writes into the old epoch. */
struct sync_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sync_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct sync_inner);
} sync_outer SEC(".maps") = {
	.values = { [0] = &sync_inner },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} watched_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct yeet_dir_key);
	__type(value, __u32);
} watched_dirs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, YEET_STAT_MAX + 1);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");
#define STAT_TRUNC_INFLIGHT YEET_STAT_MAX

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} notices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} verbose_rb SEC(".maps");

/* Per task: what the syscall in progress needs at its exit. */
struct pending {
	__u32 nr;        /* syscall number + 1; 0: nothing */
	__u32 op;
	__u64 file;      /* struct file * at entry */
	__s64 pos;       /* f_pos at entry */
	__s64 size;      /* i_size at entry */
	__u64 seek;      /* seek sequence at entry (bit 63: file had an entry) */
	__u64 trunc;     /* truncation sequence at entry */
	__u64 off;       /* *off_out at entry (splice, copy_file_range) */
	__u32 fflags;    /* f_flags at entry */
	__u32 has_off;
	__u32 trunc_inflight; /* 1: this call counts in STAT_TRUNC_INFLIGHT */
	__u32 marked;    /* inodes marked by inode hooks during truncate(path) */
	__u32 racy;      /* 1: a truncation was in flight at entry */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending SEC(".maps");

/* struct file * -> lseek sequence (odd while an lseek is in flight) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} seeks SEC(".maps");

/* struct kiocb * of direct writes in flight */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} dio_writes SEC(".maps");

/* all-zero template for new range map entries (never written); plain bytes:
 * a value holding a bpf_spin_lock may not be passed to helpers as memory */
struct dirty_bytes {
	__u8 b[sizeof(struct yeet_dirty)];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dirty_bytes);
} zero_dirty SEC(".maps");

/* ---- small helpers --------------------------------------------------------- */

static __always_inline void stat_add(__u32 idx, __s64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline __u64 stat_get(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	return v ? *v : 0;
}

static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	struct file *f = NULL;
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **fds;

	if (fd < 0)
		return NULL;
	files = BPF_CORE_READ(task, files);
	if (!files)
		return NULL;
	fdt = BPF_CORE_READ(files, fdt);
	if (!fdt || (unsigned long)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline int is_reg(struct inode *inode)
{
	return inode && (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFREG;
}

static __always_inline struct dentry *inode_alias(struct inode *inode)
{
	struct hlist_node *first = BPF_CORE_READ(inode, i_dentry.first);

	if (!first)
		return NULL;
	return (struct dentry *)((void *)first - bpf_core_field_offset(struct dentry, d_u.d_alias));
}

/*
 * Is this inode (reached through dentry, which may be NULL) watched?
 * 0: no. 1: yes; *root_ino = watched directory it lies under (0: unknown).
 */
static __always_inline int watched(struct inode *inode, struct dentry *dentry, __u64 *root_ino)
{
	struct yeet_dir_key k = {};
	__u32 dev = BPF_CORE_READ(inode, i_sb, s_dev);
	__u32 *w = bpf_map_lookup_elem(&watched_devs, &dev);

	*root_ino = 0;
	if (!w)
		return 0;
	if (*w & YEET_WATCH_ALL)
		return 1;
	/* another link may be inside the tree even if this one is not */
	if (BPF_CORE_READ(inode, i_nlink) > 1 || !dentry)
		return 1;
	k.dev = dev;
	for (int i = 0; i < YEET_MAX_ANCESTORS; i++) {
		struct inode *di = BPF_CORE_READ(dentry, d_inode);
		struct dentry *parent;

		if (di) {
			k.ino = BPF_CORE_READ(di, i_ino);
			if (bpf_map_lookup_elem(&watched_dirs, &k)) {
				*root_ino = k.ino;
				return 1;
			}
		}
		parent = BPF_CORE_READ(dentry, d_parent);
		if (!parent || parent == dentry)
			return 0;
		dentry = parent;
	}
	return 1; /* deeper than we look: keep it */
}

static __always_inline void fill_names(struct yeet_event *ev, struct dentry *dentry, __u64 root_ino)
{
	ev->root_ino = root_ino;
	ev->depth = 0;
	ev->complete = 0;
	if (!dentry)
		return;
	for (int i = 0; i < YEET_PATH_DEPTH; i++) {
		struct inode *di = BPF_CORE_READ(dentry, d_inode);
		struct dentry *parent;

		bpf_probe_read_kernel_str(ev->names[i], YEET_NAME_LEN, BPF_CORE_READ(dentry, d_name.name));
		ev->depth = i + 1;
		if (root_ino && di && BPF_CORE_READ(di, i_ino) == root_ino) {
			ev->complete = 1;
			return;
		}
		parent = BPF_CORE_READ(dentry, d_parent);
		if (!parent || parent == dentry) {
			ev->complete = 1;
			return;
		}
		dentry = parent;
	}
}

static __always_inline void fill_common(struct yeet_event *ev, __u32 type, __u32 op,
					struct yeet_file_id *id, __u64 start, __u64 end,
					__u32 flags, __s64 ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev->type = type;
	ev->op = op;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->id = *id;
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->start = start;
	ev->end = end;
	ev->flags = flags;
	ev->ret = (__s32)ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
}

/* Merge [start, end) (or a whole-file mark) into d. Called under d->lock.
 * Returns 1 when the range list overflowed into a whole-file mark.
 * Two passes with no remembered slot index: the verifier then sees one
 * state per loop iteration instead of one per (merged, free) pair. */
static __always_inline int merge_locked(struct yeet_dirty *d, __u64 start, __u64 end, __u32 flags)
{
	__u32 nr = d->nr;

	d->ops++;
	d->flags |= flags;
	if (d->flags & YEET_F_WHOLE)
		return 0;
	/* 1: absorb every live range that overlaps or touches [start, end) */
	for (int i = 0; i < YEET_MAX_RANGES; i++) {
		__u64 s, e;

		if (i >= nr)
			break;
		s = d->r[i].start;
		e = d->r[i].end;
		if (s < e && s <= end && start <= e) {
			if (s < start)
				start = s;
			if (e > end)
				end = e;
			d->r[i].start = 1; /* free (start > end) */
			d->r[i].end = 0;
		}
	}
	/* 2: put the union in the first free slot */
	for (int i = 0; i < YEET_MAX_RANGES; i++) {
		if (i >= nr)
			break;
		if (d->r[i].start > d->r[i].end) {
			d->r[i].start = start;
			d->r[i].end = end;
			return 0;
		}
	}
	if (nr >= YEET_MAX_RANGES) {
		d->flags |= YEET_F_WHOLE | YEET_F_OVERFLOW;
		return 1;
	}
	d->r[nr & (YEET_MAX_RANGES - 1)].start = start;
	d->r[nr & (YEET_MAX_RANGES - 1)].end = end;
	d->nr = nr + 1;
	return 0;
}

struct mark {
	__u64 start;
	__u64 end;
	__u32 flags;
	__u32 op;
	__s64 ret;
};

/* Record a mark for inode (dentry: how it was reached, for the subtree filter
 * and names). Returns 1 if the inode is watched. A global BPF function: the
 * verifier checks it once, not once per call site. Pointers arrive as plain
 * numbers and are only read through bpf_probe_read_kernel (BPF_CORE_READ). */
__noinline int record(__u64 inode_addr, __u64 dentry_addr, struct mark *m)
{
	struct inode *inode = (struct inode *)inode_addr;
	struct dentry *dentry = (struct dentry *)dentry_addr;
	struct yeet_key key = {};
	struct yeet_file_id id = {};
	struct yeet_dirty *d;
	struct dirty_bytes *z;
	struct yeet_event *ev;
	__u64 root_ino = 0, start, end, *ep;
	__u32 zero = 0, flags;
	int created = 0, overflow;
	long err;

	if (!m || !is_reg(inode))
		return 0;
	if (!watched(inode, dentry, &root_ino))
		return 0;
	if (cfg.self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg.self_tgid)
		return 1;
	start = m->start;
	end = m->end;
	flags = m->flags;
	if (!(flags & YEET_F_WHOLE) && end <= start)
		return 1;
	id.ino = BPF_CORE_READ(inode, i_ino);
	id.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	id.gen = BPF_CORE_READ(inode, i_generation);

	ep = bpf_map_lookup_elem(&epoch, &zero);
	if (!ep) {
		stat_add(YEET_STAT_DROPS, 1);
		return 1;
	}
	key.id = id;
	key.epoch = *ep;
	d = bpf_map_lookup_elem(&dirty, &key);
	if (!d) {
		z = bpf_map_lookup_elem(&zero_dirty, &zero);
		if (!z) {
			stat_add(YEET_STAT_DROPS, 1);
			return 1;
		}
		err = bpf_map_update_elem(&dirty, &key, z, BPF_NOEXIST);
		if (err == 0) {
			created = 1;
		} else if (err != -EEXIST) {
			stat_add(YEET_STAT_DROPS, 1);
			stat_add(YEET_STAT_MAP_FULL, 1);
			return 1;
		}
		d = bpf_map_lookup_elem(&dirty, &key);
		if (!d) {
			stat_add(YEET_STAT_DROPS, 1);
			return 1;
		}
	}
	bpf_spin_lock(&d->lock);
	overflow = merge_locked(d, start, end, flags);
	bpf_spin_unlock(&d->lock);

	stat_add(YEET_STAT_MARKS, 1);
	if (overflow)
		stat_add(YEET_STAT_OVERFLOWS, 1);
	if (created) {
		ev = bpf_ringbuf_reserve(&notices, sizeof(*ev), 0);
		if (ev) {
			fill_common(ev, YEET_EV_DIRTY, m->op, &id, start, end, flags, m->ret);
			fill_names(ev, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_NOTICE_LOST, 1);
		}
	}
	if (cfg.verbose) {
		ev = bpf_ringbuf_reserve(&verbose_rb, sizeof(*ev), 0);
		if (ev) {
			fill_common(ev, YEET_EV_WRITE, m->op, &id, start, end, flags, m->ret);
			fill_names(ev, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_VERBOSE_LOST, 1);
		}
	}
	return 1;
}

static __always_inline int record_file(struct file *f, __u64 start, __u64 end, __u32 flags,
				       __u32 op, __s64 ret)
{
	struct mark m = { .start = start, .end = end, .flags = flags, .op = op, .ret = ret };

	if (!f)
		return 0;
	return record((__u64)BPF_CORE_READ(f, f_inode), (__u64)BPF_CORE_READ(f, f_path.dentry), &m);
}

static __always_inline int record_whole(struct file *f, __u32 flags, __u32 op, __s64 ret)
{
	return record_file(f, 0, YEET_OFF_END, flags | YEET_F_WHOLE, op, ret);
}

/* A typed kernel pointer (a tracepoint argument) as a plain number: global
 * functions accept only scalars, and the verifier would not let it decay. */
static __always_inline __u64 as_scalar(void *ptr)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &ptr);
	return v;
}

static __always_inline int record_inode(struct inode *inode, __u64 start, __u64 end, __u32 flags,
					__u32 op)
{
	struct mark m = { .start = start, .end = end, .flags = flags, .op = op, .ret = 0 };

	return record(as_scalar(inode), (__u64)inode_alias(inode), &m);
}

static __always_inline int file_watched(struct file *f)
{
	struct inode *inode;
	__u64 root_ino;

	if (!f)
		return 0;
	inode = BPF_CORE_READ(f, f_inode);
	if (!is_reg(inode))
		return 0;
	return watched(inode, BPF_CORE_READ(f, f_path.dentry), &root_ino);
}

/* seek sequence of a file: bit 63 set when the file has an entry */
static __always_inline __u64 seek_seq(struct file *f)
{
	__u64 key = (__u64)f;
	__u64 *v = bpf_map_lookup_elem(&seeks, &key);

	return v ? (*v | (1ULL << 63)) : 0;
}

static __always_inline struct pending *task_pending(struct task_struct *task, int create)
{
	return bpf_task_storage_get(&pending, task, 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

static __always_inline void trunc_begin(struct pending *p)
{
	stat_add(STAT_TRUNC_INFLIGHT, 1);
	stat_add(YEET_STAT_TRUNC_SEQ, 1);
	p->trunc_inflight = 1;
}

static __always_inline void trunc_end(struct pending *p)
{
	if (p->trunc_inflight) {
		stat_add(STAT_TRUNC_INFLIGHT, -1);
		stat_add(YEET_STAT_TRUNC_SEQ, 1);
		p->trunc_inflight = 0;
	}
}

static __always_inline __u32 op_of(long id)
{
	switch (id) {
	case NR_write: return YEET_OP_WRITE;
	case NR_writev: return YEET_OP_WRITEV;
	case NR_pwrite64: return YEET_OP_PWRITE64;
	case NR_pwritev: return YEET_OP_PWRITEV;
	case NR_pwritev2: return YEET_OP_PWRITEV2;
	case NR_sendfile: return YEET_OP_SENDFILE;
	case NR_splice: return YEET_OP_SPLICE;
	case NR_copy_file_range: return YEET_OP_COPY_FILE_RANGE;
	case NR_ftruncate: return YEET_OP_FTRUNCATE;
	case NR_fallocate: return YEET_OP_FALLOCATE;
	case NR_truncate: return YEET_OP_TRUNCATE;
	default: return YEET_OP_NONE;
	}
}

/* The file descriptor written to by an fd-based write-like syscall. */
static __always_inline long out_fd(long id, struct pt_regs *regs)
{
	if (id == NR_splice || id == NR_copy_file_range)
		return (long)regs->dx;
	return (long)regs->di;
}

/* ---- 32-bit tasks: whole file for fd-based writes, rescan otherwise ------- */

static __always_inline void compat_exit(struct task_struct *task, struct pt_regs *regs,
					long id, long ret)
{
	long fd = -1, flags = 0;

	switch (id) {
	case NR32_write: case NR32_writev: case NR32_pwrite64: case NR32_pwritev:
	case NR32_pwritev2: case NR32_sendfile: case NR32_sendfile64: case NR32_ftruncate:
	case NR32_ftruncate64: case NR32_fallocate:
		fd = (long)(int)regs->bx;
		break;
	case NR32_splice: case NR32_copy_file_range:
		fd = (long)(int)regs->dx;
		break;
	case NR32_ioctl: {
		__u32 cmd = (__u32)regs->cx;

		if (cmd == FICLONE || cmd == FICLONERANGE || cmd == EXT4_IOC_SWAP_BOOT ||
		    cmd == XFS_IOC_EXCHANGE_RANGE || cmd == XFS_IOC_COMMIT_RANGE ||
		    cmd == BTRFS_IOC_ENCODED_WRITE || cmd == BTRFS_IOC_ENCODED_WRITE_32) {
			if (cmd == XFS_IOC_EXCHANGE_RANGE || cmd == XFS_IOC_COMMIT_RANGE)
				stat_add(YEET_STAT_UNPLACEABLE, 1);
			fd = (long)(int)regs->bx;
		}
		break;
	}
	case NR32_mmap2:
		if (ret < 0)
			return;
		flags = (long)regs->si;
		if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
			return;
		if (flags & MAP_ANONYMOUS)
			return;
		{
			struct file *f = fd_file(task, (long)(int)regs->di);

			if (f && (BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
				record_whole(f, YEET_F_MMAP, YEET_OP_MMAP, 0);
		}
		return;
	case NR32_open: case NR32_openat: case NR32_creat: {
		flags = id == NR32_open ? (long)regs->cx : id == NR32_openat ? (long)regs->dx : O_TRUNC;
		if ((flags & O_TRUNC) && (int)ret >= 0) {
			stat_add(YEET_STAT_TRUNC_SEQ, 2);
			record_whole(fd_file(task, (int)ret), YEET_F_TRUNC, YEET_OP_OPEN_TRUNC, 0);
		}
		return;
	}
	case NR32_openat2: case NR32_truncate: case NR32_truncate64: case NR32_io_submit:
	case NR32_old_mmap:
		/* would need 32-bit user structures or a path lookup */
		stat_add(YEET_STAT_UNPLACEABLE, 1);
		return;
	default:
		return;
	}
	if ((int)ret < 0)
		return;
	record_whole(fd_file(task, fd), 0, YEET_OP_FALLBACK, ret);
}

/* ---- syscall entry -------------------------------------------------------- */

static __always_inline void enter_fd(struct task_struct *task, struct pt_regs *regs, long id,
				     long fd, __u64 off_ptr)
{
	struct pending *p = task_pending(task, 1);
	struct file *f;
	struct inode *inode;

	if (!p)
		return; /* the exit falls back to a whole-file mark */
	p->nr = (__u32)id + 1;
	p->op = op_of(id);
	p->file = 0;
	p->trunc_inflight = 0;
	f = fd_file(task, fd);
	if (!file_watched(f))
		return; /* file == 0: nothing to do at exit */
	inode = BPF_CORE_READ(f, f_inode);
	p->file = (__u64)f;
	p->pos = BPF_CORE_READ(f, f_pos);
	p->size = BPF_CORE_READ(inode, i_size);
	p->fflags = BPF_CORE_READ(f, f_flags);
	p->seek = seek_seq(f);
	p->trunc = stat_get(YEET_STAT_TRUNC_SEQ);
	p->racy = stat_get(STAT_TRUNC_INFLIGHT) != 0;
	p->has_off = 0;
	p->marked = 0;
	if (off_ptr) {
		p->has_off = 1;
		p->off = 0;
		bpf_probe_read_user(&p->off, sizeof(p->off), (void *)off_ptr);
	}
	if (id == NR_ftruncate ||
	    (id == NR_fallocate &&
	     ((long)regs->si & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))))
		trunc_begin(p);
}

static __always_inline void lseek_bump(struct task_struct *task, long fd, int entering)
{
	struct file *f = fd_file(task, fd);
	__u64 key, first = entering ? 1 : 2, *v;

	if (!file_watched(f))
		return;
	key = (__u64)f;
	v = bpf_map_lookup_elem(&seeks, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&seeks, &key, &first, BPF_NOEXIST);
}

static __always_inline void enter_trunc_path(struct task_struct *task, long id)
{
	struct pending *p = task_pending(task, 1);

	if (!p)
		return;
	p->nr = (__u32)id + 1;
	p->op = YEET_OP_TRUNCATE;
	p->file = 0;
	p->marked = 0;
	p->trunc_inflight = 0;
	trunc_begin(p);
}

static __always_inline __u64 open_flags(struct pt_regs *regs, long id)
{
	__u64 flags = 0, si = regs->si, dx = regs->dx;

	/* every path fills the same stack slot (the verifier rejects an
	 * instruction that loads from a stack slot on one path and through
	 * pt_regs on another) */
	if (id == NR_open)
		bpf_probe_read_kernel(&flags, sizeof(flags), &si);
	else if (id == NR_openat)
		bpf_probe_read_kernel(&flags, sizeof(flags), &dx);
	else if (id == NR_creat)
		flags = O_TRUNC;
	else
		bpf_probe_read_user(&flags, sizeof(flags), (void *)dx); /* open_how.flags */
	return flags;
}

static __always_inline void enter_open(struct task_struct *task, struct pt_regs *regs, long id)
{
	struct pending *p;

	if (!(open_flags(regs, id) & O_TRUNC))
		return;
	p = task_pending(task, 1);
	if (!p)
		return;
	p->nr = (__u32)id + 1;
	p->op = YEET_OP_OPEN_TRUNC;
	p->file = 0;
	p->trunc_inflight = 0;
	trunc_begin(p);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(yeet_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (task->thread_info.status & TS_COMPAT)
		return 0; /* handled at exit */
	switch (id) {
	case NR_write: case NR_writev: case NR_pwrite64: case NR_pwritev: case NR_sendfile:
	case NR_ftruncate: case NR_fallocate:
		enter_fd(task, regs, id, (long)regs->di, 0);
		break;
	case NR_pwritev2:
		enter_fd(task, regs, id, (long)regs->di, 0);
		break;
	case NR_splice: case NR_copy_file_range:
		enter_fd(task, regs, id, (long)regs->dx, regs->r10);
		break;
	case NR_lseek:
		lseek_bump(task, (long)regs->di, 1);
		break;
	case NR_truncate:
		enter_trunc_path(task, id);
		break;
	case NR_open: case NR_openat: case NR_creat: case NR_openat2:
		enter_open(task, regs, id);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- syscall exit --------------------------------------------------------- */

static __always_inline __u64 min_u64(__u64 a, __u64 b) { return a < b ? a : b; }
static __always_inline __u64 max_u64(__u64 a, __u64 b) { return a > b ? a : b; }

/* write at the file position (write, writev, sendfile, splice/copy_file_range
 * without an offset, pwritev2 with offset -1) */
static __always_inline void exit_pos(struct pending *p, struct file *f, __u32 op, long ret)
{
	__u64 pos_enter = (__u64)p->pos, pos_exit, lo, hi;
	__u64 seek_now = seek_seq(f);

	if (seek_now != p->seek || (p->seek & 1)) {
		/* an lseek overlapped the write: the position proves nothing */
		stat_add(YEET_STAT_RACES, 1);
		record_whole(f, YEET_F_RACE, op, ret);
		return;
	}
	pos_exit = (__u64)BPF_CORE_READ(f, f_pos);
	/* our bytes lie in [pos_enter, pos_exit) when only reads/writes moved
	 * the position; the other terms are the exact answer when alone */
	lo = min_u64(pos_enter, pos_exit >= (__u64)ret ? pos_exit - ret : 0);
	hi = max_u64(pos_exit, pos_enter + ret);
	record_file(f, lo, hi, 0, op, ret);
}

/* O_APPEND / RWF_APPEND: bytes went to the end of file at write time */
static __always_inline void exit_append(struct pending *p, struct file *f, __u32 op, long ret)
{
	__u64 size_enter = (__u64)p->size, size_exit = (__u64)BPF_CORE_READ(f, f_inode, i_size);

	if (p->racy || stat_get(YEET_STAT_TRUNC_SEQ) != p->trunc ||
	    size_exit < size_enter + (__u64)ret) {
		/* a truncation may have moved the end of file under us */
		stat_add(YEET_STAT_RACES, 1);
		record_whole(f, YEET_F_APPEND | YEET_F_RACE, op, ret);
		return;
	}
	record_file(f, size_enter, size_exit, YEET_F_APPEND, op, ret);
}

static __always_inline void exit_fd(struct task_struct *task, struct pt_regs *regs,
				    struct pending *p, long id, long ret)
{
	struct file *f = (struct file *)p->file;
	struct file *now = fd_file(task, out_fd(id, regs));
	__u32 op = p->op;
	int append;

	if (now != f) {
		/* the descriptor was replaced during the call: mark both */
		record_whole(f, YEET_F_RACE, op, ret);
		record_whole(now, YEET_F_RACE, op, ret);
		return;
	}
	if (id == NR_ftruncate) {
		if (ret == 0) {
			__u64 len = regs->si;

			record_file(f, min_u64(len, (__u64)p->size), YEET_OFF_END, YEET_F_TRUNC, op, ret);
		}
		return;
	}
	if (id == NR_fallocate) {
		long mode = (long)regs->si;
		__u64 off = regs->dx, len = regs->r10;

		if (ret != 0)
			return;
		if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
			record_file(f, off, YEET_OFF_END, YEET_F_TRUNC, op, ret);
		else
			record_file(f, off, off + len, 0, op, ret);
		return;
	}
	if (ret <= 0)
		return;
	if ((p->fflags ^ BPF_CORE_READ(f, f_flags)) & O_APPEND) {
		/* O_APPEND toggled by fcntl during the call */
		record_whole(f, YEET_F_RACE, op, ret);
		return;
	}
	append = (p->fflags & O_APPEND) != 0;
	if (id == NR_pwritev2 && (regs->r9 & RWF_APPEND))
		append = 1;
	if (append) {
		exit_append(p, f, op, ret);
		return;
	}
	switch (id) {
	case NR_pwrite64:
	case NR_pwritev:
		record_file(f, regs->r10, regs->r10 + ret, 0, op, ret);
		return;
	case NR_pwritev2:
		if ((long)regs->r10 != -1) {
			record_file(f, regs->r10, regs->r10 + ret, 0, op, ret);
			return;
		}
		exit_pos(p, f, op, ret);
		return;
	case NR_splice:
	case NR_copy_file_range:
		if (p->has_off) {
			__u64 off_now = 0, lo, hi;

			bpf_probe_read_user(&off_now, sizeof(off_now), (void *)regs->r10);
			lo = min_u64(p->off, off_now >= (__u64)ret ? off_now - ret : 0);
			hi = max_u64(p->off + ret, off_now);
			record_file(f, lo, hi, 0, op, ret);
			return;
		}
		exit_pos(p, f, op, ret);
		return;
	default: /* write, writev, sendfile */
		exit_pos(p, f, op, ret);
		return;
	}
}

static __always_inline void exit_trunc_path(struct task_struct *task, struct pt_regs *regs,
					    struct pending *p, long ret)
{
	struct yeet_event *ev;
	struct fs_struct *fs;
	struct yeet_file_id none = {};

	if (ret != 0)
		return;
	ev = bpf_ringbuf_reserve(&notices, sizeof(*ev), 0);
	if (!ev) {
		stat_add(YEET_STAT_DROPS, 1);
		return;
	}
	fill_common(ev, YEET_EV_PATH_TRUNC, YEET_OP_TRUNCATE, &none, regs->si, p->marked, 0, ret);
	ev->root_ino = 0;
	ev->depth = 0;
	ev->complete = 0;
	bpf_probe_read_user_str(ev->names, sizeof(ev->names), (void *)regs->di);
	fs = BPF_CORE_READ(task, fs);
	if (fs) {
		struct inode *ci = BPF_CORE_READ(fs, pwd.dentry, d_inode);
		struct inode *ri = BPF_CORE_READ(fs, root.dentry, d_inode);

		if (ci) {
			ev->cwd.ino = BPF_CORE_READ(ci, i_ino);
			ev->cwd.dev = BPF_CORE_READ(ci, i_sb, s_dev);
			ev->cwd.gen = BPF_CORE_READ(ci, i_generation);
		}
		if (ri) {
			ev->root.ino = BPF_CORE_READ(ri, i_ino);
			ev->root.dev = BPF_CORE_READ(ri, i_sb, s_dev);
			ev->root.gen = BPF_CORE_READ(ri, i_generation);
		}
	}
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline void exit_mmap(struct task_struct *task, struct pt_regs *regs, long ret)
{
	long flags = (long)regs->r10;
	struct file *f;

	if ((unsigned long)ret >= (unsigned long)-4095L)
		return;
	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		return;
	if (flags & MAP_ANONYMOUS)
		return;
	f = fd_file(task, (long)(int)regs->r8);
	if (f && (BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
		record_whole(f, YEET_F_MMAP, YEET_OP_MMAP, 0);
}

static __always_inline void exit_ioctl(struct task_struct *task, struct pt_regs *regs, long ret)
{
	__u32 cmd = (__u32)regs->si;
	struct file *f;

	if (cmd != FICLONE && cmd != FICLONERANGE && cmd != EXT4_IOC_SWAP_BOOT &&
	    cmd != XFS_IOC_EXCHANGE_RANGE && cmd != XFS_IOC_COMMIT_RANGE &&
	    cmd != BTRFS_IOC_ENCODED_WRITE && cmd != BTRFS_IOC_ENCODED_WRITE_32)
		return;
	if (ret < 0)
		return;
	f = fd_file(task, (long)regs->di);
	if (cmd == FICLONERANGE) {
		__u64 args[4] = {}; /* src_fd, src_offset, src_length, dest_offset */

		bpf_probe_read_user(args, sizeof(args), (void *)regs->dx);
		record_file(f, args[3], args[2] ? args[3] + args[2] : YEET_OFF_END, 0,
			    YEET_OP_IOCTL, ret);
		return;
	}
	if (cmd == XFS_IOC_EXCHANGE_RANGE || cmd == XFS_IOC_COMMIT_RANGE) {
		__s32 fd1 = -1;

		bpf_probe_read_user(&fd1, sizeof(fd1), (void *)regs->dx);
		record_whole(fd_file(task, fd1), 0, YEET_OP_IOCTL, ret);
	}
	record_whole(f, 0, YEET_OP_IOCTL, ret);
}

/* struct iocb (uapi/linux/aio_abi.h), little endian */
struct yeet_iocb {
	__u64 data;
	__u32 key;
	__u32 rw_flags;
	__u16 opcode;
	__s16 reqprio;
	__u32 fildes;
	__u64 buf;
	__u64 nbytes;
	__s64 offset;
};

static __always_inline void exit_io_submit(struct task_struct *task, struct pt_regs *regs,
					   long ret)
{
	__u64 *iocbpp = (__u64 *)regs->dx;

	if (ret <= 0)
		return;
	if (ret > AIO_MAX_SCAN)
		stat_add(YEET_STAT_UNPLACEABLE, 1);
	for (int i = 0; i < AIO_MAX_SCAN; i++) {
		struct yeet_iocb cb = {};
		__u64 ptr = 0;
		struct file *f;

		if (i >= ret)
			break;
		if (bpf_probe_read_user(&ptr, sizeof(ptr), &iocbpp[i]) ||
		    bpf_probe_read_user(&cb, sizeof(cb), (void *)ptr)) {
			stat_add(YEET_STAT_UNPLACEABLE, 1);
			continue;
		}
		if (cb.opcode != IOCB_CMD_PWRITE && cb.opcode != IOCB_CMD_PWRITEV)
			continue;
		f = fd_file(task, (long)cb.fildes);
		if (!f)
			continue;
		if (cb.opcode == IOCB_CMD_PWRITEV || (cb.rw_flags & RWF_APPEND) ||
		    (BPF_CORE_READ(f, f_flags) & O_APPEND))
			record_whole(f, 0, YEET_OP_IO_SUBMIT, ret);
		else
			record_file(f, cb.offset, cb.offset + cb.nbytes, 0, YEET_OP_IO_SUBMIT, ret);
	}
}

/* exit without an entry record (storage unavailable at entry, or the program
 * was attached mid-call): whatever the call may have written, whole */
static __always_inline void exit_fallback(struct task_struct *task, struct pt_regs *regs,
					  long id, long ret)
{
	stat_add(YEET_STAT_FALLBACKS, 1);
	if (id == NR_truncate) {
		stat_add(YEET_STAT_UNPLACEABLE, 1);
		return;
	}
	record_whole(fd_file(task, out_fd(id, regs)), 0, YEET_OP_FALLBACK, ret);
}

static __always_inline int needs_entry(long id)
{
	switch (id) {
	case NR_write: case NR_writev: case NR_pwrite64: case NR_pwritev: case NR_pwritev2:
	case NR_sendfile: case NR_splice: case NR_copy_file_range: case NR_ftruncate:
	case NR_fallocate: case NR_truncate:
		return 1;
	default:
		return 0;
	}
}

SEC("tp_btf/sys_exit")
int BPF_PROG(yeet_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	long id = (long)regs->orig_ax;
	struct pending *p;

	if (task->thread_info.status & TS_COMPAT) {
		compat_exit(task, regs, id, ret);
		return 0;
	}
	if (id & X32_SYSCALL_BIT) {
		long base = id & ~X32_SYSCALL_BIT;

		if (needs_entry(base) || base == NR_mmap || base == NR_io_submit ||
		    base == NR_ioctl || base == NR_open || base == NR_openat ||
		    base == NR_creat || base == NR_openat2 || base >= 512)
			stat_add(YEET_STAT_UNPLACEABLE, 1);
		return 0;
	}
	switch (id) {
	case NR_lseek:
		lseek_bump(task, (long)regs->di, 0);
		return 0;
	case NR_mmap:
		exit_mmap(task, regs, ret);
		return 0;
	case NR_ioctl:
		exit_ioctl(task, regs, ret);
		return 0;
	case NR_io_submit:
		exit_io_submit(task, regs, ret);
		return 0;
	case NR_open: case NR_openat: case NR_creat: case NR_openat2:
		if (!(open_flags(regs, id) & O_TRUNC))
			return 0;
		p = task_pending(task, 0);
		if (p && p->nr == (__u32)id + 1) {
			p->nr = 0;
			trunc_end(p);
		}
		if (ret >= 0)
			record_whole(fd_file(task, ret), YEET_F_TRUNC, YEET_OP_OPEN_TRUNC, 0);
		return 0;
	default:
		break;
	}
	if (!needs_entry(id))
		return 0;
	p = task_pending(task, 0);
	if (!p || p->nr != (__u32)id + 1) {
		/* no entry record for this call: storage failed, or attached mid-call */
		exit_fallback(task, regs, id, ret);
		return 0;
	}
	p->nr = 0;
	if (id == NR_truncate) {
		trunc_end(p);
		exit_trunc_path(task, regs, p, ret);
		return 0;
	}
	if (p->file)
		exit_fd(task, regs, p, id, ret);
	trunc_end(p);
	return 0;
}

/* ---- inode hooks: find the inode of truncate(path) ------------------------ */

static __always_inline void inode_changed(struct inode *inode)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending *p = task_pending(task, 0);

	if (!p || p->nr != NR_truncate + 1)
		return;
	if (record_inode(inode, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_TRUNC, YEET_OP_INODE))
		p->marked++;
}

SEC("tp_btf/writeback_mark_inode_dirty")
int BPF_PROG(yeet_mark_inode_dirty, struct inode *inode, int flags)
{
	inode_changed(inode);
	return 0;
}

SEC("tp_btf/ext4_mark_inode_dirty")
int BPF_PROG(yeet_ext4_mark_inode_dirty, struct inode *inode, unsigned long ip)
{
	inode_changed(inode);
	return 0;
}

/* ---- page cache: folios dirtied outside any traced syscall ---------------- */

SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(yeet_dirty_folio, struct folio *folio, struct address_space *mapping)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending *p = task_pending(task, 0);
	unsigned long flags = 0, order = 0;
	struct inode *inode;
	__u64 start;

	if (p && p->nr != 0)
		return 0; /* the syscall exit accounts for it */
	if (!mapping)
		return 0;
	inode = BPF_CORE_READ(mapping, host);
	if (!is_reg(inode))
		return 0;
	if (bpf_core_field_exists(struct folio___old, flags))
		flags = BPF_CORE_READ((struct folio___old *)folio, flags);
	else
		flags = BPF_CORE_READ(folio, flags.f);
	if (flags & (1UL << bpf_core_enum_value(enum pageflags, PG_head)))
		order = BPF_CORE_READ(folio, _flags_1) & 0xff;
	start = (__u64)BPF_CORE_READ(folio, index) << 12;
	record_inode(inode, start, start + (4096ULL << (order & 31)), 0, YEET_OP_FOLIO);
	return 0;
}

/* ---- direct I/O: exact ranges when the write completes -------------------- */

SEC("tp_btf/iomap_dio_rw_begin")
int BPF_PROG(yeet_dio_begin, struct kiocb *iocb, struct iov_iter *iter, unsigned int dio_flags,
	     unsigned long done_before)
{
	__u64 key = (__u64)iocb;
	__u32 one = 1;

	if (!BPF_CORE_READ(iter, data_source))
		return 0;
	if (!file_watched(BPF_CORE_READ(iocb, ki_filp)))
		return 0;
	bpf_map_update_elem(&dio_writes, &key, &one, BPF_ANY);
	return 0;
}

SEC("tp_btf/iomap_dio_complete")
int BPF_PROG(yeet_dio_complete, struct kiocb *iocb, int error, long ret)
{
	__u64 key = (__u64)iocb, pos;
	struct file *f;

	if (!bpf_map_lookup_elem(&dio_writes, &key))
		return 0;
	bpf_map_delete_elem(&dio_writes, &key);
	f = BPF_CORE_READ(iocb, ki_filp);
	pos = (__u64)BPF_CORE_READ(iocb, ki_pos);
	if (ret > 0 && !error)
		record_file(f, pos >= (__u64)ret ? pos - ret : 0, pos, 0, YEET_OP_DIO, ret);
	else
		record_whole(f, 0, YEET_OP_DIO, ret);
	return 0;
}

/* ---- io_uring: whole file when a write-like request completes -------------- */

static __always_inline int uring_writes(__u8 opcode)
{
	switch (opcode) {
	case IORING_OP_WRITEV: case IORING_OP_WRITE_FIXED: case IORING_OP_FALLOCATE:
	case IORING_OP_WRITE: case IORING_OP_SPLICE: case IORING_OP_FTRUNCATE:
	case IORING_OP_WRITEV_FIXED:
		return 1;
	default:
		return 0;
	}
}

static __always_inline int uring_open_trunc(struct io_kiocb *req)
{
	__u8 opcode = BPF_CORE_READ(req, opcode);
	struct io_open *open = (struct io_open *)req;

	if (opcode != IORING_OP_OPENAT && opcode != IORING_OP_OPENAT2)
		return 0;
	return (BPF_CORE_READ(open, how.flags) & O_TRUNC) != 0;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(yeet_uring_submit, struct io_kiocb *req)
{
	__u64 flags = BPF_CORE_READ_BITFIELD_PROBED(req, flags);

	if (!(flags & REQ_F_CQE_SKIP))
		return 0;
	/* no completion event will tell us when it lands */
	if (uring_writes(BPF_CORE_READ(req, opcode)) || uring_open_trunc(req))
		stat_add(YEET_STAT_UNPLACEABLE, 1);
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(yeet_uring_complete, void *ring, void *reqp, struct io_uring_cqe *cqe)
{
	struct io_kiocb *req = reqp;
	__u8 opcode;

	if (!req)
		return 0;
	opcode = BPF_CORE_READ(req, opcode);
	if (uring_writes(opcode)) {
		struct file *f = BPF_CORE_READ(req, file);

		if (opcode == IORING_OP_FTRUNCATE)
			stat_add(YEET_STAT_TRUNC_SEQ, 2);
		record_whole(f, 0, YEET_OP_IO_URING, BPF_CORE_READ(cqe, res));
		return 0;
	}
	if (uring_open_trunc(req)) {
		struct io_open *open = (struct io_open *)req;
		__s32 res = BPF_CORE_READ(cqe, res);

		if (res < 0)
			return 0;
		stat_add(YEET_STAT_TRUNC_SEQ, 2);
		if (BPF_CORE_READ(open, file_slot)) {
			stat_add(YEET_STAT_UNPLACEABLE, 1); /* fixed file slot */
			return 0;
		}
		record_whole(fd_file(bpf_get_current_task_btf(), res), YEET_F_TRUNC,
			     YEET_OP_IO_URING, res);
	}
	return 0;
}

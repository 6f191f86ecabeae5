/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_syscalls.h - turn write-like system calls into marks.
 *
 * Invariant: a mark is recorded at syscall *exit* (after the bytes landed),
 * and it contains every byte the call may have changed:
 *  - explicit offsets (pwrite*, splice/copy_file_range offsets, fallocate,
 *    ftruncate) are exact;
 *  - file-position writes use [pos at entry, pos at exit) widened by the
 *    byte count, and become whole-file when an lseek on the same open file
 *    overlapped the call (the position then proves nothing);
 *  - O_APPEND / RWF_APPEND use [size at entry, size at exit) (RWF_NOAPPEND:
 *    the offset, even on an appending descriptor);
 *  - a write that starts past the old end of file also covers the gap (it
 *    now reads as zeros), and any write that raced a truncation of the same
 *    inode becomes whole-file;
 *  - an exit without an entry record falls back to whole-file (or rescan).
 *
 * Files of a filesystem the filesystem hooks watch (YEET_WATCH_FS, yeet_fs.h)
 * are left alone here: those hooks see their changes where they land.
 *
 * Part of yeet_trace.bpf.c (one translation unit); not a standalone header.
 */
#ifndef YEET_SYSCALLS_H
#define YEET_SYSCALLS_H

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
#define NR_rename 82
#define NR_link 86
#define NR_renameat 264
#define NR_linkat 265
#define NR_renameat2 316
#define X32_SYSCALL_BIT 0x40000000
#define TS_COMPAT 0x0002

#define O_TRUNC 01000
#define O_APPEND 02000
#define FMODE_WRITE 0x2
#define RWF_APPEND 0x10
#define RWF_NOAPPEND 0x20
#define MAP_SHARED 0x01
#define MAP_SHARED_VALIDATE 0x03
#define MAP_TYPE 0x0f
#define MAP_ANONYMOUS 0x20
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#define FALLOC_FL_INSERT_RANGE 0x20

/* Per task: what the syscall in progress needs at its exit. */
struct pending {
	__u32 nr;        /* syscall number + 1; 0: nothing pending */
	__u32 op;
	__u64 file;      /* struct file * at entry, if watched (0: not, or none) */
	__u64 inode;     /* its inode (truncate(path): the one the inode hooks found) */
	__u64 dentry;
	__u64 root_ino;
	struct yeet_file_id id;
	__u64 tglobal;   /* truncations anywhere, at entry */
	__s64 pos;       /* f_pos at entry */
	__s64 size;      /* i_size at entry */
	__u64 seek;      /* lseek sequence of the open file at entry */
	__u64 birth;     /* ... and the cache entry it belongs to */
	__u64 off;       /* *off_out at entry (splice, copy_file_range) */
	__u32 rgen;      /* rename and roots generations at entry */
	__u32 wgen;
	__u32 fflags;    /* f_flags at entry */
	__u32 has_off;
	__u32 marked;    /* inodes marked by the inode hooks (truncate(path)) */
	__u32 unknown;   /* 1: the file cache had no room; whole file at exit */
	__u32 counted;   /* 1: counted in GEN_PATH_TRUNCS */
	__u32 pad;
	__u64 target;    /* the inode the call writes to, watched or not (page cache hook) */
	/* this task's last open file that is not watched (a lookup-free answer
	 * for the common case), valid for these generations */
	__u64 u_file;
	__u64 u_inode;
	__u64 u_target;
	__u32 u_rgen;
	__u32 u_wgen;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending SEC(".maps");

/* struct inode * -> value of GEN_TRUNCS at its latest truncation-like call */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} truncs SEC(".maps");

static __always_inline struct pending *task_pending(struct task_struct *task, int create)
{
	return bpf_task_storage_get(&pending, task, 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* A truncation-like call (of a watched inode) landed: writers in flight must
 * not trust their size snapshot. Called before the call's own mark. */
static __always_inline void truncated(__u64 inode)
{
	__u32 idx = GEN_TRUNCS;
	__u64 *g = bpf_map_lookup_elem(&gens, &idx), now, *v, old;

	if (!inode || !g)
		return;
	now = __sync_fetch_and_add(g, 1) + 1;
	stat_add(YEET_STAT_TRUNC_SEQ, 1);
	v = bpf_map_lookup_elem(&truncs, &inode);
	if (!v) {
		if (!bpf_map_update_elem(&truncs, &inode, &now, BPF_NOEXIST))
			return;
		v = bpf_map_lookup_elem(&truncs, &inode);
		if (!v) {
			stat_add(YEET_STAT_UNPLACEABLE, 1);
			return;
		}
	}
	/* store max(*v, now): a concurrent truncation of the same inode must
	 * not lower it */
	for (int i = 0; i < 4; i++) {
		old = *v;
		if (old >= now || __sync_val_compare_and_swap(v, old, now) == old)
			return;
	}
	stat_add(YEET_STAT_UNPLACEABLE, 1); /* could not tell: rescan */
}

/* was the pending call's inode truncated since its entry? (no lookup when
 * nothing was truncated anywhere meanwhile) */
static __always_inline int truncated_since(struct pending *p)
{
	__u64 *v;

	if (gen_get(GEN_TRUNCS) == p->tglobal)
		return 0;
	v = bpf_map_lookup_elem(&truncs, &p->inode);
	return v && *v > p->tglobal;
}

static __always_inline __u64 file_inode_addr(struct file *f)
{
	return f ? (__u64)BPF_CORE_READ(f, f_inode) : 0;
}

static __always_inline void renamed(void)
{
	__u32 idx = GEN_RENAME;
	__u64 *v = bpf_map_lookup_elem(&gens, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* a watched open file was truncated (O_TRUNC, 32-bit ftruncate, io_uring):
 * the whole file, after telling writers in flight */
static __always_inline void truncated_whole(struct scratch *s, struct file *f, __u32 op,
					    long ret)
{
	struct fview v = {};
	struct fstate *st;

	if (!f)
		return;
	file_view(s, f, &v);
	st = file_state(s, f, &v);
	if (st && !st->watched)
		return;
	truncated(v.inode);
	record_whole(s, f, YEET_F_TRUNC, op, ret);
}

static __always_inline int gens_moved(struct pending *p)
{
	return names_gen() != p->rgen || (__u32)gen_get(GEN_ROOTS) != p->wgen;
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

/* calls whose exit needs what their entry saw */
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

/* The descriptor written to by an fd-based write-like syscall. */
static __always_inline long out_fd(long id, struct pt_regs *regs)
{
	if (id == NR_splice || id == NR_copy_file_range)
		return (long)regs->dx;
	return (long)regs->di;
}

static __always_inline __u64 open_flags(struct pt_regs *regs, long id)
{
	__u64 flags = 0, si = regs->si, dx = regs->dx;

	/* every path fills the same stack slot (the verifier rejects an
	 * instruction that loads from the stack on one path and through
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

/* ---- entry ------------------------------------------------------------------- */

static __always_inline void enter_fd(struct scratch *s, struct task_struct *task, long id,
				     long fd, __u64 off_ptr)
{
	struct pending *p = task_pending(task, 1);
	struct fview v = {};
	struct fstate *st;
	struct file *f;
	__u64 inode;

	if (!p)
		return; /* the exit falls back to a whole-file mark */
	p->nr = (__u32)id + 1;
	p->op = op_of(id);
	p->file = 0;
	p->inode = 0;
	p->target = 0;
	p->marked = 0;
	p->unknown = 0;
	p->rgen = names_gen();
	p->wgen = (__u32)gen_get(GEN_ROOTS);
	f = fd_file(task, fd);
	if (!f)
		return;
	/* the common case for files nobody watches: one 8-byte read */
	inode = (__u64)BPF_CORE_READ(f, f_inode);
	if (p->u_file == (__u64)f && p->u_inode == inode && p->u_rgen == p->rgen &&
	    p->u_wgen == p->wgen) {
		p->target = p->u_target;
		return; /* file == 0: nothing to do at exit, unless a rename lands */
	}
	st = file_state_cached(f, inode);
	if (!st || st->watched)
		file_view(s, f, &v);
	if (!st) {
		st = file_state(s, f, &v);
		if (!st) {
			p->file = (__u64)f;
			p->unknown = 1;
			return;
		}
	}
	p->target = st->inode;
	if (!st->watched || (st->devflags & YEET_WATCH_FS)) {
		/* nobody watches it, or the filesystem hooks do */
		p->u_file = (__u64)f;
		p->u_inode = inode;
		p->u_target = st->inode;
		p->u_rgen = p->rgen;
		p->u_wgen = p->wgen;
		return;
	}
	p->file = (__u64)f;
	p->inode = v.inode;
	p->dentry = v.dentry;
	p->root_ino = st->root_ino;
	p->id = st->id;
	p->pos = v.pos;
	p->fflags = v.flags;
	p->tglobal = gen_get(GEN_TRUNCS);
	p->size = inode_size(v.inode);
	p->seek = st->seek;
	p->birth = st->birth;
	p->has_off = 0;
	if (off_ptr) {
		p->has_off = 1;
		p->off = 0;
		bpf_probe_read_user(&p->off, sizeof(p->off), (void *)off_ptr);
	}
}

static __always_inline void enter_trunc_path(struct task_struct *task, long id)
{
	struct pending *p = task_pending(task, 1);

	if (!p)
		return;
	p->nr = (__u32)id + 1;
	p->op = YEET_OP_TRUNCATE;
	p->file = 0;
	p->inode = 0;
	p->marked = 0;
	p->unknown = 0;
	p->counted = 1;
	gen_add(GEN_PATH_TRUNCS, 1); /* wakes up the inode hooks */
}

static __always_inline void lseek_bump(struct scratch *s, struct task_struct *task, long fd)
{
	struct file *f = fd_file(task, fd);
	struct fview v = {};
	struct fstate *st;

	if (!f)
		return;
	file_view(s, f, &v);
	st = file_state(s, f, &v);
	if (st && st->watched)
		__sync_fetch_and_add(&st->seek, 1);
}

static __always_inline void sys_enter(struct scratch *s, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (task->thread_info.status & TS_COMPAT)
		return; /* 32-bit calls are handled at exit */
	switch (id) {
	case NR_write: case NR_writev: case NR_pwrite64: case NR_pwritev: case NR_pwritev2:
	case NR_sendfile: case NR_ftruncate: case NR_fallocate:
		enter_fd(s, task, id, (long)regs->di, 0);
		break;
	case NR_splice: case NR_copy_file_range:
		enter_fd(s, task, id, (long)regs->dx, regs->r10);
		break;
	case NR_lseek:
		lseek_bump(s, task, (long)regs->di);
		break;
	case NR_truncate:
		enter_trunc_path(task, id);
		break;
	default:
		break;
	}
}

/* ---- exit ---------------------------------------------------------------------- */

/* the watched file of a pending call, marked with the identity seen at entry */
#define RECORD_P(s, p, start, end, op_start, op_end, flags, op, ret) \
	record_id(s, (p)->inode, (p)->dentry, (p)->root_ino, &(p)->id, start, end, op_start, \
		  op_end, flags, op, ret)

/* A write landed somewhere in [lo, hi): add the hole it may have opened past
 * the old end of file; give up on ranges if the inode was truncated meanwhile. */
static __always_inline void exit_range(struct scratch *s, struct pending *p, __u64 lo, __u64 hi,
				       __u32 flags, __u32 op, long ret)
{
	__u64 size_enter = (__u64)p->size, start = lo;

	if (truncated_since(p)) {
		stat_add(YEET_STAT_RACES, 1);
		RECORD_P(s, p, 0, YEET_OFF_END, lo, hi, flags | YEET_F_WHOLE | YEET_F_RACE, op, ret);
		return;
	}
	if (lo > size_enter && hi > size_enter)
		start = size_enter; /* the gap [old end, lo) now reads as zeros */
	RECORD_P(s, p, start, hi, lo, hi, flags, op, ret);
}

/* write at the file position (write, writev, sendfile, splice/copy_file_range
 * without an offset, pwritev2 with offset -1) */
static __always_inline void exit_pos(struct scratch *s, struct pending *p, __s64 pos, __u32 op,
				     long ret)
{
	__u64 pos_enter = (__u64)p->pos, pos_exit = (__u64)pos, key = p->file;
	struct fstate *st = bpf_map_lookup_elem(&fcache, &key);

	if (!st || st->birth != p->birth || st->seek != p->seek || (p->seek & 1)) {
		/* an lseek overlapped the write (or the cache forgot whether one
		 * did): the position proves nothing */
		stat_add(YEET_STAT_RACES, 1);
		RECORD_P(s, p, 0, YEET_OFF_END, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_RACE, op, ret);
		return;
	}
	/* with only reads and writes moving the position (they are serialized
	 * by f_pos_lock and only advance it), our bytes lie in
	 * [pos_enter, pos_exit); the other terms make it exact when alone */
	exit_range(s, p, min_u64(pos_enter, pos_exit >= (__u64)ret ? pos_exit - ret : 0),
		   max_u64(pos_exit, pos_enter + ret), 0, op, ret);
}

/* O_APPEND / RWF_APPEND: the bytes went to the end of file at write time */
static __always_inline void exit_append(struct scratch *s, struct pending *p, __u32 op, long ret)
{
	__u64 size_enter = (__u64)p->size, size_exit = (__u64)inode_size(p->inode);

	if (truncated_since(p) || size_exit < size_enter + ret) {
		/* a truncation may have moved the end of file under us */
		stat_add(YEET_STAT_RACES, 1);
		RECORD_P(s, p, 0, YEET_OFF_END, 0, YEET_OFF_END,
			 YEET_F_WHOLE | YEET_F_APPEND | YEET_F_RACE, op, ret);
		return;
	}
	RECORD_P(s, p, size_enter, size_exit, size_exit - ret, size_exit, YEET_F_APPEND, op, ret);
}

static __always_inline void exit_fd(struct scratch *s, struct task_struct *task,
				    struct pt_regs *regs, struct pending *p, long id, long ret)
{
	struct file *f = (struct file *)p->file;
	struct file *now = fd_file(task, out_fd(id, regs));
	__u32 flags_now, op = p->op;
	int append;

	if (now != f || p->unknown) {
		/* the descriptor was replaced during the call: mark both */
		record_whole(s, f, YEET_F_RACE, op, ret);
		if (now != f)
			record_whole(s, now, YEET_F_RACE, op, ret);
		return;
	}
	if (id == NR_ftruncate) {
		if (ret == 0) {
			truncated(p->inode);
			RECORD_P(s, p, min_u64(regs->si, (__u64)p->size), YEET_OFF_END, regs->si,
				 YEET_OFF_END, YEET_F_TRUNC, op, ret);
		}
		return;
	}
	if (id == NR_fallocate) {
		long mode = (long)regs->si;
		__u64 off = regs->dx, len = regs->r10;

		if (ret != 0)
			return;
		if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
			truncated(p->inode);
			RECORD_P(s, p, off, YEET_OFF_END, off, YEET_OFF_END, YEET_F_TRUNC, op, ret);
		} else {
			exit_range(s, p, off, off + len, 0, op, ret);
		}
		return;
	}
	if (ret <= 0)
		return;
	flags_now = BPF_CORE_READ(f, f_flags);
	if ((p->fflags ^ flags_now) & O_APPEND) {
		/* O_APPEND toggled by fcntl during the call */
		RECORD_P(s, p, 0, YEET_OFF_END, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_RACE, op, ret);
		return;
	}
	append = (p->fflags & O_APPEND) != 0;
	if (id == NR_pwritev2 && (regs->r9 & RWF_APPEND))
		append = 1;
	if (id == NR_pwritev2 && (regs->r9 & RWF_NOAPPEND))
		append = 0; /* at its offset, appending descriptor or not */
	if (append) {
		exit_append(s, p, op, ret);
		return;
	}
	switch (id) {
	case NR_pwrite64:
	case NR_pwritev:
		exit_range(s, p, regs->r10, regs->r10 + ret, 0, op, ret);
		return;
	case NR_pwritev2:
		if ((long)regs->r10 != -1)
			exit_range(s, p, regs->r10, regs->r10 + ret, 0, op, ret);
		else
			exit_pos(s, p, BPF_CORE_READ(f, f_pos), op, ret);
		return;
	case NR_splice:
	case NR_copy_file_range:
		if (p->has_off) {
			__u64 off_now = 0;

			bpf_probe_read_user(&off_now, sizeof(off_now), (void *)regs->r10);
			exit_range(s, p, min_u64(p->off, off_now >= (__u64)ret ? off_now - ret : 0),
				   max_u64(p->off + ret, off_now), 0, op, ret);
		} else {
			exit_pos(s, p, BPF_CORE_READ(f, f_pos), op, ret);
		}
		return;
	default: /* write, writev, sendfile */
		exit_pos(s, p, BPF_CORE_READ(f, f_pos), op, ret);
		return;
	}
}

/* truncate(path): no descriptor. The inode hooks (below, in the main file)
 * may have found the inode; userspace resolves the path as well. */
static __always_inline void exit_trunc_path(struct scratch *s, struct task_struct *task,
					    __u64 path, __u64 length, struct pending *p, long ret)
{
	struct yeet_file_id none = {};
	struct yeet_event *ev;
	struct fs_struct *fs;

	if (ret != 0)
		return;
	if (p && p->inode) { /* again, now that the new size is in place */
		truncated(p->inode);
		record_inode(s, p->inode, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_TRUNC,
			     YEET_OP_TRUNCATE);
	}
	ev = bpf_ringbuf_reserve(&notices, sizeof(*ev), 0);
	if (!ev) {
		stat_add(YEET_STAT_DROPS, 1);
		return;
	}
	ev->type = YEET_EV_PATH_TRUNC;
	ev->op = YEET_OP_TRUNCATE;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->tid = (__u32)bpf_get_current_pid_tgid();
	ev->id = none;
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->start = length;
	ev->end = p ? p->marked : 0;
	ev->op_start = ev->op_end = 0;
	ev->flags = 0;
	ev->ret = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->root_ino = 0;
	ev->depth = 0;
	ev->complete = 0;
	bpf_probe_read_user_str(ev->names, sizeof(ev->names), (void *)path);
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

#endif /* YEET_SYSCALLS_H */

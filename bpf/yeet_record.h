/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_record.h - the recording core: maps, the watched-tree filter and
 * record(), which merges one mark into the per-inode range map.
 *
 * Invariant: record() either merges the mark into the current epoch's entry
 * of the inode (creating it, and then sending one "inode became dirty"
 * notice), or counts a drop. A range list that would exceed YEET_MAX_RANGES
 * becomes a whole-file mark. Ranges only ever grow.
 *
 * Part of yeet_trace.bpf.c (one translation unit); not a standalone header.
 */
#ifndef YEET_RECORD_H
#define YEET_RECORD_H

#ifndef EEXIST
#define EEXIST 17
#endif
#define S_IFMT 00170000
#define S_IFREG 0100000

const volatile struct yeet_config cfg = {};
/* never used: makes the compiler describe the event layout in the object's
 * BTF, where tests compare it with the Python mirror */
const volatile struct yeet_event *const yeet_abi_event = 0;

/* ---- maps ------------------------------------------------------------------ */

/* The range map. Keys carry the epoch they were recorded in; userspace bumps
 * `epoch`, waits for running programs (see sync_outer), then reads and deletes
 * the previous epoch's entries while new ones keep arriving. */
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

/* Never read by the programs: updating a map-in-map makes the kernel wait for
 * every running BPF program (synchronize_rcu) before the syscall returns,
 * which is how userspace knows nothing still writes into the old epoch. */
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
	__type(key, __u32);    /* kernel dev_t */
	__type(value, __u32);  /* YEET_WATCH_* */
} watched_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct yeet_dir_key);
	__type(value, __u32);
} watched_dirs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, YEET_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} notices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} verbose_rb SEC(".maps");

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

static __always_inline __u64 min_u64(__u64 a, __u64 b) { return a < b ? a : b; }
static __always_inline __u64 max_u64(__u64 a, __u64 b) { return a > b ? a : b; }

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

/* A typed kernel pointer (a tracepoint argument) as a plain number: global
 * functions accept only scalars, and the verifier would not let it decay. */
static __always_inline __u64 as_scalar(void *ptr)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &ptr);
	return v;
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

struct mark {
	__u64 start;
	__u64 end;
	__u64 op_start;
	__u64 op_end;
	__u32 flags;
	__u32 op;
	__s64 ret;
};

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
 * Two passes and no remembered slot index: the verifier then sees one state
 * per loop iteration instead of one per (merged slot, free slot) pair. */
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

/* Record a mark for an inode (dentry: how it was reached, for the subtree
 * filter and names). Returns 1 if the inode is watched. A global BPF
 * function: the verifier checks it once, not once per call site. Pointers
 * arrive as plain numbers and are only read through bpf_probe_read_kernel. */
__noinline int record(__u64 inode_addr, __u64 dentry_addr, struct mark *m)
{
	struct inode *inode = (struct inode *)inode_addr;
	struct dentry *dentry = (struct dentry *)dentry_addr;
	struct yeet_key key = {};
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
	key.id.ino = BPF_CORE_READ(inode, i_ino);
	key.id.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.id.gen = BPF_CORE_READ(inode, i_generation);

	if (cfg.verbose) { /* first: `yeet trace` shows even what the map has no room for */
		ev = bpf_ringbuf_reserve(&verbose_rb, sizeof(*ev), 0);
		if (ev) {
			fill_common(ev, YEET_EV_WRITE, m->op, &key.id, start, end, flags, m->ret);
			ev->op_start = m->op_start;
			ev->op_end = m->op_end;
			fill_names(ev, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_VERBOSE_LOST, 1);
		}
	}

	ep = bpf_map_lookup_elem(&epoch, &zero);
	if (!ep) {
		stat_add(YEET_STAT_DROPS, 1);
		return 1;
	}
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
			fill_common(ev, YEET_EV_DIRTY, m->op, &key.id, start, end, flags, m->ret);
			ev->op_start = m->op_start;
			ev->op_end = m->op_end;
			fill_names(ev, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_NOTICE_LOST, 1);
		}
	}
	return 1;
}

/* mark [start, end) for the bytes [op_start, op_end) a call wrote */
static __always_inline int record_op(struct file *f, __u64 start, __u64 end, __u64 op_start,
				     __u64 op_end, __u32 flags, __u32 op, __s64 ret)
{
	struct mark m = { .start = start, .end = end, .op_start = op_start, .op_end = op_end,
			  .flags = flags, .op = op, .ret = ret };

	if (!f)
		return 0;
	return record((__u64)BPF_CORE_READ(f, f_inode), (__u64)BPF_CORE_READ(f, f_path.dentry), &m);
}

static __always_inline int record_file(struct file *f, __u64 start, __u64 end, __u32 flags,
				       __u32 op, __s64 ret)
{
	return record_op(f, start, end, start, end, flags, op, ret);
}

static __always_inline int record_whole(struct file *f, __u32 flags, __u32 op, __s64 ret)
{
	return record_file(f, 0, YEET_OFF_END, flags | YEET_F_WHOLE, op, ret);
}

/* inode: a scalar already (from a probe read) */
static __always_inline int record_inode(struct inode *inode, __u64 start, __u64 end, __u32 flags,
					__u32 op)
{
	struct mark m = { .start = start, .end = end, .op_start = start, .op_end = end,
			  .flags = flags, .op = op, .ret = 0 };

	return record((__u64)inode, (__u64)inode_alias(inode), &m);
}

#endif /* YEET_RECORD_H */

/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_record.h - the recording core: maps, the watched-tree filter, the
 * per-open-file cache and record(), which merges one mark into the
 * per-inode range map.
 *
 * Invariant: record() either merges the mark into the current epoch's entry
 * of the inode (creating it, and then sending one "inode became dirty"
 * notice), or counts a drop. A range list that would exceed YEET_MAX_RANGES
 * becomes a whole-file mark. Ranges only ever grow. A cached "watched?"
 * answer is used only while no rename/link happened and the roots did not
 * change since it was computed.
 *
 * Kernel memory behind plain numbers (file descriptors lead to those) is read
 * with one bpf_probe_read_kernel per structure ("windows"); fields are then
 * taken at their CO-RE offsets, falling back to a single read when a field
 * lies outside the window on some kernel.
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

/* [0]: current epoch (userspace), [1]: rename/link generation (bumped here
 * after every rename or link), [2]: roots generation (userspace),
 * [3]: truncations so far, [4]: truncate(path) calls in flight */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} gens SEC(".maps");
#define GEN_EPOCH 0
#define GEN_RENAME 1
#define GEN_ROOTS 2
#define GEN_TRUNCS 3
#define GEN_PATH_TRUNCS 4

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

/* per CPU, so counting never bounces a cache line between CPUs */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
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

/* What we know about an open file (key: struct file *). */
struct fstate {
	__u64 inode;     /* the inode the answer is about */
	__u64 dentry;
	__u64 root_ino;  /* watched directory it lies under (0: unknown) */
	__u64 seek;      /* lseek sequence: +1 at entry and exit (odd: in flight) */
	__u64 birth;     /* tells a recreated entry from the one a writer saw */
	struct yeet_file_id id;
	__u32 rgen;      /* gens[GEN_RENAME] when computed */
	__u32 wgen;      /* gens[GEN_ROOTS] when computed */
	__u32 watched;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct fstate);
} fcache SEC(".maps");

/* ---- small helpers --------------------------------------------------------- */

static __always_inline void stat_add(__u32 idx, __s64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v) /* atomic: a program in interrupt context may nest */
		__sync_fetch_and_add(v, n);
}

static __always_inline __u64 gen_get(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&gens, &idx);

	return v ? *v : 0;
}

static __always_inline void gen_add(__u32 idx, __s64 n)
{
	__u64 *v = bpf_map_lookup_elem(&gens, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline __u64 min_u64(__u64 a, __u64 b) { return a < b ? a : b; }
static __always_inline __u64 max_u64(__u64 a, __u64 b) { return a > b ? a : b; }

/* one read for a window of a structure; field at its CO-RE offset */
#define WIN_READ(win, type, base) \
	bpf_probe_read_kernel(&(win), min_u64(sizeof(win), bpf_core_type_size(type)), (void *)(base))
#define WIN_GET(win, base, type, field, T) ({					\
	T __v = 0;								\
	__u32 __o = bpf_core_field_offset(type, field);			\
	if (__o + sizeof(T) <= min_u64(sizeof(win), bpf_core_type_size(type)))	\
		__v = *(T *)((void *)&(win) + __o);				\
	else									\
		bpf_probe_read_kernel(&__v, sizeof(T), (void *)(base) + __o);	\
	__v;									\
})

struct win128 {
	__u64 q[16];
};

struct win120 {
	__u64 q[15];
};

struct win64 {
	__u64 q[8];
};

struct fview {
	__u64 inode;
	__u64 dentry;
	__s64 pos;
	__u32 flags;
	__u32 mode;
};

static __always_inline void file_view(struct file *f, struct fview *v)
{
	struct win120 w = {};

	WIN_READ(w, struct file, f);
	v->inode = WIN_GET(w, f, struct file, f_inode, __u64);
	v->dentry = WIN_GET(w, f, struct file, f_path.dentry, __u64);
	v->pos = WIN_GET(w, f, struct file, f_pos, __s64);
	v->flags = WIN_GET(w, f, struct file, f_flags, __u32);
	v->mode = WIN_GET(w, f, struct file, f_mode, __u32);
}

struct iview {
	__u64 ino;
	__u64 sb;
	__s64 size;
	__u32 nlink;
	__u32 gen;
	__u16 mode;
};

static __always_inline void inode_view(__u64 inode, struct iview *v)
{
	struct win128 w = {};

	WIN_READ(w, struct inode, inode);
	v->mode = WIN_GET(w, inode, struct inode, i_mode, __u16);
	v->sb = WIN_GET(w, inode, struct inode, i_sb, __u64);
	v->ino = WIN_GET(w, inode, struct inode, i_ino, __u64);
	v->nlink = WIN_GET(w, inode, struct inode, i_nlink, __u32);
	v->size = WIN_GET(w, inode, struct inode, i_size, __s64);
	v->gen = WIN_GET(w, inode, struct inode, i_generation, __u32);
}

static __always_inline __u32 sb_dev(__u64 sb)
{
	return BPF_CORE_READ((struct super_block *)sb, s_dev);
}

static __always_inline __s64 inode_size(__u64 inode)
{
	return BPF_CORE_READ((struct inode *)inode, i_size);
}

static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	struct file *f = NULL;
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **fds;

	if (fd < 0)
		return NULL;
	files = task->files; /* trusted task: direct loads */
	if (!files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || (unsigned long)fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline __u64 dentry_alias(__u64 inode)
{
	struct hlist_node *first = BPF_CORE_READ((struct inode *)inode, i_dentry.first);

	if (!first)
		return 0;
	return (__u64)first - bpf_core_field_offset(struct dentry, d_u.d_alias);
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
 * Is an inode (with its view v, reached through dentry, which may be 0)
 * watched? 0: no. 1: yes; *root_ino = watched directory it lies under
 * (0: unknown). Fills id.
 */
static __always_inline int watched(struct iview *v, __u64 dentry, __u64 *root_ino,
				   struct yeet_file_id *id)
{
	struct yeet_dir_key k = {};
	__u32 dev, *w;

	*root_ino = 0;
	if ((v->mode & S_IFMT) != S_IFREG)
		return 0;
	dev = sb_dev(v->sb);
	w = bpf_map_lookup_elem(&watched_devs, &dev);
	if (!w)
		return 0;
	id->ino = v->ino;
	id->dev = dev;
	id->gen = v->gen;
	if (*w & YEET_WATCH_ALL)
		return 1;
	/* another link may be inside the tree even if this one is not */
	if (v->nlink > 1 || !dentry)
		return 1;
	k.dev = dev;
	for (int i = 0; i < YEET_MAX_ANCESTORS; i++) {
		struct win64 w = {};
		__u64 di, parent;

		WIN_READ(w, struct dentry, dentry);
		di = WIN_GET(w, dentry, struct dentry, d_inode, __u64);
		parent = WIN_GET(w, dentry, struct dentry, d_parent, __u64);
		if (di) {
			k.ino = BPF_CORE_READ((struct inode *)di, i_ino);
			if (bpf_map_lookup_elem(&watched_dirs, &k)) {
				*root_ino = k.ino;
				return 1;
			}
		}
		if (!parent || parent == dentry)
			return 0;
		dentry = parent;
	}
	return 1; /* deeper than we look: keep it */
}

struct evaluation {
	__u64 root_ino;
	struct yeet_file_id id;
};

/* Is this inode watched (see watched())? A global function: the verifier
 * walks its loop once per program instead of once per call site. */
__noinline int evaluate(__u64 inode, __u64 dentry, struct evaluation *out)
{
	struct iview iv = {};

	if (!out || !inode)
		return 0;
	inode_view(inode, &iv);
	return watched(&iv, dentry, &out->root_ino, &out->id);
}

/* The cached answer for an open file (computed now if missing or stale).
 * NULL only when the cache refuses an entry: the caller must be careful. */
static __always_inline struct fstate *file_state(struct file *f, struct fview *v)
{
	__u64 key = (__u64)f, rgen = gen_get(GEN_RENAME), wgen = gen_get(GEN_ROOTS);
	struct fstate *st = bpf_map_lookup_elem(&fcache, &key);
	struct evaluation ev = {};
	struct dirty_bytes *z;
	__u32 zero = 0;

	if (st && st->inode == v->inode) {
		if (st->rgen == (__u32)rgen && st->wgen == (__u32)wgen)
			return st;
		/* stale: recompute in place, keeping the lseek history (a
		 * replaced entry could lose a concurrent lseek's increment);
		 * generations read before, written after the answer */
		st->watched = evaluate(v->inode, v->dentry, &ev);
		st->root_ino = ev.root_ino;
		st->id = ev.id;
		st->dentry = v->dentry;
		st->rgen = (__u32)rgen;
		st->wgen = (__u32)wgen;
		return st;
	}
	/* a new entry, zeroed from the template (no big struct on the stack);
	 * `inode` is written last: until then readers see a mismatch */
	z = bpf_map_lookup_elem(&zero_dirty, &zero);
	if (!z || bpf_map_update_elem(&fcache, &key, z, BPF_ANY))
		return NULL;
	st = bpf_map_lookup_elem(&fcache, &key);
	if (!st)
		return NULL;
	st->watched = evaluate(v->inode, v->dentry, &ev);
	st->root_ino = ev.root_ino;
	st->id = ev.id;
	st->dentry = v->dentry;
	st->birth = bpf_ktime_get_ns();
	st->rgen = (__u32)rgen;
	st->wgen = (__u32)wgen;
	st->inode = v->inode;
	return st;
}

static __always_inline void fill_names(struct yeet_event *ev, __u64 dentry, __u64 root_ino)
{
	ev->root_ino = root_ino;
	ev->depth = 0;
	ev->complete = 0;
	if (!dentry)
		return;
	for (int i = 0; i < YEET_PATH_DEPTH; i++) {
		struct win64 w = {};
		__u64 di, parent, name;

		WIN_READ(w, struct dentry, dentry);
		di = WIN_GET(w, dentry, struct dentry, d_inode, __u64);
		parent = WIN_GET(w, dentry, struct dentry, d_parent, __u64);
		name = WIN_GET(w, dentry, struct dentry, d_name.name, __u64);
		bpf_probe_read_kernel_str(ev->names[i], YEET_NAME_LEN, (void *)name);
		ev->depth = i + 1;
		if (root_ino && di && BPF_CORE_READ((struct inode *)di, i_ino) == root_ino) {
			ev->complete = 1;
			return;
		}
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
	__s64 ret;
	__u64 root_ino;         /* known: */
	struct yeet_file_id id; /* known: */
	__u32 flags;
	__u32 op;
	__u32 known;            /* 1: id and root_ino are filled, the file is watched */
	__u32 pad;
};

static __always_inline void fill_event(struct yeet_event *ev, __u32 type, struct mark *m,
				       struct yeet_file_id *id, __u64 dentry, __u64 root_ino)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev->type = type;
	ev->op = m->op;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->id = *id;
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->start = m->start;
	ev->end = m->end;
	ev->op_start = m->op_start;
	ev->op_end = m->op_end;
	ev->flags = m->flags;
	ev->ret = (__s32)m->ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	fill_names(ev, dentry, root_ino);
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
 * function: the verifier checks it once per program, not per call site.
 * Pointers arrive as plain numbers and are only read through helpers. */
__noinline int record(__u64 inode, __u64 dentry, struct mark *m)
{
	struct yeet_key key = {};
	struct yeet_dirty *d;
	struct dirty_bytes *z;
	struct yeet_event *ev;
	__u64 root_ino, *ep;
	__u32 zero = 0, gen_epoch = GEN_EPOCH;
	int created = 0, overflow;
	long err;

	if (!m || !inode)
		return 0;
	if (m->known) {
		key.id = m->id;
		root_ino = m->root_ino;
	} else {
		struct evaluation e = {};

		if (!evaluate(inode, dentry, &e))
			return 0;
		key.id = e.id;
		root_ino = e.root_ino;
	}
	if (cfg.self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg.self_tgid)
		return 1;
	if (!(m->flags & YEET_F_WHOLE) && m->end <= m->start)
		return 1;
	if (cfg.verbose) { /* first: `yeet trace` shows even what the map has no room for */
		ev = bpf_ringbuf_reserve(&verbose_rb, sizeof(*ev), 0);
		if (ev) {
			fill_event(ev, YEET_EV_WRITE, m, &key.id, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_VERBOSE_LOST, 1);
		}
	}

	ep = bpf_map_lookup_elem(&gens, &gen_epoch);
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
	overflow = merge_locked(d, m->start, m->end, m->flags);
	bpf_spin_unlock(&d->lock);

	stat_add(YEET_STAT_MARKS, 1);
	if (overflow)
		stat_add(YEET_STAT_OVERFLOWS, 1);
	if (created) {
		ev = bpf_ringbuf_reserve(&notices, sizeof(*ev), 0);
		if (ev) {
			fill_event(ev, YEET_EV_DIRTY, m, &key.id, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_NOTICE_LOST, 1);
		}
	}
	return 1;
}

/* mark [start, end) of a watched file whose identity is known, for the
 * bytes [op_start, op_end) the call wrote */
static __always_inline int record_id(__u64 inode, __u64 dentry, __u64 root_ino,
				     struct yeet_file_id *id, __u64 start, __u64 end,
				     __u64 op_start, __u64 op_end, __u32 flags, __u32 op, __s64 ret)
{
	struct mark m = { .start = start, .end = end, .op_start = op_start, .op_end = op_end,
			  .flags = flags, .op = op, .ret = ret, .known = 1,
			  .root_ino = root_ino, .id = *id };

	return record(inode, dentry, &m);
}

static __always_inline int record_known(struct fstate *st, __u64 start, __u64 end,
					__u64 op_start, __u64 op_end, __u32 flags, __u32 op,
					__s64 ret)
{
	return record_id(st->inode, st->dentry, st->root_ino, &st->id, start, end, op_start,
			 op_end, flags, op, ret);
}

/* mark an open file */
static __always_inline int record_file(struct file *f, __u64 start, __u64 end, __u32 flags,
				       __u32 op, __s64 ret)
{
	struct mark m = { .start = start, .end = end, .op_start = start, .op_end = end,
			  .flags = flags, .op = op, .ret = ret };
	struct fview v = {};
	struct fstate *st;

	if (!f)
		return 0;
	file_view(f, &v);
	st = file_state(f, &v);
	if (!st)
		return record(v.inode, v.dentry, &m); /* evaluates from scratch */
	if (!st->watched)
		return 0;
	return record_known(st, start, end, start, end, flags, op, ret);
}

static __always_inline int record_whole(struct file *f, __u32 flags, __u32 op, __s64 ret)
{
	return record_file(f, 0, YEET_OFF_END, flags | YEET_F_WHOLE, op, ret);
}

/* inode: a plain number */
static __always_inline int record_inode(__u64 inode, __u64 start, __u64 end, __u32 flags,
					__u32 op)
{
	struct mark m = { .start = start, .end = end, .op_start = start, .op_end = end,
			  .flags = flags, .op = op };

	return record(inode, dentry_alias(inode), &m);
}

/* cheap test on a typed inode (tracepoint argument): on a watched filesystem? */
static __always_inline int dev_watched(struct inode *inode)
{
	__u32 dev;

	if (!inode || (inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	dev = inode->i_sb->s_dev;
	return bpf_map_lookup_elem(&watched_devs, &dev) != NULL;
}

#endif /* YEET_RECORD_H */

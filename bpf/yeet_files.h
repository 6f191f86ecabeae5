/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_files.h - from file descriptors and inodes to "is it watched?".
 *
 * Invariant: a file is reported as not watched only if it is not a regular
 * file, or its filesystem is not watched, or it has a single link and none
 * of its ancestors up to the filesystem's root is a watched directory (a walk
 * that ends anywhere else - a disconnected dentry, as open_by_handle_at gives
 * for an evicted file - proves nothing: watched). A cached answer for an open
 * file is used only while no rename/link happened and the roots did not change
 * since it was computed. An overlayfs file is judged by the file it writes
 * through (its upper file), which is what changes on disk.
 *
 * Kernel memory behind plain numbers (file descriptors lead to those) is read
 * with one bpf_probe_read_kernel per structure ("windows"); fields are then
 * taken at their CO-RE offsets, falling back to a single read when a field
 * lies outside the window on some kernel.
 *
 * Part of yeet_trace.bpf.c (one translation unit); not a standalone header.
 */
#ifndef YEET_FILES_H
#define YEET_FILES_H

/* one read of the first `cap` bytes of a structure into a window (the
 * scratch slot's: struct win128); fields then at their CO-RE offsets. The
 * same cap for reading and getting: bytes past it are another read's. */
#define WIN_LEN(type, cap) min_u64((cap), bpf_core_type_size(type))
#define WIN_READ(win, type, base, cap) \
	bpf_probe_read_kernel(&(win), WIN_LEN(type, cap), (void *)(base))
#define WIN_GET(win, base, type, field, T, cap) ({				\
	T __v = 0;								\
	__u32 __o = bpf_core_field_offset(type, field);			\
	if (__o + sizeof(T) <= WIN_LEN(type, cap))				\
		__v = *(T *)((void *)&(win) + __o);				\
	else									\
		bpf_probe_read_kernel(&__v, sizeof(T), (void *)(base) + __o);	\
	__v;									\
})
#define FILE_WIN 120
#define INODE_WIN 128
#define DENTRY_WIN 64

struct fview {
	__u64 inode;
	__u64 dentry;
	__s64 pos;
	__u32 flags;
	__u32 mode;
};

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* The file an overlayfs file reads and writes through (itself otherwise). */
static __always_inline __u64 real_file(__u64 f, __u64 inode)
{
	struct super_block *sb;
	struct ovl_file *of;

	if (!bpf_core_type_exists(struct ovl_file)) /* older kernels: another layout */
		return f;
	sb = BPF_CORE_READ((struct inode *)inode, i_sb);
	if (!sb || BPF_CORE_READ(sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return f;
	of = BPF_CORE_READ((struct file *)f, private_data);
	return of ? (__u64)BPF_CORE_READ(of, realfile) : f;
}

/* An open file as the tracer sees it: position and flags of the file itself,
 * inode and dentry of what it writes through (see real_file) */
static __always_inline void file_view(struct scratch *s, struct file *f, struct fview *v)
{
	__u64 real;

	WIN_READ(s->w, struct file, f, FILE_WIN);
	v->inode = WIN_GET(s->w, f, struct file, f_inode, __u64, FILE_WIN);
	v->dentry = WIN_GET(s->w, f, struct file, f_path.dentry, __u64, FILE_WIN);
	v->pos = WIN_GET(s->w, f, struct file, f_pos, __s64, FILE_WIN);
	v->flags = WIN_GET(s->w, f, struct file, f_flags, __u32, FILE_WIN);
	v->mode = WIN_GET(s->w, f, struct file, f_mode, __u32, FILE_WIN);
	if (!v->inode)
		return;
	real = real_file((__u64)f, v->inode);
	if (real && real != (__u64)f) {
		v->inode = (__u64)BPF_CORE_READ((struct file *)real, f_inode);
		v->dentry = (__u64)BPF_CORE_READ((struct file *)real, f_path.dentry);
	}
}

struct iview {
	__u64 ino;
	__u64 sb;
	__s64 size;
	__u32 nlink;
	__u32 gen;
	__u16 mode;
};

static __always_inline void inode_view(struct scratch *s, __u64 inode, struct iview *v)
{
	WIN_READ(s->w, struct inode, inode, INODE_WIN);
	v->mode = WIN_GET(s->w, inode, struct inode, i_mode, __u16, INODE_WIN);
	v->sb = WIN_GET(s->w, inode, struct inode, i_sb, __u64, INODE_WIN);
	v->ino = WIN_GET(s->w, inode, struct inode, i_ino, __u64, INODE_WIN);
	v->nlink = WIN_GET(s->w, inode, struct inode, i_nlink, __u32, INODE_WIN);
	v->size = WIN_GET(s->w, inode, struct inode, i_size, __s64, INODE_WIN);
	v->gen = WIN_GET(s->w, inode, struct inode, i_generation, __u32, INODE_WIN);
}

static __always_inline __u32 sb_dev(__u64 sb)
{
	return BPF_CORE_READ((struct super_block *)sb, s_dev);
}

static __always_inline __u64 sb_root(__u64 sb)
{
	return (__u64)BPF_CORE_READ((struct super_block *)sb, s_root);
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
static __always_inline int watched(struct scratch *s, struct iview *v, __u64 dentry,
				   __u64 *root_ino, struct yeet_file_id *id)
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
	s->e.devflags = *w;
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
		__u64 di, parent;

		WIN_READ(s->w, struct dentry, dentry, DENTRY_WIN);
		di = WIN_GET(s->w, dentry, struct dentry, d_inode, __u64, DENTRY_WIN);
		parent = WIN_GET(s->w, dentry, struct dentry, d_parent, __u64, DENTRY_WIN);
		if (di) {
			k.ino = BPF_CORE_READ((struct inode *)di, i_ino);
			if (bpf_map_lookup_elem(&watched_dirs, &k)) {
				*root_ino = k.ino;
				return 1;
			}
		}
		if (!parent || parent == dentry) /* the top: the filesystem's root, or not */
			return dentry != sb_root(v->sb);
		dentry = parent;
	}
	return 1; /* deeper than we look: keep it */
}

/* Is this inode watched (see watched())? The answer's details go to s->e.
 * A global function: the verifier walks its loop once per program instead
 * of once per call site. */
__noinline int evaluate(__u64 inode, __u64 dentry, struct scratch *s)
{
	struct iview iv = {};

	if (!s || !inode)
		return 0;
	__builtin_memset(&s->e, 0, sizeof(s->e));
	inode_view(s, inode, &iv);
	return watched(s, &iv, dentry, &s->e.root_ino, &s->e.id);
}

/* The cached answer for an open file if it is there and fresh (no reads of
 * the file beyond f_inode, which tells a reused struct file apart). */
static __always_inline struct fstate *file_state_cached(struct file *f, __u64 inode)
{
	__u64 key = (__u64)f;
	struct fstate *st = bpf_map_lookup_elem(&fcache, &key);

	if (st && st->inode == inode && st->rgen == names_gen() &&
	    st->wgen == (__u32)gen_get(GEN_ROOTS))
		return st;
	return NULL;
}

/* The cached answer for an open file (computed now if missing or stale).
 * NULL only when the cache refuses an entry: the caller must be careful. */
static __always_inline struct fstate *file_state(struct scratch *s, struct file *f,
						   struct fview *v)
{
	__u64 key = (__u64)f, rgen = names_gen(), wgen = gen_get(GEN_ROOTS);
	struct fstate *st = bpf_map_lookup_elem(&fcache, &key);
	struct dirty_bytes *z;
	__u32 zero = 0;

	if (st && st->inode == v->inode) {
		if (st->rgen == (__u32)rgen && st->wgen == (__u32)wgen)
			return st;
		/* stale: recompute in place, keeping the lseek history (a
		 * replaced entry could lose a concurrent lseek's increment);
		 * generations read before, written after the answer */
		st->watched = evaluate(v->inode, v->dentry, s);
		st->root_ino = s->e.root_ino;
		st->id = s->e.id;
		st->devflags = s->e.devflags;
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
	st->watched = evaluate(v->inode, v->dentry, s);
	st->root_ino = s->e.root_ino;
	st->id = s->e.id;
	st->devflags = s->e.devflags;
	st->dentry = v->dentry;
	st->birth = bpf_ktime_get_ns();
	st->rgen = (__u32)rgen;
	st->wgen = (__u32)wgen;
	st->inode = v->inode;
	return st;
}

/* cheap test on a typed inode (tracepoint argument): its watched_devs value
 * (0: a regular file of a filesystem nobody watches, or not a regular file) */
static __always_inline __u32 dev_flags(struct inode *inode)
{
	__u32 dev, *w;

	if (!inode || (inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	dev = inode->i_sb->s_dev;
	w = bpf_map_lookup_elem(&watched_devs, &dev);
	return w ? *w : 0;
}

/* ... watched, and not by the filesystem hooks (the system-call hooks' business) */
static __always_inline int dev_watched(struct inode *inode)
{
	__u32 w = dev_flags(inode);

	return w && !(w & YEET_WATCH_FS);
}

#endif /* YEET_FILES_H */

/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_fs.h - content changes seen where they land in the filesystem (ext4).
 *
 * Invariant: on a device whose watched_devs value has YEET_WATCH_FS, every
 * change to the content or size of a regular file below a watched directory
 * ends up as a mark that covers it - after it landed, or marked YEET_F_FLUX
 * while it is landing under the inode's lock (userspace takes that lock before
 * it answers) - whoever made the change: a system call of any ABI, io_uring,
 * AIO, the loop driver, process accounting, overlayfs writing its upper file,
 * nfsd. No system-call hook is needed for such a device:
 *  - buffered writes: ext4_{da_,journalled_,}write_end, after the bytes were
 *    copied into the page cache and before i_size moves: [min(pos, i_size),
 *    pos + copied) - a write past the end also covers the hole it opens;
 *  - direct I/O: iomap_dio_complete, after it landed (yeet_trace.bpf.c);
 *  - the size: ext4_truncate_enter (shrunk: [new size, end)), and setattr
 *    growing the file - no tracepoint of its own: ext4_mark_inode_dirty called
 *    from ext4_setattr's code (its address range from kallsyms, in the config)
 *    marks [a size the inode had before, end), with FLUX (the cache keeps a
 *    size each inode had since it was cached, lowered by every shrink; a file
 *    not in the cache: [0, end));
 *  - fallocate: punch, zero, collapse, insert, allocate past the end - their
 *    tracepoints fire at the start, under the inode's lock: FLUX;
 *  - shared writable mappings: a page of a file that some process maps
 *    shared and writable (i_mmap_writable > 0) faulted in - any write through
 *    a new mapping starts with such a fault - marks it whole with YEET_F_MMAP
 *    (userspace keeps it whole while it is mapped).
 * Whether an inode is watched is cached per inode (icache; the last one per
 * CPU in the scratch slot) and recomputed when the roots changed, its name
 * moved to another directory, its link count changed, or a name was bound
 * below a root (names_gen: userspace learns renames of directories from
 * fanotify and says so; until then writes below a directory just renamed into
 * a root may go unmarked - the journal answers everything below such a
 * directory whole, bound, so nothing depends on them).
 *
 * Part of yeet_trace.bpf.c (one translation unit); not a standalone header.
 */
#ifndef YEET_FS_H
#define YEET_FS_H

#define FALLOC_FL_KEEP_SIZE 0x01

/* Is this inode (a regular file of a YEET_WATCH_FS filesystem) watched? The
 * answer is in s->last when this returns. */
static __always_inline struct icached *inode_answer(struct scratch *s, struct inode *inode)
{
	struct hlist_node *first = inode->i_dentry.first;
	__u64 addr = (__u64)inode, ino = inode->i_ino, dentry = 0, parent = 0;
	__u32 nlink = inode->i_nlink, rgen = names_gen(), wgen = (__u32)gen_get(GEN_ROOTS);
	struct icached *c = &s->last;

	/* the file's own rename moves its dentry to another parent at once; a
	 * directory above it renamed in is learnt from fanotify (names_gen) */
	if (first) {
		struct dentry *d;

		dentry = (__u64)first - bpf_core_field_offset(struct dentry, d_u.d_alias);
		d = bpf_rdonly_cast((void *)dentry, bpf_core_type_id_kernel(struct dentry));
		parent = (__u64)d->d_parent;
	}
	if (c->inode == addr && c->ino == ino && c->nlink == nlink && c->rgen == rgen &&
	    c->wgen == wgen && c->parent == parent)
		return c;
	c = bpf_map_lookup_elem(&icache, &addr);
	if (c && c->ino == ino && c->nlink == nlink && c->rgen == rgen && c->wgen == wgen &&
	    c->parent == parent) {
		s->last = *c;
		return &s->last;
	}
	c = &s->last;
	/* (a global function takes plain numbers, not the pointers these are) */
	c->watched = evaluate(as_scalar((void *)addr), as_scalar((void *)dentry), s);
	c->root_ino = s->e.root_ino;
	c->id = s->e.id;
	c->inode = addr;
	c->ino = ino;
	c->size = inode->i_size;
	c->whole = 0;
	c->parent = parent;
	c->nlink = nlink;
	c->rgen = rgen;
	c->wgen = wgen;
	bpf_map_update_elem(&icache, &addr, c, BPF_ANY); /* full: the next write evaluates again */
	return c;
}

/* For `yeet trace`: the system call the change came through, if it is one of
 * the write family (else the filesystem's own operation: a writer inside the
 * kernel, or a call these hooks do not need to know). */
static __always_inline __u32 traced_op(__u32 op)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	__u32 nr_op = regs ? op_of((long)regs->orig_ax) : YEET_OP_NONE;

	return nr_op != YEET_OP_NONE ? nr_op : op;
}

/* Mark [start, end) of an inode the filesystem hooks watch; [op_start, op_end)
 * are the change's own bytes (`yeet trace` shows them). */
static __always_inline void fs_mark_op(struct scratch *s, struct inode *inode, __u64 start,
				       __u64 end, __u64 op_start, __u64 op_end, __u32 flags,
				       __u32 op)
{
	struct icached *c;
	__u64 epoch;

	/* no name left (deleted, being evicted, O_TMPFILE): in no tree; linked
	 * again, the new name is bound, and the journal answers it whole */
	if (!inode->i_nlink)
		return;
	c = inode_answer(s, inode);
	if (!c->watched)
		return;
	epoch = gen_get(GEN_EPOCH);
	/* whole in this epoch already (flags only grow until userspace drains it,
	 * after moving to the next epoch): a plain write adds nothing */
	if (!flags && c->whole == epoch + 1 && !cfg.verbose)
		return;
	if (cfg.verbose)
		op = traced_op(op);
	if (record_id(s, c->inode, 0, c->root_ino, &c->id, start, end, op_start, op_end, flags,
		      op, 0) == 2)
		c->whole = epoch + 1; /* (an epoch read before record(): never a later one) */
}

static __always_inline void fs_mark(struct scratch *s, struct inode *inode, __u64 start,
				    __u64 end, __u32 flags, __u32 op)
{
	fs_mark_op(s, inode, start, end, start, end, flags, op);
}

/* The cheap test every filesystem hook starts with (no scratch slot yet): a
 * regular file of a filesystem these hooks watch? */
static __always_inline int fs_dev(struct inode *inode)
{
	__u32 n = fs_devs.n, dev;

	if (!n || !inode || (inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	dev = inode->i_sb->s_dev;
	if (n > YEET_FS_DEVS)
		return (dev_flags(inode) & YEET_WATCH_FS) != 0;
	for (int i = 0; i < YEET_FS_DEVS; i++) {
		if (i >= n)
			break;
		if (fs_devs.dev[i] == dev)
			return 1;
	}
	return 0;
}

/* a buffered write's bytes are in the page cache; i_size is still the old one */
static __always_inline void fs_write(struct scratch *s, struct inode *inode, __u64 pos,
				     __u32 copied)
{
	__u64 size = (__u64)inode->i_size;

	fs_mark_op(s, inode, min_u64(pos, size), pos + copied, pos, pos + copied, 0,
		   YEET_OP_FS_WRITE);
}

/* The cached entry of an inode (the map's: sizes are kept there, not in the
 * per-CPU copies), or NULL. */
static __always_inline struct icached *inode_cached(struct inode *inode)
{
	__u64 addr = as_scalar(inode);
	struct icached *c = bpf_map_lookup_elem(&icache, &addr);

	return c && c->ino == inode->i_ino ? c : NULL;
}

/* The inode shrank (or may have) to `size`: a size it had. */
static __always_inline void fs_shrunk(struct inode *inode, __s64 size)
{
	struct icached *c = inode_cached(inode);

	if (c && size < c->size)
		c->size = size;
}

/* ext4_setattr marked the inode dirty: its size (or owner) changed, under the
 * inode's lock. Grown, the bytes from the old end read as zeros now. */
static __always_inline void fs_setattr(struct scratch *s, struct inode *inode)
{
	struct icached *c = inode_cached(inode);
	__s64 size = inode->i_size, was = c ? c->size : 0;

	fs_mark_op(s, inode, (__u64)(was < size ? was : size), YEET_OFF_END, (__u64)size,
		   YEET_OFF_END, YEET_F_TRUNC | YEET_F_FLUX, YEET_OP_FS_SIZE);
	fs_shrunk(inode, size);
}

/* a mapping that may write it: the whole file, while it stays mapped */
static __always_inline void fs_fault(struct scratch *s, struct address_space *mapping)
{
	fs_mark(s, mapping->host, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_MMAP,
		YEET_OP_MMAP_FAULT);
}

#endif /* YEET_FS_H */

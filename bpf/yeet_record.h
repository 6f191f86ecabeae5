/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_record.h - record(): merge one mark into the per-inode range map.
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

static __always_inline void fill_names(struct scratch *s, struct yeet_event *ev, __u64 inode,
				       __u64 dentry, __u64 root_ino)
{
	ev->root_ino = root_ino;
	ev->depth = 0;
	ev->complete = 0;
	if (!dentry)
		return;
	for (int i = 0; i < YEET_PATH_DEPTH; i++) {
		__u64 di, parent, name;

		WIN_READ(s->w, struct dentry, dentry, DENTRY_WIN);
		di = WIN_GET(s->w, dentry, struct dentry, d_inode, __u64, DENTRY_WIN);
		parent = WIN_GET(s->w, dentry, struct dentry, d_parent, __u64, DENTRY_WIN);
		name = WIN_GET(s->w, dentry, struct dentry, d_name.name, __u64, DENTRY_WIN);
		bpf_probe_read_kernel_str(ev->names[i], YEET_NAME_LEN, (void *)name);
		ev->depth = i + 1;
		if (root_ino && di && BPF_CORE_READ((struct inode *)di, i_ino) == root_ino) {
			ev->complete = 1;
			return;
		}
		if (!parent || parent == dentry) { /* the filesystem's root - or disconnected */
			ev->complete = dentry == sb_root((__u64)BPF_CORE_READ((struct inode *)inode, i_sb));
			return;
		}
		dentry = parent;
	}
}

static __always_inline void fill_event(struct scratch *s, struct yeet_event *ev, __u32 type,
				       struct mark *m, struct yeet_file_id *id, __u64 inode,
				       __u64 dentry, __u64 root_ino)
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
	/* the filesystem hooks have no dentry at hand: the inode's (first) name */
	fill_names(s, ev, inode, dentry ? dentry : dentry_alias(inode), root_ino);
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

/* Record the mark s->m for an inode (dentry: how it was reached, for the
 * subtree filter and names). Returns 0 if the inode is not watched, 2 if its
 * entry in the range map is whole now (nothing later in this epoch can add a
 * range to it), 1 otherwise. A global BPF function: the verifier checks it
 * once per program, not per call site. Pointers arrive as plain numbers and
 * are only read through helpers. */
__noinline int record(__u64 inode, __u64 dentry, struct scratch *s)
{
	struct yeet_key key = {};
	struct yeet_dirty *d;
	struct dirty_bytes *z;
	struct yeet_event *ev;
	__u64 root_ino, *ep;
	__u32 zero = 0, gen_epoch = GEN_EPOCH;
	int created = 0, overflow;
	struct mark *m;
	long err;

	if (!s || !inode)
		return 0;
	m = &s->m;
	if (m->known) {
		key.id = m->id;
		root_ino = m->root_ino;
	} else {
		if (!evaluate(inode, dentry, s))
			return 0;
		/* the filesystem hooks record its changes (direct I/O aside) */
		if ((s->e.devflags & YEET_WATCH_FS) && m->op != YEET_OP_DIO)
			return 0;
		key.id = s->e.id;
		root_ino = s->e.root_ino;
	}

	if (cfg.self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg.self_tgid)
		return 1;
	if (!(m->flags & YEET_F_WHOLE) && m->end <= m->start)
		return 1;
	if (cfg.verbose) { /* first: `yeet trace` shows even what the map has no room for */
		ev = bpf_ringbuf_reserve(&verbose_rb, sizeof(*ev), 0);
		if (ev) {
			fill_event(s, ev, YEET_EV_WRITE, m, &key.id, inode, dentry, root_ino);
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
	if (d->flags & YEET_F_WHOLE) {
		/* already whole (flags only ever grow): no range to merge, no lock -
		 * but the mark's flags count (MMAP, FLUX, KWRITE say what to do) */
		overflow = 0;
		if (m->flags & ~d->flags) {
			bpf_spin_lock(&d->lock);
			d->flags |= m->flags;
			bpf_spin_unlock(&d->lock);
		}
	} else {
		bpf_spin_lock(&d->lock);
		overflow = merge_locked(d, m->start, m->end, m->flags);
		bpf_spin_unlock(&d->lock);
	}

	stat_add(YEET_STAT_MARKS, 1);
	if (overflow)
		stat_add(YEET_STAT_OVERFLOWS, 1);
	if (created) {
		ev = bpf_ringbuf_reserve(&notices, sizeof(*ev), 0);
		if (ev) {
			fill_event(s, ev, YEET_EV_DIRTY, m, &key.id, inode, dentry, root_ino);
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(YEET_STAT_NOTICE_LOST, 1);
		}
	}
	return d->flags & YEET_F_WHOLE ? 2 : 1;
}

/* fill the scratch mark (identity unknown: record() evaluates the inode) */
static __always_inline void set_mark(struct scratch *s, __u64 start, __u64 end, __u64 op_start,
				     __u64 op_end, __u32 flags, __u32 op, __s64 ret)
{
	s->m.start = start;
	s->m.end = end;
	s->m.op_start = op_start;
	s->m.op_end = op_end;
	s->m.flags = flags;
	s->m.op = op;
	s->m.ret = ret;
	s->m.known = 0;
	s->m.root_ino = 0;
	s->m.id.ino = 0;
	s->m.id.dev = 0;
	s->m.id.gen = 0;
}

/* mark [start, end) of a watched file whose identity is known, for the
 * bytes [op_start, op_end) the call wrote */
static __always_inline int record_id(struct scratch *s, __u64 inode, __u64 dentry,
				     __u64 root_ino, struct yeet_file_id *id, __u64 start,
				     __u64 end, __u64 op_start, __u64 op_end, __u32 flags, __u32 op,
				     __s64 ret)
{
	set_mark(s, start, end, op_start, op_end, flags, op, ret);
	s->m.known = 1;
	s->m.root_ino = root_ino;
	s->m.id = *id;
	return record(inode, dentry, s);
}

static __always_inline int record_known(struct scratch *s, struct fstate *st, __u64 start,
					__u64 end, __u64 op_start, __u64 op_end, __u32 flags,
					__u32 op, __s64 ret)
{
	return record_id(s, st->inode, st->dentry, st->root_ino, &st->id, start, end, op_start,
			 op_end, flags, op, ret);
}

/* mark an open file */
static __always_inline int record_file(struct scratch *s, struct file *f, __u64 start,
				       __u64 end, __u32 flags, __u32 op, __s64 ret)
{
	struct fview v = {};
	struct fstate *st;

	if (!f)
		return 0;
	file_view(s, f, &v);
	st = file_state(s, f, &v);
	if (!st) {
		set_mark(s, start, end, start, end, flags, op, ret);
		return record(v.inode, v.dentry, s); /* evaluates from scratch */
	}
	if (!st->watched || ((st->devflags & YEET_WATCH_FS) && op != YEET_OP_DIO))
		return 0; /* not watched, or the filesystem hooks record it */
	return record_known(s, st, start, end, start, end, flags, op, ret);
}

static __always_inline int record_whole(struct scratch *s, struct file *f, __u32 flags,
					__u32 op, __s64 ret)
{
	return record_file(s, f, 0, YEET_OFF_END, flags | YEET_F_WHOLE, op, ret);
}

/* inode: a plain number */
static __always_inline int record_inode(struct scratch *s, __u64 inode, __u64 start, __u64 end,
					__u32 flags, __u32 op)
{
	set_mark(s, start, end, start, end, flags, op, 0);
	return record(inode, dentry_alias(inode), s);
}

#endif /* YEET_RECORD_H */

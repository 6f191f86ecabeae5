/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_sysexit.h - the sys_exit dispatch: each system call's exit goes to the
 * code that records what it changed (yeet_syscalls.h for calls with a plain
 * (fd, offset, length), yeet_othercalls.h for the rest and for 32-bit tasks).
 *
 * Invariant: every call that may have changed a file under a root reaches a
 * recorder or is counted as UNPLACEABLE (userspace rescans); none is dropped.
 *
 * Included by yeet_trace.bpf.c after yeet_syscalls.h and yeet_othercalls.h.
 */
#ifndef YEET_SYSEXIT_H
#define YEET_SYSEXIT_H

static __always_inline void sys_exit(struct scratch *s, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	long id = (long)regs->orig_ax;
	struct pending *p;

	if (task->thread_info.status & TS_COMPAT) {
		compat_exit(s, task, regs, id, ret);
		return;
	}
	if (id & X32_SYSCALL_BIT) {
		long base = id & ~X32_SYSCALL_BIT;

		if (base == NR_rename || base == NR_renameat || base == NR_renameat2 ||
		    base == NR_link || base == NR_linkat)
			renamed();
		/* x32 has its own numbers for the vector calls (>= 512) */
		if (needs_entry(base) || base == NR_mmap || base == NR_io_submit ||
		    base == NR_ioctl || base == NR_open || base == NR_openat ||
		    base == NR_creat || base == NR_openat2 || base >= 512)
			stat_add(YEET_STAT_UNPLACEABLE, 1);
		return;
	}
	switch (id) {
	case NR_lseek:
		lseek_bump(s, task, (long)regs->di);
		return;
	case NR_mmap:
		exit_mmap(s, task, (long)regs->r10, (long)(int)regs->r8, ret);
		return;
	case NR_ioctl:
		exit_ioctl(s, task, regs, ret);
		return;
	case NR_io_submit:
		exit_io_submit(s, task, regs, ret);
		return;
	case NR_open: case NR_openat: case NR_creat: case NR_openat2:
		if (ret < 0 || !(open_flags(regs, id) & O_TRUNC))
			return;
		truncated_whole(s, fd_file(task, ret), YEET_OP_OPEN_TRUNC, 0);
		return;
	case NR_rename: case NR_renameat: case NR_renameat2: case NR_link: case NR_linkat:
		/* a file may have moved into (or got a name in) a watched tree:
		 * cached answers are stale */
		if (ret == 0)
			renamed();
		return;
	default:
		break;
	}
	if (!needs_entry(id))
		return;
	p = task_pending(task, 0);
	if (!p || p->nr != (__u32)id + 1) {
		/* no entry record for this call (storage failed, or attached
		 * mid-call): whatever it wrote, the whole file */
		stat_add(YEET_STAT_FALLBACKS, 1);
		if (id == NR_truncate) {
			if (p && p->counted) {
				p->counted = 0;
				gen_add(GEN_PATH_TRUNCS, -1);
			}
			/* userspace resolves the path (rescans if it cannot) */
			exit_trunc_path(s, task, regs->di, regs->si, NULL, ret);
		} else
			record_whole(s, fd_file(task, out_fd(id, regs)), 0, YEET_OP_FALLBACK, ret);
		if (p)
			p->nr = 0;
		return;
	}
	p->nr = 0;
	if (id == NR_truncate) {
		if (p->counted) {
			p->counted = 0;
			gen_add(GEN_PATH_TRUNCS, -1);
		}
		exit_trunc_path(s, task, regs->di, regs->si, p, ret);
	} else if (p->file) {
		exit_fd(s, task, regs, p, id, ret);
	} else if (gens_moved(p)) {
		/* not watched at entry, but a rename/link or new root since:
		 * maybe it is now */
		record_whole(s, fd_file(task, out_fd(id, regs)), YEET_F_RACE, p->op, ret);
	}
}

#endif /* YEET_SYSEXIT_H */

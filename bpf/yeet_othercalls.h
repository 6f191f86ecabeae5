/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_othercalls.h - system calls that change files without a plain
 * (fd, offset, length): shared mmap, clone/exchange ioctls, io_submit (AIO)
 * and every write-like call of 32-bit tasks.
 *
 * Invariant: like yeet_syscalls.h - marks are recorded at exit and contain
 * every byte the call may have changed; what cannot be placed is whole-file,
 * or counted as UNPLACEABLE (userspace rescans).
 *
 * Included by yeet_trace.bpf.c after yeet_syscalls.h; not a standalone header.
 */
#ifndef YEET_OTHERCALLS_H
#define YEET_OTHERCALLS_H

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
#define NR32_link 9
#define NR32_rename 38
#define NR32_renameat 302
#define NR32_linkat 303
#define NR32_renameat2 353

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

static __always_inline void exit_mmap(struct scratch *s, struct task_struct *task, long flags,
				      long fd, long ret)
{
	struct file *f;

	if ((unsigned long)ret >= (unsigned long)-4095L)
		return;
	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		return;
	if (flags & MAP_ANONYMOUS)
		return;
	f = fd_file(task, fd);
	/* writable through this mapping now or after mprotect(): whole file,
	 * and userspace keeps it dirty for as long as it stays mapped */
	if (f && (BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
		record_whole(s, f, YEET_F_MMAP, YEET_OP_MMAP, 0);
}

static __always_inline int ioctl_writes(__u32 cmd)
{
	return cmd == FICLONE || cmd == FICLONERANGE || cmd == EXT4_IOC_SWAP_BOOT ||
	       cmd == XFS_IOC_EXCHANGE_RANGE || cmd == XFS_IOC_COMMIT_RANGE ||
	       cmd == BTRFS_IOC_ENCODED_WRITE || cmd == BTRFS_IOC_ENCODED_WRITE_32;
}

static __always_inline void exit_ioctl(struct scratch *s, struct task_struct *task,
				       struct pt_regs *regs, long ret)
{
	__u32 cmd = (__u32)regs->si;
	struct file *f;

	if (!ioctl_writes(cmd) || ret < 0)
		return;
	f = fd_file(task, (long)regs->di);
	if (cmd == FICLONERANGE) {
		__u64 args[4] = {}; /* src_fd, src_offset, src_length, dest_offset */

		bpf_probe_read_user(args, sizeof(args), (void *)regs->dx);
		record_file(s, f, args[3], args[2] ? args[3] + args[2] : YEET_OFF_END, 0,
			    YEET_OP_IOCTL, ret);
		return;
	}
	if (cmd == XFS_IOC_EXCHANGE_RANGE || cmd == XFS_IOC_COMMIT_RANGE) {
		__s32 fd1 = -1;

		bpf_probe_read_user(&fd1, sizeof(fd1), (void *)regs->dx);
		record_whole(s, fd_file(task, fd1), 0, YEET_OP_IOCTL, ret);
	}
	record_whole(s, f, 0, YEET_OP_IOCTL, ret);
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

/* io_submit: buffered AIO writes are done by now; direct ones are caught
 * again at completion (iomap_dio_complete) */
static __always_inline void exit_io_submit(struct scratch *s, struct task_struct *task,
					   struct pt_regs *regs, long ret)
{
	__u64 *iocbpp = (__u64 *)regs->dx;

	if (ret <= 0)
		return;
	if (ret > AIO_MAX_SCAN)
		stat_add(YEET_STAT_UNPLACEABLE, 1);
	for (int i = 0; i < AIO_MAX_SCAN; i++) {
		struct yeet_iocb cb = {};
		__u64 ptr = 0, end;
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
		end = cb.offset + cb.nbytes;
		/* vectors would need another loop; reaching the end of file may
		 * have opened a hole whose start we do not know */
		if (cb.opcode == IOCB_CMD_PWRITEV || (cb.rw_flags & RWF_APPEND) ||
		    (BPF_CORE_READ(f, f_flags) & O_APPEND) ||
		    end >= (__u64)inode_size(file_inode_addr(f)))
			record_whole(s, f, 0, YEET_OP_IO_SUBMIT, ret);
		else
			record_file(s, f, cb.offset, end, 0, YEET_OP_IO_SUBMIT, ret);
	}
}

/* 32-bit tasks: whole file for descriptor-based writes, rescan for others */
static __always_inline void compat_exit(struct scratch *s, struct task_struct *task,
					struct pt_regs *regs, long id, long ret)
{
	long fd = -1, flags;

	switch (id) {
	case NR32_write: case NR32_writev: case NR32_pwrite64: case NR32_pwritev:
	case NR32_pwritev2: case NR32_sendfile: case NR32_sendfile64: case NR32_fallocate:
		fd = (long)(int)regs->bx;
		break;
	case NR32_ftruncate: case NR32_ftruncate64:
		if (ret == 0)
			truncated_whole(s, fd_file(task, (long)(int)regs->bx), YEET_OP_FALLBACK, ret);
		return;
	case NR32_splice: case NR32_copy_file_range:
		fd = (long)(int)regs->dx;
		break;
	case NR32_ioctl:
		if (!ioctl_writes((__u32)regs->cx))
			return;
		if ((__u32)regs->cx == XFS_IOC_EXCHANGE_RANGE ||
		    (__u32)regs->cx == XFS_IOC_COMMIT_RANGE)
			stat_add(YEET_STAT_UNPLACEABLE, 1); /* the other file is in a struct */
		fd = (long)(int)regs->bx;
		break;
	case NR32_mmap2:
		exit_mmap(s, task, (long)regs->si, (long)(int)regs->di, ret);
		return;
	case NR32_open: case NR32_openat: case NR32_creat:
		flags = id == NR32_open ? (long)regs->cx : id == NR32_openat ? (long)regs->dx : O_TRUNC;
		if ((flags & O_TRUNC) && ret >= 0)
			truncated_whole(s, fd_file(task, ret), YEET_OP_OPEN_TRUNC, 0);
		return;
	case NR32_rename: case NR32_renameat: case NR32_renameat2: case NR32_link:
	case NR32_linkat:
		if (ret == 0)
			renamed();
		return;
	case NR32_truncate: case NR32_truncate64:
		/* a 32-bit path pointer: userspace resolves it like any truncate(path) */
		exit_trunc_path(s, task, (__u32)regs->bx, (__u32)regs->cx, NULL, ret);
		return;
	case NR32_openat2: case NR32_io_submit: case NR32_old_mmap:
		/* would need 32-bit user structures or a path lookup */
		stat_add(YEET_STAT_UNPLACEABLE, 1);
		return;
	default:
		return;
	}
	if (ret < 0)
		return;
	record_whole(s, fd_file(task, fd), 0, YEET_OP_FALLBACK, ret);
}

#endif /* YEET_OTHERCALLS_H */

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * yeet_trace.bpf.c - record which byte ranges of which files are written.
 *
 * Invariant: every change to the content or size of a regular file on a
 * watched filesystem, below a watched directory, made after the programs are
 * attached, ends up - after the change has landed - as a byte range that
 * contains it or a whole-file mark in the range map, or it bumps the DROPS /
 * UNPLACEABLE counters (userspace then rescans). Marks may be wider than the
 * change; never narrower.
 *
 * Where marks come from. On ext4 (YEET_WATCH_FS, yeet_fs.h) where the change
 * lands, whoever makes it:
 *   tp_btf/ext4_{da_,journalled_,}write_end: buffered writes, exact.
 *   tp_btf/ext4_truncate_enter, ext4_mark_inode_dirty: the size.
 *   tp_btf/ext4_{fallocate_enter,punch_hole,zero_range,collapse_range,
 *     insert_range}: fallocate.
 *   tp_btf/mm_filemap_fault, mm_filemap_map_pages: pages of a file mapped
 *     shared and writable faulted in -> whole, while mapped.
 *   tp_btf/iomap_dio_rw_begin + iomap_dio_complete: direct I/O, at completion.
 * On other filesystems, by system call (attached only while such a filesystem
 * is watched; the object is built for x86_64 syscall numbers):
 *   tp_btf/sys_enter + sys_exit (yeet_syscalls.h): write, writev, pwrite64,
 *     pwritev, pwritev2, sendfile, splice and copy_file_range into files,
 *     ftruncate, fallocate, open/openat/openat2/creat with O_TRUNC,
 *     truncate(path), shared writable mmap (whole file; userspace keeps it
 *     dirty while mapped), clone/exchange ioctls, io_submit (AIO), lseek
 *     (position races), 32-bit syscalls (whole file or rescan).
 *   tp_btf/io_uring_complete, io_uring_submit_req: io_uring writes -> whole.
 *   tp_btf/iomap_dio_rw_begin + iomap_dio_complete: asynchronous direct I/O,
 *     exact, when it completes.
 *   tp_btf/writeback_dirty_folio: a page cache folio dirtied outside any
 *     traced syscall on its inode (a writer inside the kernel: loop, acct,
 *     nfsd...) -> that folio, and the file stays whole from then on (KWRITE).
 *   tp_btf/writeback_mark_inode_dirty, ext4_mark_inode_dirty: find the inode
 *     of truncate(path), which has no file descriptor.
 *
 * Maps: yeet_maps.h. Watched files: yeet_files.h. Recording and the
 * epoch protocol: yeet_record.h, yeet_maps.h. Calls: yeet_syscalls.h,
 * yeet_othercalls.h.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "yeet_kernel.h"
#include "yeet_trace.h"
#include "yeet_maps.h"
#include "yeet_files.h"
#include "yeet_record.h"
#include "yeet_syscalls.h"
#include "yeet_othercalls.h"
#include "yeet_sysexit.h"
#include "yeet_fs.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define IORING_OP_WRITEV 2
#define IORING_OP_WRITE_FIXED 5
#define IORING_OP_FALLOCATE 17
#define IORING_OP_OPENAT 18
#define IORING_OP_WRITE 23
#define IORING_OP_OPENAT2 28
#define IORING_OP_SPLICE 30
#define IORING_OP_RENAMEAT 35
#define IORING_OP_LINKAT 39
#define IORING_OP_FTRUNCATE 55
#define IORING_OP_WRITEV_FIXED 61
#define REQ_F_CQE_SKIP (1ULL << 6)

/* struct kiocb * of asynchronous direct writes in flight */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} dio_writes SEC(".maps");

/* Every program body runs with its scratch slot (yeet_maps.h). */
#define WITH_SCRATCH(slot, body) ({					\
	__u64 __seq;							\
	struct scratch *s = scratch_begin(slot, &__seq);		\
	if (s) {							\
		body;							\
		scratch_end(s, __seq);					\
	}								\
})

/* ---- system calls ------------------------------------------------------------ */

SEC("tp_btf/sys_enter")
int BPF_PROG(yeet_sys_enter, struct pt_regs *regs, long id)
{
	WITH_SCRATCH(SLOT_SYS_ENTER, sys_enter(s, regs, id));
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(yeet_sys_exit, struct pt_regs *regs, long ret)
{
	WITH_SCRATCH(SLOT_SYS_EXIT, sys_exit(s, regs, ret));
	return 0;
}

/* ---- inode hooks: find the inode of truncate(path) ------------------------- */

static __always_inline void inode_changed(struct scratch *s, struct inode *inode)
{
	struct task_struct *task;
	struct pending *p;
	__u64 addr;

	/* this fires on every inode update: nothing unless a truncate(path)
	 * is in flight somewhere, then only for watched filesystems */
	if (!gen_get(GEN_PATH_TRUNCS) || !dev_watched(inode))
		return;
	task = bpf_get_current_task_btf();
	p = task_pending(task, 0);
	if (!p || p->nr != NR_truncate + 1)
		return;
	addr = as_scalar(inode);
	if (record_inode(s, addr, 0, YEET_OFF_END, YEET_F_WHOLE | YEET_F_TRUNC, YEET_OP_INODE)) {
		if (!p->inode)
			p->inode = addr;
		p->marked++;
	}
}

SEC("tp_btf/writeback_mark_inode_dirty")
int BPF_PROG(yeet_mark_inode_dirty, struct inode *inode, int flags)
{
	if (!gen_get(GEN_PATH_TRUNCS)) /* the common case: no scratch needed */
		return 0;
	WITH_SCRATCH(SLOT_INODE_DIRTY, inode_changed(s, inode));
	return 0;
}

SEC("tp_btf/ext4_mark_inode_dirty")
int BPF_PROG(yeet_ext4_mark_inode_dirty, struct inode *inode, unsigned long ip)
{
	if (fs_dev(inode)) { /* from setattr: the size changed (yeet_fs.h) */
		if (ip >= cfg.setattr_lo && ip < cfg.setattr_hi)
			WITH_SCRATCH(SLOT_FS_SIZE, fs_setattr(s, inode));
	} else if (gen_get(GEN_PATH_TRUNCS))
		WITH_SCRATCH(SLOT_EXT4_INODE_DIRTY, inode_changed(s, inode));
	return 0;
}

/* ---- ext4: where changes land (yeet_fs.h) ----------------------------------- */

#define FS_WRITE_END(name, tp)								\
SEC("tp_btf/" tp)									\
int BPF_PROG(name, struct inode *inode, loff_t pos, unsigned int len, unsigned int copied) \
{											\
	if (fs_dev(inode))								\
		WITH_SCRATCH(SLOT_FS_WRITE, fs_write(s, inode, (__u64)pos, copied));	\
	return 0;									\
}

FS_WRITE_END(yeet_ext4_da_write_end, "ext4_da_write_end")
FS_WRITE_END(yeet_ext4_write_end, "ext4_write_end")
FS_WRITE_END(yeet_ext4_journalled_write_end, "ext4_journalled_write_end")

SEC("tp_btf/ext4_truncate_enter")
int BPF_PROG(yeet_ext4_truncate, struct inode *inode)
{
	/* i_size is the new size already; an inode without links is being
	 * evicted (deleted: its name's removal was a name event) */
	if (inode->i_nlink && fs_dev(inode)) {
		WITH_SCRATCH(SLOT_FS_SIZE, fs_mark(s, inode, (__u64)inode->i_size, YEET_OFF_END,
						   YEET_F_TRUNC | YEET_F_FLUX, YEET_OP_FS_SIZE));
		fs_shrunk(inode, inode->i_size);
	}
	return 0;
}

#define FS_FALLOC(name, tp, start, end, flags)						\
SEC("tp_btf/" tp)									\
int BPF_PROG(name, struct inode *inode, loff_t offset, loff_t len, int mode)		\
{											\
	if (fs_dev(inode))								\
		WITH_SCRATCH(SLOT_FS_FALLOC, fs_mark(s, inode, start, end,		\
						     (flags) | YEET_F_FLUX, YEET_OP_FS_FALLOC)); \
	return 0;									\
}

FS_FALLOC(yeet_ext4_punch_hole, "ext4_punch_hole", offset, offset + len, 0)
FS_FALLOC(yeet_ext4_zero_range, "ext4_zero_range",
	  min_u64(offset, inode->i_size), offset + len, 0)
/* allocating changes no byte, except that growing the file shows zeros */
FS_FALLOC(yeet_ext4_fallocate, "ext4_fallocate_enter",
	  (mode & FALLOC_FL_KEEP_SIZE) ? 0 : min_u64(offset, inode->i_size),
	  (mode & FALLOC_FL_KEEP_SIZE) ? 0 : offset + len, 0)

SEC("tp_btf/ext4_collapse_range")
int BPF_PROG(yeet_ext4_collapse_range, struct inode *inode, loff_t offset, loff_t len)
{
	if (fs_dev(inode)) {
		WITH_SCRATCH(SLOT_FS_FALLOC, fs_mark(s, inode, offset, YEET_OFF_END,
						     YEET_F_TRUNC | YEET_F_FLUX, YEET_OP_FS_FALLOC));
		fs_shrunk(inode, offset); /* it ends at offset or later */
	}
	return 0;
}

SEC("tp_btf/ext4_insert_range")
int BPF_PROG(yeet_ext4_insert_range, struct inode *inode, loff_t offset, loff_t len)
{
	if (fs_dev(inode))
		WITH_SCRATCH(SLOT_FS_FALLOC, fs_mark(s, inode, offset, YEET_OFF_END, YEET_F_FLUX,
						     YEET_OP_FS_FALLOC));
	return 0;
}

/* the first access through any mapping faults; only mappings that may write
 * count (i_mmap_writable), of regular files the filesystem hooks watch */
static __always_inline int may_be_written_through_a_mapping(struct address_space *mapping)
{
	return mapping && mapping->i_mmap_writable.counter > 0 && fs_dev(mapping->host);
}

SEC("tp_btf/mm_filemap_fault")
int BPF_PROG(yeet_filemap_fault, struct address_space *mapping, unsigned long index)
{
	if (may_be_written_through_a_mapping(mapping))
		WITH_SCRATCH(SLOT_FAULT, fs_fault(s, mapping));
	return 0;
}

SEC("tp_btf/mm_filemap_map_pages")
int BPF_PROG(yeet_filemap_map_pages, struct address_space *mapping, unsigned long start,
	     unsigned long last)
{
	if (may_be_written_through_a_mapping(mapping))
		WITH_SCRATCH(SLOT_FAULT, fs_fault(s, mapping));
	return 0;
}

/* ---- page cache: folios dirtied outside any traced syscall on their inode ---- */

/* (system-call mode) A folio turned dirty while no traced call was writing its
 * inode: through a mapping (whole and sticky already), or by a writer inside
 * the kernel - the loop driver, process accounting, overlayfs writing the upper
 * file of a file written through the merged mount - which may write this file
 * again into pages that are still dirty, where this hook does not fire: the
 * file is whole from now on (KWRITE). */
SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(yeet_dirty_folio, struct folio *folio, struct address_space *mapping)
{
	struct task_struct *task;
	unsigned long flags = 0, order = 0;
	struct inode *inode;
	struct pending *p;
	__u64 start;

	if (!mapping)
		return 0;
	inode = mapping->host;
	if (!dev_watched(inode))
		return 0;
	task = bpf_get_current_task_btf();
	p = task_pending(task, 0);
	if (p && p->nr && p->target == as_scalar(inode))
		return 0; /* the call in progress writes this inode: its exit accounts for it */
	if (bpf_core_field_exists(struct folio___old, flags))
		flags = BPF_CORE_READ((struct folio___old *)folio, flags);
	else
		flags = BPF_CORE_READ(folio, flags.f);
	if (flags & (1UL << bpf_core_enum_value(enum pageflags, PG_head)))
		order = BPF_CORE_READ(folio, _flags_1) & 0xff;
	start = (__u64)BPF_CORE_READ(folio, index) << 12;
	WITH_SCRATCH(SLOT_FOLIO, record_inode(s, as_scalar(inode), start,
					       start + (4096ULL << (order & 31)), YEET_F_KWRITE,
					       YEET_OP_FOLIO));
	return 0;
}

/* ---- asynchronous direct I/O: exact ranges when the write completes ------- */

SEC("tp_btf/iomap_dio_rw_begin")
int BPF_PROG(yeet_dio_begin, struct kiocb *iocb, struct iov_iter *iter, unsigned int dio_flags,
	     unsigned long done_before)
{
	__u64 key = (__u64)iocb;
	__u32 one = 1, w;

	if (!BPF_CORE_READ(iter, data_source) || !iocb->ki_filp)
		return 0; /* a read */
	w = dev_flags(iocb->ki_filp->f_inode);
	/* without the filesystem hooks, synchronous direct I/O completes before
	 * its system call returns, which accounts for it */
	if (!w || (!(w & YEET_WATCH_FS) && !BPF_CORE_READ(iocb, ki_complete)))
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
	pos = (__u64)BPF_CORE_READ(iocb, ki_pos); /* already advanced by ret */
	/* an error may follow a partial write; reaching the end of file may
	 * have opened a hole whose start we do not know */
	if (ret <= 0 || error || pos >= (__u64)inode_size(file_inode_addr(f)))
		WITH_SCRATCH(SLOT_DIO, record_whole(s, f, 0, YEET_OP_DIO, ret));
	else
		WITH_SCRATCH(SLOT_DIO, record_file(s, f, pos >= (__u64)ret ? pos - ret : 0, pos, 0,
						   YEET_OP_DIO, ret));
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
	struct io_open *open = (struct io_open *)req; /* the request's command data */

	if (opcode != IORING_OP_OPENAT && opcode != IORING_OP_OPENAT2)
		return 0;
	return (BPF_CORE_READ(open, how.flags) & O_TRUNC) != 0;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(yeet_uring_submit, struct io_kiocb *req)
{
	__u64 flags = BPF_CORE_READ_BITFIELD_PROBED(req, flags);

	__u8 opcode = BPF_CORE_READ(req, opcode);

	if (!(flags & REQ_F_CQE_SKIP))
		return 0;
	/* no completion event will tell us when it lands */
	if (uring_writes(opcode) || uring_open_trunc(req) || opcode == IORING_OP_RENAMEAT ||
	    opcode == IORING_OP_LINKAT)
		stat_add(YEET_STAT_UNPLACEABLE, 1);
	return 0;
}

static __always_inline void uring_complete(struct scratch *s, struct io_kiocb *req,
					   struct io_uring_cqe *cqe)
{
	__u8 opcode;

	opcode = BPF_CORE_READ(req, opcode);
	if (opcode == IORING_OP_RENAMEAT || opcode == IORING_OP_LINKAT) {
		renamed();
		return;
	}
	if (uring_writes(opcode)) {
		struct file *f = BPF_CORE_READ(req, file);

		if (opcode == IORING_OP_FTRUNCATE)
			truncated_whole(s, f, YEET_OP_IO_URING, BPF_CORE_READ(cqe, res));
		else
			record_whole(s, f, 0, YEET_OP_IO_URING, BPF_CORE_READ(cqe, res));
		return;
	}
	if (uring_open_trunc(req)) {
		struct io_open *open = (struct io_open *)req;
		__s32 res = BPF_CORE_READ(cqe, res);
		struct file *f;

		if (res < 0)
			return;
		if (BPF_CORE_READ(open, file_slot)) {
			stat_add(YEET_STAT_UNPLACEABLE, 1); /* opened into a fixed slot */
			return;
		}
		f = fd_file(bpf_get_current_task_btf(), res);
		truncated_whole(s, f, YEET_OP_IO_URING, res);
	}
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(yeet_uring_complete, void *ring, void *reqp, struct io_uring_cqe *cqe)
{
	if (reqp)
		WITH_SCRATCH(SLOT_URING, uring_complete(s, reqp, cqe));
	return 0;
}

/* ---- fentry: probed only ------------------------------------------------------ */

/* Never attached: userspace loads it alone to learn whether fentry/fexit work
 * on this kernel (a faster path could use them; the tracepoints above are the
 * path that must always work). */
SEC("fentry/vfs_fsync_range")
int BPF_PROG(yeet_fentry_probe)
{
	return 0;
}

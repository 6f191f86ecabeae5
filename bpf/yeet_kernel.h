/* SPDX-License-Identifier: MIT */
/*
 * yeet_kernel.h - the few kernel structures the tracer reads, declared with
 * preserve_access_index so libbpf relocates every field access against the
 * running kernel's BTF (CO-RE). Only names matter, not layout or completeness:
 * a field missing on some kernel fails only the program that reads it.
 * Kept minimal on purpose (no generated vmlinux.h needed to build).
 */
#ifndef YEET_KERNEL_H
#define YEET_KERNEL_H

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

typedef long long loff_t;
typedef unsigned int fmode_t;
typedef unsigned short umode_t;
typedef unsigned int dev_t;

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip;
};

struct thread_info {
	unsigned long flags;
	__u32 status;
};

struct qstr {
	const unsigned char *name;
};

struct hlist_node {
	struct hlist_node *next;
};

struct hlist_head {
	struct hlist_node *first;
};

struct dentry;

struct super_block {
	dev_t s_dev;
	unsigned long s_magic;
	struct dentry *s_root;
};

struct inode {
	umode_t i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
	unsigned int i_nlink;
	loff_t i_size;
	__u32 i_generation;
	struct hlist_head i_dentry;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	union {
		struct hlist_node d_alias;
	} d_u;
};

struct path {
	struct dentry *dentry;
};

struct file {
	fmode_t f_mode;
	struct inode *f_inode;
	unsigned int f_flags;
	struct path f_path;
	loff_t f_pos;
	void *private_data;
};

/* overlayfs: what an overlay file's private_data points to */
struct ovl_file {
	struct file *realfile;
};

/* ext4's inode around the VFS one: the size on disk lags i_size, except while
 * setattr grows the file (i_disksize is set first) */
struct ext4_inode_info {
	loff_t i_disksize;
	struct inode vfs_inode;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct fs_struct {
	struct path root;
	struct path pwd;
};

struct task_struct {
	struct thread_info thread_info;
	int pid;
	int tgid;
	struct fs_struct *fs;
	struct files_struct *files;
};

typedef struct {
	int counter;
} atomic_t;

struct address_space {
	struct inode *host;
	atomic_t i_mmap_writable; /* shared mappings that may write */
};

/* folio->flags became memdesc_flags_t (a struct) in 6.18; older: a long. */
typedef struct {
	unsigned long f;
} memdesc_flags_t;

struct folio {
	memdesc_flags_t flags;
	struct address_space *mapping;
	unsigned long index;
	unsigned long _flags_1;
};

struct folio___old {
	unsigned long flags;
};

enum pageflags {
	PG_head = 6,
};

struct kiocb {
	struct file *ki_filp;
	loff_t ki_pos;
	void *ki_complete;
};

struct iov_iter {
	_Bool data_source;
};

struct io_kiocb {
	struct file *file;
	__u8 opcode;
	__u64 flags;
};

struct open_how {
	__u64 flags;
};

struct io_open {
	struct file *file;
	__u32 file_slot;
	struct open_how how;
};

struct io_uring_cqe {
	__u64 user_data;
	__s32 res;
	__u32 flags;
};

#pragma clang attribute pop

#endif /* YEET_KERNEL_H */

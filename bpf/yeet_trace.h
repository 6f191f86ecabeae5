/* SPDX-License-Identifier: MIT */
/*
 * yeet_trace.h - the ABI between the kernel program (yeet_trace.bpf.c) and
 * userspace (yeet/tracer/abi.py mirrors every struct and constant here; a
 * test compares the two through the BTF of the compiled object).
 *
 * Change anything here -> change abi.py, bump YEET_ABI_VERSION, rebuild.
 */
#ifndef YEET_TRACE_H
#define YEET_TRACE_H

#define YEET_ABI_VERSION 3

/* Ranges kept per inode per epoch; one more distinct range -> whole file. */
#define YEET_MAX_RANGES 32
/* "Up to the end of the file, whatever its size" (truncate, collapse...). */
#define YEET_OFF_END 0xffffffffffffffffULL

/* Verbose events carry the last YEET_PATH_DEPTH path components. */
#define YEET_PATH_DEPTH 8
#define YEET_NAME_LEN 40
/* Subtree filter: ancestors examined before giving up and accepting. */
#define YEET_MAX_ANCESTORS 48

/* What produced a mark (yeet_event.op). */
enum yeet_op {
	YEET_OP_NONE = 0,
	YEET_OP_WRITE = 1,
	YEET_OP_WRITEV = 2,
	YEET_OP_PWRITE64 = 3,
	YEET_OP_PWRITEV = 4,
	YEET_OP_PWRITEV2 = 5,
	YEET_OP_TRUNCATE = 6,
	YEET_OP_FTRUNCATE = 7,
	YEET_OP_FALLOCATE = 8,
	YEET_OP_COPY_FILE_RANGE = 9,
	YEET_OP_SENDFILE = 10,
	YEET_OP_SPLICE = 11,
	YEET_OP_MMAP = 12,
	YEET_OP_OPEN_TRUNC = 13,
	YEET_OP_IOCTL = 14,
	YEET_OP_IO_SUBMIT = 15,
	YEET_OP_IO_URING = 16,
	YEET_OP_DIO = 17,
	YEET_OP_FOLIO = 18,
	YEET_OP_FALLBACK = 19,  /* syscall exit without an entry record */
	YEET_OP_INODE = 20,     /* inode changed during truncate(path) */
	YEET_OP_FS_WRITE = 21,  /* (ext4) bytes landed in the page cache, any writer */
	YEET_OP_FS_SIZE = 22,   /* (ext4) the size changed: truncate, grown by setattr */
	YEET_OP_FS_FALLOC = 23, /* (ext4) fallocate: punch, zero, collapse, insert, allocate */
	YEET_OP_MMAP_FAULT = 24, /* a page of a file mapped shared and writable was faulted in */
	YEET_OP_MAX = 25,
};

/* yeet_dirty.flags / yeet_event.flags */
#define YEET_F_WHOLE    0x1   /* the whole file is dirty */
#define YEET_F_MMAP     0x2   /* shared writable mapping: stays dirty while mapped */
#define YEET_F_OVERFLOW 0x4   /* range list overflowed -> whole */
#define YEET_F_APPEND   0x8   /* O_APPEND / RWF_APPEND write */
#define YEET_F_RACE     0x10  /* file position raced (lseek) -> whole */
#define YEET_F_TRUNC    0x20  /* size may have shrunk */
#define YEET_F_FLUX     0x40  /* recorded before it landed, under the inode's lock:
			       * userspace takes that lock (shared) before it answers */
#define YEET_F_KWRITE   0x80  /* written from inside the kernel, outside any traced
			       * call (loop, acct...): whole in every answer from now on */

/* Event types in the ring buffers. */
enum yeet_ev_type {
	YEET_EV_DIRTY = 1,       /* (notices) a file got its first mark this epoch */
	YEET_EV_WRITE = 2,       /* (verbose) one operation, for `yeet trace` */
	YEET_EV_PATH_TRUNC = 3,  /* (notices) truncate(path): userspace resolves */
};

/* Counters in the `stats` array map. */
enum yeet_stat {
	YEET_STAT_DROPS = 0,        /* a change could not be recorded: rescan */
	YEET_STAT_OVERFLOWS = 1,    /* range list overflow -> whole file */
	YEET_STAT_NOTICE_LOST = 2,  /* notice ring full (harmless: map has it) */
	YEET_STAT_VERBOSE_LOST = 3, /* verbose ring full (yeet trace output only) */
	YEET_STAT_TRUNC_SEQ = 4,    /* bumped by anything that can shrink a file */
	YEET_STAT_MARKS = 5,        /* operations recorded */
	YEET_STAT_UNPLACEABLE = 6,  /* writes we saw but cannot attribute: rescan */
	YEET_STAT_RACES = 7,        /* position races resolved as whole file */
	YEET_STAT_FALLBACKS = 8,    /* exits without entry records */
	YEET_STAT_MAP_FULL = 9,     /* range map full (also counted in DROPS) */
	YEET_STAT_MAX = 10,
};

/* Values in watched_devs. */
#define YEET_WATCH_SUBTREES 0x1  /* only files below a watched_dirs entry */
#define YEET_WATCH_ALL      0x2  /* every file of this filesystem */
#define YEET_WATCH_FS       0x4  /* ext4: changes are seen where they land (yeet_fs.h);
				  * the system-call hooks leave its files alone */

struct yeet_file_id {
	__u64 ino;
	__u32 dev;   /* kernel dev_t of the superblock: major << 20 | minor */
	__u32 gen;   /* inode generation */
};

/* key of the range map */
struct yeet_key {
	struct yeet_file_id id;
	__u64 epoch;
};

struct yeet_dir_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct yeet_range {
	__u64 start;
	__u64 end;   /* exclusive; YEET_OFF_END = to the end of the file */
};

/* Value of the per-epoch range map. The lock keeps CPUs from losing each
 * other's updates; the ranges are pairwise disjoint and non-adjacent. */
struct yeet_dirty {
	struct bpf_spin_lock lock;
	__u32 nr;
	__u32 flags;
	__u32 ops;
	struct yeet_range r[YEET_MAX_RANGES];
};

struct yeet_config {
	__u32 verbose;     /* emit one YEET_EV_WRITE per operation */
	__u32 self_tgid;   /* never report this process's own writes (0: off) */
	__u32 abi;         /* userspace writes YEET_ABI_VERSION */
	__u32 pad;
	__u64 setattr_lo;  /* [lo, hi): ext4_setattr's code (kallsyms): an inode marked */
	__u64 setattr_hi;  /* dirty from there changed size (grown: no other tracepoint) */
};

struct yeet_event {
	__u32 type;
	__u32 op;
	__u32 pid;     /* tgid */
	__u32 tid;
	struct yeet_file_id id;
	__u64 ts_ns;   /* bpf_ktime_get_boot_ns */
	__u64 start;     /* the mark: what the sync engine is told */
	__u64 end;
	__u64 op_start;  /* the call's own bytes, where known (yeet trace) */
	__u64 op_end;
	__u32 flags;
	__s32 ret;
	char comm[16];
	__u64 root_ino;  /* watched dir the path was found under (0: none) */
	__u32 depth;     /* number of names captured (names[0] = the file) */
	__u32 complete;  /* 1: names reach root_ino (or the fs root) */
	/* EV_PATH_TRUNC: names holds the user path (flat), root_ino/.. below */
	char names[YEET_PATH_DEPTH][YEET_NAME_LEN];
	struct yeet_file_id cwd;   /* EV_PATH_TRUNC: task's cwd */
	struct yeet_file_id root;  /* EV_PATH_TRUNC: task's root */
};

#endif /* YEET_TRACE_H */

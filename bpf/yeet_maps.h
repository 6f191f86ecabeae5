/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * yeet_maps.h - every map of the tracer, its configuration and counters.
 *
 * Invariant: userspace (yeet/tracer/loader.py) and the programs agree on what
 * each map holds; the comments here are that agreement.
 *
 * Part of yeet_trace.bpf.c (one translation unit); not a standalone header.
 */
#ifndef YEET_MAPS_H
#define YEET_MAPS_H

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
 * after every rename or link system call), [2]: roots generation (userspace),
 * [3]: truncations so far, [4]: truncate(path) calls in flight, [5]: names
 * bound below a root (userspace, from fanotify: without the system-call hooks
 * this is how cached answers learn of renames and links) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __u64);
} gens SEC(".maps");
#define GEN_EPOCH 0
#define GEN_RENAME 1
#define GEN_ROOTS 2
#define GEN_TRUNCS 3
#define GEN_PATH_TRUNCS 4
#define GEN_NAMES 5

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
	__u32 rgen;      /* names_gen() when computed */
	__u32 wgen;      /* gens[GEN_ROOTS] when computed */
	__u32 watched;
	__u32 devflags;  /* YEET_WATCH_FS: the filesystem hooks see its changes */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct fstate);
} fcache SEC(".maps");

/* struct inode * -> is it watched (the filesystem hooks' cache) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct icached);
} icache SEC(".maps");

/* ---- scratch: what would not fit on the 512-byte BPF stack ------------------- */

/* Kernel structures are read with one bpf_probe_read_kernel per window. */
struct win128 {
	__u64 q[16];
};

/* One mark on its way into the range map (filled by record_*, read by record). */
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

/* What evaluate() found out about an inode. */
struct evaluation {
	__u64 root_ino;
	struct yeet_file_id id;
	__u32 devflags;  /* its filesystem's watched_devs value (YEET_WATCH_*) */
	__u32 pad;
};

/* A cached answer for an inode (the filesystem hooks have no open file). */
struct icached {
	__u64 inode;     /* struct inode * */
	__u64 ino;       /* tells a reused struct inode apart */
	__u64 parent;    /* its name's directory (dentry): renamed, it is another answer */
	__s64 size;      /* a size it had since it was cached, at most (see fs_setattr) */
	__u64 whole;     /* epoch + 1 in which its range map entry is whole (0: unknown) */
	__u32 nlink;     /* a new link may be below a root */
	__u32 rgen;      /* names_gen() when computed */
	__u32 wgen;      /* gens[GEN_ROOTS] when computed */
	__u32 watched;
	__u64 root_ino;
	struct yeet_file_id id;
};

/* Per CPU, one slot per program: a program never runs nested within itself
 * on a CPU (the kernel's per-program recursion guard), and programs on the
 * hooks used here run with preemption disabled, so a slot has one user at a
 * time. `seq` checks that anyway: every run bumps it on entry and checks it
 * at the end; a run that finds it moved counts a drop (userspace rescans). */
struct scratch {
	__u64 seq;
	struct mark m;          /* the mark handed to record() */
	struct evaluation e;    /* evaluate()'s answer */
	struct win128 w;        /* a window of a kernel structure, read and used at once */
	struct icached last;    /* the filesystem hooks' last inode (most writes repeat it) */
};

enum yeet_slot {
	SLOT_SYS_ENTER = 0,
	SLOT_SYS_EXIT,
	SLOT_INODE_DIRTY,
	SLOT_EXT4_INODE_DIRTY,
	SLOT_FOLIO,
	SLOT_DIO,
	SLOT_URING,
	SLOT_FS_WRITE,
	SLOT_FS_SIZE,
	SLOT_FS_FALLOC,
	SLOT_FAULT,
	SLOT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOT_MAX);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* The filesystems the filesystem hooks watch (YEET_WATCH_FS), kept by userspace
 * in .bss: every ext4 write on the machine looks here first, and a few loads
 * are cheaper than a hash lookup. More than YEET_FS_DEVS of them: userspace
 * sets n = YEET_FS_DEVS + 1 and the hooks ask watched_devs instead. */
#define YEET_FS_DEVS 8
struct yeet_fs_devs {
	__u32 n;
	__u32 dev[YEET_FS_DEVS];
};
struct yeet_fs_devs fs_devs = {};

/* Typed reads through pointers the verifier does not trust, as plain loads
 * (the JIT guards them) instead of a helper call each. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

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

/* The program's scratch slot, its run marked as started (NULL: count a drop). */
static __always_inline struct scratch *scratch_begin(__u32 slot, __u64 *seq)
{
	struct scratch *s = bpf_map_lookup_elem(&scratch, &slot);

	if (!s) {
		stat_add(YEET_STAT_DROPS, 1);
		return NULL;
	}
	*seq = ++s->seq;
	return s;
}

/* End of a run: had anything else used the slot meanwhile, what this run
 * recorded may be wrong - rescan. */
static __always_inline void scratch_end(struct scratch *s, __u64 seq)
{
	if (s->seq != seq)
		stat_add(YEET_STAT_DROPS, 1);
}

/* Renames and links, whoever saw them: a cached answer older than this is stale. */
static __always_inline __u32 names_gen(void)
{
	return (__u32)(gen_get(GEN_RENAME) + gen_get(GEN_NAMES));
}

static __always_inline __u64 min_u64(__u64 a, __u64 b) { return a < b ? a : b; }
static __always_inline __u64 max_u64(__u64 a, __u64 b) { return a > b ? a : b; }

#endif /* YEET_MAPS_H */

/* Shared by every agentstory kernel concern: the event header, the ring buffer, the
 * pod-cgroup filter and the counters.
 *
 * bcc only rewrites map calls (map.lookup(), events.ringbuf_output()) and tracepoint
 * argument structs in the main source, not in included headers, so the loader inlines
 * this header in place of the `#include "common.bpf.h"` line of each concern file
 * (collectors/kernel/loader.py: assemble_source). Each concern file still includes it,
 * so it reads (and compiles) on its own.
 *
 * Layouts here are mirrored by collectors/kernel/decode.py and checked against the
 * compiled layout by tests/kernel/test_layout.py: change both together.
 *
 * Tunables come in as -D defines from the loader (defaults below).
 */
#ifndef AGENTSTORY_COMMON_BPF_H
#define AGENTSTORY_COMMON_BPF_H

#include <uapi/linux/ptrace.h>

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 1024
#endif
#ifndef MAX_POD_CGROUPS
#define MAX_POD_CGROUPS 16384
#endif
#ifndef MAX_PROCS
#define MAX_PROCS 65536
#endif
#ifndef DEDUP_WINDOW_NS
#define DEDUP_WINDOW_NS 1000000000ULL
#endif
#ifndef MAX_DEDUP
#define MAX_DEDUP 16384
#endif

#define COMM_LEN 16
#define FILENAME_LEN 256
#define ARGS_LEN 1024
#define ARG_ONE_LEN 256
#define MAX_ARGS 32
#define CGROUP_PATH_LEN 256

/* Event kinds (decode.py: Kind). */
#define EV_EXEC 1
#define EV_EXIT 2
#define EV_CGROUP_MKDIR 3
#define EV_OPEN 4
#define EV_CONNECT 5
#define EV_CLOSE 6
#define EV_DNS 7
#define EV_ACCEPT 8
#define EV_LISTEN 9
#define EV_FILEOP 10      /* chdir, unlink, rename, chmod, chown (file.bpf.c) */
#define EV_NSOP 11        /* setns, unshare, mount (ns.bpf.c) */

/* Counter slots of the per-CPU `counters` array (decode.py: Counter). */
#define C_EMITTED 0       /* records written to the ring buffer */
#define C_LOST 1          /* bpf_ringbuf_output failed: buffer full */
#define C_DEDUPLICATED 2  /* repeats folded into an earlier event's count */
#define C_DEDUP_FULL 3    /* dedup table full: emitted without de-duplication */
#define C_FILTERED 4      /* cgroup not a pod (dropped in the kernel) */
#define C_PODS_ADDED 5    /* pod cgroups learnt from cgroup_mkdir */
#define C_PROFILE_FULL 6  /* syscall profile table full */
#define C_CONNECT_PARKED 7 /* non-blocking connects waiting for the TCP handshake */
#define NR_COUNTERS 8

struct event_header {
    u32 kind;
    u32 pid;       /* tgid */
    u32 tid;
    u32 ppid;      /* 0 when unknown in the kernel (process predates its fork record) */
    u32 uid;
    u32 count;     /* 1, or how many identical events this record stands for */
    u64 ts;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 cgroup_id;
    u64 start_ns;  /* process start (fork or exec) on the same clock, 0 when unknown */
    char comm[COMM_LEN];
};

/* What the kernel remembers per process (tgid; per thread until the thread exits). */
struct proc_info {
    u32 ppid;
    s32 exit_code;   /* from exit_group(code) */
    u32 exit_flags;  /* 1: exit_code set, 2: signal set */
    u32 signal;      /* last fatal-candidate signal delivered */
    u64 start_ns;
    char comm[COMM_LEN];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(pod_cgroups, u64, u8, MAX_POD_CGROUPS);
BPF_PERCPU_ARRAY(counters, u64, NR_COUNTERS);
BPF_HASH(procs, u32, struct proc_info, MAX_PROCS);

static __always_inline void count_add(u32 slot, u64 n)
{
    u64 *value = counters.lookup(&slot);
    if (value)
        *value += n;
}

/* Pod-cgroup check, cheap on the common path: a per-CPU one-entry cache of the last
 * verdict (cgroup id -> in a pod or not), valid while `pod_gen` has not moved. Every
 * change of `pod_cgroups` (cgroup_mkdir/rmdir here, the scan in user space) bumps
 * `pod_gen` after the change, and the verdict is stored with the generation read before
 * the lookup, so a stale verdict is never reused. A hit costs two inlined array reads
 * instead of a hash of the id; syscalls come in runs from one task per CPU, so hits are
 * the rule (host processes included: they are filtered out at the same price).
 * `check` guards against a torn entry when a program in interrupt context (socket
 * state changes) refills the cache between the writes of one in process context. */
struct scope_cache {
    u64 cgroup_id;
    u64 verdict;   /* generation << 1 | in a pod */
    u64 check;     /* cgroup_id ^ verdict */
};
BPF_ARRAY(pod_gen, u64, 1);
BPF_PERCPU_ARRAY(scope_cache, struct scope_cache, 1);

static __always_inline int in_pod(u64 cgroup_id)
{
    u32 zero = 0;
    u64 *gen = pod_gen.lookup(&zero);
    struct scope_cache *c = scope_cache.lookup(&zero);
    if (!gen || !c)
        return pod_cgroups.lookup(&cgroup_id) != 0;
    u64 g = *gen << 1;
    u64 verdict = c->verdict;
    if (c->cgroup_id == cgroup_id && (verdict & ~1ULL) == g &&
        c->check == (cgroup_id ^ verdict))
        return verdict & 1;
    verdict = g | (pod_cgroups.lookup(&cgroup_id) ? 1 : 0);
    c->cgroup_id = cgroup_id;
    c->verdict = verdict;
    c->check = cgroup_id ^ verdict;
    return verdict & 1;
}

static __always_inline void pod_cgroups_changed(void)
{
    u32 zero = 0;
    u64 *gen = pod_gen.lookup(&zero);
    if (gen)
        __sync_fetch_and_add(gen, 1);
}

/* True when the current task belongs to a pod cgroup (or host events are asked for). */
static __always_inline int in_scope(u64 cgroup_id)
{
#ifdef INCLUDE_HOST
    return 1;
#else
    if (in_pod(cgroup_id))
        return 1;
    count_add(C_FILTERED, 1);
    return 0;
#endif
}

/* Most syscall probes run at the exit alone and read the call's arguments from the
 * saved registers (read_sys_args below). Where an entry must keep something for the exit
 * (the namespaces before setns/unshare; the socket a connect() put in SYN_SENT), it lives
 * in task-local storage (BPF_TASK_STORAGE, one slot per thread, freed with it) instead of
 * a hash keyed by thread id: no update/lookup/delete of a shared hash per syscall, and a
 * thread that never did a traced call in a pod has no storage at all. Entries are marked
 * used rather than deleted. */
#define CURRENT_TASK ((struct task_struct *)bpf_get_current_task_btf())

/* A syscall's arguments at its exit tracepoint, read from the user registers the task
 * saved on entry (x86_64: arg1..6 in di, si, dx, r10, r8, r9; the syscall number in
 * orig_ax). The kernel does not write them during the call (only ax, the result), so a
 * probe on the exit alone sees what the entry saw: one program run per call instead of
 * an entry/exit pair, and an unwatched process pays one in-scope test per call. The
 * offsets are those of struct pt_regs, an ABI (ptrace's user_regs_struct order). */
struct sys_args {
    u64 r10;   /* pt_regs offset 56 */
    u64 r9;
    u64 r8;
    u64 ax;
    u64 cx;
    u64 dx;
    u64 si;
    u64 di;
    u64 orig_ax;
};
#define PT_REGS_R10_OFFSET 56
#define SYS_ARG1(a) ((a)->di)
#define SYS_ARG2(a) ((a)->si)
#define SYS_ARG3(a) ((a)->dx)
#define SYS_ARG4(a) ((a)->r10)
#define SYS_ARG5(a) ((a)->r8)
#define SYS_ARG6(a) ((a)->r9)
#define SYS_NR(a) ((a)->orig_ax)

static __always_inline int read_sys_args(struct sys_args *a)
{
    u64 regs = (u64)bpf_task_pt_regs(CURRENT_TASK);
    if (!regs || bpf_probe_read_kernel(a, sizeof(*a), (void *)(regs + PT_REGS_R10_OFFSET))) {
        __builtin_memset(a, 0, sizeof(*a));
        return -1;
    }
    return 0;
}

/* Header of an event about the current task; ppid/start from the procs table. */
static __always_inline void fill_header(struct event_header *h, u32 kind, u64 cgroup_id)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    h->kind = kind;
    h->pid = tgid;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)bpf_get_current_uid_gid();
    h->count = 1;
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = cgroup_id;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
    struct proc_info *info = procs.lookup(&tgid);
    if (info) {
        h->ppid = info->ppid;
        h->start_ns = info->start_ns;
    } else {
        h->ppid = 0;
        h->start_ns = 0;
    }
}

/* De-duplication outcome for an event whose key was just built in a per-concern table:
 * DEDUP_FIRST (emit it, it opens the window), DEDUP_REPEAT (counted in the table, not
 * emitted), DEDUP_BYPASS (table full: emit without de-duplication, counted). Keys carry
 * the window number (ts / DEDUP_WINDOW_NS); user space sweeps closed windows and
 * reports the repeat counts, so totals stay exact. */
#define DEDUP_FIRST 0
#define DEDUP_REPEAT 1
#define DEDUP_BYPASS 2
/* (bcc cannot rewrite map calls inside a macro or take a map as an argument, so each
 * concern writes its own check: insert with BPF_NOEXIST; on failure, a lookup tells a
 * repeat (count it) from a full table (bypass).) */

/* Copy a record into the ring buffer; a full buffer is counted, never silent.
 * User space is woken once every WAKEUP_EVERY records per CPU (it also drains on its
 * poll timeout): a wakeup per record costs a context switch per event, more than the
 * event itself on a busy node. (bcc 0.26 has no ringbuf_query to wake on fill level.) */
#ifndef WAKEUP_EVERY
#define WAKEUP_EVERY 64
#endif
static __always_inline int submit(void *record, u32 size)
{
    u32 slot = C_EMITTED;
    u64 *sent = counters.lookup(&slot);
    u64 flags = (sent && (*sent % WAKEUP_EVERY) == WAKEUP_EVERY - 1) ? BPF_RB_FORCE_WAKEUP
                                                                      : BPF_RB_NO_WAKEUP;
    if (events.ringbuf_output(record, size, flags) != 0) {
        count_add(C_LOST, 1);
        return -1;
    }
    count_add(C_EMITTED, 1);
    return 0;
}

/* -- kernel structs at BTF offsets -------------------------------------------------
 * The loader reads member offsets of the running kernel from its BTF (btf.py) and
 * passes them as OFF_* defines; a fact whose offsets are missing is left out. */
static __always_inline u64 read_ptr(u64 addr)
{
    u64 value = 0;
    if (addr)
        bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
    return value;
}

static __always_inline u32 read_u32(u64 addr)
{
    u32 value = 0;
    if (addr)
        bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
    return value;
}

/* Namespace inode numbers (as in /proc/<pid>/ns/<name>), 0 when unknown. */
struct ns_ids {
    u32 mnt;
    u32 pid;           /* the task's own (active) pid namespace */
    u32 net;
    u32 pid_children;  /* where its children will live (setns/unshare of pid) */
};

static __always_inline void read_ns(struct ns_ids *ns)
{
    ns->mnt = 0;
    ns->pid = 0;
    ns->net = 0;
    ns->pid_children = 0;
#if defined(OFF_TASK_NSPROXY) && defined(OFF_MNT_NS_INUM) && defined(OFF_NET_NS_INUM)
    u64 task = (u64)bpf_get_current_task();
    u64 nsproxy = read_ptr(task + OFF_TASK_NSPROXY);
    if (nsproxy) {
        u64 mnt = read_ptr(nsproxy + OFF_NSPROXY_MNT);
        u64 net = read_ptr(nsproxy + OFF_NSPROXY_NET);
        u64 pidc = read_ptr(nsproxy + OFF_NSPROXY_PID_CHILDREN);
        if (mnt)
            ns->mnt = read_u32(mnt + OFF_MNT_NS_INUM);
        if (net)
            ns->net = read_u32(net + OFF_NET_NS_INUM);
        if (pidc)
            ns->pid_children = read_u32(pidc + OFF_PID_NS_INUM);
    }
#if defined(OFF_TASK_THREAD_PID) && defined(OFF_PID_NUMBERS) && defined(SIZEOF_UPID)
    u64 pid = read_ptr(task + OFF_TASK_THREAD_PID);
    if (pid) {
        u32 level = read_u32(pid + OFF_PID_LEVEL);
        if (level < 32) {
            u64 pidns = read_ptr(pid + OFF_PID_NUMBERS + (u64)level * SIZEOF_UPID + OFF_UPID_NS);
            if (pidns)
                ns->pid = read_u32(pidns + OFF_PID_NS_INUM);
        }
    }
#endif
#endif
}

#endif /* AGENTSTORY_COMMON_BPF_H */

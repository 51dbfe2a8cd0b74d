/* process.setns / process.unshare / process.mount in pod cgroups: leaving the pod's
 * namespaces (nsenter into the node's, unshare into fresh ones) and mounting are
 * container-escape steps. The namespace ids are read from the task (BTF offsets,
 * common.bpf.h: read_ns) before the call, at entry, and after it, at exit; the mount's
 * strings are read at exit, with the result known. Rare calls: never de-duplicated.
 */
#include "common.bpf.h"

#define NSOP_SETNS 1
#define NSOP_UNSHARE 2
#define NSOP_MOUNT 3

struct nsop_args {
    u64 source;    /* mount: user pointers */
    u64 target;
    u64 fstype;
    u64 flags;     /* setns: nstype; unshare: flags; mount: mount flags */
    s32 fd;
    u32 op;        /* 0: nothing in flight */
    struct ns_ids before;
};

struct nsop_event {
    struct event_header h;
    s64 ret;
    u64 flags;
    u32 op;
    s32 fd;
    struct ns_ids before;
    struct ns_ids after;
    char source[128];
    char target[FILENAME_LEN];
    char fstype[32];
};

BPF_TASK_STORAGE(nsop_pending, struct nsop_args);
BPF_PERCPU_ARRAY(nsop_scratch, struct nsop_event, 1);

static __always_inline struct nsop_args *nsop_enter(u32 op, u64 flags, s32 fd)
{
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct nsop_args *a = nsop_pending.task_storage_get(
        CURRENT_TASK, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!a)
        return 0;
    a->op = op;
    a->flags = flags;
    a->fd = fd;
    a->source = 0;
    a->target = 0;
    a->fstype = 0;
    read_ns(&a->before);
    return a;
}

static __always_inline int nsop_exit(long ret)
{
    struct nsop_args *stored = nsop_pending.task_storage_get(CURRENT_TASK, 0, 0);
    if (!stored || !stored->op)
        return 0;
    struct nsop_args a = *stored;
    stored->op = 0;
    u32 zero = 0;
    struct nsop_event *e = nsop_scratch.lookup(&zero);
    if (!e)
        return 0;
    fill_header(&e->h, EV_NSOP, bpf_get_current_cgroup_id());
    e->ret = ret;
    e->flags = a.flags;
    e->op = a.op;
    e->fd = a.fd;
    e->before = a.before;
    read_ns(&e->after);
    e->source[0] = 0;
    e->target[0] = 0;
    e->fstype[0] = 0;
    if (a.source)
        bpf_probe_read_user_str(e->source, sizeof(e->source), (void *)a.source);
    if (a.target)
        bpf_probe_read_user_str(e->target, sizeof(e->target), (void *)a.target);
    if (a.fstype)
        bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), (void *)a.fstype);
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_setns)
{
    nsop_enter(NSOP_SETNS, (u64)(u32)args->flags, (s32)args->fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_setns) { return nsop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_unshare)
{
    nsop_enter(NSOP_UNSHARE, (u64)args->unshare_flags, -1);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_unshare) { return nsop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    struct nsop_args *a = nsop_enter(NSOP_MOUNT, (u64)args->flags, -1);
    if (a) {
        a->source = (u64)args->dev_name;
        a->target = (u64)args->dir_name;
        a->fstype = (u64)args->type;
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_mount) { return nsop_exit(args->ret); }

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_nsop_event, struct nsop_event, 1);
#endif

/* process.exec: sched:sched_process_exec gives the pid and the resolved filename once the
 * new image is in place; argv is copied earlier, at sys_enter_execve/execveat, while the
 * caller's memory still holds it, and handed over through `exec_args` keyed by the
 * thread id (== sched_process_exec's old_pid when a non-leader thread execs).
 */
#include "common.bpf.h"

#define EXEC_ARGV_TRUNCATED 1
#define EXEC_ARGV_MISSING 2

struct exec_args {
    u32 len;    /* bytes used in args: NUL-separated strings */
    u32 argc;   /* strings captured */
    u32 flags;
    u32 pad;
    char args[ARGS_LEN];
};

struct exec_event {
    struct event_header h;
    u32 args_len;
    u32 argc;
    u32 flags;
    u32 old_pid;
    char pcomm[COMM_LEN];
    char filename[FILENAME_LEN];
    char args[ARGS_LEN];
};

BPF_PERCPU_ARRAY(exec_args_scratch, struct exec_args, 1);
BPF_PERCPU_ARRAY(exec_scratch, struct exec_event, 1);
BPF_TABLE("lru_hash", u32, struct exec_args, exec_args_by_tid, 4096);

static __always_inline int capture_argv(const char *const *argv)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    u32 zero = 0;
    struct exec_args *a = exec_args_scratch.lookup(&zero);
    if (!a)
        return 0;
    a->len = 0;
    a->argc = 0;
    a->flags = 0;
    a->pad = 0;
    u32 len = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) != 0 || !arg)
            goto done;
        if (len > ARGS_LEN - ARG_ONE_LEN) {
            a->flags |= EXEC_ARGV_TRUNCATED;
            goto done;
        }
        long n = bpf_probe_read_user_str(&a->args[len], ARG_ONE_LEN, arg);
        if (n <= 0)
            goto done;
        if (n == ARG_ONE_LEN)
            a->flags |= EXEC_ARGV_TRUNCATED;
        len += n;
        a->argc++;
    }
    /* MAX_ARGS strings read; say so if there are more. */
    {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]);
        if (more)
            a->flags |= EXEC_ARGV_TRUNCATED;
    }
done:
    a->len = len;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_args_by_tid.update(&tid, a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return capture_argv(args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return capture_argv(args->argv);
}

/* A failed exec leaves its argv behind: drop it (a successful one was consumed). */
TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_args_by_tid.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_args_by_tid.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    u32 zero = 0;
    struct exec_event *e = exec_scratch.lookup(&zero);
    if (!e)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 now = bpf_ktime_get_ns();

    /* The process starts anew at exec: keep its parent, reset start and comm. */
    struct proc_info fresh = {};
    struct proc_info *info = procs.lookup(&tgid);
    if (info)
        fresh.ppid = info->ppid;
    fresh.start_ns = now;
    bpf_get_current_comm(&fresh.comm, sizeof(fresh.comm));
    procs.update(&tgid, &fresh);

    fill_header(&e->h, EV_EXEC, cgroup_id);
    e->h.ts = now;
    __builtin_memset(e->pcomm, 0, sizeof(e->pcomm));
    u32 ppid = fresh.ppid;
    struct proc_info *parent = procs.lookup(&ppid);
    if (parent)
        __builtin_memcpy(e->pcomm, parent->comm, sizeof(e->pcomm));

    u16 off = args->data_loc_filename & 0xFFFF;
    __builtin_memset(e->filename, 0, sizeof(e->filename));
    bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)args + off);

    u32 old_pid = args->old_pid;
    e->old_pid = old_pid;
    struct exec_args *a = exec_args_by_tid.lookup(&old_pid);
    if (a) {
        e->args_len = a->len;
        e->argc = a->argc;
        e->flags = a->flags;
        bpf_probe_read_kernel(e->args, sizeof(e->args), a->args);
        exec_args_by_tid.delete(&old_pid);
    } else {
        e->args_len = 0;
        e->argc = 0;
        e->flags = EXEC_ARGV_MISSING;
    }
    submit(e, sizeof(*e));
    return 0;
}

#ifdef LAYOUT_CHECK
/* Unused maps whose value types let tests compare decode.py with clang's layout. */
BPF_ARRAY(layout_exec_event, struct exec_event, 1);
#endif

/* Process lineage (always loaded): the `procs` table gives every pod event its ppid and
 * process start time, and gives process.exit its exit code and lifetime, without
 * reading kernel structs (whose layout the available headers do not match).
 *
 * - sched_process_fork runs in the parent: child pid -> (parent tgid, now), for every
 *   fork (a container's first process is forked outside its cgroup). It fires for
 *   threads too; their entries are removed when the thread exits.
 * - exit_group(code) and signal_deliver record how a process ends; sched_process_exit
 *   with group_dead emits process.exit (when the "exit" concern is on) and forgets it.
 */
#include "common.bpf.h"

struct exit_event {
    struct event_header h;
    s32 exit_code;
    u32 signal;
    u32 exit_flags;
    u32 pad;
    u64 lifetime_ns;  /* 0 when the start is unknown */
};

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    /* Not filtered by cgroup: a process forked on the host and then moved into a pod
     * (how runtimes start containers) must still know its parent. Forks are rare
     * next to syscalls, and exits remove the entries. */
    u32 child = args->child_pid;
    struct proc_info info = {};
    info.ppid = bpf_get_current_pid_tgid() >> 32;
    info.start_ns = bpf_ktime_get_ns();
    bpf_get_current_comm(&info.comm, sizeof(info.comm));
    procs.update(&child, &info);
    return 0;
}

#ifdef CONCERN_EXIT
TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_info *info = procs.lookup(&tgid);
    if (info) {
        info->exit_code = (s32)args->error_code;
        info->exit_flags |= 1;
        return 0;
    }
    /* A process moved into the pod after its fork has no record yet: make one. */
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct proc_info fresh = {};
    fresh.exit_code = (s32)args->error_code;
    fresh.exit_flags = 1;
    bpf_get_current_comm(&fresh.comm, sizeof(fresh.comm));
    procs.update(&tgid, &fresh);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_info *info = procs.lookup(&tgid);
    /* sa_handler == SIG_DFL (0): the default action, fatal for the signals that end a
     * process; a handled signal does not. */
    if (info && args->sa_handler == 0) {
        info->signal = args->sig;
        info->exit_flags |= 2;
    }
    return 0;
}
#endif

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    if (tid != tgid)
        procs.delete(&tid);
    if (!args->group_dead)
        return 0;
#ifdef CONCERN_EXIT
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (in_scope(cgroup_id)) {
        struct exit_event e = {};
        fill_header(&e.h, EV_EXIT, cgroup_id);
        struct proc_info *info = procs.lookup(&tgid);
        if (info) {
            e.exit_code = info->exit_code;
            e.signal = info->signal;
            e.exit_flags = info->exit_flags;
            if (info->start_ns)
                e.lifetime_ns = e.h.ts - info->start_ns;
        }
        submit(&e, sizeof(e));
    }
#endif
    procs.delete(&tgid);
    return 0;
}

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_exit_event, struct exit_event, 1);
#endif

/* Executables: the sched_process_exec tracepoint, for every exec on the node; only a
 * task under an enforced pod with an exec-restricting policy goes past the cgroup
 * look-up. The filename as exec'd (bprm->filename) must be in `allow_exe` for the
 * policy. Otherwise audit logs would_block, and enforce sends SIGKILL to the task with
 * bpf_send_signal: the exec has already replaced the image (the point of no return is
 * behind), and the signal is taken on the way back to user space, before the first
 * instruction of the new program (its dynamic loader included) runs.
 */
#include "enforce.bpf.h"

BPF_PERCPU_ARRAY(exe_work, struct exe_key, 1);

/* The tracepoint's record (tracefs events/sched/sched_process_exec/format): the
 * filename is a __data_loc at offset 8 (offset in the low 16 bits). Written by hand
 * rather than with TRACEPOINT_PROBE so the program's name starts with enf_ like the
 * others (the kill switch and its test find the enforcer's programs by name). */
struct exec_tp {
    u64 common;
    u32 filename_loc;
    s32 pid;
    s32 old_pid;
};

int enf_exec(struct exec_tp *args)
{
    u64 pod_cgroup = 0;
    struct pod_policy *p = current_pod(&pod_cgroup);
    if (!p)
        return 0;
    u32 policy = p->policy;
    struct policy_cfg *cfg = policies.lookup(&policy);
    if (!cfg || cfg->mode == MODE_OFF || !(cfg->flags & POLICY_EXEC))
        return 0;
    u32 mode = cfg->mode;
    enf_count(C_CHECKED);
    u32 zero = 0;
    struct exe_key *key = exe_work.lookup(&zero);
    if (!key)
        return 0;
    __builtin_memset(key, 0, sizeof(*key));
    key->policy = policy;
    u32 loc = 0;
    bpf_probe_read_kernel(&loc, sizeof(loc), &args->filename_loc);
    bpf_probe_read_kernel_str(key->path, sizeof(key->path), (char *)args + (loc & 0xffff));
    if (allow_exe.lookup(key))
        return 0;
    enf_count(C_VIOLATION);
    if (mode == MODE_ENFORCE) {
        bpf_send_signal(9);
        enf_count(C_KILLED);
    }
    struct enforce_event *e = event_start(EV_EXEC, mode, policy, pod_cgroup);
    if (e) {
        __builtin_memcpy(e->path, key->path, sizeof(key->path));
        event_submit(e);
    }
    return 0;
}

/* syscall.profile: per container, how often each syscall was entered — the evidence a
 * seccomp profile is generated from. Counted in the kernel (raw_syscalls:sys_enter as a
 * raw tracepoint: no argument copying) into a per-CPU table keyed by (cgroup, epoch
 * parity). User space flips `profile_epoch`, lets in-flight updates finish, then reads
 * and deletes the other parity's entries: no count is lost between read and delete.
 */
#include "common.bpf.h"

#define MAX_SYSCALLS 512
#ifndef MAX_PROFILES
#define MAX_PROFILES 4096
#endif

struct profile_key {
    u64 cgroup_id;
    u64 epoch;
};

struct profile {
    u32 counts[MAX_SYSCALLS];
};

BPF_ARRAY(profile_epoch, u64, 1);
BPF_PERCPU_HASH(profiles, struct profile_key, struct profile, MAX_PROFILES);
BPF_PERCPU_ARRAY(profile_zero, struct profile, 1);

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
#ifndef INCLUDE_HOST
    if (!in_pod(cgroup_id))
        return 0;  /* not counted as filtered: this fires on every syscall */
#endif
    long nr = (long)ctx->args[1];
    if (nr < 0 || nr >= MAX_SYSCALLS)
        return 0;
    u32 zero = 0;
    u64 *epoch = profile_epoch.lookup(&zero);
    struct profile_key key = {.cgroup_id = cgroup_id, .epoch = epoch ? (*epoch & 1) : 0};
    struct profile *p = profiles.lookup(&key);
    if (!p) {
        struct profile *blank = profile_zero.lookup(&zero);
        if (!blank)
            return 0;
        if (profiles.update(&key, blank) != 0) {
            count_add(C_PROFILE_FULL, 1);
            return 0;
        }
        p = profiles.lookup(&key);
        if (!p)
            return 0;
    }
    p->counts[nr & (MAX_SYSCALLS - 1)] += 1;
    return 0;
}

/* Pod cgroup tracking (always loaded): keeps `pod_cgroups` current so that a container
 * created after the collector started is filtered in before its first exec.
 *
 * cgroup:cgroup_mkdir runs in the task that creates the folder (the runtime), with the
 * new cgroup's id (== the v2 folder's inode == bpf_get_current_cgroup_id() of its
 * members) and its path relative to the hierarchy root. Only the v2 hierarchy
 * (root == CGROUP2_HIERARCHY, 0) is relevant: v1 ids are another number space.
 * The path is also sent to user space so attribution needs no rescan of the hierarchy.
 */
#include "common.bpf.h"

#ifndef CGROUP2_HIERARCHY
#define CGROUP2_HIERARCHY 0
#endif

struct cgroup_event {
    struct event_header h;
    u64 id;
    s32 level;
    u32 pad;
    char path[CGROUP_PATH_LEN];
};

BPF_PERCPU_ARRAY(cgroup_scratch, struct cgroup_event, 1);

/* Does the path name a kubelet cgroup ("kubepods" anywhere: /kubepods.slice/...,
 * /kubepods/..., /kubelet.slice/kubelet-kubepods.slice/... in kind-like nodes)? */
static __always_inline int is_kubepods(const char *p)
{
#pragma clang loop unroll(disable)
    for (int i = 0; i < CGROUP_PATH_LEN - 8; i++) {
        if (p[i] == 0)
            return 0;
        if (p[i] == 'k' && p[i + 1] == 'u' && p[i + 2] == 'b' && p[i + 3] == 'e' &&
            p[i + 4] == 'p' && p[i + 5] == 'o' && p[i + 6] == 'd' && p[i + 7] == 's')
            return 1;
    }
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    if (args->root != CGROUP2_HIERARCHY)
        return 0;
    u32 zero = 0;
    struct cgroup_event *e = cgroup_scratch.lookup(&zero);
    if (!e)
        return 0;
    u16 off = args->data_loc_path & 0xFFFF;
    __builtin_memset(e->path, 0, sizeof(e->path));
    bpf_probe_read_kernel_str(e->path, sizeof(e->path), (void *)args + off);
    if (!is_kubepods(e->path))
        return 0;
    u64 id = args->id;
    u8 one = 1;
    pod_cgroups.update(&id, &one);
    pod_cgroups_changed();
    count_add(C_PODS_ADDED, 1);
    fill_header(&e->h, EV_CGROUP_MKDIR, bpf_get_current_cgroup_id());
    e->id = id;
    e->level = args->level;
    e->pad = 0;
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    if (args->root != CGROUP2_HIERARCHY)
        return 0;
    u64 id = args->id;
    if (pod_cgroups.delete(&id) == 0)
        pod_cgroups_changed();
    return 0;
}

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_cgroup_event, struct cgroup_event, 1);
BPF_ARRAY(layout_event_header, struct event_header, 1);
#endif

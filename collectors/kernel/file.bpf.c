/* file.open: open/openat/openat2 in pod cgroups. The path pointer and flags are kept at
 * syscall entry (task-local storage); at exit, with the result known, the path is read (the
 * caller's memory is still valid) and the event is de-duplicated per container: the
 * same (path, flags, result) within one window is emitted once, repeats are counted in
 * `open_dedup` and reported by user space when the window closes.
 */
#include "common.bpf.h"

struct open_args {
    const char *filename;  /* NULL: no open in flight */
    u32 flags;
    s32 dfd;
};

struct open_key {
    u64 cgroup_id;
    u64 window;
    u32 flags;
    s32 result;    /* 0 on success (the fd number does not matter), else -errno */
    char path[FILENAME_LEN];
};

/* Most paths are short: their dedup key carries SHORT_PATH_LEN bytes of path, so the
 * hash of a repeat (the common case in a storm) runs over 88 bytes instead of 280. A
 * path always lands in the same table (by its length), so counts stay exact; user
 * space sweeps both. */
#define SHORT_PATH_LEN 64
struct open_key_short {
    u64 cgroup_id;
    u64 window;
    u32 flags;
    s32 result;
    char path[SHORT_PATH_LEN];
};

struct open_event {
    struct event_header h;
    u64 window;
    s64 ret;
    u32 flags;
    s32 dfd;
    char path[FILENAME_LEN];
};

BPF_TASK_STORAGE(open_pending, struct open_args);
BPF_HASH(open_dedup, struct open_key, u64, MAX_DEDUP);
BPF_HASH(open_dedup_short, struct open_key_short, u64, MAX_DEDUP);
BPF_PERCPU_ARRAY(open_key_scratch, struct open_key, 1);
BPF_PERCPU_ARRAY(open_scratch, struct open_event, 1);

static __always_inline int open_dedup_check(struct open_key *key)
{
    /* Repeats are the common case in a storm: look up first (one hash of the key),
     * insert only when absent; a racing insert from another CPU is a repeat too. */
    u64 *seen = open_dedup.lookup(key);
    if (!seen) {
        u64 one = 1;
        if (open_dedup.insert(key, &one) == 0)
            return DEDUP_FIRST;
        seen = open_dedup.lookup(key);
    }
    if (seen) {
        __sync_fetch_and_add(seen, 1);
        count_add(C_DEDUPLICATED, 1);
        return DEDUP_REPEAT;
    }
    count_add(C_DEDUP_FULL, 1);
    return DEDUP_BYPASS;
}

static __always_inline int open_dedup_check_short(struct open_key *key)
{
    struct open_key_short k = {};
    k.cgroup_id = key->cgroup_id;
    k.window = key->window;
    k.flags = key->flags;
    k.result = key->result;
    __builtin_memcpy(k.path, key->path, SHORT_PATH_LEN);
    u64 *seen = open_dedup_short.lookup(&k);
    if (!seen) {
        u64 one = 1;
        if (open_dedup_short.insert(&k, &one) == 0)
            return DEDUP_FIRST;
        seen = open_dedup_short.lookup(&k);
    }
    if (seen) {
        __sync_fetch_and_add(seen, 1);
        count_add(C_DEDUPLICATED, 1);
        return DEDUP_REPEAT;
    }
    count_add(C_DEDUP_FULL, 1);
    return DEDUP_BYPASS;
}

static __always_inline int open_enter(const char *filename, u32 flags, s32 dfd)
{
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct open_args *a = open_pending.task_storage_get(CURRENT_TASK, 0,
                                                        BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!a)
        return 0;
    a->filename = filename;
    a->flags = flags;
    a->dfd = dfd;
    return 0;
}

static __always_inline int open_exit(long ret)
{
    struct open_args *a = open_pending.task_storage_get(CURRENT_TASK, 0, 0);
    if (!a || !a->filename)
        return 0;
    struct open_args saved = *a;
    a->filename = NULL;
    u32 zero = 0;
    struct open_key *key = open_key_scratch.lookup(&zero);
    struct open_event *e = open_scratch.lookup(&zero);
    if (!key || !e)
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u64 now = bpf_ktime_get_ns();
    __builtin_memset(key, 0, sizeof(*key));
    key->cgroup_id = cgroup_id;
    key->window = now / DEDUP_WINDOW_NS;
    key->flags = saved.flags;
    key->result = ret < 0 ? (s32)ret : 0;
    long len = bpf_probe_read_user_str(key->path, sizeof(key->path), saved.filename);
#ifndef NO_DEDUP
    /* len counts the NUL: a path of up to SHORT_PATH_LEN - 1 characters fits */
    int outcome = (len > 0 && len <= SHORT_PATH_LEN) ? open_dedup_check_short(key)
                                                     : open_dedup_check(key);
    if (outcome == DEDUP_REPEAT)
        return 0;
#endif
    fill_header(&e->h, EV_OPEN, cgroup_id);
    e->h.ts = now;
    e->window = key->window;
    e->ret = ret;
    e->flags = saved.flags;
    e->dfd = saved.dfd;
    __builtin_memcpy(e->path, key->path, sizeof(e->path));
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(args->filename, (u32)args->flags, -100 /* AT_FDCWD */);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(args->filename, (u32)args->flags, (s32)args->dfd);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 flags = 0;
    bpf_probe_read_user(&flags, sizeof(flags), args->how); /* open_how.flags is first */
    return open_enter(args->filename, (u32)flags, (s32)args->dfd);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    return open_exit(args->ret);
}

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_open_event, struct open_event, 1);
BPF_ARRAY(layout_open_key, struct open_key, 1);
BPF_ARRAY(layout_open_key_short, struct open_key_short, 1);
#endif

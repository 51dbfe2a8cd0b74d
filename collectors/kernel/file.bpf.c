/* file.open: open/openat/openat2 in pod cgroups. The path pointer and flags are kept at
 * syscall entry (task-local storage); at exit, with the result known, the path is read (the
 * caller's memory is still valid) and the event is de-duplicated per container: the
 * same (path, flags, result) within one window is emitted once, repeats are counted in
 * `open_dedup` and reported by user space when the window closes.
 */
#include "common.bpf.h"

#define O_DIRECTORY_FLAG 0200000

struct open_args {
    const char *filename;  /* NULL: no open in flight */
    u32 flags;
    s32 dfd;
    u32 mode;
    u32 pad;
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
    u32 mode;      /* creation mode (O_CREAT / O_TMPFILE) */
    u32 pad;
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

static __always_inline int open_enter(const char *filename, u32 flags, s32 dfd, u32 mode)
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
    a->mode = mode;
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
    /* A directory opened successfully is never folded: user space keeps its fd to
     * resolve the relative opens that follow (openat(dirfd, "id_rsa")), and the fd
     * differs between repeats. */
    if (!(ret >= 0 && (saved.flags & O_DIRECTORY_FLAG))) {
        /* len counts the NUL: a path of up to SHORT_PATH_LEN - 1 characters fits */
        int outcome = (len > 0 && len <= SHORT_PATH_LEN) ? open_dedup_check_short(key)
                                                         : open_dedup_check(key);
        if (outcome == DEDUP_REPEAT)
            return 0;
    }
#endif
    fill_header(&e->h, EV_OPEN, cgroup_id);
    e->h.ts = now;
    e->window = key->window;
    e->ret = ret;
    e->flags = saved.flags;
    e->dfd = saved.dfd;
    e->mode = saved.mode;
    __builtin_memcpy(e->path, key->path, sizeof(e->path));
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(args->filename, (u32)args->flags, -100 /* AT_FDCWD */,
                      (u32)args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(args->filename, (u32)args->flags, (s32)args->dfd, (u32)args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[2] = {};
    bpf_probe_read_user(how, sizeof(how), args->how); /* open_how: flags, mode, resolve */
    return open_enter(args->filename, (u32)how[0], (s32)args->dfd, (u32)how[1]);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    return open_exit(args->ret);
}

/* -- file changes and the working directory ------------------------------------------
 * chdir/fchdir (user space keeps each process's working directory, to resolve relative
 * paths), unlink, rename, chmod, chown: one record type, `op` says which. Pointers are
 * kept at entry and the strings read at exit, with the result known. Never
 * de-duplicated: each is a change of the file system (or of where paths start). */
#define FOP_CHDIR 1
#define FOP_UNLINK 2
#define FOP_RENAME 3
#define FOP_CHMOD 4
#define FOP_CHOWN 5
#define FOP_MEMFD 6

struct fileop_args {
    u64 path;      /* user pointers, 0 when the call names an fd */
    u64 path2;
    u32 op;
    s32 dfd;       /* dirfd of path (AT_FDCWD for the plain calls), or the fd itself */
    s32 dfd2;
    u32 mode;
    u32 uid;
    u32 gid;
    u32 flags;
    u32 busy;
};

struct fileop_event {
    struct event_header h;
    s64 ret;
    u32 op;
    s32 dfd;
    s32 dfd2;
    u32 mode;
    u32 uid;
    u32 gid;
    u32 flags;
    u32 pad;
    char path[FILENAME_LEN];
    char path2[FILENAME_LEN];
};

BPF_TASK_STORAGE(fileop_pending, struct fileop_args);
BPF_PERCPU_ARRAY(fileop_scratch, struct fileop_event, 1);

static __always_inline int fileop_enter(u32 op, s32 dfd, const char *path, s32 dfd2,
                                        const char *path2, u32 mode, u32 uid, u32 gid,
                                        u32 flags)
{
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct fileop_args *a = fileop_pending.task_storage_get(
        CURRENT_TASK, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!a)
        return 0;
    a->op = op;
    a->dfd = dfd;
    a->path = (u64)path;
    a->dfd2 = dfd2;
    a->path2 = (u64)path2;
    a->mode = mode;
    a->uid = uid;
    a->gid = gid;
    a->flags = flags;
    a->busy = 1;
    return 0;
}

static __always_inline int fileop_exit(long ret)
{
    struct fileop_args *stored = fileop_pending.task_storage_get(CURRENT_TASK, 0, 0);
    if (!stored || !stored->busy)
        return 0;
    struct fileop_args a = *stored;
    stored->busy = 0;
    u32 zero = 0;
    struct fileop_event *e = fileop_scratch.lookup(&zero);
    if (!e)
        return 0;
    fill_header(&e->h, EV_FILEOP, bpf_get_current_cgroup_id());
    e->ret = ret;
    e->op = a.op;
    e->dfd = a.dfd;
    e->dfd2 = a.dfd2;
    e->mode = a.mode;
    e->uid = a.uid;
    e->gid = a.gid;
    e->flags = a.flags;
    e->pad = 0;
    e->path[0] = 0;
    e->path2[0] = 0;
    if (a.path)
        bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)a.path);
    if (a.path2)
        bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)a.path2);
    submit(e, sizeof(*e));
    return 0;
}

#define AT_FDCWD_ -100
#define NOID 0xFFFFFFFF

TRACEPOINT_PROBE(syscalls, sys_enter_chdir)
{ return fileop_enter(FOP_CHDIR, AT_FDCWD_, args->filename, 0, 0, 0, NOID, NOID, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_chdir) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchdir)
{ return fileop_enter(FOP_CHDIR, (s32)args->fd, 0, 0, 0, 0, NOID, NOID, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchdir) { return fileop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_unlink)
{ return fileop_enter(FOP_UNLINK, AT_FDCWD_, args->pathname, 0, 0, 0, NOID, NOID, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_unlink) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat)
{
    return fileop_enter(FOP_UNLINK, (s32)args->dfd, args->pathname, 0, 0, 0, NOID, NOID,
                        (u32)args->flag);
}
TRACEPOINT_PROBE(syscalls, sys_exit_unlinkat) { return fileop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    return fileop_enter(FOP_RENAME, AT_FDCWD_, args->oldname, AT_FDCWD_, args->newname, 0,
                        NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_rename) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    return fileop_enter(FOP_RENAME, (s32)args->olddfd, args->oldname, (s32)args->newdfd,
                        args->newname, 0, NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    return fileop_enter(FOP_RENAME, (s32)args->olddfd, args->oldname, (s32)args->newdfd,
                        args->newname, 0, NOID, NOID, (u32)args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2) { return fileop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_chmod)
{
    return fileop_enter(FOP_CHMOD, AT_FDCWD_, args->filename, 0, 0, (u32)args->mode, NOID,
                        NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_chmod) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchmod)
{ return fileop_enter(FOP_CHMOD, (s32)args->fd, 0, 0, 0, (u32)args->mode, NOID, NOID, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat)
{
    return fileop_enter(FOP_CHMOD, (s32)args->dfd, args->filename, 0, 0, (u32)args->mode,
                        NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2)
{
    return fileop_enter(FOP_CHMOD, (s32)args->dfd, args->filename, 0, 0, (u32)args->mode,
                        NOID, NOID, (u32)args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2) { return fileop_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_chown)
{
    return fileop_enter(FOP_CHOWN, AT_FDCWD_, args->filename, 0, 0, 0, (u32)args->user,
                        (u32)args->group, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_chown) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_lchown)
{
    return fileop_enter(FOP_CHOWN, AT_FDCWD_, args->filename, 0, 0, 0, (u32)args->user,
                        (u32)args->group, 0x100 /* AT_SYMLINK_NOFOLLOW */);
}
TRACEPOINT_PROBE(syscalls, sys_exit_lchown) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchown)
{
    return fileop_enter(FOP_CHOWN, (s32)args->fd, 0, 0, 0, 0, (u32)args->user,
                        (u32)args->group, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchown) { return fileop_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchownat)
{
    return fileop_enter(FOP_CHOWN, (s32)args->dfd, args->filename, 0, 0, 0, (u32)args->user,
                        (u32)args->group, (u32)args->flag);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchownat) { return fileop_exit(args->ret); }

/* memfd_create: the fd it returns can be exec'd (fexecve) without a file on disk. */
TRACEPOINT_PROBE(syscalls, sys_enter_memfd_create)
{ return fileop_enter(FOP_MEMFD, 0, args->uname, 0, 0, 0, NOID, NOID, (u32)args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create) { return fileop_exit(args->ret); }

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_fileop_event, struct fileop_event, 1);
BPF_ARRAY(layout_open_event, struct open_event, 1);
BPF_ARRAY(layout_open_key, struct open_key, 1);
BPF_ARRAY(layout_open_key_short, struct open_key_short, 1);
#endif

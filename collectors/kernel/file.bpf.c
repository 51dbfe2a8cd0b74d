/* file.open: open/openat/openat2 in pod cgroups. At the syscall's exit, with the result
 * known, the arguments are read from the task's saved registers and the path from the
 * caller's memory (still valid), and the event is de-duplicated per container: the
 * same (path, flags, result) within one window is emitted once, repeats are counted in
 * `open_dedup` and reported by user space when the window closes.
 */
#include "common.bpf.h"

#define O_DIRECTORY_FLAG 0200000

struct open_args {
    const char *filename;
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
 * path always lands in the same table (by its length: up to SHORT_PATH_LEN - 2
 * characters in the short one), so counts stay exact; user space sweeps both. */
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

BPF_HASH(open_dedup, struct open_key, u64, MAX_DEDUP);
BPF_HASH(open_dedup_short, struct open_key_short, u64, MAX_DEDUP);
BPF_PERCPU_ARRAY(open_key_scratch, struct open_key, 1);
BPF_PERCPU_ARRAY(open_key_short_scratch, struct open_key_short, 1);
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

static __always_inline int open_dedup_check_short(struct open_key_short *k)
{
    u64 *seen = open_dedup_short.lookup(k);
    if (!seen) {
        u64 one = 1;
        if (open_dedup_short.insert(k, &one) == 0)
            return DEDUP_FIRST;
        seen = open_dedup_short.lookup(k);
    }
    if (seen) {
        __sync_fetch_and_add(seen, 1);
        count_add(C_DEDUPLICATED, 1);
        return DEDUP_REPEAT;
    }
    count_add(C_DEDUP_FULL, 1);
    return DEDUP_BYPASS;
}

/* Everything is done at the syscall's exit: the path pointer, flags, dirfd and mode are
 * the call's arguments, read from the task's saved registers (common.bpf.h:
 * read_sys_args), and the result is known. One program run per open; a process outside
 * the pods pays the in-scope test alone. */
#define OPEN_OPEN 0
#define OPEN_OPENAT 1
#define OPEN_OPENAT2 2

static __always_inline int open_exit(long ret, int which)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0)
        return 0;
    struct open_args saved = {};
    if (which == OPEN_OPEN) {
        saved.filename = (const char *)SYS_ARG1(&r);
        saved.flags = (u32)SYS_ARG2(&r);
        saved.dfd = -100; /* AT_FDCWD */
        saved.mode = (u32)SYS_ARG3(&r);
    } else if (which == OPEN_OPENAT) {
        saved.dfd = (s32)SYS_ARG1(&r);
        saved.filename = (const char *)SYS_ARG2(&r);
        saved.flags = (u32)SYS_ARG3(&r);
        saved.mode = (u32)SYS_ARG4(&r);
    } else {
        u64 how[2] = {}; /* open_how: flags, mode, resolve */
        bpf_probe_read_user(how, sizeof(how), (void *)SYS_ARG3(&r));
        saved.dfd = (s32)SYS_ARG1(&r);
        saved.filename = (const char *)SYS_ARG2(&r);
        saved.flags = (u32)how[0];
        saved.mode = (u32)how[1];
    }
    if (!saved.filename)
        return 0;
    /* The short key first: most paths fit, and a repeat (the common case in a storm)
     * then costs one read of the path into 88 bytes and one lookup. len counts the
     * NUL; a path that filled the short buffer may be longer and takes the full key. A
     * path always lands in the same table (by its length), so counts stay exact. */
    u32 zero = 0;
    struct open_key_short *sk = open_key_short_scratch.lookup(&zero);
    if (!sk)
        return 0;
    u64 now = bpf_ktime_get_ns();
    __builtin_memset(sk, 0, sizeof(*sk));
    sk->cgroup_id = cgroup_id;
    sk->window = now / DEDUP_WINDOW_NS;
    sk->flags = saved.flags;
    sk->result = ret < 0 ? (s32)ret : 0;
    long len = bpf_probe_read_user_str(sk->path, sizeof(sk->path), saved.filename);
    int is_short = len > 0 && len < SHORT_PATH_LEN;
    struct open_key *key = open_key_scratch.lookup(&zero);
    if (!key)
        return 0;
    if (!is_short) {
        __builtin_memset(key, 0, sizeof(*key));
        key->cgroup_id = cgroup_id;
        key->window = sk->window;
        key->flags = saved.flags;
        key->result = sk->result;
        bpf_probe_read_user_str(key->path, sizeof(key->path), saved.filename);
    }
#ifndef NO_DEDUP
    /* A directory opened successfully is never folded: user space keeps its fd to
     * resolve the relative opens that follow (openat(dirfd, "id_rsa")), and the fd
     * differs between repeats. */
    if (!(ret >= 0 && (saved.flags & O_DIRECTORY_FLAG))) {
        int outcome = is_short ? open_dedup_check_short(sk) : open_dedup_check(key);
        if (outcome == DEDUP_REPEAT)
            return 0;
    }
#endif
    struct open_event *e = open_scratch.lookup(&zero);
    if (!e)
        return 0;
    fill_header(&e->h, EV_OPEN, cgroup_id);
    e->h.ts = now;
    e->window = sk->window;
    e->ret = ret;
    e->flags = saved.flags;
    e->dfd = saved.dfd;
    e->mode = saved.mode;
    if (is_short) {
        __builtin_memcpy(e->path, sk->path, SHORT_PATH_LEN);
        __builtin_memset(&e->path[SHORT_PATH_LEN], 0, FILENAME_LEN - SHORT_PATH_LEN);
    } else {
        __builtin_memcpy(e->path, key->path, sizeof(e->path));
    }
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return open_exit(args->ret, OPEN_OPEN);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return open_exit(args->ret, OPEN_OPENAT);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    return open_exit(args->ret, OPEN_OPENAT2);
}

/* -- file changes and the working directory ------------------------------------------
 * chdir/fchdir (user space keeps each process's working directory, to resolve relative
 * paths), unlink, rename, chmod, chown: one record type, `op` says which. Everything is
 * read at the exit, with the result known: the arguments from the saved registers, then
 * the strings. Never de-duplicated: each is a change of the file system (or of where
 * paths start). */
#define FOP_CHDIR 1
#define FOP_UNLINK 2
#define FOP_RENAME 3
#define FOP_CHMOD 4
#define FOP_CHOWN 5
#define FOP_MEMFD 6

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

BPF_PERCPU_ARRAY(fileop_scratch, struct fileop_event, 1);

/* The arguments of each call, from its saved registers at exit: which registers hold
 * the paths, fds, mode and ids. */
static __always_inline int fileop_exit(long ret, u32 op, s32 dfd, u64 path, s32 dfd2,
                                       u64 path2, u32 mode, u32 uid, u32 gid, u32 flags)
{
    u32 zero = 0;
    struct fileop_event *e = fileop_scratch.lookup(&zero);
    if (!e)
        return 0;
    fill_header(&e->h, EV_FILEOP, bpf_get_current_cgroup_id());
    e->ret = ret;
    e->op = op;
    e->dfd = dfd;
    e->dfd2 = dfd2;
    e->mode = mode;
    e->uid = uid;
    e->gid = gid;
    e->flags = flags;
    e->pad = 0;
    e->path[0] = 0;
    e->path2[0] = 0;
    if (path)
        bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)path);
    if (path2)
        bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)path2);
    submit(e, sizeof(*e));
    return 0;
}

#define AT_FDCWD_ -100
#define NOID 0xFFFFFFFF

/* The in-scope test first (an unwatched process stops there), then the registers. */
#define FILEOP_ARGS()                                   \
    struct sys_args r;                                  \
    if (!in_scope(bpf_get_current_cgroup_id()) ||       \
        read_sys_args(&r) != 0)                         \
        return 0;                                       \
    struct sys_args *a = &r;

TRACEPOINT_PROBE(syscalls, sys_exit_chdir)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHDIR, AT_FDCWD_, SYS_ARG1(a), 0, 0, 0, NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchdir)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHDIR, (s32)SYS_ARG1(a), 0, 0, 0, 0, NOID, NOID, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_unlink)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_UNLINK, AT_FDCWD_, SYS_ARG1(a), 0, 0, 0, NOID, NOID,
                       0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_unlinkat)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_UNLINK, (s32)SYS_ARG1(a), SYS_ARG2(a), 0, 0, 0, NOID,
                       NOID, (u32)SYS_ARG3(a));
}

TRACEPOINT_PROBE(syscalls, sys_exit_rename)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_RENAME, AT_FDCWD_, SYS_ARG1(a), AT_FDCWD_, SYS_ARG2(a),
                       0, NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_RENAME, (s32)SYS_ARG1(a), SYS_ARG2(a),
                       (s32)SYS_ARG3(a), SYS_ARG4(a), 0, NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_RENAME, (s32)SYS_ARG1(a), SYS_ARG2(a),
                       (s32)SYS_ARG3(a), SYS_ARG4(a), 0, NOID, NOID, (u32)SYS_ARG5(a));
}

TRACEPOINT_PROBE(syscalls, sys_exit_chmod)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHMOD, AT_FDCWD_, SYS_ARG1(a), 0, 0, (u32)SYS_ARG2(a),
                       NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHMOD, (s32)SYS_ARG1(a), 0, 0, 0, (u32)SYS_ARG2(a),
                       NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHMOD, (s32)SYS_ARG1(a), SYS_ARG2(a), 0, 0,
                       (u32)SYS_ARG3(a), NOID, NOID, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHMOD, (s32)SYS_ARG1(a), SYS_ARG2(a), 0, 0,
                       (u32)SYS_ARG3(a), NOID, NOID, (u32)SYS_ARG4(a));
}

TRACEPOINT_PROBE(syscalls, sys_exit_chown)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHOWN, AT_FDCWD_, SYS_ARG1(a), 0, 0, 0,
                       (u32)SYS_ARG2(a), (u32)SYS_ARG3(a), 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_lchown)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHOWN, AT_FDCWD_, SYS_ARG1(a), 0, 0, 0,
                       (u32)SYS_ARG2(a), (u32)SYS_ARG3(a), 0x100 /* AT_SYMLINK_NOFOLLOW */);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchown)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHOWN, (s32)SYS_ARG1(a), 0, 0, 0, 0, (u32)SYS_ARG2(a),
                       (u32)SYS_ARG3(a), 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchownat)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_CHOWN, (s32)SYS_ARG1(a), SYS_ARG2(a), 0, 0, 0,
                       (u32)SYS_ARG3(a), (u32)SYS_ARG4(a), (u32)SYS_ARG5(a));
}

/* memfd_create: the fd it returns can be exec'd (fexecve) without a file on disk. */
TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create)
{
    FILEOP_ARGS();
    return fileop_exit(args->ret, FOP_MEMFD, 0, SYS_ARG1(a), 0, 0, 0, NOID, NOID,
                       (u32)SYS_ARG2(a));
}

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_fileop_event, struct fileop_event, 1);
BPF_ARRAY(layout_open_event, struct open_event, 1);
BPF_ARRAY(layout_open_key, struct open_key, 1);
BPF_ARRAY(layout_open_key_short, struct open_key_short, 1);
#endif

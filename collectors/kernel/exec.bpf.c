/* process.exec: the raw tracepoint sched_process_exec runs once the new image is in
 * place, with the binprm: the filename as exec'd, the interpreter when binfmt_script /
 * binfmt_misc chose one (bprm->interp no longer points at the filename), the exe file
 * (its link count: 0 for memfd and deleted files; its name). The task gives its
 * namespaces and what its fds 0-2 are (socket with peer, pipe, tty, file). Struct
 * members are read at offsets from the kernel's BTF (btf.py); missing offsets leave
 * the fact out. argv is copied earlier, at sys_enter_execve/execveat, while the
 * caller's memory still holds it, and handed over through `exec_args` keyed by the
 * thread id (== the tracepoint's old_pid when a non-leader thread execs).
 */
#include "common.bpf.h"

#define EXEC_ARGV_TRUNCATED 1
#define EXEC_ARGV_MISSING 2
#define EXEC_HAS_INTERP 4
#define EXEC_HAS_NS 8
#define EXEC_HAS_STDIO 16
#define EXEC_HAS_EXE_FILE 32

struct stdio_info {
    u16 mode;      /* inode i_mode (S_IFMT bits tell socket, fifo, chr, reg); 0: closed */
    u16 family;    /* sockets */
    u16 sotype;
    u16 dport;     /* host order */
    u16 protocol;
    u16 pad;
    u32 rdev;      /* character devices: tty, pts, null */
    u8 daddr[16];
};

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
    char interp[FILENAME_LEN];
    struct ns_ids ns;
    u32 exe_nlink;
    u32 pad;
    struct stdio_info stdio[3];
    char exe_name[32];   /* name of the exe file's dentry ("memfd:x" for a memfd) */
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

static __always_inline void read_stdio(struct exec_event *e)
{
#if defined(OFF_TASK_FILES) && defined(OFF_FILES_FDT) && defined(OFF_FDT_FD) && \
    defined(OFF_FILE_INODE) && defined(OFF_INODE_MODE)
    u64 task = (u64)bpf_get_current_task();
    u64 fdt = read_ptr(read_ptr(task + OFF_TASK_FILES) + OFF_FILES_FDT);
    u64 fds = read_ptr(fdt + OFF_FDT_FD);
    if (!fds)
        return;
    u32 max_fds = read_u32(fdt + OFF_FDT_MAX_FDS);
#pragma unroll
    for (int i = 0; i < 3; i++) {
        struct stdio_info *s = &e->stdio[i];
        if ((u32)i >= max_fds)
            break;
        u64 file = read_ptr(fds + 8 * i);
        if (!file)
            continue;
        u64 inode = read_ptr(file + OFF_FILE_INODE);
        bpf_probe_read_kernel(&s->mode, sizeof(s->mode), (void *)(inode + OFF_INODE_MODE));
        s->rdev = read_u32(inode + OFF_INODE_RDEV);
        if ((s->mode & 0170000) != 0140000)
            continue;
        u64 sock = read_ptr(file + OFF_FILE_PRIVATE);
        bpf_probe_read_kernel(&s->sotype, sizeof(s->sotype), (void *)(sock + OFF_SOCKET_TYPE));
        u64 sk = read_ptr(sock + OFF_SOCKET_SK);
        if (!sk)
            continue;
        bpf_probe_read_kernel(&s->family, sizeof(s->family), (void *)(sk + OFF_SK_FAMILY));
        bpf_probe_read_kernel(&s->protocol, sizeof(s->protocol),
                              (void *)(sk + OFF_SK_PROTOCOL));
        u16 port = 0;
        bpf_probe_read_kernel(&port, sizeof(port), (void *)(sk + OFF_SK_DPORT));
        s->dport = (port >> 8) | ((port & 0xFF) << 8);
        if (s->family == 2)
            bpf_probe_read_kernel(s->daddr, 4, (void *)(sk + OFF_SK_DADDR));
        else if (s->family == 10)
            bpf_probe_read_kernel(s->daddr, 16, (void *)(sk + OFF_SK_V6_DADDR));
    }
    e->flags |= EXEC_HAS_STDIO;
#endif
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
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
    u64 bprm = ctx->args[2];

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

    u32 old_pid = (u32)ctx->args[1];
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

    __builtin_memset(e->filename, 0, sizeof(e->filename));
    __builtin_memset(e->interp, 0, sizeof(e->interp));
    __builtin_memset(e->stdio, 0, sizeof(e->stdio));
    __builtin_memset(e->exe_name, 0, sizeof(e->exe_name));
    e->exe_nlink = 0;
    e->pad = 0;
    u64 filename = read_ptr(bprm + OFF_BPRM_FILENAME);
    bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)filename);
#ifdef OFF_BPRM_INTERP
    u64 interp = read_ptr(bprm + OFF_BPRM_INTERP);
    if (interp && interp != filename) {
        bpf_probe_read_kernel_str(e->interp, sizeof(e->interp), (void *)interp);
        e->flags |= EXEC_HAS_INTERP;
    }
#endif
#if defined(OFF_BPRM_FILE) && defined(OFF_INODE_NLINK) && defined(OFF_FILE_DENTRY)
    u64 exe = read_ptr(bprm + OFF_BPRM_FILE);
    if (exe) {
        e->exe_nlink = read_u32(read_ptr(exe + OFF_FILE_INODE) + OFF_INODE_NLINK);
        u64 name = read_ptr(read_ptr(exe + OFF_FILE_DENTRY) + OFF_DENTRY_NAME);
        bpf_probe_read_kernel_str(e->exe_name, sizeof(e->exe_name), (void *)name);
        e->flags |= EXEC_HAS_EXE_FILE;
    }
#endif
    read_ns(&e->ns);
    if (e->ns.mnt)
        e->flags |= EXEC_HAS_NS;
    read_stdio(e);
    submit(e, sizeof(*e));
    return 0;
}

#ifdef LAYOUT_CHECK
/* Unused maps whose value types let tests compare decode.py with clang's layout. */
BPF_ARRAY(layout_exec_event, struct exec_event, 1);
#endif

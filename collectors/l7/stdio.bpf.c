/* JSON-RPC on the pipes between a pod's agent and the MCP servers it spawned (MCP's
 * stdio transport), from the read/write syscall tracepoints.
 *
 * Why tracepoints and a map of fds: a pipe carries no protocol marker the kernel could
 * match on every call, and capturing every pipe of every pod would flood user space.
 * So the kernel does two cheap things only:
 *
 * - For a thread of a watched (pod) cgroup, the first write() on each fd is peeked at:
 *   if it starts with `{"` (a JSON object, as MCP's newline-delimited JSON-RPC always
 *   does), the whole write is submitted as a STDIO_EV_CANDIDATE record. The fd is then
 *   remembered in `seen` so it is never peeked at again (until it is closed). User space
 *   checks the candidate: an MCP `initialize` request on a pipe whose other end is held
 *   by a child process makes it add the client's write fd and read fd to `pipes`.
 * - read()/write() on an fd in `pipes` (by pid) are submitted in CHUNK_SIZE pieces (at
 *   most MAX_CAPTURE bytes per call, the rest counted as truncated).
 * - Between a candidate and user space's verdict (at most PENDING_NS), reads of that
 *   process that return `{"...` on any unwatched fd are submitted too (EARLY_READ): a
 *   fast server answers initialize before user space can add the client's read fd.
 *
 * Threads outside the watched cgroups pay one hash lookup per read/write; pod threads
 * pay two or three (cgroup, pipes, seen).
 *
 * Defines: CHUNK_SIZE, MAX_CAPTURE (stdio_event.h), RINGBUF_PAGES.
 */
#include <uapi/linux/ptrace.h>
#include "stdio_event.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 1024
#endif
#ifndef PENDING_NS
#define PENDING_NS 10000000000ULL  /* how long a candidate's early reads are looked at */
#endif

_Static_assert(sizeof(struct stdio_hdr) == 64, "stdio_hdr layout (stdio.py)");
_Static_assert(__builtin_offsetof(struct stdio_hdr, total_len) == 28, "total_len");
_Static_assert(__builtin_offsetof(struct stdio_hdr, kind) == 40, "kind");
_Static_assert(__builtin_offsetof(struct stdio_hdr, comm) == 44, "comm");
_Static_assert((CHUNK_SIZE & (CHUNK_SIZE - 1)) == 0, "CHUNK_SIZE must be a power of two");

struct fd_key {
    u32 pid;
    s32 fd;
};

struct io_args {
    u64 buf;
    s32 fd;
    u8 kind;
    u8 direction;
    u16 _pad;
};

BPF_HASH(watched_cgroups, u64, u8, 65536);
BPF_HASH(pipes, struct fd_key, u8, 16384);             /* filled by user space */
BPF_TABLE("lru_hash", struct fd_key, u8, seen, 65536);  /* first write already peeked */
BPF_TABLE("lru_hash", u32, u64, pending, 4096);  /* pid -> time of its last candidate */
BPF_TABLE("lru_hash", u64, struct io_args, io_calls, 16384);
BPF_PERCPU_ARRAY(scratch, struct stdio_rec, 1);
BPF_PERCPU_ARRAY(counters, u64, SCNT_NSLOTS);
BPF_RINGBUF_OUTPUT(records, RINGBUF_PAGES);

static __always_inline void count(u32 slot, u64 n)
{
    u64 *v = counters.lookup(&slot);
    if (v)
        *v += n;
}

static __always_inline int is_watched(void)
{
    u64 cg = bpf_get_current_cgroup_id();
    return watched_cgroups.lookup(&cg) != NULL;
}

static __always_inline int on_enter(s32 fd, u64 buf, u8 direction)
{
    if (fd < 0 || !is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct fd_key k = {.pid = id >> 32, .fd = fd};
    struct io_args a = {.buf = buf, .fd = fd, .kind = STDIO_EV_DATA, .direction = direction};
    if (!pipes.lookup(&k)) {
        if (direction == STDIO_DIR_INGRESS) {
            u32 pid = k.pid;
            u64 *since = pending.lookup(&pid);
            if (!since || bpf_ktime_get_ns() - *since > PENDING_NS)
                return 0;
            a.kind = STDIO_EV_EARLY_READ;  /* checked on return, once the bytes are in */
            io_calls.update(&id, &a);
            return 0;
        }
        if (seen.lookup(&k))
            return 0;
        u8 one = 1;
        seen.update(&k, &one);
        char head[2] = {};
        if (bpf_probe_read_user(head, sizeof(head), (void *)buf) != 0
            || head[0] != '{' || head[1] != '"')
            return 0;
        a.kind = STDIO_EV_CANDIDATE;
        u32 pid = k.pid;
        u64 now = bpf_ktime_get_ns();
        pending.update(&pid, &now);
    }
    io_calls.update(&id, &a);
    return 0;
}

static __always_inline int on_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct io_args *found = io_calls.lookup(&id);
    if (!found)
        return 0;
    struct io_args a = *found;
    io_calls.delete(&id);
    if (ret <= 0)
        return 0;
    if (a.kind == STDIO_EV_EARLY_READ) {
        char head[2] = {};
        if (ret < 2 || bpf_probe_read_user(head, sizeof(head), (void *)a.buf) != 0
            || head[0] != '{' || head[1] != '"')
            return 0;
        count(SCNT_EARLY_READS, 1);
    }
    u32 zero = 0;
    struct stdio_rec *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    u64 total = (u64)ret;
    e->hdr.ts_ns = bpf_ktime_get_ns();
    e->hdr.cgroup_id = bpf_get_current_cgroup_id();
    e->hdr.pid = id >> 32;
    e->hdr.tid = (u32)id;
    e->hdr.fd = a.fd;
    e->hdr.total_len = total > 0xffffffffULL ? 0xffffffffU : (u32)total;
    e->hdr.kind = a.kind;
    e->hdr.direction = a.direction;
    e->hdr.truncated = total > MAX_CAPTURE;
    e->hdr._pad = 0;
    e->hdr._pad2 = 0;
    bpf_get_current_comm(&e->hdr.comm, sizeof(e->hdr.comm));
    count(a.kind == STDIO_EV_CANDIDATE ? SCNT_CANDIDATES : SCNT_CALLS, 1);
    u64 captured = total;
    if (captured > MAX_CAPTURE) {
        captured = MAX_CAPTURE;
        count(SCNT_TRUNCATED, 1);
    }
    for (u32 i = 0; i < MAX_CHUNKS; i++) {
        u64 off = (u64)i * CHUNK_SIZE;
        if (off >= captured)
            break;
        u64 n = captured - off;
        if (n > CHUNK_SIZE)
            n = CHUNK_SIZE;
        e->hdr.offset = (u32)off;
        e->hdr.len = (u32)n;
        if (bpf_probe_read_user(e->data, n, (void *)(a.buf + off)) != 0) {
            count(SCNT_READ_FAIL, 1);
            break;
        }
        if (records.ringbuf_output(e, sizeof(e->hdr) + n, 0) != 0)
            count(SCNT_LOST, 1);
        else
            count(SCNT_RECORDS, 1);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) { return on_enter((s32)args->fd, (u64)args->buf, STDIO_DIR_EGRESS); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return on_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { return on_enter((s32)args->fd, (u64)args->buf, STDIO_DIR_INGRESS); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return on_exit(args->ret); }

/* close(fd): forget it; a watched pipe fd tells user space its stream is over. */
TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    if (!is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct fd_key k = {.pid = id >> 32, .fd = (s32)args->fd};
    seen.delete(&k);
    if (!pipes.lookup(&k))
        return 0;
    pipes.delete(&k);
    struct stdio_hdr h = {};
    h.ts_ns = bpf_ktime_get_ns();
    h.cgroup_id = bpf_get_current_cgroup_id();
    h.pid = k.pid;
    h.tid = (u32)id;
    h.fd = k.fd;
    h.kind = STDIO_EV_CLOSE;
    bpf_get_current_comm(&h.comm, sizeof(h.comm));
    if (records.ringbuf_output(&h, sizeof(h), 0) != 0)
        count(SCNT_LOST, 1);
    return 0;
}

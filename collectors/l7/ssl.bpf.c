/* Plaintext of pod processes' TLS connections, taken at the OpenSSL API boundary (and,
 * with -DPLAIN_HTTP, of their unencrypted HTTP sockets).
 *
 * Why uprobes on libssl: the payload is encrypted on the socket, and the agent's code is
 * not ours to change. SSL_write*(ssl, buf, num[, written]) and SSL_read*(ssl, buf, num
 * [, readbytes]) see the plaintext; CPython 3.10+ calls the _ex forms, older code and
 * most C clients the plain ones, so all four are probed.
 *
 * Entry probes remember (ssl, buf, length pointer) per thread; return probes read what
 * the call actually moved (return value, or *written / *readbytes for the _ex forms),
 * copy it through a per-CPU scratch record in CHUNK_SIZE pieces (at most MAX_CAPTURE
 * bytes per call, the rest counted as truncated) and submit each piece to a ring buffer.
 *
 * A uprobe on a library fires for every process that maps it, so the cgroup filter is
 * applied first, in the kernel: only threads whose cgroup id is in `watched_cgroups`
 * (filled by user space with the pod cgroups of this node) cost more than a lookup.
 * Build with -DINCLUDE_HOST to capture every process (debugging only).
 *
 * With -DPLAIN_HTTP, plaintext HTTP on sockets is captured too, from syscall tracepoints
 * (write/read/sendto/recvfrom on fds the process connect()ed or accept()ed): an fd is
 * taken up when its first payload starts like HTTP/1.x, and followed until close().
 *
 * Defines: CHUNK_SIZE, MAX_CAPTURE (ssl_event.h), RINGBUF_PAGES, INCLUDE_HOST, PLAIN_HTTP.
 */
#include <uapi/linux/ptrace.h>
#include "ssl_event.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 4096  /* 16 MiB with 4 KiB pages; must be a power of two */
#endif

_Static_assert(sizeof(struct ssl_chunk_hdr) == 88, "ssl_chunk_hdr layout (chunks.py)");
_Static_assert(__builtin_offsetof(struct ssl_chunk_hdr, total_len) == 36, "total_len");
_Static_assert(__builtin_offsetof(struct ssl_chunk_hdr, kind) == 48, "kind");
_Static_assert(__builtin_offsetof(struct ssl_chunk_hdr, comm) == 52, "comm");
_Static_assert(__builtin_offsetof(struct ssl_chunk_hdr, daddr) == 72, "daddr");
_Static_assert((CHUNK_SIZE & (CHUNK_SIZE - 1)) == 0, "CHUNK_SIZE must be a power of two");

struct call_args {
    u64 ssl;
    u64 buf;
    u64 len_ptr;  /* size_t * of the _ex forms; 0 for SSL_write/SSL_read */
    u32 fn;
    u32 direction;
};

struct ssl_key {  /* an SSL* is only unique within one address space */
    u64 ssl;
    u32 pid;
    u32 _pad;
};

BPF_TABLE("lru_hash", u64, struct call_args, calls, 16384);
BPF_TABLE("lru_hash", struct ssl_key, s32, ssl_fds, 65536);

struct fd_key {
    u32 pid;
    s32 fd;
};

struct peer {
    u16 family;
    u16 port;  /* host byte order */
    u8 addr[16];
};

/* Peer address of each socket a watched process connect()s, by (pid, fd): user space
 * cannot read it from /proc once a short connection is gone, and it is what joins an
 * L7 event to the kernel collector's net.connect. */
BPF_TABLE("lru_hash", struct fd_key, struct peer, peers, 65536);
BPF_HASH(watched_cgroups, u64, u8, 65536);
BPF_PERCPU_ARRAY(scratch, struct ssl_chunk, 1);
BPF_PERCPU_ARRAY(counters, u64, CNT_NSLOTS);
BPF_RINGBUF_OUTPUT(chunks, RINGBUF_PAGES);

static __always_inline int is_watched(void)
{
#ifdef INCLUDE_HOST
    return 1;
#else
    u64 cg = bpf_get_current_cgroup_id();
    return watched_cgroups.lookup(&cg) != NULL;
#endif
}

static __always_inline void count(u32 slot, u64 n)
{
    u64 *v = counters.lookup(&slot);
    if (v)
        *v += n;
}

static __always_inline void set_peer(struct ssl_chunk_hdr *h, u32 pid, s32 fd)
{
    h->family = 0;
    h->dport = 0;
    __builtin_memset(h->daddr, 0, sizeof(h->daddr));
    if (fd < 0)
        return;
    struct fd_key k = {.pid = pid, .fd = fd};
    struct peer *p = peers.lookup(&k);
    if (!p)
        return;
    h->family = p->family;
    h->dport = p->port;
    __builtin_memcpy(h->daddr, p->addr, sizeof(h->daddr));
}

/* sockaddr_in / sockaddr_in6 at user address `sa` → peer; 0 if it is neither. */
static __always_inline int read_peer(struct peer *p, const u8 *sa)
{
    if (!sa || bpf_probe_read_user(&p->family, sizeof(p->family), sa) != 0)
        return 0;
    u16 port_be = 0;
    if (p->family == 2 /* AF_INET */) {
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        bpf_probe_read_user(p->addr, 4, sa + 4);
    } else if (p->family == 10 /* AF_INET6 */) {
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        bpf_probe_read_user(p->addr, 16, sa + 8);
    } else {
        return 0;
    }
    p->port = __builtin_bswap16(port_be);
    return 1;
}

TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    if (!is_watched())
        return 0;
    struct peer p = {};
    if (!read_peer(&p, (const u8 *)args->uservaddr))
        return 0;
    struct fd_key k = {.pid = bpf_get_current_pid_tgid() >> 32, .fd = (s32)args->fd};
    peers.update(&k, &p);
    return 0;
}

static __always_inline int on_enter(struct pt_regs *ctx, u32 fn, u32 direction, int ex)
{
    if (!is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct call_args a = {};
    a.ssl = PT_REGS_PARM1(ctx);
    a.buf = PT_REGS_PARM2(ctx);
    a.len_ptr = ex ? PT_REGS_PARM4(ctx) : 0;
    a.fn = fn;
    a.direction = direction;
    calls.update(&id, &a);
    return 0;
}

/* Copy `total` bytes at user address `buf` to the ring buffer in CHUNK_SIZE records
 * (at most MAX_CAPTURE; the rest is counted as truncated). */
static __always_inline void submit_payload(u64 ssl, s32 fd_hint, u32 fn, u32 direction,
                                           u64 buf, u64 total)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0;
    struct ssl_chunk *e = scratch.lookup(&zero);
    if (!e)
        return;
    s32 fd = fd_hint;
    if (ssl) {
        struct ssl_key key = {.ssl = ssl, .pid = id >> 32};
        s32 *known = ssl_fds.lookup(&key);
        fd = known ? *known : -1;
    }
    e->hdr.ts_ns = bpf_ktime_get_ns();
    e->hdr.cgroup_id = bpf_get_current_cgroup_id();
    e->hdr.ssl = ssl;
    e->hdr.pid = id >> 32;
    e->hdr.tid = (u32)id;
    e->hdr.fd = fd;
    e->hdr.total_len = total > 0xffffffffULL ? 0xffffffffU : (u32)total;
    e->hdr.kind = SSL_EV_DATA;
    e->hdr.direction = direction;
    e->hdr.fn = fn;
    e->hdr.truncated = total > MAX_CAPTURE;
    set_peer(&e->hdr, e->hdr.pid, e->hdr.fd);
    bpf_get_current_comm(&e->hdr.comm, sizeof(e->hdr.comm));

    count(CNT_CALLS, 1);
    u64 captured = total;
    if (captured > MAX_CAPTURE) {
        captured = MAX_CAPTURE;
        count(CNT_TRUNCATED, 1);
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
        if (bpf_probe_read_user(e->data, n, (void *)(buf + off)) != 0) {
            count(CNT_READ_FAIL, 1);
            break;
        }
        if (chunks.ringbuf_output(e, sizeof(e->hdr) + n, 0) != 0)
            count(CNT_LOST, 1);
        else
            count(CNT_CHUNKS, 1);
    }
}

static __always_inline int on_return(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct call_args *found = calls.lookup(&id);
    if (!found)
        return 0;
    struct call_args a = *found;
    calls.delete(&id);

    long ret = PT_REGS_RC(ctx);
    u64 total = 0;
    if (a.len_ptr) {
        if ((int)ret != 1)
            return 0;
        size_t moved = 0;
        if (bpf_probe_read_user(&moved, sizeof(moved), (void *)a.len_ptr) != 0) {
            count(CNT_READ_FAIL, 1);
            return 0;
        }
        total = moved;
    } else {
        if ((int)ret <= 0)
            return 0;
        total = (u32)(int)ret;
    }
    if (total == 0)
        return 0;

    submit_payload(a.ssl, -1, a.fn, a.direction, a.buf, total);
    return 0;
}

int write_enter(struct pt_regs *ctx) { return on_enter(ctx, SSL_FN_WRITE, SSL_DIR_EGRESS, 0); }
int write_ex_enter(struct pt_regs *ctx) { return on_enter(ctx, SSL_FN_WRITE_EX, SSL_DIR_EGRESS, 1); }
int read_enter(struct pt_regs *ctx) { return on_enter(ctx, SSL_FN_READ, SSL_DIR_INGRESS, 0); }
int read_ex_enter(struct pt_regs *ctx) { return on_enter(ctx, SSL_FN_READ_EX, SSL_DIR_INGRESS, 1); }
int call_return(struct pt_regs *ctx) { return on_return(ctx); }

/* SSL_set_fd(ssl, fd): remember the socket so events name it (CPython's ssl sockets
 * call it; memory-BIO users such as asyncio never do, and keep fd = -1). */
int set_fd_enter(struct pt_regs *ctx)
{
    if (!is_watched())
        return 0;
    struct ssl_key key = {.ssl = PT_REGS_PARM1(ctx), .pid = bpf_get_current_pid_tgid() >> 32};
    s32 fd = (s32)PT_REGS_PARM2(ctx);
    ssl_fds.update(&key, &fd);
    return 0;
}

/* SSL_free(ssl): the connection is over; user space flushes the parser's state for it. */
int free_enter(struct pt_regs *ctx)
{
    if (!is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct ssl_key key = {.ssl = PT_REGS_PARM1(ctx), .pid = id >> 32};
    s32 *fd = ssl_fds.lookup(&key);
    struct ssl_chunk_hdr h = {};
    h.ts_ns = bpf_ktime_get_ns();
    h.cgroup_id = bpf_get_current_cgroup_id();
    h.ssl = key.ssl;
    h.pid = key.pid;
    h.tid = (u32)id;
    h.fd = fd ? *fd : -1;
    h.kind = SSL_EV_CLOSE;
    set_peer(&h, h.pid, h.fd);
    bpf_get_current_comm(&h.comm, sizeof(h.comm));
    ssl_fds.delete(&key);
    if (chunks.ringbuf_output(&h, sizeof(h), 0) != 0)
        count(CNT_LOST, 1);
    return 0;
}

#ifdef PLAIN_HTTP
/* ---- plaintext HTTP on sockets ------------------------------------------------------
 * `peers` already holds the fds a watched process connect()ed; accept()ed ones are added
 * here. An fd joins `http_fds` when a payload starts like an HTTP/1.x request or
 * response (TLS records start with 0x14-0x17 and never match), and leaves it on close. */
struct io_args {
    u64 buf;
    s32 fd;
    u32 fn;
};

struct accept_args {
    u64 sockaddr;
};

BPF_TABLE("lru_hash", struct fd_key, u8, http_fds, 65536);
BPF_TABLE("lru_hash", u64, struct io_args, io_calls, 16384);
BPF_TABLE("lru_hash", u64, struct accept_args, accepts, 4096);

static __always_inline int looks_like_http(u64 buf, u64 len)
{
    char p[8] = {};
    if (len < 8 || bpf_probe_read_user(p, sizeof(p), (void *)buf) != 0)
        return 0;
    if (p[0] == 'G' && p[1] == 'E' && p[2] == 'T' && p[3] == ' ')
        return 1;
    if (p[0] == 'P' && p[1] == 'O' && p[2] == 'S' && p[3] == 'T' && p[4] == ' ')
        return 1;
    if (p[0] == 'P' && p[1] == 'U' && p[2] == 'T' && p[3] == ' ')
        return 1;
    if (p[0] == 'P' && p[1] == 'A' && p[2] == 'T' && p[3] == 'C' && p[4] == 'H')
        return 1;
    if (p[0] == 'D' && p[1] == 'E' && p[2] == 'L' && p[3] == 'E' && p[4] == 'T')
        return 1;
    if (p[0] == 'H' && p[1] == 'E' && p[2] == 'A' && p[3] == 'D' && p[4] == ' ')
        return 1;
    if (p[0] == 'O' && p[1] == 'P' && p[2] == 'T' && p[3] == 'I' && p[4] == 'O')
        return 1;
    if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/'
        && p[5] == '1' && p[6] == '.')
        return 1;
    return 0;
}

static __always_inline int io_enter(s32 fd, u64 buf, u32 fn)
{
    if (fd < 0 || !is_watched())
        return 0;
    struct fd_key k = {.pid = bpf_get_current_pid_tgid() >> 32, .fd = fd};
    if (!peers.lookup(&k))
        return 0;  /* not a socket this process connected or accepted */
    u64 id = bpf_get_current_pid_tgid();
    struct io_args a = {.buf = buf, .fd = fd, .fn = fn};
    io_calls.update(&id, &a);
    return 0;
}

static __always_inline int io_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct io_args *found = io_calls.lookup(&id);
    if (!found)
        return 0;
    struct io_args a = *found;
    io_calls.delete(&id);
    if (ret <= 0)
        return 0;
    struct fd_key k = {.pid = id >> 32, .fd = a.fd};
    if (!http_fds.lookup(&k)) {
        if (!looks_like_http(a.buf, (u64)ret))
            return 0;
        u8 one = 1;
        http_fds.update(&k, &one);
    }
    u32 direction = (a.fn == SYS_FN_WRITE || a.fn == SYS_FN_SENDTO) ? SSL_DIR_EGRESS
                                                                    : SSL_DIR_INGRESS;
    submit_payload(0, a.fd, a.fn, direction, a.buf, (u64)ret);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) { return io_enter((s32)args->fd, (u64)args->buf, SYS_FN_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { return io_enter((s32)args->fd, (u64)args->buf, SYS_FN_READ); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { return io_enter((s32)args->fd, (u64)args->buff, SYS_FN_SENDTO); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { return io_enter((s32)args->fd, (u64)args->ubuf, SYS_FN_RECVFROM); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return io_exit(args->ret); }

static __always_inline int accept_enter(u64 sockaddr)
{
    if (!is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct accept_args a = {.sockaddr = sockaddr};
    accepts.update(&id, &a);
    return 0;
}

static __always_inline int accept_exit(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct accept_args *found = accepts.lookup(&id);
    if (!found)
        return 0;
    u64 sockaddr = found->sockaddr;
    accepts.delete(&id);
    if (ret < 0)
        return 0;
    struct peer p = {};
    read_peer(&p, (const u8 *)sockaddr);  /* family stays 0 when the caller passed NULL */
    struct fd_key k = {.pid = id >> 32, .fd = (s32)ret};
    peers.update(&k, &p);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept4) { return accept_enter((u64)args->upeer_sockaddr); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return accept_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return accept_enter((u64)args->upeer_sockaddr); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return accept_exit(args->ret); }

/* close(fd): forget the socket; a plaintext HTTP one ends its connection. */
TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    if (!is_watched())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct fd_key k = {.pid = id >> 32, .fd = (s32)args->fd};
    if (http_fds.lookup(&k)) {
        struct ssl_chunk_hdr h = {};
        h.ts_ns = bpf_ktime_get_ns();
        h.cgroup_id = bpf_get_current_cgroup_id();
        h.pid = k.pid;
        h.tid = (u32)id;
        h.fd = k.fd;
        h.kind = SSL_EV_CLOSE;
        h.fn = SYS_FN_WRITE;
        set_peer(&h, h.pid, h.fd);
        bpf_get_current_comm(&h.comm, sizeof(h.comm));
        http_fds.delete(&k);
        if (chunks.ringbuf_output(&h, sizeof(h), 0) != 0)
            count(CNT_LOST, 1);
    }
    peers.delete(&k);
    return 0;
}
#endif

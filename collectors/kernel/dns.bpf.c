/* net.dns: the DNS messages a pod sends to port DNS_PORT (queries) and reads back on
 * the same socket (answers), copied raw (up to DNS_CAPTURE bytes) for user space to
 * parse. Needs net.bpf.c (the `socks` table says which sockets are connected to a
 * resolver); the loader adds it.
 *
 * glibc sends with sendmmsg (A and AAAA together) or sendto on a connected UDP socket
 * and reads with recvfrom; other resolvers use sendto/sendmsg with an address. All of
 * them are covered; answers read with read()/recvmmsg are not.
 */
#include "common.bpf.h"

#define DNS_CAPTURE 512
#define DNS_QUERY 0
#define DNS_ANSWER 1

struct dns_event {
    struct event_header h;
    u32 direction;
    u32 len;       /* message length (the capture holds min(len, DNS_CAPTURE)) */
    u32 fd;
    u16 family;
    u16 port;
    u8 addr[16];   /* server address when the send named it */
    u8 payload[DNS_CAPTURE];
};

struct recv_args {
    u64 buf;
    u32 fd;
    u32 pad;
};

struct user_msghdr_head {
    u64 name;
    u32 namelen;
    u32 pad;
    u64 iov;
    u64 iovlen;
};

struct iovec_head {
    u64 base;
    u64 len;
};

BPF_PERCPU_ARRAY(dns_scratch, struct dns_event, 1);

/* Port (host order) and address of a user sockaddr; 0 when not inet. */
static __always_inline u16 dns_peer(u64 uaddr, struct dns_event *e)
{
    u8 sa[24] = {};
    if (!uaddr)
        return 0;
    bpf_probe_read_user(sa, sizeof(sa), (void *)uaddr);
    u16 family = sa[0] | (sa[1] << 8);
    e->family = family;
    if (family == 2) {
        __builtin_memcpy(e->addr, &sa[4], 4);
        return (sa[2] << 8) | sa[3];
    }
    if (family == 10) {
        __builtin_memcpy(e->addr, &sa[8], 16);
        return (sa[2] << 8) | sa[3];
    }
    return 0;
}

static __always_inline int dns_emit(u32 direction, u32 fd, u64 buf, u64 len,
                                    struct dns_event *e)
{
    e->direction = direction;
    e->fd = fd;
    e->len = (u32)len;
    u32 n = len > DNS_CAPTURE ? DNS_CAPTURE : (u32)len;
    if (n > 0 && n <= DNS_CAPTURE)
        bpf_probe_read_user(e->payload, n, (void *)buf);
    return submit(e, sizeof(*e));
}

/* Start a query event if this send goes to a resolver; NULL otherwise. Most sends are
 * not DNS (every send() of an HTTP client comes here): the port is decided from the
 * socket table or the first 4 bytes of the address before the event is touched. */
static __always_inline struct dns_event *dns_query_start(u32 fd, u64 uaddr)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return NULL;
    u64 key = fd_key(fd);
    struct sock_info *info = socks.lookup(&key);
    if (!uaddr) {
        if (!info || info->dport != DNS_PORT)
            return NULL;
    } else {
        u8 head[4] = {};
        bpf_probe_read_user(head, sizeof(head), (void *)uaddr);
        u16 family = head[0] | (head[1] << 8);
        if ((family != 2 && family != 10) || ((head[2] << 8) | head[3]) != DNS_PORT)
            return NULL;
    }
    u32 zero = 0;
    struct dns_event *e = dns_scratch.lookup(&zero);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    u16 port = dns_peer(uaddr, e);
    if (!uaddr && info)
        port = info->dport;
    if (port != DNS_PORT)
        return NULL;
    if (info) {
        info->dns = 1;
    } else {
        struct sock_info fresh = {};
        fresh.family = e->family;
        fresh.dport = port;
        fresh.dns = 1;
        socks.update(&key, &fresh);
    }
    e->port = port;
    fill_header(&e->h, EV_DNS, cgroup_id);
    return e;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendto)
{
    struct dns_event *e = dns_query_start((u32)args->fd, (u64)args->addr);
    if (e)
        dns_emit(DNS_QUERY, (u32)args->fd, (u64)args->buff, args->len, e);
    return 0;
}

static __always_inline int dns_sendmsg(u32 fd, u64 umsg)
{
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;  /* before reading user memory */
    struct user_msghdr_head msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), (void *)umsg) != 0)
        return 0;
    struct dns_event *e = dns_query_start(fd, msg.name);
    if (!e || !msg.iov || !msg.iovlen)
        return 0;
    struct iovec_head iov = {};
    bpf_probe_read_user(&iov, sizeof(iov), (void *)msg.iov);
    return dns_emit(DNS_QUERY, fd, iov.base, iov.len, e);
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg)
{
    dns_sendmsg((u32)args->fd, (u64)args->msg);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendmmsg)
{
    /* struct mmsghdr is a msghdr (56 bytes) and a length, 64 bytes in all. */
    u64 vec = (u64)args->mmsg;
    u32 vlen = (u32)args->vlen;
    if (vlen > 0)
        dns_sendmsg((u32)args->fd, vec);
    if (vlen > 1)
        dns_sendmsg((u32)args->fd, vec + 64);
    return 0;
}

/* Answers: at the exit of recvfrom/recvmsg, on a socket marked as a resolver's, the
 * buffer just filled (its address from the call's saved registers). One run per
 * receive; a receive outside the pods stops at the in-scope test. */
static __always_inline int dns_recv_exit(long ret, int msg)
{
    if (ret <= 0 || !in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0)
        return 0;
    struct recv_args a = {};
    a.fd = (u32)SYS_ARG1(&r);
    u64 key = fd_key(a.fd);
    struct sock_info *info = socks.lookup(&key);
    if (!info || !info->dns)
        return 0;
    if (msg) {
        struct user_msghdr_head m = {};
        if (bpf_probe_read_user(&m, sizeof(m), (void *)SYS_ARG2(&r)) != 0 || !m.iov)
            return 0;
        struct iovec_head iov = {};
        bpf_probe_read_user(&iov, sizeof(iov), (void *)m.iov);
        a.buf = iov.base;
    } else {
        a.buf = SYS_ARG2(&r);
    }
    if (!a.buf)
        return 0;
    u32 zero = 0;
    struct dns_event *e = dns_scratch.lookup(&zero);
    if (!e)
        return 0;
    __builtin_memset(e, 0, sizeof(*e));
    fill_header(&e->h, EV_DNS, bpf_get_current_cgroup_id());
    return dns_emit(DNS_ANSWER, a.fd, a.buf, (u64)ret, e);
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom)
{
    return dns_recv_exit(args->ret, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg)
{
    return dns_recv_exit(args->ret, 1);
}

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_dns_event, struct dns_event, 1);
#endif

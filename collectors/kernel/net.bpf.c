/* net.connect / net.accept / net.listen / net.close in pod cgroups.
 *
 * - socket(): the type (stream/datagram) per (tgid, fd) in `socks`, so connect can say
 *   TCP or UDP without reading kernel structs; bind() adds the local port.
 * - connect(): at exit, with the result, the destination is read from the caller's
 *   sockaddr (the call's arguments are in the saved registers: common.bpf.h); the event is de-duplicated per container like file.open. For TCP the outcome is the
 *   state machine's, not the syscall's: SYN_SENT inside the call names the socket; a
 *   call that returns before the handshake ends (-EINPROGRESS: every non-blocking
 *   client) parks its event in `connecting`, and the socket's next state change sends
 *   it (ESTABLISHED: result 0; CLOSE: the socket's sk_err, read at its BTF offset:
 *   ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH …; failed with -EINPROGRESS when its owner
 *   closed it before an answer).
 * - TCP volume: sock:inet_sock_set_state to SYN_SENT (in the connecting task) starts a
 *   record keyed by the socket address; sock:sock_send_length / sock_recv_length add
 *   bytes; the state change to CLOSE emits net.close with the totals (whatever context
 *   it runs in: the attribution was stored at SYN_SENT).
 * - accept()/listen(): peer address at accept exit; listen from the LISTEN state change
 *   (the port is known only then), which also gives accept its local port.
 *
 * Loaded for dns alone (no CONCERN_NET), only what keeps the socket table (socket and
 * connect exits) is attached: no bind, accept, TCP state or per-send/receive probes.
 */
#include "common.bpf.h"

#ifndef DNS_PORT
#define DNS_PORT 53
#endif

#define SOCKADDR_LEN 112   /* family + the longest path of sockaddr_un */
#define UNIX_PATH_LEN 108
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10

struct sock_info {
    u16 family;
    u16 sotype;
    u16 lport;
    u16 dport;
    u8 dns;        /* a DNS socket: replies on it are captured (dns.bpf.c) */
    u8 pad[7];
};

struct sockaddr_buf {
    u16 family;
    u8 data[SOCKADDR_LEN - 2];
};

struct connect_args {
    u64 sockaddr;  /* user pointer */
    u32 fd;
    u32 addrlen;
    u32 busy;      /* 1: `sk` entered SYN_SENT during the running connect() */
    u32 pad;
    u64 sk;        /* the socket that entered SYN_SENT during this call, 0 if none */
};

struct net_event {
    struct event_header h;
    u64 window;
    s64 ret;
    u32 fd;
    u16 family;
    u16 sotype;
    u16 dport;     /* host byte order; peer port for accept, local port for listen */
    u16 lport;
    u32 outcome;   /* connect: OUTCOME_*, 0 when the syscall's result is all there is */
    u8 daddr[16];
    char unix_path[UNIX_PATH_LEN];
};

#define OUTCOME_ESTABLISHED 1
#define OUTCOME_REFUSED 2
#define OUTCOME_FAILED 3
#define OUTCOME_PENDING 4
#define EINPROGRESS_ 115
#define ECONNREFUSED_ 111
#define ETIMEDOUT_ 110

/* A TCP connect between SYN_SENT and its outcome. `owner` says who sends the event:
 * 0 the connect() call is still running, 1 its event is parked here, 2 taken (sent).
 * Whoever moves it from 1 to 2 (compare-and-swap) sends, so the state change on
 * another CPU and the syscall's exit never both send, nor both leave it. */
#define CONN_ESTABLISHED 1
#define CONN_RESET 2
#define CONN_CLOSED 4
#define CONN_RETRANSMIT 8
struct connecting {
    u64 state;     /* 64-bit: the BPF atomics this kernel takes here */
    u64 owner;
    s64 err;       /* sk->sk_err when it closed (BTF offset): ECONNREFUSED, ETIMEDOUT … */
    struct net_event e;
};

struct net_key {
    u64 cgroup_id;
    u64 window;
    s32 result;
    u16 family;
    u16 sotype;
    u16 dport;
    u16 pad[3];
    u8 daddr[16];
    char unix_path[UNIX_PATH_LEN];
};

struct conn_info {
    struct event_header h;
    u16 family;
    u16 sport;
    u16 dport;
    u16 pad;
    u8 saddr[16];
    u8 daddr[16];
    u64 bytes_sent;
    u64 bytes_received;
};

struct close_event {
    struct event_header h;
    u64 bytes_sent;
    u64 bytes_received;
    u64 duration_ns;
    u16 family;
    u16 sport;
    u16 dport;
    u16 pad;
    u8 saddr[16];
    u8 daddr[16];
};

BPF_TABLE("lru_hash", u64, struct sock_info, socks, 65536);
BPF_TASK_STORAGE(connect_pending, struct connect_args);
BPF_HASH(net_dedup, struct net_key, u64, MAX_DEDUP);
BPF_HASH(conns, u64, struct conn_info, 65536);
BPF_TABLE("lru_hash", u64, struct connecting, connecting, 16384);
BPF_PERCPU_ARRAY(net_scratch, struct net_event, 1);
BPF_PERCPU_ARRAY(net_key_scratch, struct net_key, 1);
BPF_PERCPU_ARRAY(sockaddr_scratch, struct sockaddr_buf, 1);

static __always_inline u64 fd_key(u32 fd)
{
    return (bpf_get_current_pid_tgid() & 0xFFFFFFFF00000000ULL) | fd;
}

static __always_inline int net_dedup_check(struct net_key *key)
{
    /* Repeats are the common case in a storm: look up first (one hash of the key),
     * insert only when absent; a racing insert from another CPU is a repeat too. */
    u64 *seen = net_dedup.lookup(key);
    if (!seen) {
        u64 one = 1;
        if (net_dedup.insert(key, &one) == 0)
            return DEDUP_FIRST;
        seen = net_dedup.lookup(key);
    }
    if (seen) {
        __sync_fetch_and_add(seen, 1);
        count_add(C_DEDUPLICATED, 1);
        return DEDUP_REPEAT;
    }
    count_add(C_DEDUP_FULL, 1);
    return DEDUP_BYPASS;
}

/* The dedup key of a connect event (same container, window, result, destination). */
static __always_inline void net_key_of(struct net_key *k, struct net_event *e)
{
    __builtin_memset(k, 0, sizeof(*k));
    k->cgroup_id = e->h.cgroup_id;
    k->window = e->window;
    k->result = e->ret < 0 ? (s32)e->ret : 0;
    k->family = e->family;
    k->sotype = e->sotype;
    k->dport = e->dport;
    __builtin_memcpy(k->daddr, e->daddr, sizeof(k->daddr));
    __builtin_memcpy(k->unix_path, e->unix_path, sizeof(k->unix_path));
}

/* Fill family/port/address (or unix path) of `e` from a user sockaddr. */
static __always_inline void read_sockaddr(struct net_event *e, u64 uaddr, u32 addrlen)
{
    u32 zero = 0;
    struct sockaddr_buf *sa = sockaddr_scratch.lookup(&zero);
    if (!sa || !uaddr)
        return;
    __builtin_memset(sa, 0, sizeof(*sa));
    bpf_probe_read_user(sa, sizeof(*sa), (void *)uaddr);
    e->family = sa->family;
    if (sa->family == 2 /* AF_INET */) {
        e->dport = (sa->data[0] << 8) | sa->data[1];
        __builtin_memcpy(e->daddr, &sa->data[2], 4);
    } else if (sa->family == 10 /* AF_INET6 */) {
        e->dport = (sa->data[0] << 8) | sa->data[1];
        __builtin_memcpy(e->daddr, &sa->data[6], 16);
    } else if (sa->family == 1 /* AF_UNIX */) {
        __builtin_memcpy(e->unix_path, sa->data, UNIX_PATH_LEN);
    }
}

static __always_inline struct net_event *net_event_start(u32 kind, u64 cgroup_id)
{
    u32 zero = 0;
    struct net_event *e = net_scratch.lookup(&zero);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    fill_header(&e->h, kind, cgroup_id);
    e->window = e->h.ts / DEDUP_WINDOW_NS;
    return e;
}

TRACEPOINT_PROBE(syscalls, sys_exit_socket)
{
    if (args->ret < 0 || !in_scope(bpf_get_current_cgroup_id()))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0)
        return 0;
    u64 key = fd_key((u32)args->ret);
    struct sock_info info = {};
    info.family = (u16)SYS_ARG1(&r);
    info.sotype = (u16)(SYS_ARG2(&r) & 0xF);
    socks.update(&key, &info);
    return 0;
}

#ifdef CONCERN_NET
TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    if (!in_scope(bpf_get_current_cgroup_id()))
        return 0;
    u16 sa[2] = {};
    bpf_probe_read_user(sa, sizeof(sa), args->umyaddr);
    if (sa[0] != 2 && sa[0] != 10)
        return 0;
    u64 key = fd_key((u32)args->fd);
    struct sock_info *info = socks.lookup(&key);
    if (info)
        info->lport = ((sa[1] & 0xFF) << 8) | (sa[1] >> 8);
    return 0;
}

#endif /* CONCERN_NET */

/* listen(): the port is only known once the socket is hashed (bind to port 0 picks
 * it at listen), so the event goes out from the CLOSE -> LISTEN state change, which runs
 * inside the listen() call: the fd is the call's first argument (saved registers), and
 * no syscall probe is needed. */
#define NR_LISTEN 50
#define NR_CONNECT 42

static __always_inline int on_listen(u16 family, u16 port)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0 || SYS_NR(&r) != NR_LISTEN)
        return 0;
    u32 fd = (u32)SYS_ARG1(&r);
    struct net_event *e = net_event_start(EV_LISTEN, cgroup_id);
    if (!e)
        return 0;
    e->fd = fd;
    e->family = family;
    e->sotype = 1;
    e->lport = port;
    u64 key = fd_key(fd);
    struct sock_info *info = socks.lookup(&key);
    if (info)
        info->lport = port;
    submit(e, sizeof(*e));
    return 0;
}


/* The outcome of a finished handshake: result and OUTCOME_* from the socket's error
 * when it closed (the kernel's own verdict), else from the state bits. A socket closed
 * with no error was closed by its owner before an answer: failed, still -EINPROGRESS. */
static __always_inline void conn_outcome(struct net_event *e, u64 state, s64 err)
{
    if (state & CONN_ESTABLISHED) {
        e->ret = 0;
        e->outcome = OUTCOME_ESTABLISHED;
    } else if (err > 0) {
        e->ret = -err;
        e->outcome = err == ECONNREFUSED_ ? OUTCOME_REFUSED : OUTCOME_FAILED;
    } else if (state & CONN_RESET) {
        e->ret = -ECONNREFUSED_;
        e->outcome = OUTCOME_REFUSED;
    } else {
#ifndef OFF_SK_ERR
        if (state & CONN_RETRANSMIT)  /* no sk_err to read: a retransmitted SYN */
            e->ret = -ETIMEDOUT_;
#endif
        e->outcome = OUTCOME_FAILED;
    }
}

/* Park the event of a connect whose handshake is still running; returns 1 when the
 * caller must send it itself (the outcome is known, or nothing is parked). */
static __always_inline int connect_park(struct net_event *e, u64 sk)
{
    struct connecting *c = connecting.lookup(&sk);
    if (!c)
        return 1;
    __builtin_memcpy(&c->e, e, sizeof(*e));
    __sync_val_compare_and_swap(&c->owner, 0, 1);
    u64 state = c->state & (CONN_ESTABLISHED | CONN_RESET | CONN_CLOSED);
    if (!state && e->ret == -EINPROGRESS_) {
        count_add(C_CONNECT_PARKED, 1);
        return 0;  /* the state change sends it */
    }
    if (__sync_val_compare_and_swap(&c->owner, 1, 2) != 1)
        return 0;  /* the state change took it meanwhile */
    if (state)
        conn_outcome(e, c->state, c->err);
    connecting.delete(&sk);
    return 1;
}

/* A state change (or reset, or SYN retransmit) of a connecting socket. */
static __always_inline void conn_progress(u64 sk, u64 bit, int final)
{
    struct connecting *c = connecting.lookup(&sk);
    if (!c)
        return;
#ifdef OFF_SK_ERR
    if (bit == CONN_CLOSED) {
        s32 err = (s32)read_u32(sk + OFF_SK_ERR);
        c->err = err;
    }
#endif
    __sync_fetch_and_or(&c->state, bit);
    if (!final)
        return;
    if (__sync_val_compare_and_swap(&c->owner, 1, 2) != 1)
        return;  /* the connect() call is still running: its exit sends */
    conn_outcome(&c->e, c->state, c->err);
#ifndef NO_DEDUP
    /* folded like connects decided at exit (an async client's pool opening the same
     * destination again); the key on the stack: this may run in softirq, on top of a
     * program using the per-CPU scratch */
    struct net_key k;
    net_key_of(&k, &c->e);
    if (net_dedup_check(&k) == DEDUP_REPEAT) {
        connecting.delete(&sk);
        return;
    }
#endif
    submit(&c->e, sizeof(c->e));
    connecting.delete(&sk);
}

/* connect(): everything at the exit. The arguments come from the saved registers; the
 * socket that entered SYN_SENT during this call (if any) was left in task-local storage
 * by the state change (which runs inside the call), marked busy. */
TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0)
        return 0;
    struct connect_args a = {};
    a.fd = (u32)SYS_ARG1(&r);
    a.sockaddr = SYS_ARG2(&r);
    a.addrlen = (u32)SYS_ARG3(&r);
    struct connect_args *stored = connect_pending.task_storage_get(CURRENT_TASK, 0, 0);
    if (stored && stored->busy) {
        a.sk = stored->sk;
        stored->busy = 0;
    }
    struct net_event *e = net_event_start(EV_CONNECT, cgroup_id);
    if (!e)
        return 0;
    e->ret = args->ret;
    e->fd = a.fd;
    read_sockaddr(e, a.sockaddr, a.addrlen);
    if (a.sk && !connect_park(e, a.sk))
        return 0;
    u64 key = fd_key(a.fd);
    struct sock_info *info = socks.lookup(&key);
    if (info) {
        e->sotype = info->sotype;
        e->lport = info->lport;
        info->dport = e->dport;
        if (e->dport == DNS_PORT)
            info->dns = 1;
    } else if (e->family == 2 || e->family == 10) {
        struct sock_info fresh = {};
        fresh.family = e->family;
        fresh.dport = e->dport;
        fresh.dns = e->dport == DNS_PORT;
        socks.update(&key, &fresh);
    }
#ifndef CONCERN_NET
    return 0;  /* loaded for dns alone: the socket table is all it needs from here */
#endif
#ifndef NO_DEDUP
    u32 zero = 0;
    struct net_key *k = net_key_scratch.lookup(&zero);
    if (!k)
        return 0;
    net_key_of(k, e);
    if (net_dedup_check(k) == DEDUP_REPEAT)
        return 0;
#endif
    submit(e, sizeof(*e));
    return 0;
}

#ifdef CONCERN_NET
/* accept()/accept4(): at the exit, the listening fd and the peer address buffer from the
 * saved registers (arguments 1 and 2). */
static __always_inline int accept_exit(long ret)
{
    if (ret < 0)
        return 0;  /* EAGAIN on non-blocking listeners: not an event */
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!in_scope(cgroup_id))
        return 0;
    struct sys_args r;
    if (read_sys_args(&r) != 0)
        return 0;
    struct connect_args a = {};
    a.fd = (u32)SYS_ARG1(&r);
    a.sockaddr = SYS_ARG2(&r);
    struct net_event *e = net_event_start(EV_ACCEPT, cgroup_id);
    if (!e)
        return 0;
    e->ret = ret;
    e->fd = a.fd;
    read_sockaddr(e, a.sockaddr, sizeof(struct sockaddr_buf));
    u64 key = fd_key(a.fd);
    struct sock_info *info = socks.lookup(&key);
    if (info) {
        e->sotype = info->sotype;
        e->lport = info->lport;
    }
    submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept)
{
    return accept_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept4)
{
    return accept_exit(args->ret);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == TCP_LISTEN)
        return on_listen(args->family, args->sport);
    if (args->newstate == TCP_SYN_SENT) {
        u64 cgroup_id = bpf_get_current_cgroup_id();
        if (!in_scope(cgroup_id))
            return 0;
        struct sys_args r;
        if (read_sys_args(&r) == 0 && SYS_NR(&r) == NR_CONNECT) {
            struct connect_args *pending = connect_pending.task_storage_get(
                CURRENT_TASK, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
            if (pending) {
                pending->sk = sk;
                pending->busy = 1;
                struct connecting fresh = {};
                connecting.update(&sk, &fresh);
            }
        }
        struct conn_info info = {};
        fill_header(&info.h, EV_CLOSE, cgroup_id);
        info.family = args->family;
        info.sport = args->sport;
        info.dport = args->dport;
        if (args->family == 2) {
            __builtin_memcpy(info.saddr, args->saddr, 4);
            __builtin_memcpy(info.daddr, args->daddr, 4);
        } else {
            __builtin_memcpy(info.saddr, args->saddr_v6, 16);
            __builtin_memcpy(info.daddr, args->daddr_v6, 16);
        }
        conns.update(&sk, &info);
        return 0;
    }
    if (args->newstate == TCP_ESTABLISHED) {
        if (args->oldstate == TCP_SYN_SENT)
            conn_progress(sk, CONN_ESTABLISHED, 1);
        /* The source port is chosen after SYN_SENT is entered: take it now. */
        struct conn_info *est = conns.lookup(&sk);
        if (est) {
            est->sport = args->sport;
            if (args->family == 2)
                __builtin_memcpy(est->saddr, args->saddr, 4);
            else
                __builtin_memcpy(est->saddr, args->saddr_v6, 16);
        }
        return 0;
    }
    if (args->newstate != TCP_CLOSE)
        return 0;
    if (args->oldstate == TCP_SYN_SENT)
        conn_progress(sk, CONN_CLOSED, 1);
    struct conn_info *info = conns.lookup(&sk);
    if (!info)
        return 0;
    struct close_event e = {};
    __builtin_memcpy(&e.h, &info->h, sizeof(e.h));
    u64 now = bpf_ktime_get_ns();
    e.h.ts = now;
    e.duration_ns = now - info->h.ts;
    e.bytes_sent = info->bytes_sent;
    e.bytes_received = info->bytes_received;
    e.family = info->family;
    e.sport = info->sport;
    e.dport = info->dport;
    __builtin_memcpy(e.saddr, info->saddr, 16);
    __builtin_memcpy(e.daddr, info->daddr, 16);
    conns.delete(&sk);
    submit(&e, sizeof(e));
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    conn_progress((u64)args->skaddr, CONN_RESET, 0);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    if (args->state == TCP_SYN_SENT)
        conn_progress((u64)args->skaddr, CONN_RETRANSMIT, 0);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    /* every send/receive of every socket on the node comes here: only TCP sockets
     * can be in `conns` (unix, UDP and netlink traffic stops before the lookup) */
    if (args->ret <= 0 || args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u64 sk = (u64)args->sk;
    struct conn_info *info = conns.lookup(&sk);
    if (info)
        __sync_fetch_and_add(&info->bytes_sent, (u64)args->ret);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    /* every send/receive of every socket on the node comes here: only TCP sockets
     * can be in `conns` (unix, UDP and netlink traffic stops before the lookup) */
    if (args->ret <= 0 || args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u64 sk = (u64)args->sk;
    struct conn_info *info = conns.lookup(&sk);
    if (info)
        __sync_fetch_and_add(&info->bytes_received, (u64)args->ret);
    return 0;
}

#endif /* CONCERN_NET */

#ifdef LAYOUT_CHECK
BPF_ARRAY(layout_net_event, struct net_event, 1);
BPF_ARRAY(layout_net_key, struct net_key, 1);
BPF_ARRAY(layout_close_event, struct close_event, 1);
#endif

/* Egress: cgroup/connect4/6 and cgroup/sendmsg4/6, attached to each enforced pod's
 * cgroup (so host processes and other pods never run them). A destination passes when
 * the always-allowed set (policy 0: resolvers on their port, node addresses), the
 * policy's CIDRs, or the addresses learnt from DNS answers of the policy's domains hold
 * it on that port. Otherwise: audit lets it through and logs would_block; enforce
 * returns 0, which the kernel turns into EPERM, and logs blocked.
 */
#include "enforce.bpf.h"

static __always_inline int port_ok(struct allow *a, u16 port)
{
    if (a->ports[0] == 0)
        return 1;
#pragma unroll
    for (int i = 0; i < PORTS; i++) {
        if (a->ports[i] == port)
            return 1;
        if (a->ports[i] == 0)
            return 0;
    }
    return 0;
}

static __always_inline int cidr_ok(u32 policy, u8 *addr, u16 port)
{
    struct cidr_key key = {};
    key.prefixlen = 32 + 128;
    key.policy = policy;
    __builtin_memcpy(key.addr, addr, 16);
    struct allow *a = allow_cidr.lookup(&key);
    return a && port_ok(a, port);
}

static __always_inline int egress_check(struct bpf_sock_addr *ctx, u8 *addr, u16 family,
                                        u32 op)
{
    u64 pod_cgroup = 0;
    struct pod_policy *p = current_pod(&pod_cgroup);
    if (!p)
        return 1;
    u32 policy = p->policy;
    struct policy_cfg *cfg = policies.lookup(&policy);
    if (!cfg || cfg->mode == MODE_OFF || !(cfg->flags & POLICY_EGRESS))
        return 1;
    u32 mode = cfg->mode;
    enf_count(C_CHECKED);
    u16 port = bpf_ntohs((u16)ctx->user_port);
    if (cidr_ok(0, addr, port) || cidr_ok(policy, addr, port))
        return 1;
    struct learned_key lk = {};
    lk.policy = policy;
    __builtin_memcpy(lk.addr, addr, 16);
    struct allow *a = allow_learned.lookup(&lk);
    if (a && port_ok(a, port))
        return 1;
    enf_count(C_VIOLATION);
    struct enforce_event *e = event_start(op, mode, policy, pod_cgroup);
    if (e) {
        e->family = family;
        e->port = port;
        e->protocol = ctx->protocol;
        __builtin_memcpy(e->addr, addr, 16);
        event_submit(e);
    }
    return mode == MODE_ENFORCE ? 0 : 1;
}

static __always_inline void v4_mapped(u32 ip4, u8 *addr)
{
    __builtin_memset(addr, 0, 16);
    addr[10] = 0xff;
    addr[11] = 0xff;
    __builtin_memcpy(&addr[12], &ip4, 4);
}

int enf_connect4(struct bpf_sock_addr *ctx)
{
    u8 addr[16];
    v4_mapped(ctx->user_ip4, addr);
    return egress_check(ctx, addr, 2, EV_CONNECT);
}

int enf_sendmsg4(struct bpf_sock_addr *ctx)
{
    u8 addr[16];
    v4_mapped(ctx->user_ip4, addr);
    return egress_check(ctx, addr, 2, EV_SENDMSG);
}

static __always_inline void v6_addr(struct bpf_sock_addr *ctx, u8 *addr)
{
    u32 words[4];
    words[0] = ctx->user_ip6[0];
    words[1] = ctx->user_ip6[1];
    words[2] = ctx->user_ip6[2];
    words[3] = ctx->user_ip6[3];
    __builtin_memcpy(addr, words, 16);
}

int enf_connect6(struct bpf_sock_addr *ctx)
{
    u8 addr[16];
    v6_addr(ctx, addr);
    return egress_check(ctx, addr, 10, EV_CONNECT);
}

int enf_sendmsg6(struct bpf_sock_addr *ctx)
{
    u8 addr[16];
    v6_addr(ctx, addr);
    return egress_check(ctx, addr, 10, EV_SENDMSG);
}

/* DNS learning: a cgroup_skb/ingress program on each enforced pod's cgroup reads the
 * UDP answers from a configured resolver (source port DNS_PORT) before the pod's
 * resolver library does, and when the question names an allowed domain of the pod's
 * policy (exact, or a proper subdomain of a "*." entry) it adds every A/AAAA address of
 * the answer to `allow_learned` with that domain's ports. It runs in the kernel, so the
 * address is allowed before the application can read the answer and connect: no race
 * with user space. It always passes the packet (return 1). DNS over TCP and answers
 * longer than 512 bytes are not read (what they name is refused like any address).
 */
#include "enforce.bpf.h"

#define DNS_BUF 1024
#define DNS_MAX 512
#define MAX_LABELS 16
#define MAX_ANSWERS 16

struct dns_scratch {
    u8 buf[DNS_BUF];
    u32 name_len;   /* values between the parsing phases go through here: read back */
    u32 labels;     /* (volatile), they are unknown to the verifier, which then checks */
    u32 pos;        /* each phase once instead of once per outcome of the one before */
    u32 n;
    u8 starts[MAX_LABELS];     /* offsets of the question's labels within the name */
    struct domain_key key;
};

BPF_PERCPU_ARRAY(dns_work, struct dns_scratch, 1);

static __always_inline struct pod_policy *skb_pod(struct __sk_buff *skb)
{
    u64 g = current_gen();
    u64 self = bpf_skb_cgroup_id(skb);
    u64 pod_cgroup = 0;
    int hit = 0;
    struct pod_policy *p = cached_pod(self, g, &pod_cgroup, &hit);
    if (hit)
        return p;
#pragma unroll
    for (int level = 1; level < MAX_LEVEL; level++) {
        u64 id = bpf_skb_ancestor_cgroup_id(skb, level);
        if (!id)
            break;
        p = enforced.lookup(&id);
        if (p) {
            pod_cgroup = id;
            break;
        }
    }
    remember_pod(self, g, pod_cgroup);
    return p;
}

int enf_dns_ingress(struct __sk_buff *skb)
{
    u8 vbyte = 0;
    if (bpf_skb_load_bytes(skb, 0, &vbyte, 1) != 0)
        return 1;
    u32 off = 0;
    struct learned_key src = {};
    if ((vbyte >> 4) == 4) {
        u8 ip[20];
        if (bpf_skb_load_bytes(skb, 0, ip, 20) != 0 || ip[9] != 17)
            return 1;
        off = (vbyte & 0xf) * 4;
        src.addr[10] = 0xff;
        src.addr[11] = 0xff;
        __builtin_memcpy(&src.addr[12], &ip[12], 4);
    } else if ((vbyte >> 4) == 6) {
        u8 ip[40];
        if (bpf_skb_load_bytes(skb, 0, ip, 40) != 0 || ip[6] != 17)
            return 1;
        off = 40;
        __builtin_memcpy(src.addr, &ip[8], 16);
    } else {
        return 1;
    }
    u8 udp[8];
    if (bpf_skb_load_bytes(skb, off & 0xff, udp, 8) != 0)
        return 1;
    if (((udp[0] << 8) | udp[1]) != DNS_PORT)
        return 1;
    if (!resolvers.lookup(&src))
        return 1;
    struct pod_policy *p = skb_pod(skb);
    if (!p)
        return 1;
    u32 policy = p->policy;
    u32 zero = 0;
    struct dns_scratch *w = dns_work.lookup(&zero);
    if (!w)
        return 1;
    off = (off & 0xff) + 8;
    u32 n = skb->len > off ? skb->len - off : 0;
    if (n < 12)
        return 1;
    if (n > DNS_MAX - 1)
        n = DNS_MAX - 1;
    u32 extra = n - 12;
    asm volatile("%0 &= 511" : "+r"(extra));  /* DNS_MAX - 1, kept for the verifier */
    n = extra + 12;
    if (bpf_skb_load_bytes(skb, off, w->buf, n) != 0)
        return 1;
    u8 *buf = w->buf;
    /* a response (QR), no error, one question */
    if (!(buf[2] & 0x80) || (buf[3] & 0xf) != 0 || buf[4] != 0 || buf[5] != 1)
        return 1;
    u32 ancount = (buf[6] << 8) | buf[7];
    /* the question's name: label offsets, lowercased in place */
    u32 pos = 12;
    u32 labels = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < MAX_LABELS; i++) {
        u8 len = buf[pos & (DNS_MAX - 1)];
        if (len == 0)
            break;
        if (len > 63)
            return 1;
        w->starts[i & (MAX_LABELS - 1)] = (u8)(pos - 12);
        labels = i + 1;
        pos += len + 1;
        if (pos - 12 > NAME_LEN - 1)
            return 1;
    }
    if (buf[pos & (DNS_MAX - 1)] != 0)
        return 1;  /* more labels than MAX_LABELS */
    if (pos == 12)
        return 1;
    *(volatile u32 *)&w->name_len = pos - 12;
    *(volatile u32 *)&w->labels = labels;
    *(volatile u32 *)&w->pos = pos;
    *(volatile u32 *)&w->n = n;
    u32 name_len = *(volatile u32 *)&w->name_len & (NAME_LEN - 1);
    labels = *(volatile u32 *)&w->labels & 31;
#pragma clang loop unroll(disable)
    for (int i = 0; i < NAME_LEN; i++) {
        if (i >= name_len)
            break;
        u32 at = 12 + i;
        asm volatile("%0 &= 511" : "+r"(at));  /* DNS_MAX - 1, kept for the verifier */
        u8 c = buf[at];
        if (c >= 'A' && c <= 'Z')
            buf[at] = c + 32;
    }
    /* the longest allowed suffix: the whole name (exact), then each shorter one as
     * a wildcard */
    struct allow *rule = NULL;
    struct domain_key *key = &w->key;
#pragma clang loop unroll(disable)
    for (int i = 0; i < MAX_LABELS; i++) {
        if (i >= labels)
            break;
        u32 start = w->starts[i & (MAX_LABELS - 1)];
        u32 len = name_len - start;
        __builtin_memset(key, 0, sizeof(*key));
        key->policy = policy;
        key->wildcard = i == 0 ? 0 : 1;
        if (len == 0 || len > NAME_LEN - 1)
            return 1;
        asm volatile("%0 &= 127" : "+r"(len));  /* NAME_LEN - 1, for the verifier */
        bpf_probe_read_kernel(key->name, len, &buf[(12 + start) & (DNS_MAX - 1)]);
        rule = allow_domain.lookup(key);
        if (rule)
            break;
    }
    if (!rule)
        return 1;
    struct allow ports = *rule;
    pos = (*(volatile u32 *)&w->pos & (DNS_MAX - 1)) + 1 + 4;  /* zero, QTYPE, QCLASS */
    n = *(volatile u32 *)&w->n & (DNS_BUF - 1);
    u64 now = bpf_ktime_get_ns();
#pragma clang loop unroll(disable)
    for (int a = 0; a < MAX_ANSWERS; a++) {
        if (a >= ancount || pos + 12 > n)
            break;
        u8 b = buf[pos & (DNS_MAX - 1)];
        if ((b & 0xc0) != 0xc0)
            break;  /* resolvers compress answer names; an uncompressed one ends the walk */
        pos += 2;
        if (pos + 10 > n)
            break;
        u32 at = pos & (DNS_MAX - 1);
        u32 type = (buf[at] << 8) | buf[(at + 1) & (DNS_BUF - 1)];
        u32 rdlen = (buf[(at + 8) & (DNS_BUF - 1)] << 8) | buf[(at + 9) & (DNS_BUF - 1)];
        pos += 10;
        if (pos + rdlen > n)
            break;
        struct learned_key lk = {};
        lk.policy = policy;
        if (type == 1 && rdlen == 4) {
            lk.addr[10] = 0xff;
            lk.addr[11] = 0xff;
            bpf_probe_read_kernel(&lk.addr[12], 4, &buf[pos & (DNS_MAX - 1)]);
            allow_learned.update(&lk, &ports);
            enf_count(C_LEARNED);
        } else if (type == 28 && rdlen == 16) {
            bpf_probe_read_kernel(lk.addr, 16, &buf[pos & (DNS_MAX - 1)]);
            allow_learned.update(&lk, &ports);
            enf_count(C_LEARNED);
        }
        pos += rdlen;
    }
    return 1;
}

/* Shared by the enforcer's programs (egress.bpf.c, dnslearn.bpf.c, exec.bpf.c): which
 * pods are enforced under which policy and mode, the allow maps, the event record, the
 * rate-limited log and the counters.
 *
 * bcc rewrites map calls only in the main source, so the loader (loader.py:
 * assemble_source) inlines this header in place of each file's #include line.
 * The event layout is mirrored by decode.py (checked by tests/enforce/test_layout.py).
 */
#ifndef AGENTSTORY_ENFORCE_BPF_H
#define AGENTSTORY_ENFORCE_BPF_H

#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf.h>

#ifndef MAX_PODS
#define MAX_PODS 4096
#endif
#ifndef MAX_POLICIES
#define MAX_POLICIES 256
#endif
#ifndef MAX_CIDRS
#define MAX_CIDRS 16384
#endif
#ifndef MAX_LEARNED
#define MAX_LEARNED 65536
#endif
#ifndef MAX_DOMAINS
#define MAX_DOMAINS 16384
#endif
#ifndef MAX_EXES
#define MAX_EXES 16384
#endif
#ifndef DNS_PORT
#define DNS_PORT 53
#endif
#ifndef LOG_PER_SEC
#define LOG_PER_SEC 20
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 64
#endif
#define MAX_LEVEL 12     /* deepest cgroup level searched for an enforced pod */
#define NAME_LEN 128     /* DNS names in wire form, without the final zero */
#define PATH_LEN 256
#define PORTS 8

#define MODE_OFF 0
#define MODE_AUDIT 1
#define MODE_ENFORCE 2

#define POLICY_EGRESS 1  /* the policy restricts egress */
#define POLICY_EXEC 2    /* the policy restricts executables */

#define EV_CONNECT 1
#define EV_EXEC 2
#define EV_SENDMSG 3

/* Counter slots (decode.py: COUNTERS). */
#define C_CHECKED 0      /* connects/sends/execs of enforced pods checked */
#define C_VIOLATION 1    /* of which outside the policy */
#define C_LEARNED 2      /* addresses learnt from DNS answers of allowed names */
#define C_LOG_SUPPRESSED 3
#define C_LOST 4         /* ring buffer full */
#define C_KILLED 5
#define NR_COUNTERS 6

struct pod_policy {
    u32 policy;      /* slot in `policies` */
    u32 pad;
};

struct policy_cfg {
    u32 mode;
    u32 flags;
};

/* One policy's ports for a destination: ports[0] == 0 means any port. */
struct allow {
    u16 ports[PORTS];
};

struct cidr_key {
    u32 prefixlen;   /* 32 (policy) + address bits in the v6 form (v4 as ::ffff:a.b.c.d) */
    u32 policy;      /* 0: always allowed for every policy (resolvers, node addresses) */
    u8 addr[16];
};

struct learned_key {
    u32 policy;
    u32 pad;
    u8 addr[16];
};

struct domain_key {
    u32 policy;
    u32 wildcard;    /* 1: matches proper subdomains ("*.example.com") */
    u8 name[NAME_LEN];
};

struct exe_key {
    u32 policy;
    char path[PATH_LEN - 4];
};

struct enforce_event {
    u32 kind;        /* EV_CONNECT, EV_EXEC, EV_SENDMSG */
    u32 mode;
    u32 pid;
    u32 tid;
    u64 ts;          /* bpf_ktime_get_ns() */
    u64 cgroup_id;   /* the process's own cgroup */
    u64 pod_cgroup;  /* the enforced (pod-level) ancestor */
    u32 policy;
    u32 suppressed;  /* events of this policy dropped by the rate limit before this one */
    u16 family;
    u16 port;        /* host order */
    u32 protocol;
    u8 addr[16];
    char comm[16];
    char path[PATH_LEN];
};

struct rate {
    u64 window;      /* second of bpf_ktime_get_ns() */
    u64 count;
    u64 suppressed;
};

BPF_RINGBUF_OUTPUT(enf_events, RINGBUF_PAGES);
BPF_HASH(enforced, u64, struct pod_policy, MAX_PODS);
BPF_ARRAY(policies, struct policy_cfg, MAX_POLICIES);
BPF_ARRAY(rates, struct rate, MAX_POLICIES);
BPF_PERCPU_ARRAY(enf_counters, u64, NR_COUNTERS);
BPF_F_TABLE("lpm_trie", struct cidr_key, struct allow, allow_cidr, MAX_CIDRS, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", struct learned_key, struct allow, allow_learned, MAX_LEARNED);
BPF_HASH(allow_domain, struct domain_key, struct allow, MAX_DOMAINS);
BPF_HASH(allow_exe, struct exe_key, u8, MAX_EXES);
BPF_HASH(resolvers, struct learned_key, u8, 64);  /* policy 0; DNS answers only from these */
BPF_PERCPU_ARRAY(enf_scratch, struct enforce_event, 1);

static __always_inline void enf_count(u32 slot)
{
    u64 *value = enf_counters.lookup(&slot);
    if (value)
        *value += 1;
}

/* cgroup id -> its enforced ancestor (0: none), so the common case is one look-up
 * instead of a walk up the hierarchy (every exec on the node asks). A verdict is valid
 * while `gen` has not moved: user space bumps it after every change of `enforced`, and
 * a verdict is stored with the generation read before the walk, so a walk that raced
 * with a change is never reused. */
struct verdict {
    u64 pod_cgroup;
    u64 gen;
};
BPF_ARRAY(gen, u64, 1);
BPF_TABLE("lru_hash", u64, struct verdict, verdicts, 16384);

static __always_inline u64 current_gen(void)
{
    u32 zero = 0;
    u64 *g = gen.lookup(&zero);
    return g ? *g : 0;
}

static __always_inline struct pod_policy *cached_pod(u64 cgroup_id, u64 g, u64 *pod_cgroup,
                                                     int *hit)
{
    struct verdict *v = verdicts.lookup(&cgroup_id);
    *hit = 0;
    if (!v || v->gen != g)
        return NULL;
    *hit = 1;
    if (!v->pod_cgroup)
        return NULL;
    *pod_cgroup = v->pod_cgroup;
    return enforced.lookup(pod_cgroup);
}

static __always_inline void remember_pod(u64 cgroup_id, u64 g, u64 pod_cgroup)
{
    struct verdict v = {};
    v.pod_cgroup = pod_cgroup;
    v.gen = g;
    verdicts.update(&cgroup_id, &v);
}

/* The enforced ancestor of the current task's cgroup (the pod-level cgroup the policy
 * names; containers are its children), or NULL. */
static __always_inline struct pod_policy *current_pod(u64 *pod_cgroup)
{
    u64 g = current_gen();
    u64 self = bpf_get_current_cgroup_id();
    int hit = 0;
    struct pod_policy *p = cached_pod(self, g, pod_cgroup, &hit);
    if (hit)
        return p;
    *pod_cgroup = 0;
#pragma unroll
    for (int level = 1; level < MAX_LEVEL; level++) {
        u64 id = bpf_get_current_ancestor_cgroup_id(level);
        if (!id)
            break;
        p = enforced.lookup(&id);
        if (p) {
            *pod_cgroup = id;
            break;
        }
    }
    remember_pod(self, g, *pod_cgroup);
    return p;
}

/* The rate-limited block log: at most LOG_PER_SEC records per policy and second; the
 * rest are counted and the count rides on the next record that goes out. */
static __always_inline int log_allowed(u32 policy, u64 now, u32 *suppressed)
{
    struct rate *r = rates.lookup(&policy);
    if (!r)
        return 0;
    u64 second = now / 1000000000ULL;
    if (r->window != second) {
        r->window = second;
        r->count = 0;
    }
    if (r->count >= LOG_PER_SEC) {
        __sync_fetch_and_add(&r->suppressed, 1);
        enf_count(C_LOG_SUPPRESSED);
        return 0;
    }
    r->count += 1;
    *suppressed = (u32)__sync_lock_test_and_set(&r->suppressed, 0);
    return 1;
}

static __always_inline struct enforce_event *event_start(u32 kind, u32 mode, u32 policy,
                                                         u64 pod_cgroup)
{
    u32 suppressed = 0;
    u64 now = bpf_ktime_get_ns();  /* the record's time is the rate window's */
    if (!log_allowed(policy, now, &suppressed))
        return NULL;
    u32 zero = 0;
    struct enforce_event *e = enf_scratch.lookup(&zero);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    u64 id = bpf_get_current_pid_tgid();
    e->kind = kind;
    e->mode = mode;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->ts = now;
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->pod_cgroup = pod_cgroup;
    e->policy = policy;
    e->suppressed = suppressed;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    return e;
}

static __always_inline void event_submit(struct enforce_event *e)
{
    if (enf_events.ringbuf_output(e, sizeof(*e), 0) != 0)
        enf_count(C_LOST);
}

#endif

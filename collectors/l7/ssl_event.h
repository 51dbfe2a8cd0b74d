/* The record the capture program submits to user space: one per plaintext chunk, plus
 * one per SSL_free or close() of a plaintext HTTP socket (kind = SSL_EV_CLOSE, no
 * payload).
 *
 * The layout is fixed (explicit widths, no implicit padding) so that the pure Python
 * decoder in collectors/l7/chunks.py can mirror it with struct; the static asserts in
 * ssl.bpf.c fail the compile if the two drift apart.
 */
#ifndef AGENTSTORY_SSL_EVENT_H
#define AGENTSTORY_SSL_EVENT_H

#ifndef CHUNK_SIZE
#define CHUNK_SIZE 4096          /* bytes per ring-buffer record (power of two) */
#endif
#ifndef MAX_CAPTURE
#define MAX_CAPTURE (128 * 1024) /* bytes captured per SSL call; the rest is counted */
#endif
#define MAX_CHUNKS ((MAX_CAPTURE + CHUNK_SIZE - 1) / CHUNK_SIZE)

#define SSL_EV_DATA 0
#define SSL_EV_CLOSE 1

#define SSL_DIR_EGRESS 0   /* the process wrote (SSL_write*) */
#define SSL_DIR_INGRESS 1  /* the process read (SSL_read*) */

#define SSL_FN_WRITE 0
#define SSL_FN_WRITE_EX 1
#define SSL_FN_READ 2
#define SSL_FN_READ_EX 3
/* plaintext HTTP on sockets (syscall tracepoints), ssl = 0 */
#define SYS_FN_WRITE 4
#define SYS_FN_READ 5
#define SYS_FN_SENDTO 6
#define SYS_FN_RECVFROM 7

/* Counter slots of the per-CPU `counters` array. */
#define CNT_CALLS 0        /* SSL calls from watched cgroups that returned data */
#define CNT_CHUNKS 1       /* records submitted */
#define CNT_LOST 2         /* records the ring buffer refused (full) */
#define CNT_TRUNCATED 3    /* calls longer than MAX_CAPTURE */
#define CNT_READ_FAIL 4    /* bpf_probe_read_user failures */
#define CNT_NSLOTS 5

struct ssl_chunk_hdr {
    __u64 ts_ns;       /* bpf_ktime_get_ns() at return of the call (CLOCK_MONOTONIC) */
    __u64 cgroup_id;   /* bpf_get_current_cgroup_id(): inode of the v2 cgroup folder */
    __u64 ssl;         /* SSL* : connection identity within the process; 0 = plaintext */
    __u32 pid;         /* tgid */
    __u32 tid;
    __s32 fd;          /* from SSL_set_fd/SSL_set_rfd/SSL_set_wfd, -1 when unknown */
    __u32 total_len;   /* bytes the call moved */
    __u32 offset;      /* where this chunk starts within the call's buffer */
    __u32 len;         /* bytes of payload in this record */
    __u8 kind;         /* SSL_EV_* */
    __u8 direction;    /* SSL_DIR_* */
    __u8 fn;           /* SSL_FN_* */
    __u8 truncated;    /* 1 when total_len > MAX_CAPTURE (this call lost bytes) */
    char comm[16];
    __u16 family;      /* peer of fd from the thread's connect(): AF_INET/AF_INET6, 0 */
    __u16 dport;       /* host byte order */
    __u8 daddr[16];    /* 4 bytes for AF_INET */
};                     /* 88 bytes */

struct ssl_chunk {
    struct ssl_chunk_hdr hdr;
    __u8 data[CHUNK_SIZE];
};

#endif

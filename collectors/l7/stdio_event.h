/* The record stdio.bpf.c submits: one per piece of a read()/write() on a watched pipe,
 * one per first write of an fd that starts like a JSON object (a candidate MCP
 * `initialize`), and one when a watched fd is closed.
 *
 * Fixed layout (explicit widths, no implicit padding): collectors/l7/stdio.py mirrors it
 * with struct, and the static asserts in stdio.bpf.c fail the compile if they drift.
 */
#ifndef AGENTSTORY_STDIO_EVENT_H
#define AGENTSTORY_STDIO_EVENT_H

#ifndef CHUNK_SIZE
#define CHUNK_SIZE 4096          /* bytes per ring-buffer record (power of two) */
#endif
#ifndef MAX_CAPTURE
#define MAX_CAPTURE (256 * 1024) /* bytes captured per read/write; the rest is counted */
#endif
#define MAX_CHUNKS ((MAX_CAPTURE + CHUNK_SIZE - 1) / CHUNK_SIZE)

#define STDIO_EV_DATA 0       /* bytes moved on a watched pipe fd */
#define STDIO_EV_CANDIDATE 1  /* first write of an unwatched fd, starting with {" */
#define STDIO_EV_CLOSE 2      /* a watched fd was closed */
#define STDIO_EV_EARLY_READ 3 /* a read starting with {" by a process whose candidate
                               * user space has not settled yet (the server's answer to
                               * initialize may come before its fd is watched) */

#define STDIO_DIR_EGRESS 0   /* the process wrote */
#define STDIO_DIR_INGRESS 1  /* the process read */

/* Counter slots of the per-CPU `counters` array. */
#define SCNT_CANDIDATES 0   /* candidate records submitted */
#define SCNT_CALLS 1        /* reads/writes on watched fds that moved bytes */
#define SCNT_RECORDS 2      /* records submitted */
#define SCNT_LOST 3         /* records the ring buffer refused (full) */
#define SCNT_TRUNCATED 4    /* calls longer than MAX_CAPTURE */
#define SCNT_READ_FAIL 5    /* bpf_probe_read_user failures */
#define SCNT_EARLY_READS 6  /* early reads submitted */
#define SCNT_NSLOTS 7

struct stdio_hdr {
    __u64 ts_ns;       /* bpf_ktime_get_ns() at return of the call */
    __u64 cgroup_id;
    __u32 pid;         /* tgid */
    __u32 tid;
    __s32 fd;
    __u32 total_len;   /* bytes the call moved */
    __u32 offset;      /* where this piece starts within the call's buffer */
    __u32 len;         /* payload bytes in this record */
    __u8 kind;         /* STDIO_EV_* */
    __u8 direction;    /* STDIO_DIR_* */
    __u8 truncated;    /* 1 when total_len > MAX_CAPTURE */
    __u8 _pad;
    char comm[16];
    __u32 _pad2;
};                     /* 64 bytes */

struct stdio_rec {
    struct stdio_hdr hdr;
    __u8 data[CHUNK_SIZE];
};

#endif

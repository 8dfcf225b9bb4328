/* The record netblame's BPF programs write into the ring buffer. Mirrored by `RawEvent` in
 * src/raw.rs (a test checks the size); the meaning of v[] per kind is documented there. */
#ifndef NETBLAME_H
#define NETBLAME_H

enum nb_kind {
	NB_RETRANSMIT = 1,
	NB_SEND_RESET = 2,
	NB_RECV_RESET = 3,
	NB_DROP = 4,
	NB_STATE = 5,
	NB_RCVBUF_GROW = 6,
	NB_RCV_SPACE = 7,
	NB_PROBE = 8,
	NB_NETRX_LONG = 9,
	NB_COLLAPSE = 10,
	NB_PRUNE = 11,
	NB_KIND_MAX = 12,
};

struct nb_conn {
	__u16 family;
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u16 l4proto;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns; /* network namespace inode (as in /proc/PID/ns/net), 0 when unknown */
	__u32 pad;
};

struct nb_event {
	__u64 ts_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 sk;    /* kernel socket address, 0 when none: an id, never dereferenced */
	__u32 kind;
	__u32 cpu;
	__u32 tgid; /* owning process when known, else 0 */
	__u32 pad;
	char comm[16];
	struct nb_conn conn;
	__u64 v[8];
};

/* NAPI poll totals per CPU. */
struct nb_napi {
	__u64 polls;
	__u64 work;
	__u64 budget_exhausted;
	__u64 max_work;
};

/* NET_RX softirq totals per CPU. */
struct nb_netrx {
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	__u64 max_ts_ns;
};

#define NB_HIST_BUCKETS 64

#endif

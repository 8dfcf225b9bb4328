// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0
/* netblame's kernel programs: tracepoints only (plus fentry on tcp_collapse/tcp_prune_queue where
 * the kernel allows function tracing). CO-RE: every kernel struct below is a local "flavor"
 * (name___nb) with preserve_access_index, relocated against the running kernel's BTF at load
 * time, so no vmlinux.h is generated from the build machine. Rebuild with build.sh. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "netblame.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define NET_RX_SOFTIRQ 3
#define TCP_SYN_SENT 2
#define SOCK_RCVBUF_LOCK 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before load. */
volatile const __u64 long_run_ns = 1000000;     /* NET_RX runs at least this long become events */
volatile const __u64 sample_interval_ns = 100000000; /* per-socket tcp_probe / buffer heartbeat */

/* ---- kernel types (flavors) ---- */

struct in6_addr___nb {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct ns_common___nb {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net___nb {
	struct ns_common___nb ns;
} __attribute__((preserve_access_index));

struct net_device___nb {
	struct {
		struct net___nb *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct sock_common___nb {
	union {
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr___nb skc_v6_daddr;
	struct in6_addr___nb skc_v6_rcv_saddr;
	struct {
		struct net___nb *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct sock___nb {
	struct sock_common___nb __sk_common;
	int sk_rcvbuf;
	__u8 sk_userlocks;
} __attribute__((preserve_access_index));

struct tcp_sock___nb {
	__u32 window_clamp;
	__u32 rcv_ssthresh;
	struct {
		__u32 space;
	} rcvq_space;
} __attribute__((preserve_access_index));

struct sk_buff___nb {
	struct net_device___nb *dev;
	unsigned char *head;
	__u16 network_header;
} __attribute__((preserve_access_index));

struct trace_entry___nb {
	unsigned short type;
} __attribute__((preserve_access_index));

struct trace_event_raw_softirq___nb {
	unsigned int vec;
} __attribute__((preserve_access_index));

struct trace_event_raw_napi_poll___nb {
	int work;
	int budget;
} __attribute__((preserve_access_index));

/* Enum-typed fields must be declared as enums: CO-RE matches enum to enum by name, not to int. */
enum skb_drop_reason___nb { NB_DROP_REASON_ANY = 0 };
enum sk_rst_reason___nb { NB_RST_REASON_ANY = 0 };

struct trace_event_raw_kfree_skb___nb {
	void *skbaddr;
	void *location;
	void *rx_sk;
	unsigned short protocol;
	enum skb_drop_reason___nb reason;
} __attribute__((preserve_access_index));

/* tcp:tcp_retransmit_skb has its own struct since 6.x; older kernels share tcp_event_sk_skb. */
struct trace_event_raw_tcp_retransmit_skb___nb {
	const void *skaddr;
	int err;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_event_sk_skb___nb {
	const void *skaddr;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_send_reset___nb {
	const void *skbaddr;
	const void *skaddr;
	int state;
	enum sk_rst_reason___nb reason;
	__u8 saddr[28];
	__u8 daddr[28];
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_event_sk___nb {
	const void *skaddr;
} __attribute__((preserve_access_index));

struct trace_event_raw_inet_sock_set_state___nb {
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 protocol;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_rcvbuf_grow___nb {
	__u32 rtt_us;
	__u32 copied;
	__u32 inq;
	__u32 space;
	__u32 rcvbuf;
	__u32 window_clamp;
	__u32 rcv_wnd;
	__u8 scaling_ratio;
	const void *skaddr;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_probe___nb {
	__u16 data_len;
	__u32 snd_cwnd;
	__u32 ssthresh;
	__u32 snd_wnd;
	__u32 srtt;
	__u32 rcv_wnd;
	const void *skaddr;
} __attribute__((preserve_access_index));

struct trace_event_raw_sock_msg_length___nb {
	void *sk;
	__u16 protocol;
} __attribute__((preserve_access_index));

/* ---- maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* 16 MiB: about 100,000 events of 160 B */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NB_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NB_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} netrx_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NB_HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} netrx_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nb_netrx);
} netrx_stat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nb_napi);
} napi_stat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} drop_reasons SEC(".maps");

struct owner {
	__u32 tgid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

struct sample_key {
	__u64 sk;
	__u32 kind;
	__u32 pad;
};

struct sample_state {
	__u64 last_ts;
	__u64 last_value;
	__u64 calls; /* calls since the last emitted event */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sample_key);
	__type(value, struct sample_state);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} fn_start SEC(".maps");

/* ---- helpers ---- */

static __always_inline void count(void *map, __u32 kind)
{
	__u64 *c = bpf_map_lookup_elem(map, &kind);
	if (c)
		(*c)++;
}

/* A zeroed event of `kind`, or NULL (counted in `lost`) when the ring buffer is full. */
static __always_inline struct nb_event *reserve(__u32 kind)
{
	struct nb_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(&lost, kind);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	return e;
}

static __always_inline __u32 sk_netns(const struct sock___nb *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline void conn_from_sk(const void *skp, struct nb_conn *c)
{
	const struct sock___nb *sk = skp;
	if (!sk)
		return;
	c->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	c->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	c->l4proto = IPPROTO_TCP;
	c->netns = sk_netns(sk);
	if (c->family == AF_INET) {
		__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(c->saddr, &s, 4);
		__builtin_memcpy(c->daddr, &d, 4);
	} else if (c->family == AF_INET6) {
		BPF_CORE_READ_INTO(&c->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&c->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* sockaddr_in / sockaddr_in6 bytes, as tcp_send_reset and tcp_probe carry them. */
static __always_inline void addr_from_sockaddr(const __u8 *sa, __u16 *family, __u16 *port, __u8 *addr)
{
	__u16 fam = sa[0] | (sa[1] << 8);
	*family = fam;
	*port = (sa[2] << 8) | sa[3];
	if (fam == AF_INET)
		__builtin_memcpy(addr, sa + 4, 4);
	else if (fam == AF_INET6)
		__builtin_memcpy(addr, sa + 8, 16);
}

static __always_inline void attach_owner(struct nb_event *e)
{
	struct owner *o = bpf_map_lookup_elem(&owners, &e->sk);
	if (o) {
		e->tgid = o->tgid;
		__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	}
}

static __always_inline void remember_owner(__u64 sk)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct owner *o = bpf_map_lookup_elem(&owners, &sk);
	if (o && o->tgid == tgid)
		return;
	struct owner n = { .tgid = tgid };
	bpf_get_current_comm(n.comm, sizeof(n.comm));
	bpf_map_update_elem(&owners, &sk, &n, BPF_ANY);
}

/* Rate limit per socket and kind: true when an event should be emitted now (the value changed,
 * or sample_interval_ns passed); *calls gets the number of calls folded into this one. */
static __always_inline int sample(__u64 sk, __u32 kind, __u64 value, int on_change, __u64 *calls)
{
	struct sample_key k = { .sk = sk, .kind = kind };
	__u64 now = bpf_ktime_get_ns();
	struct sample_state *s = bpf_map_lookup_elem(&samples, &k);
	if (!s) {
		struct sample_state n = { .last_ts = now, .last_value = value, .calls = 0 };
		bpf_map_update_elem(&samples, &k, &n, BPF_ANY);
		*calls = 1;
		return 1;
	}
	s->calls++;
	if ((on_change && s->last_value != value) || now - s->last_ts >= sample_interval_ns) {
		*calls = s->calls;
		s->calls = 0;
		s->last_ts = now;
		s->last_value = value;
		return 1;
	}
	return 0;
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/* ---- NET_RX softirq time ---- */

SEC("tracepoint/irq/softirq_entry")
int nb_softirq_entry(struct trace_event_raw_softirq___nb *ctx)
{
	if (BPF_CORE_READ(ctx, vec) != NET_RX_SOFTIRQ)
		return 0;
	__u32 zero = 0;
	__u64 *start = bpf_map_lookup_elem(&netrx_start, &zero);
	if (start)
		*start = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/irq/softirq_exit")
int nb_softirq_exit(struct trace_event_raw_softirq___nb *ctx)
{
	if (BPF_CORE_READ(ctx, vec) != NET_RX_SOFTIRQ)
		return 0;
	__u32 zero = 0;
	__u64 *start = bpf_map_lookup_elem(&netrx_start, &zero);
	if (!start || !*start)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 begin = *start;
	__u64 d = now - begin;
	*start = 0;
	__u64 us = d / 1000;
	__u32 b = us ? log2_u64(us) + 1 : 0;
	if (b >= NB_HIST_BUCKETS)
		b = NB_HIST_BUCKETS - 1;
	__u64 *h = bpf_map_lookup_elem(&netrx_hist, &b);
	if (h)
		(*h)++;
	struct nb_netrx *s = bpf_map_lookup_elem(&netrx_stat, &zero);
	if (s) {
		s->count++;
		s->sum_ns += d;
		if (d > s->max_ns) {
			s->max_ns = d;
			s->max_ts_ns = begin;
		}
	}
	if (d >= long_run_ns) {
		count(&seen, NB_NETRX_LONG);
		struct nb_event *e = reserve(NB_NETRX_LONG);
		if (e) {
			e->ts_ns = begin;
			e->v[0] = d;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return 0;
}

SEC("tracepoint/napi/napi_poll")
int nb_napi_poll(struct trace_event_raw_napi_poll___nb *ctx)
{
	__u32 zero = 0;
	struct nb_napi *s = bpf_map_lookup_elem(&napi_stat, &zero);
	if (!s)
		return 0;
	int work = BPF_CORE_READ(ctx, work);
	int budget = BPF_CORE_READ(ctx, budget);
	s->polls++;
	if (work > 0) {
		s->work += work;
		if ((__u64)work > s->max_work)
			s->max_work = work;
	}
	if (budget > 0 && work >= budget)
		s->budget_exhausted++;
	return 0;
}

/* ---- drops ---- */

SEC("tracepoint/skb/kfree_skb")
int nb_kfree_skb(struct trace_event_raw_kfree_skb___nb *ctx)
{
	__u32 reason = 0;
	if (bpf_core_field_exists(ctx->reason))
		reason = BPF_CORE_READ(ctx, reason);
	__u64 one = 1, *c = bpf_map_lookup_elem(&drop_reasons, &reason);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&drop_reasons, &reason, &one, BPF_NOEXIST);

	count(&seen, NB_DROP);
	struct nb_event *e = reserve(NB_DROP);
	if (!e)
		return 0;
	e->v[0] = reason;
	e->v[1] = (__u64)BPF_CORE_READ(ctx, location);
	__u16 proto = BPF_CORE_READ(ctx, protocol);
	e->v[2] = proto;
	if (bpf_core_field_exists(ctx->rx_sk)) {
		e->sk = (__u64)BPF_CORE_READ(ctx, rx_sk);
		if (e->sk) {
			attach_owner(e);
			e->conn.netns = sk_netns((const struct sock___nb *)e->sk);
		}
	}
	struct sk_buff___nb *skb = BPF_CORE_READ(ctx, skbaddr);
	if (!e->conn.netns)
		e->conn.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u8 ip[40];
	if (head && nh != 0xffff && (proto == ETH_P_IP || proto == ETH_P_IPV6) &&
	    bpf_probe_read_kernel(ip, sizeof(ip), head + nh) == 0) {
		__u16 ports[2] = {};
		if ((ip[0] >> 4) == 4) {
			__u32 ihl = (ip[0] & 0xf) * 4;
			e->conn.family = AF_INET;
			e->conn.l4proto = ip[9];
			__builtin_memcpy(e->conn.saddr, ip + 12, 4);
			__builtin_memcpy(e->conn.daddr, ip + 16, 4);
			if ((ip[9] == IPPROTO_TCP || ip[9] == IPPROTO_UDP) && ihl >= 20 && ihl <= 60)
				bpf_probe_read_kernel(ports, sizeof(ports), head + nh + ihl);
		} else if ((ip[0] >> 4) == 6) {
			e->conn.family = AF_INET6;
			e->conn.l4proto = ip[6];
			__builtin_memcpy(e->conn.saddr, ip + 8, 16);
			bpf_probe_read_kernel(e->conn.daddr, 16, head + nh + 24);
			if (ip[6] == IPPROTO_TCP || ip[6] == IPPROTO_UDP)
				bpf_probe_read_kernel(ports, sizeof(ports), head + nh + 40);
		}
		e->conn.sport = bpf_ntohs(ports[0]);
		e->conn.dport = bpf_ntohs(ports[1]);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* ---- retransmits, resets, state ---- */

static __always_inline int sk_event(__u32 kind, const void *sk, __u64 v0)
{
	count(&seen, kind);
	struct nb_event *e = reserve(kind);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	e->v[0] = sk ? BPF_CORE_READ((const struct sock___nb *)sk, __sk_common.skc_state) : 0;
	e->v[1] = v0;
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int nb_retransmit(void *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb___nb)) {
		struct trace_event_raw_tcp_retransmit_skb___nb *c = ctx;
		int err = bpf_core_field_exists(c->err) ? BPF_CORE_READ(c, err) : 0;
		return sk_event(NB_RETRANSMIT, BPF_CORE_READ(c, skaddr), (__u64)(__s64)err);
	}
	struct trace_event_raw_tcp_event_sk_skb___nb *c = ctx;
	return sk_event(NB_RETRANSMIT, BPF_CORE_READ(c, skaddr), 0);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int nb_receive_reset(struct trace_event_raw_tcp_event_sk___nb *ctx)
{
	return sk_event(NB_RECV_RESET, BPF_CORE_READ(ctx, skaddr), 0);
}

SEC("tracepoint/tcp/tcp_send_reset")
int nb_send_reset(struct trace_event_raw_tcp_send_reset___nb *ctx)
{
	const void *sk = BPF_CORE_READ(ctx, skaddr);
	count(&seen, NB_SEND_RESET);
	struct nb_event *e = reserve(NB_SEND_RESET);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	if (bpf_core_field_exists(ctx->reason))
		e->v[1] = BPF_CORE_READ(ctx, reason);
	if (sk) {
		conn_from_sk(sk, &e->conn);
		e->v[0] = BPF_CORE_READ((const struct sock___nb *)sk, __sk_common.skc_state);
		attach_owner(e);
	} else if (bpf_core_field_exists(ctx->saddr)) {
		/* No socket (a reset to a closed port): the addresses of the reset itself. */
		__u8 sa[28], da[28];
		BPF_CORE_READ_INTO(&sa, ctx, saddr);
		BPF_CORE_READ_INTO(&da, ctx, daddr);
		addr_from_sockaddr(sa, &e->conn.family, &e->conn.sport, e->conn.saddr);
		addr_from_sockaddr(da, &e->conn.family, &e->conn.dport, e->conn.daddr);
		e->conn.l4proto = IPPROTO_TCP;
		if (bpf_core_field_exists(ctx->skbaddr)) {
			const struct sk_buff___nb *skb = BPF_CORE_READ(ctx, skbaddr);
			e->conn.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
		}
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int nb_set_state(struct trace_event_raw_inet_sock_set_state___nb *ctx)
{
	if (BPF_CORE_READ(ctx, protocol) != IPPROTO_TCP)
		return 0;
	const void *sk = BPF_CORE_READ(ctx, skaddr);
	int newstate = BPF_CORE_READ(ctx, newstate);
	if (newstate == TCP_SYN_SENT)
		remember_owner((__u64)sk); /* connect(): the caller's process context */
	count(&seen, NB_STATE);
	struct nb_event *e = reserve(NB_STATE);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	e->v[0] = BPF_CORE_READ(ctx, oldstate);
	e->v[1] = newstate;
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* sendmsg/recvmsg run in the owner's process context: remember who owns each TCP socket. */
SEC("tracepoint/sock/sock_send_length")
int nb_send_length(struct trace_event_raw_sock_msg_length___nb *ctx)
{
	if (BPF_CORE_READ(ctx, protocol) == IPPROTO_TCP)
		remember_owner((__u64)BPF_CORE_READ(ctx, sk));
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int nb_recv_length(struct trace_event_raw_sock_msg_length___nb *ctx)
{
	if (BPF_CORE_READ(ctx, protocol) == IPPROTO_TCP)
		remember_owner((__u64)BPF_CORE_READ(ctx, sk));
	return 0;
}

/* ---- receive buffer autotuning ---- */

SEC("tracepoint/tcp/tcp_rcvbuf_grow")
int nb_rcvbuf_grow(struct trace_event_raw_tcp_rcvbuf_grow___nb *ctx)
{
	const void *sk = BPF_CORE_READ(ctx, skaddr);
	__u32 rcvbuf = BPF_CORE_READ(ctx, rcvbuf);
	__u64 calls;
	count(&seen, NB_RCVBUF_GROW);
	if (!sample((__u64)sk, NB_RCVBUF_GROW, rcvbuf, 1, &calls))
		return 0;
	struct nb_event *e = reserve(NB_RCVBUF_GROW);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	e->v[0] = BPF_CORE_READ(ctx, rtt_us);
	e->v[1] = BPF_CORE_READ(ctx, copied);
	e->v[2] = BPF_CORE_READ(ctx, inq);
	e->v[3] = BPF_CORE_READ(ctx, space);
	e->v[4] = rcvbuf;
	e->v[5] = BPF_CORE_READ(ctx, window_clamp);
	e->v[6] = BPF_CORE_READ(ctx, scaling_ratio);
	e->v[7] = calls;
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/tcp/tcp_rcv_space_adjust")
int nb_rcv_space(struct trace_event_raw_tcp_event_sk___nb *ctx)
{
	const struct sock___nb *sk = BPF_CORE_READ(ctx, skaddr);
	if (!sk)
		return 0;
	__u32 rcvbuf = BPF_CORE_READ(sk, sk_rcvbuf);
	__u64 calls;
	count(&seen, NB_RCV_SPACE);
	if (!sample((__u64)sk, NB_RCV_SPACE, rcvbuf, 1, &calls))
		return 0;
	struct nb_event *e = reserve(NB_RCV_SPACE);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	const struct tcp_sock___nb *tp = (const void *)sk;
	e->v[0] = rcvbuf;
	e->v[1] = (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_userlocks) & SOCK_RCVBUF_LOCK) ? 1 : 0;
	e->v[2] = BPF_CORE_READ(tp, rcvq_space.space);
	e->v[3] = BPF_CORE_READ(tp, window_clamp);
	e->v[7] = calls;
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* ---- sampled congestion state ---- */

SEC("tracepoint/tcp/tcp_probe")
int nb_tcp_probe(struct trace_event_raw_tcp_probe___nb *ctx)
{
	const void *sk = BPF_CORE_READ(ctx, skaddr);
	__u64 calls;
	count(&seen, NB_PROBE);
	if (!sample((__u64)sk, NB_PROBE, 0, 0, &calls))
		return 0;
	struct nb_event *e = reserve(NB_PROBE);
	if (!e)
		return 0;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	e->v[0] = BPF_CORE_READ(ctx, snd_cwnd);
	e->v[1] = BPF_CORE_READ(ctx, ssthresh);
	e->v[2] = BPF_CORE_READ(ctx, snd_wnd);
	e->v[3] = BPF_CORE_READ(ctx, srtt);
	e->v[4] = BPF_CORE_READ(ctx, rcv_wnd);
	e->v[5] = BPF_CORE_READ(ctx, data_len);
	e->v[7] = calls;
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* ---- function timing (only where the kernel allows fentry) ---- */

static __always_inline int fn_enter(void)
{
	__u64 id = bpf_get_current_pid_tgid() ^ ((__u64)bpf_get_smp_processor_id() << 48);
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&fn_start, &id, &now, BPF_ANY);
	return 0;
}

static __always_inline int fn_exit(__u32 kind, const void *sk)
{
	__u64 id = bpf_get_current_pid_tgid() ^ ((__u64)bpf_get_smp_processor_id() << 48);
	__u64 *start = bpf_map_lookup_elem(&fn_start, &id);
	if (!start)
		return 0;
	__u64 begin = *start;
	bpf_map_delete_elem(&fn_start, &id);
	count(&seen, kind);
	struct nb_event *e = reserve(kind);
	if (!e)
		return 0;
	e->ts_ns = begin;
	e->v[0] = bpf_ktime_get_ns() - begin;
	e->sk = (__u64)sk;
	conn_from_sk(sk, &e->conn);
	attach_owner(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("fentry/tcp_collapse")
int nb_collapse_entry(unsigned long long *ctx)
{
	return fn_enter();
}

SEC("fexit/tcp_collapse")
int nb_collapse_exit(unsigned long long *ctx)
{
	return fn_exit(NB_COLLAPSE, (const void *)ctx[0]);
}

SEC("fentry/tcp_prune_queue")
int nb_prune_entry(unsigned long long *ctx)
{
	return fn_enter();
}

SEC("fexit/tcp_prune_queue")
int nb_prune_exit(unsigned long long *ctx)
{
	return fn_exit(NB_PRUNE, (const void *)ctx[0]);
}

//go:build ignore

// TC ingress program that hands TCP connections for a VIP:port to a local proxy
// listener without NAT: the packet keeps its destination, the socket is chosen with
// bpf_sk_assign, and fwmark 0x200/0xf00 makes policy routing deliver it locally
// (rule "fwmark 0x200/0xf00 lookup 2004", "local 0.0.0.0/0 dev lo table 2004").
// This is the technique Cilium uses for its L7 proxy redirect.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// uapi has no AF_* constants that can be included from BPF code.
#define FAMILY_INET 2
#define FAMILY_INET6 10

#define PROXY_MARK 0x200
#define PROXY_MARK_MASK 0xf00

// IPv4 addresses are stored v4-mapped (::ffff:a.b.c.d) so that one key layout serves
// both families; family is part of the key so the two can never collide anyway.
struct redirect_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct redirect_value {
	__u16 proxy_port; // host byte order
	__u16 flags;      // reserved, must be zero
};

// Mirrored by the Counter constants in stats.go.
enum counter {
	COUNTER_HIT = 0,         // redirected a new connection to the proxy listener
	COUNTER_MISS,            // TCP packet whose destination is not in the map
	COUNTER_LOOKUP_FAIL,     // map hit, but no proxy listener was found
	COUNTER_ESTABLISHED,     // map hit, assigned to the flow's existing socket
	COUNTER_ASSIGN_FAIL,     // bpf_sk_assign refused the socket (e.g. SO_REUSEPORT)
	COUNTER_MAX,
};

// Preallocated (the default) because lookup speed matters more than the few MB that
// 100k entries cost.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct redirect_key);
	__type(value, struct redirect_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} redirects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTER_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} redirect_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&redirect_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline void mark(struct __sk_buff *skb)
{
	skb->mark = (skb->mark & ~PROXY_MARK_MASK) | PROXY_MARK;
}

// Returns 0 when skb now belongs to sk. Consumes the reference on sk.
static __always_inline long assign(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	return err;
}

SEC("tc")
int portico_redirect(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct redirect_key key = {};
	struct bpf_sock_tuple tuple = {};
	struct redirect_value *val;
	struct bpf_sock *sk;
	struct tcphdr *tcp;
	__u32 tlen;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end)
			return TC_ACT_UNSPEC;
		// TODO(udp): the map accepts IPPROTO_UDP keys, but UDP needs
		// bpf_sk_lookup_udp and an unconnected-socket story; only TCP is redirected.
		if (ip->protocol != IPPROTO_TCP || ip->ihl < 5)
			return TC_ACT_UNSPEC;
		// Non-first fragments carry no TCP header.
		if (ip->frag_off & bpf_htons(0x1fff))
			return TC_ACT_UNSPEC;
		tcp = (void *)ip + ip->ihl * 4;
		if ((void *)(tcp + 1) > end)
			return TC_ACT_UNSPEC;

		key.family = FAMILY_INET;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
		tuple.ipv4.saddr = ip->saddr;
		tuple.ipv4.daddr = ip->daddr;
		tuple.ipv4.sport = tcp->source;
		tuple.ipv4.dport = tcp->dest;
		key.port = tcp->dest;
		tlen = sizeof(tuple.ipv4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return TC_ACT_UNSPEC;
		// Extension headers are not walked: VIP traffic from clients does not use them.
		if (ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		tcp = (void *)(ip6 + 1);
		if ((void *)(tcp + 1) > end)
			return TC_ACT_UNSPEC;

		key.family = FAMILY_INET6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		__builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, 16);
		tuple.ipv6.sport = tcp->source;
		tuple.ipv6.dport = tcp->dest;
		key.port = tcp->dest;
		tlen = sizeof(tuple.ipv6);
	} else {
		return TC_ACT_UNSPEC;
	}
	// The port is copied in each branch: a shared read after the merge lets clang
	// rematerialise tcp from a pointer whose bounds check the verifier no longer sees.
	key.proto = IPPROTO_TCP;

	val = bpf_map_lookup_elem(&redirects, &key);
	if (!val) {
		count(COUNTER_MISS);
		// UNSPEC rather than OK: lets later TCX/tc programs see traffic we do not own.
		return TC_ACT_UNSPEC;
	}

	// A flow the proxy already accepted has a socket under the packet's own 4-tuple
	// (local address VIP:port). Assigning it keeps established connections working
	// independently of the listener, e.g. across proxy listener drains.
	sk = bpf_skc_lookup_tcp(skb, &tuple, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_TIME_WAIT) {
			if (assign(skb, sk) == 0) {
				mark(skb);
				count(COUNTER_ESTABLISHED);
				return TC_ACT_OK;
			}
			count(COUNTER_ASSIGN_FAIL);
			return TC_ACT_OK;
		}
		bpf_sk_release(sk);
	}

	// New flow: find the proxy listener on loopback of the same family.
	if (key.family == FAMILY_INET) {
		tuple.ipv4.daddr = bpf_htonl(0x7f000001);
		tuple.ipv4.dport = bpf_htons(val->proxy_port);
	} else {
		tuple.ipv6.daddr[0] = 0;
		tuple.ipv6.daddr[1] = 0;
		tuple.ipv6.daddr[2] = 0;
		tuple.ipv6.daddr[3] = bpf_htonl(1);
		tuple.ipv6.dport = bpf_htons(val->proxy_port);
	}
	sk = bpf_skc_lookup_tcp(skb, &tuple, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk) {
		count(COUNTER_LOOKUP_FAIL);
		return TC_ACT_OK;
	}
	if (assign(skb, sk) != 0) {
		count(COUNTER_ASSIGN_FAIL);
		return TC_ACT_OK;
	}
	mark(skb);
	count(COUNTER_HIT);
	return TC_ACT_OK;
}

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
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ENETUNREACH 101

char __license[] SEC("license") = "Dual MIT/GPL";

// uapi has no AF_* constants that can be included from BPF code.
#define FAMILY_INET 2
#define FAMILY_INET6 10

#define PROXY_MARK 0x200
#define PROXY_MARK_MASK 0xf00

// IPv6 frontends. The layout still has room for the v4-mapped IPv4 keys that releases
// before redirects4 stored here, so that their pinned map is adopted, not refused;
// Open copies such entries to redirects4 and Sync then deletes them.
struct redirect_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family; // FAMILY_INET6 (FAMILY_INET only in a map left by an older release)
};

// IPv4 frontends have a map of their own because every TCP packet on the interface
// pays for this lookup, and hashing and comparing an 8-byte key instead of the
// 20-byte one above takes ~4 ns off each (BenchmarkRedirectLookup, fastest batch:
// miss 21 -> 17 ns, established 42 -> 39, SYN 56 -> 51).
struct redirect_key4 {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad; // zero
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
	COUNTER_ESTABLISHED,     // map hit, assigned to the flow's existing socket (any state)
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

// Sized like redirects by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct redirect_key4);
	__type(value, struct redirect_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} redirects4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTER_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} redirect_stats SEC(".maps");

// Loopback proxy listeners of the agent's network namespace, indexed by listener_slot,
// filled by portico_listeners (sock_ops, cgroup) when a socket starts listening on
// 127.0.0.1 or ::1. Taking the listener from here instead of a second
// bpf_skc_lookup_tcp takes ~15 ns off a SYN in BenchmarkRedirectLookup (a SOCKHASH
// keyed by {netns, family, port} saved nothing: its lookup cost as much as the socket
// lookup). A socket leaves the map by itself when it closes. Listeners that started
// before the sock_ops program was attached, wildcard and MPTCP listeners, and
// listeners outside the cgroup are not in it: the SYN path falls back to the lookup.
// One slot per family and port, so of an SO_REUSEPORT group only the last listener is
// here (and bpf_sk_assign may refuse it, as it would the one the lookup finds).
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2 * 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listeners SEC(".maps");

// Cookie of the network namespace whose listeners go into the listeners map (index 0),
// set by Attach; zero, the initial value, matches no namespace. The sock_ops program
// sees the listeners of every namespace whose processes are in the cgroup (a pod's
// sidecar may well listen on 127.0.0.1 at the proxy port). A map rather than a global
// so that it is pinned: a restarted agent's identical program then uses the same maps,
// and Attach leaves the running one alone.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listener_netns SEC(".maps");

static __always_inline __u32 listener_slot(bool ipv6, __u16 port)
{
	return (ipv6 ? 65536 : 0) + port;
}

// A counter of its own rather than one more redirect_stats slot, so that the pinned
// redirect_stats of an older release is still adopted (its size is part of its layout).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listener_stats SEC(".maps");

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

// A SYN that reaches a TIME_WAIT socket is handed by the kernel (tcp_v4_rcv, TCP_TW_SYN)
// to whatever listener matches the packet's destination, VIP:port. With none, the
// TIME_WAIT socket answers with an ACK, the client resets it and connects on its SYN
// retransmission (Linux clients retransmit at once after such an ACK, others after one
// RTO). A host socket listening on *:port would take the connection instead of the
// proxy if it is transparent (a plain one cannot answer from the VIP), and tc cannot
// tell the two apart; so with any such listener the SYN goes to the proxy listener as
// before, which kernels < 6.10 accept at once and newer ones only once TIME_WAIT ends.
// Rare path: one more lookup, for a tuple with source port 0 that no connection can
// have, so only the listener part of the lookup can match.
static __always_inline bool host_listener(struct __sk_buff *skb, struct bpf_sock_tuple *flow,
					  __u32 tlen)
{
	struct bpf_sock_tuple probe = *flow;
	struct bpf_sock *sk;

	if (tlen == sizeof(probe.ipv4))
		probe.ipv4.sport = 0;
	else
		probe.ipv6.sport = 0;
	sk = bpf_skc_lookup_tcp(skb, &probe, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

SEC("tc")
int portico_redirect(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_sock_tuple tuple = {};
	struct redirect_value *val;
	struct bpf_sock *sk;
	struct tcphdr *tcp;
	__u32 tlen;
	bool syn;

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

		struct redirect_key4 key = {
			.addr = ip->daddr,
			.port = tcp->dest,
			.proto = IPPROTO_TCP,
		};

		val = bpf_map_lookup_elem(&redirects4, &key);
		tuple.ipv4.saddr = ip->saddr;
		tuple.ipv4.daddr = ip->daddr;
		tuple.ipv4.sport = tcp->source;
		tuple.ipv4.dport = tcp->dest;
		syn = tcp->syn && !tcp->ack;
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

		struct redirect_key key = {
			.port = tcp->dest,
			.proto = IPPROTO_TCP,
			.family = FAMILY_INET6,
		};

		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		val = bpf_map_lookup_elem(&redirects, &key);
		__builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, 16);
		tuple.ipv6.sport = tcp->source;
		tuple.ipv6.dport = tcp->dest;
		syn = tcp->syn && !tcp->ack;
		tlen = sizeof(tuple.ipv6);
	} else {
		return TC_ACT_UNSPEC;
	}
	// The ports are read in each branch: a shared read after the merge lets clang
	// rematerialise tcp from a pointer whose bounds check the verifier no longer sees.
	if (!val) {
		count(COUNTER_MISS);
		// UNSPEC rather than OK: lets later TCX/tc programs see traffic we do not own.
		return TC_ACT_UNSPEC;
	}

	// A flow the proxy already accepted has a socket under the packet's own 4-tuple
	// (local address VIP:port): an established one, a request sock mid-handshake, or a
	// TIME_WAIT one. Assigning it keeps established connections working independently
	// of the listener, e.g. across proxy listener drains. The packet goes to that
	// socket whatever its flags, as the kernel would deliver it without the redirect;
	// that is also what makes a SYN on a busy 4-tuple work, and it is why a pure SYN
	// cannot skip this lookup, although that would save one of a new connection's two
	// socket lookups (~17 ns of ~60 in BenchmarkRedirectLookup; skipping breaks the
	// TestRedirectReuses* tests):
	//   - request sock: a retransmitted SYN gets the SYN-ACK retransmitted by
	//     tcp_check_req. Handed to the listener instead, kernels >= 6.10 drop it
	//     (inet_ehash_insert finds the duplicate request) and older ones queue a
	//     second request sock with a different ISN.
	//   - established (the client lost its side and reuses the port): the socket
	//     answers with a challenge ACK, the client's RST frees the 4-tuple and its next
	//     SYN connects. Handed to the listener, the SYN is dropped as a duplicate.
	//   - TIME_WAIT (the proxy closed first): handed to the listener, the SYN is
	//     dropped as a duplicate until TIME_WAIT ends, ~60 s; host_listener explains
	//     what the TIME_WAIT socket does with it instead.
	sk = bpf_skc_lookup_tcp(skb, &tuple, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		// A listener here is some host socket bound to VIP:port or *:port, never the
		// flow's socket; the proxy listener is looked up below.
		if (sk->state != BPF_TCP_LISTEN && !(sk->state == BPF_TCP_TIME_WAIT && syn &&
						     host_listener(skb, &tuple, tlen))) {
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

	// New flow: find the proxy listener on loopback of the same family, first in the
	// listeners map, then with a socket lookup.
	__u32 slot = listener_slot(tlen != sizeof(tuple.ipv4), val->proxy_port);

	sk = bpf_map_lookup_elem(&listeners, &slot);
	if (sk) {
		long err = assign(skb, sk);

		// The map holds the listeners of the namespace the datapath was last attached
		// from; in any other one bpf_sk_assign refuses them, and the lookup below
		// finds that namespace's own listener.
		if (err != -ENETUNREACH) {
			__u32 zero = 0;
			__u64 *n = bpf_map_lookup_elem(&listener_stats, &zero);

			if (n)
				*n += 1;
			if (err)
				goto assign_failed;
			goto assigned;
		}
	}
	if (tlen == sizeof(tuple.ipv4)) {
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
assign_failed:
		count(COUNTER_ASSIGN_FAIL);
		return TC_ACT_OK;
	}
assigned:
	mark(skb);
	count(COUNTER_HIT);
	return TC_ACT_OK;
}

// Fills listeners: attached to a cgroup (v2), it sees every socket of the cgroup's
// processes start listening. TCP_LISTEN_CB runs after the socket is hashed, and is one
// of the sock_ops callbacks allowed to update a sockmap.
SEC("sockops")
int portico_listeners(struct bpf_sock_ops *skops)
{
	__u32 slot;

	if (skops->op != BPF_SOCK_OPS_TCP_LISTEN_CB)
		return 1;
	if (skops->family == FAMILY_INET) {
		if (skops->local_ip4 != bpf_htonl(0x7f000001))
			return 1;
	} else if (skops->family == FAMILY_INET6) {
		if (skops->local_ip6[0] || skops->local_ip6[1] || skops->local_ip6[2] ||
		    skops->local_ip6[3] != bpf_htonl(1))
			return 1;
	} else {
		return 1;
	}
	__u32 zero = 0;
	__u64 *netns = bpf_map_lookup_elem(&listener_netns, &zero);

	if (!netns || bpf_get_netns_cookie(skops) != *netns)
		return 1;
	slot = listener_slot(skops->family == FAMILY_INET6, skops->local_port);
	bpf_sock_map_update(skops, &listeners, &slot, BPF_ANY);
	return 1;
}

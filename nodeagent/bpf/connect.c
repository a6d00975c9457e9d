//go:build ignore

// cgroup connect4/connect6 programs for host-network clients. Their connections to a
// ClusterIP never cross a TC ingress hook (locally generated packets go straight to
// kube-proxy's nat OUTPUT rules), so the redirect happens at connect(): a TCP socket
// of the agent's network namespace connecting to a redirected VIP:port is pointed at
// the proxy listener on loopback (127.0.0.1 or ::1, at the proxy port) before any
// packet exists, and kube-proxy never sees it. Sockets of other network namespaces
// (pods) are left alone: loopback there is the pod's own; their traffic is redirected
// by the TC program on the host side of their interfaces.
//
// The maps are redirect.c's, shared by the loader (MapReplacements); the structs must
// stay identical to the ones there.

#include <linux/bpf.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define FAMILY_INET6 10
#define SOCK_STREAM 1

struct redirect_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct redirect_key4 {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct redirect_value {
	__u16 proxy_port;
	__u16 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct redirect_key);
	__type(value, struct redirect_value);
	__uint(max_entries, 65536);
} redirects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct redirect_key4);
	__type(value, struct redirect_value);
	__uint(max_entries, 65536);
} redirects4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} listener_netns SEC(".maps");

// Connections rewritten to the proxy, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} connect_stats SEC(".maps");

static __always_inline bool agent_netns(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	__u64 *cookie = bpf_map_lookup_elem(&listener_netns, &zero);

	return cookie && *cookie && bpf_get_netns_cookie(ctx) == *cookie;
}

static __always_inline void count_rewrite(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&connect_stats, &zero);

	if (n)
		*n += 1;
}

SEC("cgroup/connect4")
int portico_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM || !agent_netns(ctx))
		return 1;
	struct redirect_key4 key = {
		.addr = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
		.proto = IPPROTO_TCP,
	};
	struct redirect_value *val = bpf_map_lookup_elem(&redirects4, &key);

	if (!val)
		return 1;
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(val->proxy_port);
	count_rewrite();
	return 1;
}

SEC("cgroup/connect6")
int portico_connect6(struct bpf_sock_addr *ctx)
{
	struct redirect_value *val;
	__u32 a0, a1, a2, a3;

	if (ctx->type != SOCK_STREAM || !agent_netns(ctx))
		return 1;
	a0 = ctx->user_ip6[0];
	a1 = ctx->user_ip6[1];
	a2 = ctx->user_ip6[2];
	a3 = ctx->user_ip6[3];
	if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
		// An IPv4 VIP dialled from a dual-stack socket (::ffff:a.b.c.d).
		struct redirect_key4 key = {.addr = a3, .port = (__be16)ctx->user_port, .proto = IPPROTO_TCP};

		val = bpf_map_lookup_elem(&redirects4, &key);
		if (!val)
			return 1;
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		struct redirect_key key = {.port = (__be16)ctx->user_port, .proto = IPPROTO_TCP, .family = FAMILY_INET6};

		__builtin_memcpy(&key.addr[0], &a0, 4);
		__builtin_memcpy(&key.addr[4], &a1, 4);
		__builtin_memcpy(&key.addr[8], &a2, 4);
		__builtin_memcpy(&key.addr[12], &a3, 4);
		val = bpf_map_lookup_elem(&redirects, &key);
		if (!val)
			return 1;
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(val->proxy_port);
	count_rewrite();
	return 1;
}

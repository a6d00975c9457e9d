//go:build linux

package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/nodeagent/bpf/routing"
)

// Pod topology: a node with one pod behind a veth (as a CNI wires it), and
// kube-proxy's ClusterIP rules simulated with nftables DNAT in the node: both
// ClusterIPs are DNATed to an endpoint (a plain server on the node's pod-side
// address), as kube-proxy does for every Service. The redirected one must reach the
// proxy listener anyway; the other must keep kube-proxy's path.
var (
	podV4       = netip.MustParsePrefix("10.99.64.0/24")
	podV6       = netip.MustParsePrefix("fd00:99:64::/64")
	clusterIP4  = netip.MustParseAddr("10.99.96.50")
	clusterIP6  = netip.MustParseAddr("fd00:99:96::50")
	otherIP4    = netip.MustParseAddr("10.99.96.51")
	otherIP6    = netip.MustParseAddr("fd00:99:96::51")
	servicePort = uint16(5000)
	endpointPt  = uint16(5001)
)

type podTopology struct {
	node *netlab.Host
	pod  *netlab.Pod
}

func newPodTopology(t testing.TB) *podTopology {
	t.Helper()
	privileged.Require(t)
	lab := netlab.New(t, labV4, labV6)
	top := &podTopology{node: lab.AddHost("node")}
	top.pod = lab.AddPod(top.node, "pod", podV4, podV6)
	// A node routes ClusterIPs like everything else: by default, out of its uplink.
	top.node.MustRun("ip", "route", "add", "default", "via", lab.Mgmt.Addr().String())
	top.node.MustRun("ip", "-6", "route", "add", "default", "via", lab.Mgmt6.Addr().String())
	// kube-proxy, reduced to what matters here: DNAT of ClusterIP:port to an endpoint,
	// from pods (prerouting) and from the node itself (output), and the drop of
	// conntrack-invalid forwarded packets it installs.
	rules := fmt.Sprintf(`table inet kubesim {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr { %[1]s, %[2]s } tcp dport %[5]d dnat ip to %[7]s:%[6]d
    ip6 daddr { %[3]s, %[4]s } tcp dport %[5]d dnat ip6 to [%[8]s]:%[6]d
  }
  chain out {
    type nat hook output priority -100;
    ip daddr { %[1]s, %[2]s } tcp dport %[5]d dnat ip to %[7]s:%[6]d
    ip6 daddr { %[3]s, %[4]s } tcp dport %[5]d dnat ip6 to [%[8]s]:%[6]d
  }
  chain forward {
    type filter hook forward priority filter;
    ct state invalid drop
  }
}`, clusterIP4, otherIP4, clusterIP6, otherIP6, servicePort, endpointPt, top.pod.Gateway4, top.pod.Gateway6)
	file := filepath.Join(t.TempDir(), "kubesim.nft")
	if err := os.WriteFile(file, []byte(rules+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	top.node.MustRun("nft", "-f", file)
	return top
}

// attachPods attaches d to the pod's host-side interface, attaches the connect
// hooks for the node's own clients, and installs the routing and the notrack rule,
// in the node.
func (top *podTopology) attachPods(t testing.TB, d *Datapath) {
	t.Helper()
	err := top.node.Do(func() error {
		if err := d.Attach(top.pod.HostInterface); err != nil {
			return err
		}
		if err := d.AttachConnect(); err != nil {
			return err
		}
		if err := routing.EnsureRouting(); err != nil {
			return err
		}
		return routing.EnsureNoTrack()
	})
	if err != nil {
		t.Fatalf("attach in node namespace: %v", err)
	}
}

// podServers are the stand-in proxy listeners (loopback, proxy port) and
// kube-proxy's endpoint (the node's pod-side address), IPv4 and IPv6.
type podServers struct {
	proxy4, proxy6, endpoint4, endpoint6 *echoServer
}

func (top *podTopology) serve(t testing.TB, d *Datapath) podServers {
	t.Helper()
	if _, _, _, err := d.Sync(map[Key]uint16{
		{Addr: clusterIP4, Port: servicePort, Proto: ProtoTCP}: proxyPort,
		{Addr: clusterIP6, Port: servicePort, Proto: ProtoTCP}: proxyPort,
	}); err != nil {
		t.Fatal(err)
	}
	return podServers{
		proxy4:    serveEcho(t, listenTransparent(t, top.node, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), proxyPort))),
		proxy6:    serveEcho(t, listenTransparent(t, top.node, netip.AddrPortFrom(netip.MustParseAddr("::1"), proxyPort))),
		endpoint4: serveEcho(t, listenTransparent(t, top.node, netip.AddrPortFrom(top.pod.Gateway4, endpointPt))),
		endpoint6: serveEcho(t, listenTransparent(t, top.node, netip.AddrPortFrom(top.pod.Gateway6, endpointPt))),
	}
}

type lands struct {
	name string
	dst  netip.Addr
	srv  *echoServer
	want string // the accepted connection's local address
}

// check dials each case's ClusterIP:5000 from client a few times, with a few round
// trips each (every packet of an established flow must keep reaching its socket),
// and checks which server accepted it, and that no other one accepted anything.
func check(t *testing.T, client *netlab.Host, s podServers, cases []lands) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 5 {
				c, err := client.Dial(netip.AddrPortFrom(tc.dst, servicePort), 2*time.Second)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				for j := range 3 {
					if err := roundTrip(c, strings.Repeat("x", 1+j*1000)); err != nil {
						t.Fatalf("connection %d round trip %d: %v", i, j, err)
					}
				}
				c.Close()
				select {
				case got := <-tc.srv.locals:
					if got.String() != tc.want {
						t.Fatalf("accepted with local address %s, want %s", got, tc.want)
					}
				case <-time.After(time.Second):
					t.Fatal("the expected server accepted nothing")
				}
			}
		})
	}
	for name, srv := range map[string]*echoServer{"proxy4": s.proxy4, "proxy6": s.proxy6, "endpoint4": s.endpoint4, "endpoint6": s.endpoint6} {
		select {
		case got := <-srv.locals:
			t.Errorf("%s accepted an unexpected connection to %s", name, got)
		default:
		}
	}
}

// TestPodToClusterIP: a pod connecting to a redirected ClusterIP:5000 lands on the
// proxy listener (with the ClusterIP as its local address: the connect hooks leave
// pods alone), IPv4 and IPv6, although kube-proxy's DNAT for it is in place; a
// ClusterIP that nothing redirects still reaches kube-proxy's endpoint.
func TestPodToClusterIP(t *testing.T) {
	top := newPodTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attachPods(t, d)
	s := top.serve(t, d)
	check(t, top.pod.Host, s, []lands{
		{"redirected IPv4", clusterIP4, s.proxy4, netip.AddrPortFrom(clusterIP4, servicePort).String()},
		{"redirected IPv6", clusterIP6, s.proxy6, netip.AddrPortFrom(clusterIP6, servicePort).String()},
		{"kube-proxy IPv4", otherIP4, s.endpoint4, netip.AddrPortFrom(top.pod.Gateway4, endpointPt).String()},
		{"kube-proxy IPv6", otherIP6, s.endpoint6, netip.AddrPortFrom(top.pod.Gateway6, endpointPt).String()},
	})
}

// TestHostToClusterIP: a host-network client's connect() to a redirected ClusterIP
// is pointed at the proxy listener on loopback by the connect hooks (kube-proxy's
// OUTPUT DNAT never sees it), IPv4 and IPv6; other ClusterIPs keep kube-proxy's path.
func TestHostToClusterIP(t *testing.T) {
	top := newPodTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attachPods(t, d)
	s := top.serve(t, d)
	check(t, top.node, s, []lands{
		{"redirected IPv4", clusterIP4, s.proxy4, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), proxyPort).String()},
		{"redirected IPv6", clusterIP6, s.proxy6, netip.AddrPortFrom(netip.MustParseAddr("::1"), proxyPort).String()},
		{"kube-proxy IPv4", otherIP4, s.endpoint4, netip.AddrPortFrom(top.pod.Gateway4, endpointPt).String()},
		{"kube-proxy IPv6", otherIP6, s.endpoint6, netip.AddrPortFrom(top.pod.Gateway6, endpointPt).String()},
	})
	if n, err := d.ConnectRewrites(); err != nil || n != 10 {
		t.Errorf("connect rewrites = %d, %v; want 10", n, err)
	}
}

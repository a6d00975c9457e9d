// Package framework is what the e2e suite runs on: a Cluster with Portico installed,
// whichever provider made it. The local provider (e2e/framework/local) builds one on
// this machine (control plane, the chart's binaries under their own ServiceAccounts,
// node agents in network namespaces, a client on their segment); the kubeconfig
// provider (Kubeconfig) takes a real cluster where the chart is installed. The specs
// ask the Cluster what it can show (Network, Proxy) or do (Faults), so the same specs
// run on both and say what they leave out.
package framework

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/standin"
)

// Cluster is a cluster with Portico installed.
type Cluster interface {
	// Provider names where it runs ("local", "kubeconfig").
	Provider() string
	// Client is an admin client; Kubeconfig the file kubectl uses.
	Client() client.Client
	Kubeconfig() string
	Kubectl(ctx context.Context, args ...string) (string, error)
	// InstallNamespace is where Portico's controllers, Leases and shared Services live.
	InstallNamespace() string
	// Pool is the first and last address the scenarios' pool hands out: addresses the
	// client can reach on the nodes' segment.
	Pool() (first, last netip.Addr)
	// Nodes are the nodes running the agent, sorted.
	Nodes() []string
	// PodNodeName is the node backend Pods must be placed on to become Ready ("" lets
	// the scheduler place them).
	PodNodeName() string
	// Network is a client on the nodes' segment; nil when the run has none.
	Network() Network
	// Proxy is the Envoy stand-in of node (nil where a real Envoy runs).
	Proxy(node string) *standin.Proxy
	// Faults injects failures; nil when the provider cannot.
	Faults() Faults
	// Logs are the recent logs of the agents and controllers, by process name.
	Logs() map[string]string
}

// Network is what a client on the nodes' segment sees.
type Network interface {
	// Arping asks once who answers ARP/NDP for ip: the nodes (or "?<mac>" for a MAC no
	// node has), and the tool's output.
	Arping(ip netip.Addr, timeout time.Duration) (nodes []string, out string)
	// Dial opens a TCP connection from the client.
	Dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error)
	// Request sends an HTTP request from the client to addr.
	Request(addr netip.AddrPort, method, path string, header http.Header) (Response, error)
	// Slots probes ip on a raw socket every interval (nil, error where it cannot).
	Slots(ip netip.Addr, every time.Duration) (*l2probe.Slots, error)
	// NodeOfMAC names the node with mac ("?<mac>" when none).
	NodeOfMAC(mac string) string
	// Neighbour is the node the client's kernel neighbour entry for ip points to (""
	// when it has none).
	Neighbour(ip netip.Addr) string
	// RouteVia routes ip from the client through node, as an upstream router would,
	// until undo: traffic then reaches that node whoever answers ARP for ip.
	RouteVia(ip netip.Addr, node string) (undo func(), err error)
}

// Response is what a client's HTTP request met.
type Response struct {
	Code int
	// Backend is the Service the request went to, as far as the provider can tell:
	// the route Envoy would pick where a stand-in answers, the Deployment of the Pod
	// that answered where a real Envoy forwards.
	Backend string
	// Node is the node whose proxy took the request and Local the address the
	// connection arrived at there ("" where the provider cannot tell).
	Node, Local string
	// Detail is the proxy's explanation of an error status.
	Detail string
}

// Faults injects failures into a local cluster.
type Faults interface {
	// StopAgent signals node's agent and waits until it has exited.
	StopAgent(node string, sig syscall.Signal)
	// StartAgent starts node's agent again, with the arguments it had.
	StartAgent(node string)
	// Controllers are the chart components of the running controllers (lbipam, l2,
	// ingress...). StopController stops one with SIGTERM; StartController starts it
	// again.
	Controllers() []string
	StopController(component string)
	StartController(component string)
	// FreezeAPIServer stops kube-apiserver (SIGSTOP) until resume (SIGCONT).
	FreezeAPIServer() (resume func() error, err error)
}

// ServiceOfCluster is the Service an EDS cluster name (<ns>/<svc>:<port> or <ns>/<svc>,
// as internal/envoykit spells them) sends to; weighted clusters ("a,b") keep their
// list.
func ServiceOfCluster(cluster string) string {
	var out []string
	for _, c := range strings.Split(cluster, ",") {
		_, svc, ok := strings.Cut(c, "/")
		if !ok {
			out = append(out, c)
			continue
		}
		svc, _, _ = strings.Cut(svc, ":")
		out = append(out, svc)
	}
	return strings.Join(out, ",")
}

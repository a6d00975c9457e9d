package e2e

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testproc"
)

// l2rig is scenario S1+S2 on three simulated nodes and a client on one bridge: the
// LB-IPAM and L2 controllers run in the test against a real apiserver, and a node-agent
// process runs in each node's namespace (xDS and ARP/NDP; no eBPF, which this scenario
// does not use).
type l2rig struct {
	t      testing.TB
	lab    *netlab.Lab
	client *netlab.Host
	nodes  map[string]*netlab.Host
	agents map[string]*testproc.Proc
	// started is when each node's current agent was started.
	started map[string]time.Time
	env     *testenv.Env
	bin     string
	// leaseLiveness: no memberlist, the heartbeat Lease is the liveness source.
	leaseLiveness   bool
	stopControllers func()
	dir             string
	logs            *testproc.Buffer
}

// dump prints what an operator would look at when the test fails.
func (r *l2rig) dump() {
	for _, args := range [][]string{{"get", "npc", "-o", "yaml"}, {"get", "nodeproxies", "-o", "yaml"},
		{"get", "leases", "-n", "portico-system", "-o", "wide"}, {"get", "services", "-o", "yaml"}} {
		out, err := r.env.Kubectl(context.Background(), args...)
		r.t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	r.t.Logf("agent logs:\n%s", r.logs.String())
}

// newL2Rig builds the rig with three nodes; prepare runs after the namespaces and the
// control plane are up but before any agent starts (e.g. to give a node different
// interfaces).
func newL2Rig(t testing.TB, prepare ...func(*l2rig)) *l2rig {
	return newL2RigOf(t, []string{"n1", "n2", "n3"}, prepare...)
}

// newL2RigOf builds the rig with the given nodes.
func newL2RigOf(t testing.TB, names []string, prepare ...func(*l2rig)) *l2rig {
	return newL2RigWith(t, names, false, prepare...)
}

// newL2RigWith builds the rig; leaseLiveness runs the controller and the agents without
// memberlist, on the heartbeat Lease (the fallback).
func newL2RigWith(t testing.TB, names []string, leaseLiveness bool, prepare ...func(*l2rig)) *l2rig {
	privileged.Require(t)
	r := &l2rig{t: t, nodes: map[string]*netlab.Host{}, agents: map[string]*testproc.Proc{}, started: map[string]time.Time{}, dir: t.TempDir(), logs: &testproc.Buffer{},
		leaseLiveness: leaseLiveness}
	r.lab = netlab.New(t, netip.MustParsePrefix("10.253.0.0/24"), netip.MustParsePrefix("fd00:253::/64"))
	for _, n := range names {
		r.nodes[n] = r.lab.AddHost(n)
	}
	r.client = r.lab.AddHost("client")

	var err error
	r.env, err = testenv.Start(testenv.Options{ListenHost: r.lab.Mgmt.Addr().String(),
		APIServerArgs: map[string]string{"service-cluster-ip-range": "10.96.0.0/16,fd00:96::/108"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.env.Stop() })
	ctx := context.Background()
	must(t, r.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}}))
	for name := range r.nodes {
		must(t, r.env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name}}}))
	}

	r.stopControllers = r.startControllers()
	t.Cleanup(func() { r.stopControllers() })

	for _, p := range prepare {
		p(r)
	}
	r.bin = buildAgent(t)
	for name := range r.nodes {
		r.startAgent(name)
	}
	t.Cleanup(func() {
		if t.Failed() {
			r.dump()
		}
		for name := range r.agents {
			r.stopAgent(name, unix.SIGKILL)
		}
	})
	return r
}

// startControllers runs LB-IPAM and the L2 controller in a manager of their own and
// returns the function stopping them (as a controller restart or upgrade would).
func (r *l2rig) startControllers() func() {
	t := r.t
	// Several rigs run in one test binary, each with its own manager: controller names
	// repeat, which only matters to the (disabled) metrics.
	mgr, err := ctrl.NewManager(r.env.Config, ctrl.Options{Scheme: r.env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	must(t, err)
	must(t, lbipam.Setup(mgr, lbipam.Options{}))
	// The L2 controller joins the agents' memberlist cluster from the root namespace,
	// on the management address the agents reach the apiserver at.
	opts := l2.Options{Namespace: "portico-system", Memberlist: &l2.MemberlistOptions{
		Name: "l2-controller", Bind: net.JoinHostPort(r.lab.Mgmt.Addr().String(), "0")}}
	if r.leaseLiveness {
		opts.Memberlist = nil
	}
	must(t, l2.Setup(mgr, opts))
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
}

func (r *l2rig) startAgent(node string) {
	h := r.nodes[node]
	sockDir, err := os.MkdirTemp("", "ptl2") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	r.started[node] = time.Now()
	liveness := []string{"--memberlist-bind-address", net.JoinHostPort(h.IPv4.Addr().String(), "7946")}
	if r.leaseLiveness {
		liveness = []string{"--memberlist-bind-address", "", "--heartbeat-interval", "1s", "--heartbeat-duration", "3s"}
	}
	r.agents[node] = startAgentIn(r.t, h, r.bin, r.logs, append(liveness, "--node-name", node, "--kubeconfig", r.env.Kubeconfig,
		"--install-namespace", "portico-system", "--disable-datapath", "--health-probe-bind-address", "",
		"--zap-time-encoding", "rfc3339nano", // handovers take milliseconds: the logs must show them
		"--state-dir", filepath.Join(r.dir, "state-"+node), "--xds-socket", filepath.Join(sockDir, "xds.sock"))...)
}

func (r *l2rig) stopAgent(node string, sig unix.Signal) {
	r.agents[node].Stop(sig)
	delete(r.agents, node)
}

// announcer is the node the Service's L2Announced condition names, or "".
func (r *l2rig) announcer(ns, name string) string {
	svc := &corev1.Service{}
	if err := r.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		return ""
	}
	c := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionL2Announced)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	if m := announcedBy.FindStringSubmatch(c.Message); m != nil {
		return m[1]
	}
	return ""
}

var announcedBy = regexp.MustCompile(`announced by (\S+)`)

// l2Condition is the Service's L2Announced condition (nil if none).
func (r *l2rig) l2Condition(g Gomega, ns, name string) *metav1.Condition {
	svc := &corev1.Service{}
	g.Expect(r.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
	return conditions.Get(svc.Status.Conditions, v1alpha1.ConditionL2Announced)
}

// waitEligible waits until the policy's status counts n eligible nodes: agents join one
// by one, and each join may move an address, so tests start from the settled state.
func (r *l2rig) waitEligible(g Gomega, policy string, n int32) {
	g.Eventually(func(g Gomega) {
		p := &v1alpha1.L2AnnouncementPolicy{}
		g.Expect(r.env.Client.Get(context.Background(), client.ObjectKey{Name: policy}, p)).To(Succeed())
		g.Expect(p.Status.EligibleNodes).To(Equal(n))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// waitAnswered waits until the node the Service's condition names is the only one
// answering for ip, and returns it.
func (r *l2rig) waitAnswered(g Gomega, ns, name string, ip netip.Addr) string {
	var owner string
	g.Eventually(func(g Gomega) {
		owner = r.announcer(ns, name)
		g.Expect(owner).NotTo(BeEmpty(), "the L2Announced condition of %s/%s names no node", ns, name)
		who := r.answerers(ip, time.Second)
		g.Expect(who).NotTo(BeEmpty(), "nobody answers for %s", ip)
		g.Expect(who).To(HaveEach(Equal(owner)), "answers for %s; the condition names %q", ip, owner)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return owner
}

// answerers asks once for ip from the client and returns the nodes that answered.
func (r *l2rig) answerers(ip netip.Addr, timeout time.Duration) []string {
	var who []string
	for _, m := range r.arping(ip, timeout) {
		who = append(who, r.nodeOfMAC(m))
	}
	return who
}

// arping asks once for ip from the client and returns the MACs that answered.
func (r *l2rig) arping(ip netip.Addr, timeout time.Duration) []string {
	macs, _ := l2probe.Arping(r.client, ip, timeout)
	return macs
}

// neighbour is the client's kernel neighbour entry for ip ("" if none).
func (r *l2rig) neighbour(ip netip.Addr) string { return l2probe.Neighbour(r.client, ip) }

// startSlotProbe probes ip from the client every interval (see l2probe.Slots).
func (r *l2rig) startSlotProbe(tb testing.TB, ip netip.Addr, every time.Duration) *l2probe.Slots {
	p, err := l2probe.StartSlots(r.client, ip, every)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

func (r *l2rig) nodeOfMAC(mac string) string {
	for name, h := range r.nodes {
		if strings.EqualFold(h.MAC.String(), mac) {
			return name
		}
	}
	return "?" + mac
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package kubectlportico_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/apis/v1alpha1"
	ingressctrl "github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/kubectlportico"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
)

const installNS = "portico-system"

var (
	env *testenv.Env
	// nodeA and nodeB are real agents (xDS, L2 responder) with Envoy-like proxies.
	nodeA, nodeB *testnode.Node
	// link is the interface the L2 policy announces on: the agents answer
	// ARP there, where nobody asks, instead of on the machine's real interfaces.
	// Its address carries node-a's debug endpoint: the apiserver's pod proxy
	// refuses loopback addresses.
	link      string
	debugAddr string
	// root: the suite could create the interface; every test requires it.
	root bool
)

// TestMain runs a real apiserver with LB-IPAM, the Ingress and the L2
// controllers in this process, as in a cluster, and two nodes with real agents.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{}, func(e *testenv.Env) (func(), error) {
		env = e
		return setup()
	})
}

func setup() (func(), error) {
	ctx := context.Background()
	root = os.Geteuid() == 0
	var ip net.IP
	cleanup := func() {}
	if root {
		pid := os.Getpid()
		link = fmt.Sprintf("ptkp%d", pid%100000)
		ip = net.IPv4(198, 19, byte(pid>>8), byte(pid))
		del, err := veth(link, ip)
		if err != nil {
			return nil, fmt.Errorf("creating interface %s: %w", link, err)
		}
		cleanup = del
		port, err := freePort(ip)
		if err != nil {
			del()
			return nil, err
		}
		debugAddr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	}
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installNS}}); err != nil {
		cleanup()
		return nil, err
	}
	pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.230"}}}}
	policy := &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^" + link + "$"}, LoadBalancerIPs: true}}
	if err := c.Create(ctx, pool); err != nil {
		cleanup()
		return nil, err
	}
	if err := c.Create(ctx, policy); err != nil {
		cleanup()
		return nil, err
	}

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		cleanup()
		return nil, err
	}
	if err := errors.Join(
		lbipam.Setup(mgr, lbipam.Options{}),
		ingressctrl.Setup(mgr, ingressctrl.Options{InstallNamespace: installNS, CreateClass: true}),
		l2.Setup(mgr, l2.Options{Namespace: installNS}),
	); err != nil {
		cleanup()
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	stopAll := func() { cancel(); <-done; cleanup() }
	if nodeA, err = testnode.Start(ctx, env.Config, c, "node-a", testnode.Options{Namespace: installNS, L2: root, DebugAddress: debugAddr}); err != nil {
		stopAll()
		return nil, err
	}
	if nodeB, err = testnode.Start(ctx, env.Config, c, "node-b", testnode.Options{Namespace: installNS, L2: root}); err != nil {
		nodeA.Stop()
		stopAll()
		return nil, err
	}
	return func() { nodeB.Stop(); nodeA.Stop(); stopAll() }, nil
}

// veth creates an up veth pair (name and its peer, nothing behind it: dummy
// links need a kernel module that machines here lack) with ip/32 on name, and
// returns its removal.
func veth(name string, ip net.IP) (func(), error) {
	if old, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(old) // left by a run that was killed
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	v := &netlink.Veth{LinkAttrs: la, PeerName: name + "p"}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, err
	}
	del := func() { _ = netlink.LinkDel(v) }
	if err := netlink.AddrAdd(v, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}); err != nil {
		del()
		return nil, err
	}
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			del()
			return nil, err
		}
	}
	return del, nil
}

func freePort(ip net.IP) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run runs the plugin as kubectl would, against the test apiserver.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = kubectlportico.Main(ctx, append(args, "--kubeconfig", env.Kubeconfig),
		genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	return out.String(), errOut.String(), code
}

// runJSON runs the plugin with -o json and decodes its answer into v.
func runJSON(t *testing.T, v any, args ...string) int {
	t.Helper()
	out, errOut, code := run(t, append(args, "-o", "json")...)
	if code == kubectlportico.ExitError {
		t.Fatalf("kubectl portico %v: exit %d: %s", args, code, errOut)
	}
	// Into a zero value: decoding over the previous answer would keep the
	// fields this one leaves out.
	reflect.ValueOf(v).Elem().SetZero()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("kubectl portico %v -o json: %v:\n%s", args, err, out)
	}
	return code
}

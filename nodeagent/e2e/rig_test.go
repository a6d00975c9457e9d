// Package e2e runs the node-agent binary the way a node runs it: as a process in the
// node's network namespace, against a real apiserver reached over a management link, with
// real TCP from a client namespace through the eBPF redirect (design.md §7).
package e2e

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/standin"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testproc"
)

const nodeName = "node1"

type rig struct {
	t       *testing.T
	lab     *netlab.Lab
	node    *netlab.Host
	client  *netlab.Host
	env     *testenv.Env
	bin     string
	pinPath string
	state   string
	socket  string
	logs    *testproc.Buffer
	agent   *testproc.Proc
}

func newRig(t *testing.T) *rig {
	privileged.Require(t)
	r := &rig{t: t, logs: &testproc.Buffer{}}
	r.lab = netlab.New(t, netip.MustParsePrefix("10.252.0.0/24"), netip.MustParsePrefix("fd00:252::/64"))
	r.node, r.client = r.lab.AddHost("node"), r.lab.AddHost("client")
	// The VIPs are configured nowhere: the client routes them to the node, where only the
	// redirect can deliver them.
	r.client.MustRun("ip", "route", "add", "10.252.1.0/24", "via", r.node.IPv4.Addr().String())
	r.client.MustRun("ip", "-6", "route", "add", "fd00:252:1::/64", "via", r.node.IPv6.Addr().String())

	var err error
	r.env, err = testenv.Start(testenv.Options{ListenHost: r.lab.Mgmt.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.env.Stop() })
	ctx := context.Background()
	if err := r.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{"kubernetes.io/hostname": nodeName}}}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	r.bin = buildAgent(t)
	// A private bpffs: pins never touch /sys/fs/bpf, and unmounting it detaches
	// everything the agent pinned.
	bpffs := filepath.Join(dir, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	r.pinPath = filepath.Join(bpffs, "portico")
	r.state = filepath.Join(dir, "state")
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	sockDir, err := os.MkdirTemp("", "ptx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	r.socket = filepath.Join(sockDir, "xds.sock")
	t.Cleanup(func() {
		r.stopAgent(unix.SIGKILL)
		if t.Failed() {
			t.Logf("node-agent output:\n%s", r.logs.String())
		}
	})
	return r
}

// startAgent runs the node-agent binary in the node's namespace, with extra flags.
func (r *rig) startAgent(extra ...string) {
	r.t.Helper()
	args := append([]string{
		"--node-name", nodeName, "--kubeconfig", r.env.Kubeconfig, "--install-namespace", "portico-system",
		"--bpf-pin-path", r.pinPath, "--state-dir", r.state, "--xds-socket", r.socket,
		"--devices", "^" + netlab.HostInterface + "$", "--health-probe-bind-address", ""}, extra...)
	r.agent = startAgentIn(r.t, r.node, r.bin, r.logs, args...)
}

func (r *rig) stopAgent(sig unix.Signal) {
	r.agent.Stop(sig)
	r.agent = nil
}

// serveEcho answers connections on ln as Envoy's stand-in (internal/standin): it
// echoes what it reads and reports every accepted connection's local address.
func serveEcho(t *testing.T, ln net.Listener) *standin.Listener {
	l := standin.Serve(ln, nodeName, "web")
	t.Cleanup(l.Close)
	return l
}

// roundTrip sends a line on c and expects it back.
func roundTrip(c net.Conn, msg string) error { return standin.RoundTrip(c, msg) }

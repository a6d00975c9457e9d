// Package local is the e2e framework's local provider: a cluster built on this
// machine, as root, from real parts. A kube-apiserver and etcd (internal/testenv) with
// kube-controller-manager; the Helm chart installed into it; every controller the
// chart installs run as its real binary with the chart's arguments and a token of its
// own chart ServiceAccount, each through a recording proxy (internal/apirecorder); a
// network namespace per node on one bridge (internal/netlab), each running the
// DaemonSet's node agent (eBPF datapath and L2 on, its own bpffs, a token bound to a
// Pod on its node) and an Envoy stand-in (internal/standin); a client namespace on the
// same bridge; and kwok, which makes backend Pods Ready on a simulated node.
//
// The e2e suite and the demo (cmd/portico-demo) both run on it.
package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/e2e/framework"
	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/standin"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testproc"
)

// KwokNode is the node kwok simulates: backend Pods placed on it become Ready.
const KwokNode = "kwok-node"

// Options shape the cluster.
type Options struct {
	// Nodes are the agents' nodes (default n1, n2, n3).
	Nodes []string
	// V4 and V6 are the nodes' segment (default 192.168.10.0/24 and
	// fd00:192:168:10::/64); Pool is the scenarios' pool inside V4 (default .211–.215).
	V4, V6              netip.Prefix
	PoolFirst, PoolLast netip.Addr
	// LabID names the namespaces and links (see netlab.NewWithID; "" picks one).
	LabID string
	// Kwok runs kube-controller-manager's Pod controllers and kwok, for scenarios
	// that need Ready backend Pods (and so EndpointSlices); without it the control
	// plane runs only the garbage collector and namespace controllers.
	Kwok bool
	// Values are the chart's values (default: every shipped controller on).
	Values map[string]any
	// Router decides the routes the stand-ins answer HTTP requests with.
	Router standin.Router
	// Dir holds kubeconfigs, state and bpffs mounts ("" = a temporary directory removed
	// at the end).
	Dir string
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Made, if set, is told every process and mount the cluster makes, so that a
	// program that may die without cleaning up (the demo) can remove them later.
	Made func(kind, what string)
}

// Cluster is the running local cluster. It implements framework.Cluster.
type Cluster struct {
	t       netlab.T
	opts    Options
	Lab     *netlab.Lab
	Env     *testenv.Env
	Install *Install
	Hosts   map[string]*netlab.Host
	Client_ *netlab.Host
	Bins    string
	dir     string

	mu        sync.Mutex
	procs     map[string]*testproc.Proc
	starts    map[string]func() (*testproc.Proc, error)
	Recorders map[string]*apirecorder.Proxy
	proxies   map[string]*standin.Proxy
	sockets   map[string]string
}

var _ framework.Cluster = (*Cluster)(nil)

func (o *Options) defaults() {
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"n1", "n2", "n3"}
	}
	if !o.V4.IsValid() {
		o.V4 = netip.MustParsePrefix("192.168.10.0/24")
	}
	if !o.V6.IsValid() {
		o.V6 = netip.MustParsePrefix("fd00:192:168:10::/64")
	}
	if !o.PoolFirst.IsValid() {
		o.PoolFirst, o.PoolLast = netip.MustParseAddr("192.168.10.211"), netip.MustParseAddr("192.168.10.215")
	}
	if o.Made == nil {
		o.Made = func(string, string) {}
	}
}

// Start builds the cluster; everything it made is removed by t's cleanups. It fails
// through t.
func Start(t netlab.T, opts Options) *Cluster {
	t.Helper()
	opts.defaults()
	ctx := context.Background()
	c := &Cluster{t: t, opts: opts, Hosts: map[string]*netlab.Host{}, procs: map[string]*testproc.Proc{},
		starts: map[string]func() (*testproc.Proc, error){}, Recorders: map[string]*apirecorder.Proxy{},
		proxies: map[string]*standin.Proxy{}, sockets: map[string]string{}}
	c.dir = opts.Dir
	if c.dir == "" {
		d, err := os.MkdirTemp("", "portico-e2e-")
		c.must(err)
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		c.dir = d
	}
	if opts.Values == nil {
		v, err := chart.AllShippedOn(nil)
		c.must(err)
		opts.Values, c.opts.Values = v, v
	}
	c.step("rendering the chart")
	rendered, err := chart.Render(ctx, chart.Options{Values: opts.Values})
	c.must(err)
	// Build while the control plane and the network start: on a cold cache it is the
	// longest step.
	built := make(chan error, 1)
	go func() {
		var workloads []*unstructured.Unstructured
		workloads = append(workloads, rendered.OfKind("Deployment")...)
		for _, ds := range rendered.OfKind("DaemonSet") {
			if ds.GetLabels()["app.kubernetes.io/component"] == "nodeagent" {
				workloads = append(workloads, ds) // not Envoy's: the stand-in plays it
			}
		}
		var names []string
		for _, w := range workloads {
			bin, _, err := command(w, nil)
			if err != nil {
				built <- err
				return
			}
			names = append(names, bin)
		}
		c.Bins, err = testproc.Build("", names...)
		built <- err
	}()

	c.step("creating network namespaces: %d nodes and a client on one bridge", len(opts.Nodes))
	if opts.LabID != "" {
		c.Lab = netlab.NewWithID(t, opts.LabID, opts.V4, opts.V6)
	} else {
		c.Lab = netlab.New(t, opts.V4, opts.V6)
	}
	for _, n := range opts.Nodes {
		c.Hosts[n] = c.Lab.AddHost(n)
	}
	c.Client_ = c.Lab.AddHost("client")

	c.step("starting kube-apiserver and etcd on %s", c.Lab.Mgmt.Addr())
	c.Env, err = testenv.Start(testenv.Options{ListenHost: c.Lab.Mgmt.Addr().String(), GatewayAPI: true})
	c.must(err)
	t.Cleanup(func() { _ = c.Env.Stop() })
	c.startControllerManager()

	c.step("installing the chart (%d objects)", len(rendered.Objects))
	c.Install, err = InstallChart(ctx, c.Env, opts.Values)
	c.must(err)

	c.step("building the binaries")
	c.must(<-built)
	c.startControllers(ctx)
	c.startAgents(ctx)
	if opts.Kwok {
		c.startKwok(ctx)
	}
	return c
}

func (c *Cluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) step(format string, args ...any) {
	if c.opts.Progress != nil {
		fmt.Fprintf(c.opts.Progress, format+"\n", args...)
	}
}

// startControllerManager runs kube-controller-manager: garbage collection and namespace
// deletion always, and with kwok the controllers that turn Deployments into Pods and
// Ready Pods into EndpointSlices.
func (c *Cluster) startControllerManager() {
	ctrls := []string{"garbagecollector", "namespace"}
	if c.opts.Kwok {
		ctrls = append(ctrls, "deployment", "replicaset", "endpointslice", "serviceaccount")
	}
	c.step("starting kube-controller-manager (%v)", ctrls)
	stop, err := c.Env.StartControllerManager(ctrls, filepath.Join(c.dir, "kube-controller-manager.log"))
	c.must(err)
	c.t.Cleanup(stop)
}

// WaitReady waits until the webhooks answer (a dry-run pool and policy are admitted)
// and every node's NodeProxy is Ready, so that a user's first apply goes through.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	probes := readinessProbes(c.Install.Namespace)
	for {
		err := func() error {
			for _, p := range probes {
				if err := c.Env.Client.Create(ctx, p.DeepCopyObject().(client.Object), client.DryRunAll); err != nil {
					return fmt.Errorf("dry-run %T: %w", p, err)
				}
			}
			for _, n := range c.opts.Nodes {
				if !nodeProxyReady(ctx, c.Env.Client, n) {
					return fmt.Errorf("NodeProxy %s not Ready", n)
				}
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Provider, and the rest of framework.Cluster.
func (c *Cluster) Provider() string               { return "local" }
func (c *Cluster) Client() client.Client          { return c.Env.Client }
func (c *Cluster) Kubeconfig() string             { return c.Env.Kubeconfig }
func (c *Cluster) InstallNamespace() string       { return c.Install.Namespace }
func (c *Cluster) Pool() (netip.Addr, netip.Addr) { return c.opts.PoolFirst, c.opts.PoolLast }
func (c *Cluster) Nodes() []string                { return mapsKeys(c.Hosts) }
func (c *Cluster) Faults() framework.Faults       { return c }
func (c *Cluster) Network() framework.Network     { return &network{c: c} }

func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.Env.Kubectl(ctx, args...)
}

// PodNodeName is kwok's node (without kwok nothing makes Pods Ready).
func (c *Cluster) PodNodeName() string { return KwokNode }

// Proxy is node's Envoy stand-in.
func (c *Cluster) Proxy(node string) *standin.Proxy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proxies[node]
}

// Logs are the output of every process the cluster runs, the last 200 lines each.
func (c *Cluster) Logs() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for name, p := range c.procs {
		out[name] = testproc.Tail(p.Logs.String(), 60)
		if p.Exited() {
			// A controller that lost its leader lease exits; nothing restarts it here.
			out[name] += "\n(process exited: " + p.Cmd.ProcessState.String() + ")"
		}
	}
	return out
}

// Procs are the processes the cluster runs, by name (controllers by component, agents
// as agent-<node>).
func (c *Cluster) Procs() map[string]*testproc.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*testproc.Proc{}
	for k, v := range c.procs {
		out[k] = v
	}
	return out
}

// Dir is where the cluster keeps its files.
func (c *Cluster) Dir() string { return c.dir }

// freePort is a free TCP port on host.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ensure(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

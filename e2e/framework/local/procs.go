package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/standin"
	"github.com/portico-dev/portico/internal/testproc"
)

// run starts a process under name and remembers how, so that a fault can stop it and
// start it again the same way.
func (c *Cluster) run(name string, start func() (*testproc.Proc, error)) {
	c.t.Helper()
	p, err := start()
	c.must(err)
	c.opts.Made("pid", fmt.Sprint(p.Cmd.Process.Pid))
	c.mu.Lock()
	c.procs[name], c.starts[name] = p, start
	c.mu.Unlock()
	c.t.Cleanup(func() {
		c.mu.Lock()
		p := c.procs[name]
		c.mu.Unlock()
		p.Stop(syscall.SIGTERM)
	})
}

// startControllers runs each Deployment's binary with the chart's arguments and a
// token of its ServiceAccount, through a recording proxy; webhooks are reached by URL
// (the chart's Service has no endpoints here).
func (c *Cluster) startControllers(ctx context.Context) {
	in, mgmt := c.Install, c.Lab.Mgmt.Addr().String()
	env := map[string]string{"POD_NAMESPACE": in.Namespace}
	for _, comp := range in.Components() {
		bin, args, err := command(in.workload("Deployment", comp), env)
		c.must(err)
		rec, err := apirecorder.Start(mgmt, c.Env.Config)
		c.must(err)
		c.t.Cleanup(func() { _ = rec.Close() })
		c.Recorders[comp] = rec
		token, err := in.Token(ctx, comp, nil)
		c.must(err)
		kc, err := WriteKubeconfig(c.dir, comp, rec, token)
		c.must(err)
		probe, err := freePort("127.0.0.1")
		c.must(err)
		args = append(args, "--kubeconfig="+kc, "--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:"+probe)
		if vwc := in.Chart.Find("ValidatingWebhookConfiguration", in.SAName(comp)); vwc != nil {
			port, err := freePort("127.0.0.1")
			c.must(err)
			c.must(in.WebhookByURL(ctx, in.SAName(comp), "https://localhost:"+port))
			certs := filepath.Join(c.dir, "certs-"+comp)
			args = append(args, "--webhook-port="+port, "--webhook-cert-dir="+certs, "--webhook-cert-extra-dns-names=localhost")
		}
		if comp == "l2" {
			// The L2 controller joins the agents' memberlist cluster over the bridge.
			port, err := freePort(mgmt)
			c.must(err)
			args = append(args, "--memberlist-bind-address="+net.JoinHostPort(mgmt, port), "--memberlist-name=l2-controller")
		}
		path := filepath.Join(c.Bins, bin)
		c.step("starting %s as ServiceAccount %s", bin, in.SAName(comp))
		c.run(comp, func() (*testproc.Proc, error) {
			cmd := exec.Command(path, args...)
			cmd.Env = []string{"POD_NAMESPACE=" + in.Namespace}
			return testproc.Start(comp, cmd, nil)
		})
	}
}

// startAgents runs the DaemonSet's binary in each node's namespace, with its datapath
// (a bpffs of its own) and L2 on, a token bound to a Pod on its node, and the Envoy
// stand-in on its socket.
func (c *Cluster) startAgents(ctx context.Context) {
	in := c.Install
	ds := in.workload("DaemonSet", "nodeagent")
	if ds == nil {
		c.t.Fatal("the chart installed no node agent")
	}
	env := map[string]string{"POD_NAMESPACE": in.Namespace}
	bin, chartArgs, err := command(ds, env)
	c.must(err)
	for _, node := range c.Nodes() {
		h := c.Hosts[node]
		rec, err := apirecorder.Start(c.Lab.Mgmt.Addr().String(), c.Env.Config)
		c.must(err)
		c.t.Cleanup(func() { _ = rec.Close() })
		c.Recorders["agent-"+node] = rec
		pod, err := in.AgentPod(ctx, node)
		c.must(err)
		token, err := in.Token(ctx, "nodeagent", pod)
		c.must(err)
		kc, err := WriteKubeconfig(c.dir, "agent-"+node, rec, token)
		c.must(err)
		nodeDir := filepath.Join(c.dir, node)
		c.must(os.MkdirAll(filepath.Join(nodeDir, "bpffs"), 0o700))
		c.mountBPF(filepath.Join(nodeDir, "bpffs"))
		// Unix socket paths are limited to 108 bytes: a short directory of its own.
		sockDir, err := os.MkdirTemp("", "ptsa")
		c.must(err)
		c.t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
		sock := filepath.Join(sockDir, "xds.sock")
		c.sockets[node] = sock
		args := append(chartArgs, "--kubeconfig="+kc,
			"--bpf-pin-path="+filepath.Join(nodeDir, "bpffs", "portico"), "--state-dir="+filepath.Join(nodeDir, "state"),
			"--xds-socket="+sock, "--devices=^eth1$", "--metrics-bind-address=0", "--health-probe-bind-address=",
			"--memberlist-bind-address="+net.JoinHostPort(h.IPv4.Addr().String(), "7946"),
			"--zap-time-encoding=rfc3339nano")
		path := filepath.Join(c.Bins, bin)
		c.step("starting node-agent on %s (%s, %s) as ServiceAccount %s", node, h.Name, h.IPv4.Addr(), in.SAName("nodeagent"))
		c.run("agent-"+node, func() (*testproc.Proc, error) {
			cmd := h.Command(context.Background(), "env", append([]string{"NODE_NAME=" + node, "POD_NAMESPACE=" + in.Namespace, path}, args...)...)
			return testproc.Start("agent-"+node, cmd, nil)
		})
		p := standin.Start(h, sock, node, c.opts.Router)
		c.t.Cleanup(p.Close)
		c.mu.Lock()
		c.proxies[node] = p
		c.mu.Unlock()
	}
}

// mountBPF mounts a private bpffs at dir: pins never touch /sys/fs/bpf, and unmounting
// it drops everything the agent pinned (programs, maps, links).
func (c *Cluster) mountBPF(dir string) {
	c.must(unix.Mount("bpf", dir, "bpf", 0, "mode=0700"))
	c.opts.Made("mount", dir)
	c.t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

// startKwok runs kwok for KwokNode (testenv.KwokCommand).
func (c *Cluster) startKwok(ctx context.Context) {
	c.must(ensure(ctx, c.Env.Client, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: KwokNode,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}, Labels: map[string]string{corev1.LabelHostname: KwokNode, "type": "kwok"}}}))
	c.step("starting kwok for node %s (backend Pods become Ready there)", KwokNode)
	c.run("kwok", func() (*testproc.Proc, error) {
		cmd, err := c.Env.KwokCommand(context.Background())
		if err != nil {
			return nil, err
		}
		return testproc.Start("kwok", cmd, nil)
	})
}

// StopAgent signals node's agent and waits until it has exited.
func (c *Cluster) StopAgent(node string, sig syscall.Signal) { c.stop("agent-"+node, sig) }

// StartAgent starts node's agent again.
func (c *Cluster) StartAgent(node string) { c.restart("agent-" + node) }

// Controllers are the components of the controllers the chart installed.
func (c *Cluster) Controllers() []string { return c.Install.Components() }

// StopController stops a controller with SIGTERM.
func (c *Cluster) StopController(component string) { c.stop(component, syscall.SIGTERM) }

// StartController starts a stopped controller again.
func (c *Cluster) StartController(component string) { c.restart(component) }

// FreezeAPIServer stops kube-apiserver until resume.
func (c *Cluster) FreezeAPIServer() (func() error, error) { return c.Env.FreezeAPIServer() }

func (c *Cluster) stop(name string, sig syscall.Signal) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		c.t.Fatalf("no process %s", name)
	}
	p.Stop(sig)
}

func (c *Cluster) restart(name string) {
	c.mu.Lock()
	old, start := c.procs[name], c.starts[name]
	c.mu.Unlock()
	if start == nil || !old.Exited() {
		c.t.Fatalf("%s is not stopped", name)
	}
	p, err := start()
	c.must(err)
	// The new process writes on after the old one's output.
	_, _ = p.Logs.Write([]byte(old.Logs.String()))
	c.opts.Made("pid", fmt.Sprint(p.Cmd.Process.Pid))
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
}

// readinessProbes are objects a webhook must admit (in a dry run) before users apply
// theirs: a pool and a policy nobody else uses.
func readinessProbes(ns string) []client.Object {
	return []client.Object{
		&v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "readiness-probe"},
			Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "198.18.255.0/30"}}}},
		&v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "readiness-probe"},
			Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth1$"}, LoadBalancerIPs: true}},
	}
}

// nodeProxyReady: the node's agent reports Ready.
func nodeProxyReady(ctx context.Context, cl client.Client, node string) bool {
	np := &v1alpha1.NodeProxy{}
	if err := cl.Get(ctx, client.ObjectKey{Name: node}, np); err != nil {
		return false
	}
	cond := conditions.Get(np.Status.Conditions, v1alpha1.ConditionReady)
	return cond != nil && cond.Status == metav1.ConditionTrue
}

// Command portico-demo runs Portico where no cluster is at hand and shows what it does.
//
// As root it builds a small cluster on this machine with e2e/framework/local (the e2e
// suite's local provider): a real kube-apiserver and etcd, the chart installed, every
// controller as its real binary under its own ServiceAccount, three node network
// namespaces each running the real node agent (eBPF redirect and ARP/NDP on), and a
// client namespace on their bridge. It applies config/samples and prints, besides what
// kubectl shows, which node answers ARP for each LoadBalancer address (as the client's
// arping sees it), a TCP connection from the client through the redirect to a node's
// proxy port, `kubectl portico status`, and a failover: the announcing agent killed
// with kill -9 and another node answering, with the time it took.
//
// Without root (or with --control-plane-only) there are no network namespaces: the
// controllers and one xDS-only agent run in this process and it says so.
//
// --wait keeps it running; --down removes what a demo that was killed left behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/portico-dev/portico/internal/kubectlportico"
	"github.com/portico-dev/portico/internal/testenv"
)

func main() {
	wait := flag.Bool("wait", false, "keep it running until interrupted, and print the KUBECONFIG and namespaces")
	down := flag.Bool("down", false, "remove the namespaces, links, bpffs mounts and processes a demo left, and exit")
	cpOnly := flag.Bool("control-plane-only", false, "no node namespaces: controllers and an xDS-only agent in this process (what runs without root)")
	samples := flag.String("samples", filepath.Join(testenv.RepoRoot(), "config", "samples"), "directory of objects to apply")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *down:
		err = removeLeftovers(os.Stdout)
	case *cpOnly || os.Geteuid() != 0:
		if !*cpOnly {
			fmt.Println(withoutRoot)
		}
		err = runControlPlane(ctx, *samples, *wait)
	default:
		err = runNodes(ctx, *samples, *wait)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "portico-demo:", err)
		os.Exit(1)
	}
}

const withoutRoot = `Not running as root, so this demo leaves out the nodes' network: no network
namespaces, no eBPF redirect and no ARP answers (creating namespaces, loading eBPF and
answering ARP need root). It shows the control plane part: the controllers and one
node agent (xDS only) with an Envoy-like client as its proxy. Run it as root to see
three nodes answer ARP, redirect a client's connection and fail over.`

// runControlPlane is the demo without nodes: a control plane, the controllers in this
// process and one xDS-only agent.
func runControlPlane(ctx context.Context, samples string, wait bool) error {
	fmt.Println("starting kube-apiserver and etcd (with the Gateway API CRDs) ...")
	env, err := testenv.Start(testenv.Options{GatewayAPI: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	stopControllers, err := startControllers(ctx, env)
	if err != nil {
		return err
	}
	defer stopControllers()

	v := viewer{env.Kubeconfig, env.Kubectl}
	if err := v.kubectl(ctx, "apply", "-f", samples); err != nil {
		return err
	}
	fmt.Println("\ncreating Secret default/shop-tls (self-signed) for config/samples/ingress-tls.yaml")
	if err := createTLSSecret(ctx, env.Client, types.NamespacedName{Namespace: "default", Name: "shop-tls"}, "shop.example.com"); err != nil {
		return err
	}
	fmt.Printf("starting a node agent for node %s (xDS only) with an Envoy-like ADS client as its proxy\n", demoNode)
	stopAgent, err := startAgent(ctx, env)
	if err != nil {
		return err
	}
	defer stopAgent()
	// Give the controllers a moment to write status before showing it.
	time.Sleep(3 * time.Second)
	if err := v.views(ctx, demoNode); err != nil {
		return err
	}
	if wait {
		fmt.Printf("\ncontrol plane running; use:\n  export KUBECONFIG=%s\nCtrl-C stops it.\n", env.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

// viewer prints what kubectl and `kubectl portico` show.
type viewer struct {
	kubeconfig string
	run        func(ctx context.Context, args ...string) (string, error)
}

func (v viewer) kubectl(ctx context.Context, args ...string) error {
	fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
	out, err := v.run(ctx, args...)
	fmt.Print(out)
	return err
}

// views prints the kubectl views of the demo, and the plugin's, describing node.
func (v viewer) views(ctx context.Context, node string) error {
	for _, args := range demoViews(node) {
		if err := v.kubectl(ctx, args...); err != nil {
			return err
		}
	}
	for _, args := range pluginViews {
		if err := v.plugin(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// pluginViews are the `kubectl portico` commands whose output the demo prints.
var pluginViews = [][]string{
	{"status", "ingress/basic-ingress", "-n", "default"},
	{"status", "gateway/my-gateway", "-n", "default"},
	{"nodes"},
}

// plugin runs `kubectl portico`. The plugin is its own binary (cmd/kubectl-portico);
// the demo calls its package in this process with the demo's kubeconfig, which prints
// what the binary prints, without a build step or a PATH to set up. Exit status 1
// (something is wrong) is shown, not fatal.
func (v viewer) plugin(ctx context.Context, args ...string) error {
	fmt.Printf("\n$ kubectl portico %s\n", strings.Join(args, " "))
	code := kubectlportico.Main(ctx, append(args, "--kubeconfig", v.kubeconfig),
		genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stdout})
	switch code {
	case kubectlportico.ExitOK:
	case kubectlportico.ExitProblems:
		fmt.Println("(exit status 1: something is wrong, as listed)")
	default:
		return fmt.Errorf("kubectl portico %s: exit status %d", strings.Join(args, " "), code)
	}
	return nil
}

// demoViews are the kubectl commands whose output the demo prints.
func demoViews(node string) [][]string {
	return [][]string{
		{"get", "crd"},
		{"get", "ippools"},
		{"describe", "ippool", "lb-pool"},
		{"get", "service", "-A", "-o", "wide"},
		{"get", "ingress", "-A"},
		{"get", "gatewayclass"},
		{"get", "gateway", "-A"},
		{"get", "httproute", "-A"},
		{"get", "l2policy"},
		{"get", "nodeproxyconfigs"},
		{"get", "nodeproxies", "-o", "wide"},
		{"describe", "nodeproxy", node},
		{"get", "service", "web", "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}"},
	}
}

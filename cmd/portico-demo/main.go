// Command portico-demo runs Portico on an embedded control plane (a real kube-apiserver
// and etcd started locally) where no cluster is at hand: it installs the CRDs, starts the
// controllers in this process, applies the samples in config/samples and prints what a
// user would see with kubectl. With --wait it keeps running and prints a kubeconfig.
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
	wait := flag.Bool("wait", false, "keep the control plane running until interrupted")
	samples := flag.String("samples", filepath.Join(testenv.RepoRoot(), "config", "samples"), "directory of objects to apply")
	flag.Parse()
	if err := run(*samples, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "portico-demo:", err)
		os.Exit(1)
	}
}

func run(samples string, wait bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Println("starting kube-apiserver and etcd ...")
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	stopControllers, err := startControllers(ctx, env)
	if err != nil {
		return err
	}
	defer stopControllers()

	show := func(args ...string) error {
		fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
		out, err := env.Kubectl(ctx, args...)
		fmt.Print(out)
		return err
	}
	if err := show("apply", "-f", samples); err != nil {
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
	for _, args := range demoViews {
		if err := show(args...); err != nil {
			return err
		}
	}
	for _, args := range pluginViews {
		if err := showPlugin(ctx, env, args...); err != nil {
			return err
		}
	}
	if wait {
		fmt.Printf("\ncontrol plane running; use:\n  export KUBECONFIG=%s\nCtrl-C stops it.\n", env.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

// pluginViews are the `kubectl portico` commands whose output the demo prints.
var pluginViews = [][]string{
	{"status", "ingress/basic-ingress", "-n", "default"},
	{"nodes"},
}

// showPlugin runs `kubectl portico` against the demo's control plane. The plugin is
// its own binary (cmd/kubectl-portico); the demo calls its package in this process
// with the demo's kubeconfig, which prints what the binary prints, without a build
// step or a PATH to set up. Exit status 1 (something is wrong) is shown, not fatal:
// the demo's node has no L2 responder, so no node answers ARP for the addresses.
func showPlugin(ctx context.Context, env *testenv.Env, args ...string) error {
	fmt.Printf("\n$ kubectl portico %s\n", strings.Join(args, " "))
	code := kubectlportico.Main(ctx, append(args, "--kubeconfig", env.Kubeconfig),
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
var demoViews = [][]string{
	{"get", "crd"},
	{"get", "ippools"},
	{"describe", "ippool", "lb-pool"},
	{"get", "service", "-A", "-o", "wide"},
	{"get", "ingress", "-A"},
	{"get", "l2policy"},
	{"get", "nodeproxyconfigs"},
	{"get", "nodeproxies", "-o", "wide"},
	{"describe", "nodeproxy", demoNode},
	{"get", "service", "web", "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}"},
}

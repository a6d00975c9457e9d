// Package testnode runs a node where a test or the demo has no real one: the real
// node agent (xDS only, no datapath or ARP, which need a network namespace) in this
// process, with the Envoy-like ADS client of nodeagent/xds/xdstest as its proxy.
// The NodeProxy it reports is what a node with a connected Envoy reports, so the
// producers' Programmed verdicts and everything built on them run on real parts.
package testnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/nodeagent/agent"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// Node is one running agent and its proxy.
type Node struct {
	Name  string
	Proxy *xdstest.Client
	stop  func()
}

// Options for Start.
type Options struct {
	// Labels of the Node object (kubernetes.io/hostname is always set).
	Labels map[string]string
	// Namespace of the heartbeat Lease (created if missing); default portico-system.
	Namespace string
	// L2 runs the agent's ARP/NDP responder (needs CAP_NET_RAW; it answers on the
	// host's interfaces that the announcements' regexes match).
	L2 bool
	// DebugAddress serves the agent's debug endpoint (host:port; "" disables it).
	DebugAddress string
	Log          logr.Logger
}

// Start creates the Node object if needed and runs its agent and proxy until Stop.
func Start(ctx context.Context, cfg *rest.Config, c client.Client, name string, opts Options) (*Node, error) {
	if opts.Namespace == "" {
		opts.Namespace = agent.DefaultNamespace
	}
	labels := map[string]string{corev1.LabelHostname: name}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	// Unix socket paths are limited to 108 bytes: a short directory of its own.
	dir, err := os.MkdirTemp("", "ptn-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "xds.sock")
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(runCtx, agent.Config{NodeName: name, Namespace: opts.Namespace, RestConfig: cfg,
			StateDir: dir, XDSSocket: sock, DisableDatapath: true, DisableL2: !opts.L2, DebugAddress: opts.DebugAddress,
			ReportInterval: 200 * time.Millisecond, Log: opts.Log})
	}()
	stopAgent := func() {
		cancel()
		<-done
		_ = os.RemoveAll(dir)
	}
	dialCtx, dialCancel := context.WithTimeout(ctx, 30*time.Second)
	defer dialCancel()
	proxy, err := xdstest.Dial(dialCtx, "unix://"+sock, "envoy-"+name)
	if err == nil {
		err = proxy.Start()
	}
	if err != nil {
		stopAgent()
		return nil, fmt.Errorf("testnode %s: connecting its proxy: %w", name, err)
	}
	return &Node{Name: name, Proxy: proxy, stop: func() { _ = proxy.Close(); stopAgent() }}, nil
}

// Stop ends the proxy and the agent (the agent releases its heartbeat).
func (n *Node) Stop() { n.stop() }

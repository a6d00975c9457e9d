package ingress_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
)

var (
	env *testenv.Env
	k8s client.Client
	// watcher waits for changes where a test measures how long they take.
	watcher client.WithWatch
)

const installNS = "portico-system"

// TestMain runs a real apiserver with the ingress controller and LB-IPAM, as in
// a cluster: the pool hands out 192.168.10.211 onwards, the shared Service is
// created first and so gets .211, as in scenarios S3 and S4.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{}, func(e *testenv.Env) (func(), error) {
		env, k8s = e, e.Client
		var err error
		if watcher, err = client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme}); err != nil {
			return nil, err
		}
		return setup()
	})
}

func setup() (func(), error) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installNS}}); err != nil {
		return nil, err
	}
	pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "ingress-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.230"}}}}
	if err := k8s.Create(ctx, pool); err != nil {
		return nil, err
	}
	mopts := ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}}
	// As the binary's cache holds them (cmd/*-controller).
	npcwriter.TrimCache(&mopts.Cache)
	mgr, err := ctrl.NewManager(env.Config, mopts)
	if err != nil {
		return nil, err
	}
	if err := lbipam.Setup(mgr, lbipam.Options{}); err != nil {
		return nil, err
	}
	if err := ingress.Setup(mgr, ingress.Options{InstallNamespace: installNS, CreateClass: true}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	// A real agent with an Envoy-like proxy: Ingresses show an address only once
	// a node serves them, and the Programmed verdicts come from its reports.
	node, err := testnode.Start(ctx, env.Config, k8s, nodeName, testnode.Options{Namespace: installNS})
	if err != nil {
		cancel()
		<-done
		return nil, err
	}
	return func() {
		for _, stop := range suiteStops {
			stop()
		}
		node.Stop()
		cancel()
		<-done
	}, nil
}

// suiteStops stop what a benchmark started once for all its rounds.
var suiteStops []func()

// nodeName is the suite's one node.
const nodeName = "ingress-node"

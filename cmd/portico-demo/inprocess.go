package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/controllers/envoyconfig"
	"github.com/portico-dev/portico/controllers/gateway"
	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
)

// startControllers runs the reconcilers of the LB-IPAM, L2, Ingress, Gateway API and
// EnvoyConfig controller binaries in this process, each with the options its binary
// defaults to. Webhooks are not served: the demo shows the controllers' own handling of
// what admission would refuse.
func startControllers(ctx context.Context, env *testenv.Env) (func(), error) {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	if err := lbipam.Setup(mgr, lbipam.Options{}); err != nil {
		return nil, fmt.Errorf("lbipam: %w", err)
	}
	if err := l2.Setup(mgr, l2.Options{}); err != nil {
		return nil, fmt.Errorf("l2: %w", err)
	}
	if err := ingress.Setup(mgr, ingress.Options{CreateClass: true}); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	if err := gateway.Setup(mgr, gateway.Options{}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := envoyconfig.Setup(mgr, envoyconfig.Options{}); err != nil {
		return nil, fmt.Errorf("envoyconfig: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

// demoNode is the one node of the demo's control plane.
const demoNode = "demo-node"

// createTLSSecret makes the Secret config/samples/ingress-tls.yaml names, with a
// fresh self-signed certificate: a sample must not ship a private key.
func createTLSSecret(ctx context.Context, c client.Client, key types.NamespacedName, host string) error {
	data, err := testcerts.Generate(host)
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Type: corev1.SecretTypeTLS, Data: data}
	if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// startAgent runs a node agent for demoNode in this process (xDS only: the demo
// has no network namespaces) and, as its proxy, the Envoy-like ADS client that
// fetches LDS, CDS, then RDS, EDS and SDS by name and acknowledges them, so the
// NodeProxy shows what a node with a connected Envoy reports.
func startAgent(ctx context.Context, env *testenv.Env) (func(), error) {
	n, err := testnode.Start(ctx, env.Config, env.Client, demoNode, testnode.Options{})
	if err != nil {
		return nil, err
	}
	return n.Stop, nil
}

package main

import (
	"context"
	"fmt"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/controllers/envoyconfig"
	"github.com/portico-dev/portico/controllers/gateway"
	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/testenv"
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

package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// runAgent runs the agent of nodeName (xDS only) until the test ends, with cfg's
// non-zero fields on top of the test defaults, and connects an Envoy-like client
// to it (nil when dial is false). The node's NodeProxy is deleted at the end so a
// rerun cannot read an earlier run's status.
func runAgent(t *testing.T, ctx context.Context, nodeName string, cfg Config, dial bool) *xdstest.Client {
	t.Helper()
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: nodeName}})
	})
	cfg.NodeName, cfg.Namespace, cfg.RestConfig = nodeName, testNamespace, env.Config
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.XDSSocket = filepath.Join(shortDir(t), "xds.sock")
	cfg.DisableDatapath = true
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 100 * time.Millisecond
	}
	cfg.Log = zap.New(zap.UseDevMode(true))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if !dial {
		return nil
	}
	ads, err := xdstest.Dial(ctx, "unix://"+cfg.XDSSocket, "envoy-"+nodeName)
	must(t, err)
	t.Cleanup(func() { _ = ads.Close() })
	must(t, ads.Start())
	return ads
}

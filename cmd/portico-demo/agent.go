package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/nodeagent/agent"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

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
	if err := env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: demoNode,
		Labels: map[string]string{corev1.LabelHostname: demoNode}}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "portico-demo-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "xds.sock")
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{NodeName: demoNode, RestConfig: env.Config, StateDir: dir, XDSSocket: sock,
			DisableDatapath: true, DisableL2: true, ReportInterval: 200 * time.Millisecond, ProbeAddr: ""})
	}()
	dialCtx, dialCancel := context.WithTimeout(ctx, 30*time.Second)
	defer dialCancel()
	proxy, err := xdstest.Dial(dialCtx, "unix://"+sock, "envoy-"+demoNode)
	if err == nil {
		err = proxy.Start()
	}
	if err != nil {
		cancel()
		<-done
		return nil, fmt.Errorf("connecting the demo proxy: %w", err)
	}
	return func() {
		_ = proxy.Close()
		cancel()
		<-done
		_ = os.RemoveAll(dir)
	}, nil
}

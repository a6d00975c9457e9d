package main

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
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
	n, err := testnode.Start(ctx, env.Config, env.Client, demoNode, testnode.Options{})
	if err != nil {
		return nil, err
	}
	return n.Stop, nil
}

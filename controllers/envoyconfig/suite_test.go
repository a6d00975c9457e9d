package envoyconfig_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/controllers/envoyconfig"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
	"github.com/portico-dev/portico/webhooks"
)

var (
	env  *testenv.Env
	k8s  client.Client
	node *testnode.Node
)

const (
	installNS = "portico-system"
	nodeName  = "ec-node"
)

// TestMain runs a real apiserver with the envoyconfig controller and its webhook, as
// cmd/envoyconfig-controller runs them, and one node: the real agent (xDS only) with
// an Envoy-like ADS client as its proxy, so what the tests read from the proxy is what
// the agent serves and Programmed comes from the node's own report.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{Webhooks: true}, func(e *testenv.Env) (func(), error) {
		env, k8s = e, e.Client
		mopts := ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			WebhookServer: webhook.NewServer(webhook.Options{
				Host: env.Webhook.LocalServingHost, Port: env.Webhook.LocalServingPort, CertDir: env.Webhook.LocalServingCertDir,
			})}
		// As the binary's cache holds them (cmd/*-controller).
		npcwriter.TrimCache(&mopts.Cache)
		mgr, err := ctrl.NewManager(env.Config, mopts)
		if err != nil {
			return nil, err
		}
		if err := envoyconfig.Setup(mgr, envoyconfig.Options{}); err != nil {
			return nil, err
		}
		if err := webhooks.SetupEnvoyConfigWebhooks(mgr); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "manager:", err)
			}
		}()
		node, err = testnode.Start(ctx, env.Config, k8s, nodeName, testnode.Options{Namespace: installNS})
		if err != nil {
			cancel()
			<-done
			return nil, err
		}
		return func() { node.Stop(); cancel(); <-done }, nil
	})
}

// objectsOf decodes the Kubernetes objects of a golden input of the translation
// (Cilium's examples with apiVersion and kind changed among them), in the namespace
// kubectl would use.
func objectsOf(t *testing.T, goldenCase string) []client.Object {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "internal", "translate", "envoyconfig", "testdata", goldenCase, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	decoder := testenv.Codecs().UniversalDeserializer()
	var out []client.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		o := obj.(client.Object)
		if o.GetNamespace() == "" && gvk.Kind != "ClusterEnvoyConfig" {
			o.SetNamespace("default")
		}
		out = append(out, o)
	}
	return out
}

// endpoints creates the EndpointSlice of a Service (envtest runs no controller-manager):
// ready endpoints at addrs on one named port.
func endpoints(t *testing.T, ns, svc, portName string, port int32, addrs ...string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if err := k8s.Create(context.Background(), es); err != nil {
		t.Fatal(err)
	}
}

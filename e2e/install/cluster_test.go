// Package install_test installs the rendered chart into a local control plane (real
// kube-apiserver and etcd) and checks what its RBAC and admission policies let each
// ServiceAccount do: a SubjectAccessReview matrix, writes with real ServiceAccount
// tokens against the policies, and scenarios S1–S4 run by the controller binaries and
// node agents each holding a token of its own chart ServiceAccount.
package install_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/testenv"
)

const (
	ns      = "portico-system"
	release = "portico"
)

// cluster is a control plane with the chart installed.
type cluster struct {
	env   *testenv.Env
	cs    kubernetes.Interface
	chart *chart.Rendered
}

// startCluster starts a control plane (bound to listenHost when not empty) and installs
// the chart with every shipped controller on, each with two replicas (so leader
// election is configured as in a highly available install) and self-rotated webhook
// certificates, as `helm install` would create the objects.
func startCluster(t testing.TB, listenHost string) *cluster {
	t.Helper()
	ctrl.SetLogger(logr.Discard())
	env, err := testenv.Start(testenv.Options{ListenHost: listenHost, GatewayAPI: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	values, err := chart.AllShippedOn(map[string]any{"replicas": 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := chart.Render(ctx, chart.Options{Release: release, Namespace: ns, Values: values})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	// The CRDs are installed by testenv from config/crd/bases, which make verify keeps
	// identical to the chart's crds/.
	for _, o := range r.Objects {
		if err := env.Client.Create(ctx, o.DeepCopy()); err != nil {
			t.Fatalf("installing %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{env: env, cs: cs, chart: r}
	c.waitPoliciesActive(t)
	return c
}

// waitPoliciesActive waits until the admission policies enforce: the apiserver compiles
// them asynchronously, and a write sent before that is admitted unchecked.
func (c *cluster) waitPoliciesActive(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	probe := func() error {
		npc := map[string]any{"apiVersion": "portico.dev/v1alpha1", "kind": "NodeProxyConfig",
			"metadata": map[string]any{"name": "policy-probe", "labels": map[string]any{"portico.dev/producer": "l2"}},
			"spec":     map[string]any{"redirects": []any{map[string]any{"name": "x", "vip": "10.0.0.1", "port": 80, "listener": "l"}}}}
		return createUnstructured(ctx, c.env.Client, npc, client.DryRunAll)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := probe()
		if err != nil && apierrors.IsInvalid(err) || err != nil && apierrors.IsForbidden(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("admission policies not enforced after 30 s (probe: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// saName is the chart's ServiceAccount of a component.
func saName(component string) string { return release + "-" + component }

func saUser(component string) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", ns, saName(component))
}

// token asks for a token of the component's ServiceAccount, bound to pod when given
// (a token bound to a Pod that runs on a node carries the node-name claim).
func (c *cluster) token(t testing.TB, component string, pod *corev1.Pod) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := c.cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), saName(component), req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s: %v", saName(component), err)
	}
	return tr.Status.Token
}

// agentPod creates node (if missing) and a Pod of the agent's ServiceAccount on it, as
// the DaemonSet would; nothing runs it (no kubelet), it only anchors the agent's token.
func (c *cluster) agentPod(t testing.TB, node string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{corev1.LabelHostname: node}}}
	if err := c.env.Client.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "portico-nodeagent-"},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: saName("nodeagent"),
			Containers: []corev1.Container{{Name: "agent", Image: "portico/node-agent"}}}}
	if err := c.env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// tokenConfig is a client config that authenticates with token only (no admin
// certificate), against host (the apiserver, or a proxy in front of it).
func (c *cluster) tokenConfig(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(c.env.Config)
	cfg.BearerToken = token
	return cfg
}

// writeKubeconfig writes a kubeconfig for p with token.
func writeKubeconfig(t testing.TB, dir, name string, p *apirecorder.Proxy, token string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: p.URL, CertificateAuthorityData: p.CA}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func createUnstructured(ctx context.Context, c client.Client, obj map[string]any, opts ...client.CreateOption) error {
	u := toUnstructured(obj)
	return c.Create(ctx, u, opts...)
}

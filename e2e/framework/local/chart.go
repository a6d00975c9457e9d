package local

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/testenv"
)

// Install is the chart installed into a control plane, as `helm install` creates it.
type Install struct {
	Env       *testenv.Env
	CS        kubernetes.Interface
	Chart     *chart.Rendered
	Namespace string
	Release   string
}

// InstallChart renders the chart with values and creates its objects in env (the
// CRDs are testenv's, from config/crd/bases, which make verify keeps identical to the
// chart's crds/), then waits until the admission policies enforce.
func InstallChart(ctx context.Context, env *testenv.Env, values map[string]any) (*Install, error) {
	in := &Install{Env: env, Namespace: "portico-system", Release: "portico"}
	r, err := chart.Render(ctx, chart.Options{Release: in.Release, Namespace: in.Namespace, Values: values})
	if err != nil {
		return nil, err
	}
	in.Chart = r
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	for _, o := range r.Objects {
		if err := env.Client.Create(ctx, o.DeepCopy()); err != nil {
			return nil, fmt.Errorf("installing %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	if in.CS, err = kubernetes.NewForConfig(env.Config); err != nil {
		return nil, err
	}
	return in, in.waitPoliciesActive(ctx)
}

// waitPoliciesActive waits until the admission policies enforce: the apiserver compiles
// them asynchronously, and a write sent before that is admitted unchecked.
func (in *Install) waitPoliciesActive(ctx context.Context) error {
	probe := func() error {
		npc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "portico.dev/v1alpha1", "kind": "NodeProxyConfig",
			"metadata": map[string]any{"name": "policy-probe", "labels": map[string]any{"portico.dev/producer": "l2"}},
			"spec":     map[string]any{"redirects": []any{map[string]any{"name": "x", "vip": "10.0.0.1", "port": 80, "listener": "l"}}}}}
		return in.Env.Client.Create(ctx, npc, client.DryRunAll)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := probe()
		if err != nil && (apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("admission policies not enforced after 30 s (probe: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SAName is the chart's ServiceAccount of a component.
func (in *Install) SAName(component string) string { return in.Release + "-" + component }

// SAUser is the user name of a component's ServiceAccount.
func (in *Install) SAUser(component string) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", in.Namespace, in.SAName(component))
}

// Token asks for a token of the component's ServiceAccount, bound to pod when given
// (a token bound to a Pod that runs on a node carries the node-name claim).
func (in *Install) Token(ctx context.Context, component string, pod *corev1.Pod) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600 * 24)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := in.CS.CoreV1().ServiceAccounts(in.Namespace).CreateToken(ctx, in.SAName(component), req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s: %w", in.SAName(component), err)
	}
	return tr.Status.Token, nil
}

// AgentPod creates node (if missing, labelled as a kubelet would) and a Pod of the
// agent's ServiceAccount on it, as the DaemonSet would; nothing runs it (no kubelet),
// it only anchors the agent's token.
func (in *Install) AgentPod(ctx context.Context, node string) (*corev1.Pod, error) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{corev1.LabelHostname: node}}}
	if err := in.Env.Client.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, GenerateName: "portico-nodeagent-"},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: in.SAName("nodeagent"),
			Containers: []corev1.Container{{Name: "agent", Image: "portico/node-agent"}}}}
	if err := in.Env.Client.Create(ctx, pod); err != nil {
		return nil, err
	}
	return pod, nil
}

// TokenConfig is a client config that authenticates with token only (no admin
// certificate).
func (in *Install) TokenConfig(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(in.Env.Config)
	cfg.BearerToken = token
	return cfg
}

// WebhookByURL points a webhook configuration at a local address: the chart's Service
// cannot be reached here (no kube-proxy and no endpoints); everything else stays as
// installed (the controller patches in the CA it issues).
func (in *Install) WebhookByURL(ctx context.Context, name, base string) error {
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	if err := in.Env.Client.Get(ctx, client.ObjectKey{Name: name}, vwc); err != nil {
		return err
	}
	for i := range vwc.Webhooks {
		url := base + *vwc.Webhooks[i].ClientConfig.Service.Path
		vwc.Webhooks[i].ClientConfig = admissionv1.WebhookClientConfig{URL: &url}
	}
	return in.Env.Client.Update(ctx, vwc)
}

// Components are the chart components of the Deployments the chart installed (its
// controllers).
func (in *Install) Components() []string {
	var out []string
	for _, d := range in.Chart.OfKind("Deployment") {
		out = append(out, d.GetLabels()["app.kubernetes.io/component"])
	}
	return out
}

// workload is the chart's Deployment or DaemonSet of component.
func (in *Install) workload(kind, component string) *unstructured.Unstructured {
	for _, w := range in.Chart.OfKind(kind) {
		if w.GetLabels()["app.kubernetes.io/component"] == component {
			return w
		}
	}
	return nil
}

// command is a workload's executable and its container args, with the $(VAR)
// references the kubelet would expand.
func command(w *unstructured.Unstructured, env map[string]string) (string, []string, error) {
	containers, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		return "", nil, fmt.Errorf("%s %s: %d containers", w.GetKind(), w.GetName(), len(containers))
	}
	c := containers[0].(map[string]any)
	cmd, _, _ := unstructured.NestedStringSlice(c, "command")
	if len(cmd) != 1 {
		return "", nil, fmt.Errorf("%s: command %v", w.GetName(), cmd)
	}
	raw, _, _ := unstructured.NestedStringSlice(c, "args")
	args := make([]string, len(raw))
	for i, a := range raw {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		args[i] = a
	}
	return strings.TrimPrefix(cmd[0], "/"), args, nil
}

// WriteKubeconfig writes a kubeconfig that reaches the apiserver through p with token.
func WriteKubeconfig(dir, name string, p *apirecorder.Proxy, token string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["portico"] = &clientcmdapi.Cluster{Server: p.URL, CertificateAuthorityData: p.CA}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "portico", AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(dir, name+".kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

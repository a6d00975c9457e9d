package install_test

import (
	"context"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// TestPolicies writes with real ServiceAccount tokens what RBAC allows but the chart's
// admission policies must refuse: a node agent writing for another node, a controller
// writing another producer's NodeProxyConfigs or a Service it does not manage, and
// announcements outside the L2 producer.
func TestPolicies(t *testing.T) {
	c := startCluster(t, "")
	ctx := context.Background()
	as := func(component string, pod *corev1.Pod) client.Client {
		cl, err := client.New(c.tokenConfig(c.token(t, component, pod)), client.Options{Scheme: c.env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	agentN1 := as("nodeagent", c.agentPod(t, "n1"))
	c.agentPod(t, "n2")
	l2 := as("l2", nil)
	ingress := as("ingress", nil)
	admin := c.env.Client

	npc := func(name, producer string, spec v1alpha1.NodeProxyConfigSpec) *v1alpha1.NodeProxyConfig {
		return &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{v1alpha1.LabelProducer: producer}}, Spec: spec}
	}
	announce := v1alpha1.NodeProxyConfigSpec{
		NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelHostname: "n1"}},
		Announcements: []v1alpha1.Announcement{{IP: "10.0.0.1",
			Service: v1alpha1.ServiceRef{Namespace: "default", Name: "web"}}}}
	redirect := v1alpha1.NodeProxyConfigSpec{Redirects: []v1alpha1.Redirect{{Name: "http", VIP: "10.0.0.1", Port: 80, Listener: "l"}}}
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("x")}}
	}
	svc := func(name string, labels map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	managed := map[string]string{"app.kubernetes.io/managed-by": "portico-ingress-controller"}

	// Set-up by the admin: objects others may not touch.
	// Empty, so that relabelling it to l2 meets the content policy and only the producer
	// policy can refuse it.
	mustDo(t, "admin creates ingress config", admin.Create(ctx, npc("ingress-x", "ingress", v1alpha1.NodeProxyConfigSpec{})))
	mustDo(t, "admin creates a user Service", admin.Create(ctx, svc("user-svc", nil)))
	mustDo(t, "admin creates NodeProxy n2", admin.Create(ctx, &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}))

	unbound := as("nodeagent", nil)
	for _, step := range []struct {
		what string
		err  error
		deny string // "" = allowed; else a substring of the refusal
	}{
		{"agent n1 creates NodeProxy n1", agentN1.Create(ctx, &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}), ""},
		{"agent n1 updates NodeProxy n2's status", updateStatus(ctx, agentN1, "n2"), "may write only NodeProxy n1, not n2"},
		{"agent n1 creates NodeProxy n3", agentN1.Create(ctx, &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: "n3"}}), "may write only NodeProxy n1"},
		{"agent n1 creates its heartbeat", agentN1.Create(ctx, lease("portico-agent-n1")), ""},
		{"agent n1 creates n2's heartbeat", agentN1.Create(ctx, lease("portico-agent-n2")), "may write only Lease " + ns + "/portico-agent-n1"},
		{"agent n1 takes the l2 leader lease", agentN1.Create(ctx, lease("portico-l2")), "may write only Lease"},
		{"agent without a node-bound token creates NodeProxy n1", unbound.Create(ctx, &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: "n1b"}}), "carries no authentication.kubernetes.io/node-name claim"},
		{"agent n1 creates a NodeProxyConfig", agentN1.Create(ctx, npc("agent-x", "l2", announce)), "forbidden"},

		{"l2 creates an l2 config", l2.Create(ctx, npc("l2-n1", "l2", announce)), ""},
		{"l2 creates an ingress-labelled config", l2.Create(ctx, npc("l2-fake", "ingress", redirect)), "may write only NodeProxyConfigs labelled portico.dev/producer=l2"},
		{"l2 deletes the ingress config", l2.Delete(ctx, npc("ingress-x", "", v1alpha1.NodeProxyConfigSpec{})), `may not change NodeProxyConfig ingress-x of producer "ingress"`},
		{"l2 relabels the ingress config", relabel(ctx, l2, "ingress-x", "l2"), "may not change NodeProxyConfig ingress-x"},
		{"l2 creates an l2 config with redirects", l2.Create(ctx, npc("l2-redir", "l2", redirect)), "carries announcements only"},

		{"ingress creates an ingress config", ingress.Create(ctx, npc("ingress-y", "ingress", redirect)), ""},
		{"ingress creates a config announcing", ingress.Create(ctx, npc("ingress-z", "ingress", announce)), "only NodeProxyConfigs of the l2 producer"},
		{"ingress creates an unlabelled config", ingress.Create(ctx, npc("ingress-w", "", redirect)), "may write only NodeProxyConfigs labelled portico.dev/producer=ingress"},
		{"ingress creates a managed Service", ingress.Create(ctx, svc("portico-ingress-a", managed)), ""},
		{"ingress creates an unlabelled Service", ingress.Create(ctx, svc("sneaky", nil)), "may write only Services labelled app.kubernetes.io/managed-by=portico-ingress-controller"},
		{"ingress deletes a user Service", ingress.Delete(ctx, svc("user-svc", nil)), "may not change Service default/user-svc"},
		{"ingress adopts a user Service", relabelService(ctx, ingress, "user-svc", managed), "may not change Service default/user-svc"},

		{"lbipam creates a config", as("lbipam", nil).Create(ctx, npc("lbipam-x", "lbipam", redirect)), "forbidden"},
		{"admin creates an l2 config with redirects", admin.Create(ctx, npc("admin-l2", "l2", redirect)), "carries announcements only"},
		{"admin creates an announcing ingress config", admin.Create(ctx, npc("admin-ing", "ingress", announce)), "only NodeProxyConfigs of the l2 producer"},
	} {
		switch {
		case step.deny == "" && step.err != nil:
			t.Errorf("%s: refused: %v", step.what, step.err)
		case step.deny != "" && step.err == nil:
			t.Errorf("%s: allowed", step.what)
		case step.deny != "" && !(apierrors.IsForbidden(step.err) || apierrors.IsInvalid(step.err)):
			t.Errorf("%s: failed for another reason: %v", step.what, step.err)
		case step.deny != "" && !strings.Contains(step.err.Error(), step.deny):
			t.Errorf("%s: refused with %q; want it to say %q", step.what, step.err, step.deny)
		}
	}
}

func mustDo(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// updateStatus reads a NodeProxy (RBAC lets every agent read every NodeProxy) and
// writes its status.
func updateStatus(ctx context.Context, c client.Client, node string) error {
	np := &v1alpha1.NodeProxy{}
	if err := c.Get(ctx, client.ObjectKey{Name: node}, np); err != nil {
		return err
	}
	np.Status.Interfaces = []string{"eth1"}
	return c.Status().Update(ctx, np)
}

func relabel(ctx context.Context, c client.Client, name, producer string) error {
	patch := []byte(`{"metadata":{"labels":{"portico.dev/producer":"` + producer + `"}}}`)
	return c.Patch(ctx, &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch("application/merge-patch+json", patch))
}

func relabelService(ctx context.Context, c client.Client, name string, labels map[string]string) error {
	patch := []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"` + labels["app.kubernetes.io/managed-by"] + `"}}}`)
	return c.Patch(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}, client.RawPatch("application/merge-patch+json", patch))
}

package agent

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func TestProducerProblem(t *testing.T) {
	announce := []v1alpha1.Announcement{{IP: "10.0.0.1", Service: v1alpha1.ServiceRef{Namespace: "default", Name: "web"}}}
	redirect := []v1alpha1.Redirect{{Name: "http", VIP: "10.0.0.1", Port: 80, Listener: "l"}}
	cfg := func(producer string, spec v1alpha1.NodeProxyConfigSpec) *v1alpha1.NodeProxyConfig {
		c := &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: spec}
		if producer != "" {
			c.Labels = map[string]string{v1alpha1.LabelProducer: producer}
		}
		return c
	}
	for name, tc := range map[string]struct {
		c    *v1alpha1.NodeProxyConfig
		want string // "" = allowed
	}{
		"l2 announcing":              {cfg("l2", v1alpha1.NodeProxyConfigSpec{Announcements: announce}), ""},
		"l2 redirecting":             {cfg("l2", v1alpha1.NodeProxyConfigSpec{Announcements: announce, Redirects: redirect}), "announcements only"},
		"l2 with envoy resources":    {cfg("l2", v1alpha1.NodeProxyConfigSpec{Envoy: &v1alpha1.EnvoyResources{}}), "announcements only"},
		"ingress redirecting":        {cfg("ingress", v1alpha1.NodeProxyConfigSpec{Redirects: redirect}), ""},
		"ingress announcing":         {cfg("ingress", v1alpha1.NodeProxyConfigSpec{Announcements: announce}), "spec.announcements"},
		"unlabelled announcing":      {cfg("", v1alpha1.NodeProxyConfigSpec{Announcements: announce}), "spec.announcements"},
		"unlabelled redirecting":     {cfg("", v1alpha1.NodeProxyConfigSpec{Redirects: redirect}), ""},
		"envoyconfig route fragment": {cfg("envoyconfig", v1alpha1.NodeProxyConfigSpec{RouteFragments: []v1alpha1.RouteFragment{{}}}), ""},
	} {
		got := producerProblem(tc.c)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

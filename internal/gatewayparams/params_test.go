package gatewayparams

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/lbipam"
)

func cfg(spec v1alpha1.GatewayClassConfigSpec) *v1alpha1.GatewayClassConfig {
	return &v1alpha1.GatewayClassConfig{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: spec}
}

func TestParseValid(t *testing.T) {
	p, errs := Parse(cfg(v1alpha1.GatewayClassConfigSpec{
		Service: &v1alpha1.GatewayServiceConfig{ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerClass: ptr.To("example.com/lb"), Labels: map[string]string{"team": "edge"},
			Annotations: map[string]string{"example.com/pool": "dmz"}},
		NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"edge": "true"}},
	}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.ServiceType != corev1.ServiceTypeLoadBalancer || p.LoadBalancerClass != "example.com/lb" || p.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
		p.Labels["team"] != "edge" || p.Annotations["example.com/pool"] != "dmz" || p.NodeSelector.MatchLabels["edge"] != "true" {
		t.Errorf("parameters %+v", p)
	}
	d, _ := Parse(cfg(v1alpha1.GatewayClassConfigSpec{}))
	if d.ServiceType != corev1.ServiceTypeLoadBalancer || d.LoadBalancerClass != lbipam.LoadBalancerClass || d.NodeSelector != nil {
		t.Errorf("an empty config is not the defaults: %+v", d)
	}
	c, _ := Parse(cfg(v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Type: corev1.ServiceTypeClusterIP}}))
	if c.ServiceType != corev1.ServiceTypeClusterIP || c.LoadBalancerClass != "" {
		t.Errorf("ClusterIP: %+v", c)
	}
}

// TestParseInvalid: every problem is reported, each with its field.
func TestParseInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		spec   v1alpha1.GatewayClassConfigSpec
		fields []string
	}{
		"type":         {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Type: corev1.ServiceTypeNodePort}}, []string{"spec.service.type"}},
		"policy":       {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{ExternalTrafficPolicy: "Nearest"}}, []string{"spec.service.externalTrafficPolicy"}},
		"class":        {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{LoadBalancerClass: ptr.To("not a class")}}, []string{"spec.service.loadBalancerClass"}},
		"clusterIP+lb": {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Type: corev1.ServiceTypeClusterIP, LoadBalancerClass: ptr.To("a/b"), ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal}}, []string{"spec.service.externalTrafficPolicy", "spec.service.loadBalancerClass"}},
		"labels": {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Labels: map[string]string{"bad key!": "x", "app.kubernetes.io/managed-by": "me"}}},
			[]string{"spec.service.labels", "spec.service.labels[app.kubernetes.io/managed-by]"}},
		"annotations": {v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Annotations: map[string]string{"lbipam.portico.dev/ips": "10.0.0.1"}}},
			[]string{"spec.service.annotations[lbipam.portico.dev/ips]"}},
		"selector": {v1alpha1.GatewayClassConfigSpec{NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "zone", Operator: "Near"}}}},
			[]string{"spec.nodeSelector.matchExpressions[0].operator"}},
	} {
		t.Run(name, func(t *testing.T) {
			p, errs := Parse(cfg(tc.spec))
			if p != nil {
				t.Errorf("parameters returned for an invalid config: %+v", p)
			}
			got := map[string]bool{}
			for _, e := range errs {
				got[e.Field] = true
			}
			for _, f := range tc.fields {
				if !got[f] {
					t.Errorf("no error for %s in %v", f, errs)
				}
			}
			if len(errs) != len(tc.fields) {
				t.Errorf("errors %v, want one for each of %v", errs, tc.fields)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	configs := map[string]*v1alpha1.GatewayClassConfig{
		"good": cfg(v1alpha1.GatewayClassConfigSpec{}),
		"bad":  cfg(v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Type: "NodePort"}}),
	}
	configs["bad"].Name = "bad"
	get := func(n string) *v1alpha1.GatewayClassConfig { return configs[n] }
	ref := func(group, kind, name string) *gatewayv1.ParametersReference {
		return &gatewayv1.ParametersReference{Group: gatewayv1.Group(group), Kind: gatewayv1.Kind(kind), Name: name}
	}
	if p, err := Resolve(nil, get); err != nil || p.LoadBalancerClass != lbipam.LoadBalancerClass {
		t.Errorf("no reference: %+v, %v", p, err)
	}
	if _, err := Resolve(ref("portico.dev", "GatewayClassConfig", "good"), get); err != nil {
		t.Error(err)
	}
	ns := ref("portico.dev", "GatewayClassConfig", "good")
	ns.Namespace = ptr.To(gatewayv1.Namespace("default"))
	for _, tc := range []struct {
		ref  *gatewayv1.ParametersReference
		want []string
	}{
		{ref("example.com", "GatewayClassConfig", "good"), []string{"spec.parametersRef.group"}},
		{ref("portico.dev", "ConfigMap", "good"), []string{"spec.parametersRef.kind"}},
		{ns, []string{"spec.parametersRef.namespace"}},
		{ref("portico.dev", "GatewayClassConfig", "missing"), []string{"spec.parametersRef.name", `"missing"`}},
		{ref("portico.dev", "GatewayClassConfig", "bad"), []string{"GatewayClassConfig bad", "spec.service.type", "NodePort"}},
	} {
		p, err := Resolve(tc.ref, get)
		if err == nil || p != nil {
			t.Errorf("%+v: resolved to %+v", tc.ref, p)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q does not say %q", tc.ref, err, w)
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	local, _ := Parse(cfg(v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal}}))
	if w := Warnings(local); len(w) != 1 || !strings.Contains(w[0], "spec.service.externalTrafficPolicy") {
		t.Errorf("Local: warnings %q", w)
	}
	if w := Warnings(Default()); len(w) != 0 {
		t.Errorf("defaults: warnings %q", w)
	}
}

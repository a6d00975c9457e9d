package kubectlportico

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	ingressctrl "github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/inspect"
	ectranslate "github.com/portico-dev/portico/internal/translate/envoyconfig"
	ingresstranslate "github.com/portico-dev/portico/internal/translate/ingress"
)

// chain is what one source kind contributes to `status`: the source, the
// NodeProxyConfigs made from it, and the Services whose addresses reach it.
type chain struct {
	source        inspect.Object
	configs       []v1alpha1.NodeProxyConfig
	loadBalancers []corev1.Service
	// publishes: the kind shows an address of its own (published).
	publishes bool
	published []string
	problems  []string
}

// sourceKind is a kind `status` follows. Adding one is one chain function and one
// entry in kinds.
type sourceKind struct {
	name       string
	aliases    []string
	namespaced bool
	chain      func(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error)
}

var kinds = []sourceKind{
	{"ingress", []string{"ingresses", "ing", "ingress.networking.k8s.io", "ingresses.networking.k8s.io"}, true, ingressChain},
	{"service", []string{"services", "svc"}, true, serviceChain},
	{"nodeproxyconfig", []string{"nodeproxyconfigs", "npc", "npcs", "nodeproxyconfigs.portico.dev"}, false, configChain},
	{"gateway", []string{"gateways", "gtw", "gateway.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io"}, true, gatewayChain},
	{"httproute", []string{"httproutes", "httproute.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io"}, true, httpRouteChain},
	{"grpcroute", []string{"grpcroutes", "grpcroute.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"}, true, grpcRouteChain},
	{"envoyconfig", []string{"envoyconfigs", "pec", "envoyconfigs.portico.dev"}, true, envoyConfigChain(ectranslate.KindEnvoyConfig)},
	{"clusterenvoyconfig", []string{"clusterenvoyconfigs", "pcec", "clusterenvoyconfigs.portico.dev"}, false, envoyConfigChain(ectranslate.KindClusterEnvoyConfig)},
}

func lookupKind(s string) (*sourceKind, error) {
	s = strings.ToLower(s)
	names := make([]string, 0, len(kinds))
	for i := range kinds {
		k := &kinds[i]
		if k.name == s || slices.Contains(k.aliases, s) {
			return k, nil
		}
		names = append(names, k.name)
	}
	return nil, fmt.Errorf("kind %q is not followed; use one of %s", s, strings.Join(names, ", "))
}

// madeFrom are the configs whose source labels name the object, or whose name
// is the one its producer gives it (a source name longer than a label value
// allows is left out of the labels).
func madeFrom(all []v1alpha1.NodeProxyConfig, kind string, key types.NamespacedName, name string) []v1alpha1.NodeProxyConfig {
	var out []v1alpha1.NodeProxyConfig
	for _, c := range all {
		l := c.Labels
		if (name != "" && c.Name == name) ||
			(l[v1alpha1.LabelSourceKind] == kind && l[v1alpha1.LabelSourceNamespace] == key.Namespace && l[v1alpha1.LabelSourceName] == key.Name) {
			out = append(out, c)
		}
	}
	return out
}

func byName(all []v1alpha1.NodeProxyConfig, name string) *v1alpha1.NodeProxyConfig {
	for i := range all {
		if all[i].Name == name {
			return &all[i]
		}
	}
	return nil
}

// ingressChain: the Ingress's own config, and its load balancer: the dedicated
// Service portico-ingress-<name> beside it, or the shared one in the install
// namespace together with the shared listeners' config (ingress-shared).
func ingressChain(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
	ing := &networkingv1.Ingress{}
	if err := r.c.Get(ctx, key, ing); err != nil {
		return nil, err
	}
	ch := &chain{source: inspect.Object{Kind: "Ingress", Namespace: key.Namespace, Name: key.Name}, publishes: true}
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		ch.published = append(ch.published, firstOf(lb.IP, lb.Hostname))
	}
	ch.configs = madeFrom(all, "Ingress", key, ingresstranslate.ConfigName(key))
	if len(ch.configs) == 0 {
		ch.problems = append(ch.problems, fmt.Sprintf("no NodeProxyConfig is made from %s: is it of Portico's IngressClass (spec.ingressClassName), and is the ingress controller running?", ch.source))
	}

	dedicated := &corev1.Service{}
	err := r.c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: ingressctrl.DedicatedServiceName(key.Name)}, dedicated)
	switch {
	case err == nil && dedicated.Labels[ingressctrl.LabelRole] == string(ingresstranslate.ModeDedicated):
		ch.loadBalancers = append(ch.loadBalancers, *dedicated)
		return ch, nil
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	}
	if shared := byName(all, ingresstranslate.SharedConfigName); shared != nil {
		ch.configs = append(ch.configs, *shared)
	} else {
		ch.problems = append(ch.problems, "the shared listeners' NodeProxyConfig "+ingresstranslate.SharedConfigName+" does not exist")
	}
	svc, err := r.service(ctx, types.NamespacedName{Namespace: r.installNamespace, Name: ingressctrl.SharedServiceName})
	if err != nil {
		return nil, err
	}
	if svc == nil {
		ch.problems = append(ch.problems, fmt.Sprintf("the shared load balancer Service %s/%s does not exist (is the ingress controller running, with this install namespace?)", r.installNamespace, ingressctrl.SharedServiceName))
	} else {
		ch.loadBalancers = append(ch.loadBalancers, *svc)
	}
	return ch, nil
}

// serviceChain: the configs made from the Service (ingress-shared is made from
// the shared Service) and those redirecting its addresses (a dedicated
// Ingress's, later a Gateway's).
func serviceChain(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
	svc := &corev1.Service{}
	if err := r.c.Get(ctx, key, svc); err != nil {
		return nil, err
	}
	ch := &chain{source: inspect.Object{Kind: "Service", Namespace: key.Namespace, Name: key.Name}, loadBalancers: []corev1.Service{*svc}}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		ch.problems = append(ch.problems, fmt.Sprintf("%s is of type %s: only LoadBalancer Services get an address from Portico", ch.source, svc.Spec.Type))
	}
	ch.configs = madeFrom(all, "Service", key, "")
	ips := map[string]bool{}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ips[in.IP] = in.IP != ""
	}
	for _, c := range all {
		if byName(ch.configs, c.Name) == nil && slices.ContainsFunc(c.Spec.Redirects, func(rd v1alpha1.Redirect) bool { return ips[rd.VIP] }) {
			ch.configs = append(ch.configs, c)
		}
	}
	return ch, nil
}

// configChain: the config itself, and the Services whose addresses it
// redirects or announces.
func configChain(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
	c := byName(all, key.Name)
	if c == nil {
		return nil, apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("nodeproxyconfigs").GroupResource(), key.Name)
	}
	ch := &chain{source: inspect.Object{Kind: "NodeProxyConfig", Name: c.Name}, configs: []v1alpha1.NodeProxyConfig{*c}}
	seen := map[types.NamespacedName]bool{}
	for _, a := range c.Spec.Announcements {
		k := types.NamespacedName{Namespace: a.Service.Namespace, Name: a.Service.Name}
		if seen[k] {
			continue
		}
		seen[k] = true
		svc, err := r.service(ctx, k)
		if err != nil {
			return nil, err
		}
		if svc != nil {
			ch.loadBalancers = append(ch.loadBalancers, *svc)
		}
	}
	if len(c.Spec.Redirects) > 0 {
		var svcs corev1.ServiceList
		if err := r.c.List(ctx, &svcs); err != nil {
			return nil, err
		}
		for _, svc := range svcs.Items {
			k := client.ObjectKeyFromObject(&svc)
			if !seen[k] && slices.ContainsFunc(svc.Status.LoadBalancer.Ingress, func(in corev1.LoadBalancerIngress) bool {
				return slices.ContainsFunc(c.Spec.Redirects, func(rd v1alpha1.Redirect) bool { return in.IP != "" && rd.VIP == in.IP })
			}) {
				seen[k] = true
				ch.loadBalancers = append(ch.loadBalancers, svc)
			}
		}
	}
	return ch, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

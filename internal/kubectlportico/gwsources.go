package kubectlportico

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/inspect"
	ectranslate "github.com/portico-dev/portico/internal/translate/envoyconfig"
	gwtranslate "github.com/portico-dev/portico/internal/translate/gateway"
)

// gatewayChain: the Gateway's own config, the configs of the routes attached to it
// (a route has one config per parent Gateway), and the Gateway's Service.
func gatewayChain(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
	gw := &gatewayv1.Gateway{}
	if err := r.c.Get(ctx, key, gw); err != nil {
		return nil, err
	}
	ch := &chain{source: inspect.Object{Kind: gwtranslate.KindGateway, Namespace: key.Namespace, Name: key.Name}, publishes: true}
	for _, a := range gw.Status.Addresses {
		ch.published = append(ch.published, a.Value)
	}
	ch.configs = madeFrom(all, gwtranslate.KindGateway, key, gwtranslate.GatewayConfigName(key))
	if len(ch.configs) == 0 {
		ch.problems = append(ch.problems, fmt.Sprintf("no NodeProxyConfig is made from %s: is its GatewayClass Portico's (controllerName portico.dev/gateway-controller), is it Accepted (kubectl describe gateway), and is the gateway controller running?", ch.source))
	}
	for _, c := range all {
		l := c.Labels
		route := gwtranslate.RouteKey{Kind: l[v1alpha1.LabelSourceKind], Namespace: l[v1alpha1.LabelSourceNamespace], Name: l[v1alpha1.LabelSourceName]}
		if route.Kind != "" && route.Kind != gwtranslate.KindGateway && c.Name == gwtranslate.RouteConfigName(route, key) {
			ch.configs = append(ch.configs, c)
		}
	}
	return ch, gatewayServices(ctx, r, ch, key)
}

// gatewayServices adds the Service of the Gateway key to ch, or says it is missing.
func gatewayServices(ctx context.Context, r *reader, ch *chain, key types.NamespacedName) error {
	name := types.NamespacedName{Namespace: key.Namespace, Name: gwtranslate.ServiceName(key.Name)}
	svc, err := r.service(ctx, name)
	if err != nil {
		return err
	}
	if svc == nil {
		ch.problems = append(ch.problems, fmt.Sprintf("the Service %s of Gateway %s does not exist (is the gateway controller running?)", name, key))
		return nil
	}
	// A ClusterIP Gateway (GatewayClassConfig) has no address to announce.
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		ch.loadBalancers = append(ch.loadBalancers, *svc)
	}
	return nil
}

// routeChain follows an HTTPRoute or GRPCRoute: its configs (one per parent Gateway
// it attached to) and the Services of the Gateways it names.
func routeChain(kind string, newRoute func() (client.Object, func() []gatewayv1.ParentReference)) func(context.Context, *reader, types.NamespacedName, []v1alpha1.NodeProxyConfig) (*chain, error) {
	return func(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
		obj, parents := newRoute()
		if err := r.c.Get(ctx, key, obj); err != nil {
			return nil, err
		}
		ch := &chain{source: inspect.Object{Kind: kind, Namespace: key.Namespace, Name: key.Name}}
		ch.configs = madeFrom(all, kind, key, "")
		if len(ch.configs) == 0 {
			ch.problems = append(ch.problems, fmt.Sprintf("no NodeProxyConfig is made from %s: did it attach to a Portico Gateway (kubectl describe %s -n %s, status.parents)?", ch.source, kind, key.Namespace))
		}
		for _, p := range parents() {
			if (p.Group != nil && *p.Group != gatewayv1.GroupName) || (p.Kind != nil && *p.Kind != gwtranslate.KindGateway) {
				continue
			}
			gw := types.NamespacedName{Namespace: key.Namespace, Name: string(p.Name)}
			if p.Namespace != nil {
				gw.Namespace = string(*p.Namespace)
			}
			if err := gatewayServices(ctx, r, ch, gw); err != nil {
				return nil, err
			}
		}
		return ch, nil
	}
}

var (
	httpRouteChain = routeChain(gwtranslate.KindHTTPRoute, func() (client.Object, func() []gatewayv1.ParentReference) {
		rt := &gatewayv1.HTTPRoute{}
		return rt, func() []gatewayv1.ParentReference { return rt.Spec.ParentRefs }
	})
	grpcRouteChain = routeChain(gwtranslate.KindGRPCRoute, func() (client.Object, func() []gatewayv1.ParentReference) {
		rt := &gatewayv1.GRPCRoute{}
		return rt, func() []gatewayv1.ParentReference { return rt.Spec.ParentRefs }
	})
)

// envoyConfigChain follows an EnvoyConfig or ClusterEnvoyConfig: its one config, and
// the Services whose traffic it redirects (spec.services).
func envoyConfigChain(kind string) func(context.Context, *reader, types.NamespacedName, []v1alpha1.NodeProxyConfig) (*chain, error) {
	return func(ctx context.Context, r *reader, key types.NamespacedName, all []v1alpha1.NodeProxyConfig) (*chain, error) {
		var spec *v1alpha1.EnvoyConfigSpec
		if kind == ectranslate.KindClusterEnvoyConfig {
			c := &v1alpha1.ClusterEnvoyConfig{}
			if err := r.c.Get(ctx, key, c); err != nil {
				return nil, err
			}
			spec = &c.Spec
		} else {
			c := &v1alpha1.EnvoyConfig{}
			if err := r.c.Get(ctx, key, c); err != nil {
				return nil, err
			}
			spec = &c.Spec
		}
		ch := &chain{source: inspect.Object{Kind: kind, Namespace: key.Namespace, Name: key.Name}}
		ch.configs = madeFrom(all, kind, key, ectranslate.ConfigName(kind, key.Namespace, key.Name))
		if len(ch.configs) == 0 {
			ch.problems = append(ch.problems, fmt.Sprintf("no NodeProxyConfig is made from %s: is it Accepted (kubectl describe), and is the envoyconfig controller running?", ch.source))
		}
		for _, s := range spec.Services {
			k := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
			if k.Namespace == "" {
				k.Namespace = key.Namespace
			}
			svc, err := r.service(ctx, k)
			if err != nil {
				return nil, err
			}
			if svc == nil {
				ch.problems = append(ch.problems, fmt.Sprintf("the Service %s it redirects does not exist", k))
				continue
			}
			// A redirected ClusterIP is reached inside the cluster: no address to announce.
			if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				ch.loadBalancers = append(ch.loadBalancers, *svc)
			}
		}
		return ch, nil
	}
}

package gateway

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// translation is one run of Translate.
type translation struct {
	in     Input
	grants grants
	gws    []*gateway
	byKey  map[types.NamespacedName]*gateway
	routes []*route
	// attachments are per route and parent Gateway, oldest route first.
	attachments  []*attachment
	routeStatus  map[RouteKey][]ParentStatus
	routeConfigs []Config
	clusterJSON  map[string]v1alpha1.EnvoyResource
	memo         *Memo
	grantSig     string
	// hosts are the hostnames each listener serves (listenerHosts).
	hosts map[*listener]map[string]bool
}

func newTranslation(in Input) *translation {
	return &translation{in: in, grants: indexGrants(in.Grants), byKey: map[types.NamespacedName]*gateway{},
		routeStatus: map[RouteKey][]ParentStatus{}, clusterJSON: map[string]v1alpha1.EnvoyResource{}}
}

// route is a route of any kind, with its rules already translated (body):
// backends and filters do not depend on the parent.
type route struct {
	key       RouteKey
	meta      metav1.Object
	parents   []gatewayv1.ParentReference
	hostnames []gatewayv1.Hostname
	body      *body
}

// attachment is a route attached to listeners of one Gateway.
type attachment struct {
	r         *route
	gw        *gateway
	listeners []attached
	config    string // RouteConfigName(r, gw)
}

type attached struct {
	l     *listener
	hosts []string
}

// attachAll translates every route's rules and attaches it to its parents.
// The order of t.routes is the input's: only claimSNI depends on an order
// (oldest first), and sorts the few routes it looks at itself.
func (t *translation) attachAll() {
	n := len(t.in.HTTPRoutes) + len(t.in.GRPCRoutes) + len(t.in.TLSRoutes)
	t.routes = make([]*route, 0, n)
	t.routeStatus = make(map[RouteKey][]ParentStatus, n)
	for _, r := range t.in.HTTPRoutes {
		key := RouteKey{KindHTTPRoute, r.Namespace, r.Name}
		t.routes = append(t.routes, &route{key: key, meta: r, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames,
			body: t.cachedBody(key, r.ResourceVersion, func() []types.NamespacedName { return httpServices(r) },
				func() *body { return t.httpBody(r) })})
	}
	for _, r := range t.in.GRPCRoutes {
		key := RouteKey{KindGRPCRoute, r.Namespace, r.Name}
		t.routes = append(t.routes, &route{key: key, meta: r, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames,
			body: t.cachedBody(key, r.ResourceVersion, func() []types.NamespacedName { return grpcServices(r) },
				func() *body { return t.grpcBody(r) })})
	}
	for _, r := range t.in.TLSRoutes {
		key := RouteKey{KindTLSRoute, r.Namespace, r.Name}
		t.routes = append(t.routes, &route{key: key, meta: r, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames,
			body: t.cachedBody(key, r.ResourceVersion, func() []types.NamespacedName { return tlsServices(r) },
				func() *body { return t.tlsBody(r) })})
	}
	for _, r := range t.routes {
		if !t.attachRemembered(r) {
			t.attach(r)
		}
	}
}

func (t *translation) attach(r *route) {
	byGW := map[*gateway]*attachment{}
	var order []*attachment
	var statuses []ParentStatus
	for i, ref := range r.parents {
		g := t.parentGateway(r, ref)
		if g == nil {
			continue // not one of Portico's Gateways: its controller reports
		}
		accepted, ls := t.accept(r, g, ref, i)
		if r.body.invalid != nil {
			accepted, ls = *r.body.invalid, nil
		}
		st := ParentStatus{Ref: ref, Conditions: []Condition{accepted, r.body.resolved}}
		if r.body.partial != nil {
			st.Conditions = append(st.Conditions, *r.body.partial)
		}
		if len(ls) > 0 {
			a := byGW[g]
			if a == nil {
				a = &attachment{r: r, gw: g, config: t.configName(r.key, g.key)}
				byGW[g] = a
				order = append(order, a)
				t.attachments = append(t.attachments, a)
			}
			for _, x := range ls {
				if !slices.ContainsFunc(a.listeners, func(y attached) bool { return y.l == x.l }) {
					a.listeners = append(a.listeners, x)
					x.l.attached++
				}
			}
			st.Config = a.config
		}
		statuses = append(statuses, st)
	}
	if statuses != nil {
		t.routeStatus[r.key] = statuses
	}
	t.rememberAttach(r, statuses, order)
}

// parentGateway is the Gateway of this translation a parentRef of r names,
// or nil (another kind of parent, or another controller's Gateway).
func (t *translation) parentGateway(r *route, ref gatewayv1.ParentReference) *gateway {
	if (ref.Group != nil && string(*ref.Group) != group) || (ref.Kind != nil && string(*ref.Kind) != KindGateway) {
		return nil
	}
	ns := r.key.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return t.byKey[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
}

// accept finds the listeners of g that ref selects and that take r, with the
// hostnames r serves on each, and the Accepted condition that says so or why not.
func (t *translation) accept(r *route, g *gateway, ref gatewayv1.ParentReference, i int) (Condition, []attached) {
	field := fmt.Sprintf("spec.parentRefs[%d]", i)
	no := func(reason gatewayv1.RouteConditionReason, msg string) (Condition, []attached) {
		return cond(string(gatewayv1.RouteConditionAccepted), false, string(reason), msg), nil
	}
	var selected []*listener
	for _, l := range g.listeners {
		if ref.SectionName != nil && string(*ref.SectionName) != l.name {
			continue
		}
		if ref.Port != nil && *ref.Port != l.port {
			continue
		}
		selected = append(selected, l)
	}
	if len(selected) == 0 {
		return no(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("%s: Gateway %s has no listener matching sectionName/port", field, g.key))
	}
	var allowed []*listener
	for _, l := range selected {
		if l.attachable && l.takesKind(r.key.Kind) && t.allowsNamespace(l, r.key.Namespace) {
			allowed = append(allowed, l)
		}
	}
	if len(allowed) == 0 {
		return no(gatewayv1.RouteReasonNotAllowedByListeners,
			fmt.Sprintf("%s: no listener of Gateway %s that it names allows %ss from namespace %s", field, g.key, r.key.Kind, r.key.Namespace))
	}
	var out []attached
	for _, l := range allowed {
		if hosts := intersect(l.hostname, r.hostnames); len(hosts) > 0 {
			out = append(out, attached{l: l, hosts: hosts})
		}
	}
	if len(out) == 0 {
		return no(gatewayv1.RouteReasonNoMatchingListenerHostname,
			fmt.Sprintf("%s: no hostname of the route matches a listener of Gateway %s that allows it", field, g.key))
	}
	return routeAccepted, out
}

func (l *listener) takesKind(kind string) bool {
	return slices.ContainsFunc(l.kinds, func(k gatewayv1.RouteGroupKind) bool { return string(k.Kind) == kind })
}

// allowsNamespace applies allowedRoutes.namespaces (default Same).
func (t *translation) allowsNamespace(l *listener, ns string) bool {
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := l.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == l.gw.key.Namespace
	case gatewayv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		return s.Matches(labels.Set(t.in.Namespaces[ns]))
	}
	return false
}

var routeAccepted = cond(string(gatewayv1.RouteConditionAccepted), true, string(gatewayv1.RouteReasonAccepted), "Accepted by "+string(ControllerName))

// intersect is the hostnames a route serves on a listener: the route's own
// hostnames that the listener's hostname matches, narrowed to the more
// specific of the two; "*" when neither names one.
func intersect(listenerHost string, routeHosts []gatewayv1.Hostname) []string {
	if len(routeHosts) == 0 {
		if listenerHost == "" {
			return []string{"*"}
		}
		return []string{listenerHost}
	}
	var out []string
	for _, rh := range routeHosts {
		h := strings.ToLower(string(rh))
		var got string
		switch {
		case listenerHost == "":
			got = h
		case h == listenerHost:
			got = h
		case wildcardCovers(listenerHost, h):
			got = h
		case wildcardCovers(h, listenerHost):
			got = listenerHost
		}
		if got != "" && !slices.Contains(out, got) {
			out = append(out, got)
		}
	}
	return out
}

// wildcardCovers reports whether the wildcard hostname w ("*.example.com")
// matches h, exact or wildcard, with at least one more label: Gateway API
// wildcards match any number of labels, as Envoy's suffix domains do.
func wildcardCovers(w, h string) bool {
	if !strings.HasPrefix(w, "*.") {
		return false
	}
	suffix := w[1:] // ".example.com"
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix) && h != w
}

// covers reports whether requests for host h' may be served by routes of h:
// "*" covers every host, a wildcard covers the hosts below it.
func covers(h, other string) bool { return h == "*" || wildcardCovers(h, other) }

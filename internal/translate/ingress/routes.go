package ingress

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
)

// Match ranks, the first component of a precedence key: the Ingress spec's
// order, exact paths before regular expressions before prefixes (longest
// first, so "/" is last), and the default backend after everything.
const (
	rankExact   = 0
	rankRegex   = 1
	rankPrefix  = 2
	rankDefault = 9
)

// ingressResult is what one Ingress contributes besides listeners.
type ingressResult struct {
	fragments map[fragKey][]v1alpha1.FragmentRoute
	clusters  map[string]bool
	backends  map[types.NamespacedName]map[int32]bool
	problems  []Problem
}

type fragKey struct{ table, host string }

// denied are the hosts the Ingress may not serve (another namespace owns them on
// the shared listener): their rules are left out with a HostConflict problem.
func translateIngress(ing *networkingv1.Ingress, services map[types.NamespacedName]*corev1.Service, t tableNames, tls tlsCover,
	denied map[string]types.NamespacedName) *ingressResult {
	r := &ingressResult{
		fragments: map[fragKey][]v1alpha1.FragmentRoute{},
		clusters:  map[string]bool{},
		backends:  map[types.NamespacedName]map[int32]bool{},
	}
	force := forceHTTPS(ing)
	prefix := ing.Namespace + "/" + ing.Name
	created := ing.CreationTimestamp.Unix()
	// add places one route on the host's HTTP table (as an https redirect when the
	// host is served over TLS and force-https is on) and on its HTTPS table.
	add := func(host string, prec string, route envoykit.Route) {
		covered := t.https != "" && tls.covers(host)
		raw := envoykit.Raw(route)
		httpRaw := raw // the same bytes serve both tables unless HTTP redirects
		if force && covered {
			httpRoute := route
			httpRoute.Route, httpRoute.DirectResponse = nil, nil
			httpRoute.Redirect = &envoykit.Redirect{HTTPSRedirect: true}
			httpRaw = envoykit.Raw(httpRoute)
		}
		r.fragments[fragKey{t.http, host}] = append(r.fragments[fragKey{t.http, host}],
			v1alpha1.FragmentRoute{Precedence: prec, Route: httpRaw})
		if covered {
			r.fragments[fragKey{t.https, host}] = append(r.fragments[fragKey{t.https, host}],
				v1alpha1.FragmentRoute{Precedence: prec, Route: raw})
		}
	}

	hosts := []string{"*"}
	for i, rule := range ing.Spec.Rules {
		host := hostOf(rule.Host)
		if owner, taken := denied[host]; taken {
			r.problems = append(r.problems, hostConflict(fmt.Sprintf("spec.rules[%d].host", i), host, owner))
			continue
		}
		if !slices.Contains(hosts, host) {
			hosts = append(hosts, host)
		}
		if rule.HTTP == nil {
			continue
		}
		for j, p := range rule.HTTP.Paths {
			field := fmt.Sprintf("spec.rules[%d].http.paths[%d]", i, j)
			match, rank, length, problem := pathMatch(p)
			if problem != "" {
				r.problems = append(r.problems, Problem{ReasonInvalidPath, field, problem + ": the path is not served"})
				continue
			}
			if strings.HasPrefix(host, "*.") {
				match.Headers = []envoykit.HeaderMatcher{authorityMatch(host)}
			}
			route := envoykit.Route{Name: fmt.Sprintf("%s:rules[%d].paths[%d]", prefix, i, j), Match: match}
			r.setAction(&route, ing.Namespace, &p.Backend, field+".backend", services)
			add(host, precedence(rank, length, created, prefix, i, j), route)
		}
	}
	if b := ing.Spec.DefaultBackend; b != nil {
		// The default backend takes what no rule of this Ingress matches: on every
		// host the Ingress names (Envoy picks the virtual host before the route, so
		// a catch-all on "*" alone would never see those hosts) and on any other host.
		route := envoykit.Route{Name: prefix + ":defaultBackend", Match: envoykit.Match{Prefix: "/"}}
		r.setAction(&route, ing.Namespace, b, "spec.defaultBackend", services)
		prec := precedence(rankDefault, 0, created, prefix, 0, 0)
		for _, h := range hosts {
			if owner, taken := denied[h]; taken {
				r.problems = append(r.problems, hostConflict("spec.defaultBackend", h, owner))
				continue
			}
			hr := route
			if strings.HasPrefix(h, "*.") {
				hr.Match.Headers = []envoykit.HeaderMatcher{authorityMatch(h)}
			}
			add(h, prec, hr)
		}
	}
	return r
}

func hostOf(h string) string {
	if h == "" {
		return "*"
	}
	return strings.ToLower(h)
}

// pathMatch is the Envoy match of an Ingress path, its rank and the length that
// orders it among its rank, or why it cannot be served.
func pathMatch(p networkingv1.HTTPIngressPath) (m envoykit.Match, rank, length int, problem string) {
	pt := networkingv1.PathTypeImplementationSpecific
	if p.PathType != nil {
		pt = *p.PathType
	}
	switch pt {
	case networkingv1.PathTypeExact:
		if !strings.HasPrefix(p.Path, "/") || strings.ContainsAny(p.Path, "?#") {
			return m, 0, 0, fmt.Sprintf("Exact path %q must start with / and contain neither ? nor #", p.Path)
		}
		return envoykit.Match{Path: p.Path}, rankExact, len(p.Path), ""
	case networkingv1.PathTypePrefix:
		if !strings.HasPrefix(p.Path, "/") || strings.ContainsAny(p.Path, "?#") {
			return m, 0, 0, fmt.Sprintf("Prefix path %q must start with / and contain neither ? nor #", p.Path)
		}
		// Prefix matches whole path elements and ignores a trailing slash: /foo and
		// /foo/ both match /foo and /foo/bar but not /foobar. Envoy's
		// path_separated_prefix has exactly that meaning.
		trimmed := strings.TrimRight(p.Path, "/")
		if trimmed == "" {
			return envoykit.Match{Prefix: "/"}, rankPrefix, 1, ""
		}
		return envoykit.Match{PathSeparatedPrefix: trimmed}, rankPrefix, len(trimmed), ""
	case networkingv1.PathTypeImplementationSpecific:
		// Portico's implementation-specific paths are RE2 regular expressions
		// matched against the whole path, as in Cilium. No path means every path.
		if p.Path == "" {
			return envoykit.Match{Prefix: "/"}, rankPrefix, 1, ""
		}
		if _, err := regexp.Compile(p.Path); err != nil {
			return m, 0, 0, fmt.Sprintf("ImplementationSpecific path %q is not an RE2 regular expression: %v", p.Path, err)
		}
		return envoykit.Match{SafeRegex: &envoykit.Regex{Regex: p.Path}}, rankRegex, len(p.Path), ""
	}
	return m, 0, 0, fmt.Sprintf("unknown pathType %q", pt)
}

// authorityMatch restricts a wildcard host to a single label, as the Ingress spec
// says (*.example.com matches foo.example.com, not foo.bar.example.com); Envoy's
// own wildcard domains match any number of labels.
func authorityMatch(host string) envoykit.HeaderMatcher {
	re := `(?i)[^.]+` + regexp.QuoteMeta(strings.TrimPrefix(host, "*")) + `(:[0-9]+)?`
	return envoykit.HeaderMatcher{Name: ":authority", StringMatch: &envoykit.StringMatch{SafeRegex: &envoykit.Regex{Regex: re}}}
}

// precedence is the route's ordering key across every Ingress sharing the
// host: match rank, then longer first, then older Ingress first (so a newcomer
// cannot take over an identical path), then name and position for a total order.
// Numbers are fixed-width so that byte-wise order is numeric order.
func precedence(rank, length int, created int64, ingress string, rule, path int) string {
	return envoykit.NewKey(48+len(ingress)).Num(int64(rank), 1).Desc(int64(length), 99999, 5).Num(created, 12).
		Str(ingress).Num(int64(rule), 5).Num(int64(path), 5).String()
}

// setAction points route at the backend, or, when the backend cannot be used,
// answers 503: leaving the route out would hand its requests to a shorter prefix
// of possibly another application, which is worse than a clear error.
func (r *ingressResult) setAction(route *envoykit.Route, ns string, b *networkingv1.IngressBackend, field string, services map[types.NamespacedName]*corev1.Service) {
	cluster, problem := r.backend(ns, b, field, services)
	if problem != nil {
		r.problems = append(r.problems, *problem)
		route.DirectResponse = &envoykit.DirectResponse{Status: 503}
		return
	}
	route.Route = &envoykit.RouteAction{Cluster: cluster}
}

func (r *ingressResult) backend(ns string, b *networkingv1.IngressBackend, field string, services map[types.NamespacedName]*corev1.Service) (string, *Problem) {
	if b.Service == nil {
		return "", &Problem{ReasonUnsupportedBackend, field, "only Service backends are supported: answering 503"}
	}
	key := types.NamespacedName{Namespace: ns, Name: b.Service.Name}
	svc := services[key]
	if svc == nil {
		return "", &Problem{ReasonBackendNotFound, field + ".service", fmt.Sprintf("Service %s not found: answering 503", key)}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "", &Problem{ReasonUnsupportedBackend, field + ".service", fmt.Sprintf("Service %s is of type ExternalName, which has no endpoints: answering 503", key)}
	}
	var port int32
	for _, sp := range svc.Spec.Ports {
		if (b.Service.Port.Name != "" && sp.Name == b.Service.Port.Name) ||
			(b.Service.Port.Name == "" && sp.Port == b.Service.Port.Number) {
			port = sp.Port
			break
		}
	}
	if port == 0 {
		want := b.Service.Port.Name
		if want == "" {
			want = strconv.Itoa(int(b.Service.Port.Number))
		}
		return "", &Problem{ReasonBackendNotFound, field + ".service.port", fmt.Sprintf("Service %s has no port %s: answering 503", key, want)}
	}
	// Named ports are resolved to the Service port number, so that two Ingresses
	// naming the same port differently still define the same cluster.
	name := fmt.Sprintf("%s:%d", key, port)
	r.clusters[name] = true
	if r.backends[key] == nil {
		r.backends[key] = map[int32]bool{}
	}
	r.backends[key][port] = true
	return name, nil
}

// spec is the Ingress's own config, without listeners.
func (r *ingressResult) spec() v1alpha1.NodeProxyConfigSpec {
	spec := v1alpha1.NodeProxyConfigSpec{}
	keys := make([]fragKey, 0, len(r.fragments))
	for k := range r.fragments {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b fragKey) int { return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.host, b.host)) })
	for _, k := range keys {
		spec.RouteFragments = append(spec.RouteFragments, v1alpha1.RouteFragment{RouteTable: k.table, Host: k.host, Routes: r.fragments[k]})
	}
	if len(r.clusters) == 0 {
		return spec
	}
	spec.Envoy = &v1alpha1.EnvoyResources{}
	names := make([]string, 0, len(r.clusters))
	for n := range r.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		spec.Envoy.Resources = append(spec.Envoy.Resources, envoykit.Resource(envoykit.TypeCluster, envoykit.EDSCluster(n)))
	}
	spec.Envoy.BackendServices = envoykit.BackendServices(r.backends)
	return spec
}

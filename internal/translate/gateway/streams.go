package gateway

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/envoykit"
)

// grpcBody translates a GRPCRoute's rules. gRPC is HTTP/2 on the same
// listeners as HTTPRoutes: a method match is a path match, and every backend
// is reached over h2c.
func (t *translation) grpcBody(r *gatewayv1.GRPCRoute) *body {
	bd := &body{b: newBackends()}
	st := &ruleState{rules: len(r.Spec.Rules)}
	r0 := route0{r.Namespace, r.Name, r.CreationTimestamp.Unix()}
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		field := "spec.rules[" + strconv.Itoa(i) + "]"
		routes, why := t.grpcRule(bd.b, st, r, r0, i, rule, field)
		if why != "" {
			st.drop(i, rule.Name, why)
		}
		bd.routes = append(bd.routes, routes...)
	}
	st.finish(bd)
	t.seal(bd)
	return bd
}

func (t *translation) grpcRule(b *backends, st *ruleState, r *gatewayv1.GRPCRoute, r0 route0, i int, rule *gatewayv1.GRPCRouteRule, field string) ([]keyed, string) {
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.GRPCRouteMatch{{}}
	}
	ms := make([]builtMatch, 0, len(matches))
	for j, gm := range matches {
		m, svcLen, methodLen, why := grpcMatch(gm, field+".matches["+strconv.Itoa(j)+"]")
		if why != "" {
			return nil, why
		}
		// The spec orders gRPC matches by service length, then method length,
		// then header matches: encoded in the same slots as HTTP's path.
		key := matchKey(rankExact, svcLen, methodLen > 0, len(gm.Headers), 0, r0, i, j)
		ms = append(ms, builtMatch{m: m, key: key})
	}
	name := func(j int) string { return routeName(r.Namespace, r.Name, i, rule.Name, j) }
	var base envoykit.Route
	var mirrors []envoykit.MirrorPolicy
	for k, f := range rule.Filters {
		ff := fmt.Sprintf("%s.filters[%d]", field, k)
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			base.RequestHeadersToAdd, base.RequestHeadersToRemove = headerFilter(f.RequestHeaderModifier)
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			base.ResponseHeadersToAdd, base.ResponseHeadersToRemove = headerFilter(f.ResponseHeaderModifier)
		case gatewayv1.GRPCRouteFilterRequestMirror:
			if mp, ok := t.mirror(b, st, KindGRPCRoute, r.Namespace, f.RequestMirror, ff); ok {
				mirrors = append(mirrors, mp)
			}
		default:
			return answer(ms, name, base, 500), fmt.Sprintf("%s: filter type %s is not supported: answering 500", ff, f.Type)
		}
	}
	refs := make([]weightedRef, 0, len(rule.BackendRefs))
	for k, br := range rule.BackendRefs {
		cluster, p := t.resolve(b, KindGRPCRoute, r.Namespace, br.BackendObjectReference, field+".backendRefs["+strconv.Itoa(k)+"]", true, true)
		st.refProblem(p)
		w := int32(1)
		if br.Weight != nil {
			w = *br.Weight
		}
		var h headerOps
		for _, f := range br.Filters {
			switch f.Type {
			case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
				h.reqAdd, h.reqRemove = headerFilter(f.RequestHeaderModifier)
			case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
				h.respAdd, h.respRemove = headerFilter(f.ResponseHeaderModifier)
			}
		}
		refs = append(refs, weightedRef{cluster: cluster, weight: w, headers: h})
	}
	act, direct := action(b, refs)
	out := make([]keyed, 0, len(ms))
	for j, m := range ms {
		rt := base
		rt.Name, rt.Match = name(j), m.m
		if direct != nil {
			rt.DirectResponse = direct
		} else {
			a := *act
			a.RequestMirrors = mirrors
			rt.Route = &a
		}
		out = append(out, keyedRoute(m.key, rt))
	}
	return out, ""
}

// grpcMatch is the Envoy match of a GRPCRoute match: the method as a path
// ("/<service>/<method>"), headers, and gRPC requests only.
func grpcMatch(gm gatewayv1.GRPCRouteMatch, field string) (envoykit.Match, int, int, string) {
	m := envoykit.Match{GRPC: &struct{}{}}
	svcLen, methodLen := 0, 0
	switch mm := gm.Method; {
	case mm == nil:
		m.Prefix = "/"
	case mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression:
		svc, method := `[^/]+`, `[^/]+`
		if mm.Service != nil && *mm.Service != "" {
			svc = *mm.Service
			svcLen = len(svc)
		}
		if mm.Method != nil && *mm.Method != "" {
			method = *mm.Method
			methodLen = len(method)
		}
		re := "/" + svc + "/" + method
		if _, err := regexp.Compile(re); err != nil {
			return m, 0, 0, fmt.Sprintf("%s.method: %q is not an RE2 regular expression: %v", field, re, err)
		}
		m.SafeRegex = &envoykit.Regex{Regex: re}
	default:
		svc, method := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		svcLen, methodLen = len(svc), len(method)
		switch {
		case svc != "" && method != "":
			m.Path = "/" + svc + "/" + method
		case svc != "":
			m.Prefix = "/" + svc + "/"
		case method != "":
			m.SafeRegex = &envoykit.Regex{Regex: `/[^/]+/` + regexp.QuoteMeta(method)}
		default:
			m.Prefix = "/"
		}
	}
	for k, h := range gm.Headers {
		sm, why := stringMatch(h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression, h.Value, fmt.Sprintf("%s.headers[%d]", field, k))
		if why != "" {
			return m, 0, 0, why
		}
		m.Headers = append(m.Headers, envoykit.HeaderMatcher{Name: strings.ToLower(string(h.Name)), StringMatch: sm})
	}
	return m, svcLen, methodLen, ""
}

// tlsBody translates a TLSRoute: its backends, by weight, behind tcp_proxy.
func (t *translation) tlsBody(r *gatewayv1.TLSRoute) *body {
	bd := &body{b: newBackends(), tcp: &tcpTarget{}}
	st := &ruleState{rules: len(r.Spec.Rules)}
	var refs []weightedRef
	for i, rule := range r.Spec.Rules {
		for k, br := range rule.BackendRefs {
			cluster, p := t.resolve(bd.b, KindTLSRoute, r.Namespace, br.BackendObjectReference, fmt.Sprintf("spec.rules[%d].backendRefs[%d]", i, k), false, false)
			st.refProblem(p)
			w := int32(1)
			if br.Weight != nil {
				w = *br.Weight
			}
			refs = append(refs, weightedRef{cluster: cluster, weight: w})
		}
	}
	switch act, _ := action(bd.b, refs); {
	case act == nil:
		// Nothing to forward to: connections are closed by a cluster without endpoints.
		bd.tcp.cluster = bd.b.invalid()
	case act.WeightedClusters != nil:
		bd.tcp.weighted = act.WeightedClusters
	default:
		bd.tcp.cluster = act.Cluster
	}
	st.finish(bd)
	t.seal(bd)
	return bd
}

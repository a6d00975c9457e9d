package gateway

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/envoykit"
)

// Path ranks, the first part of a match's precedence after the hostname: the
// spec orders Exact before PathPrefix (longest first); regular expressions are
// implementation-specific and go between, as in Portico's Ingress.
const (
	rankExact  = 0
	rankRegex  = 1
	rankPrefix = 2
)

// httpBody translates an HTTPRoute's rules.
func (t *translation) httpBody(r *gatewayv1.HTTPRoute) *body {
	bd := &body{b: newBackends()}
	st := &ruleState{rules: len(r.Spec.Rules)}
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		field := "spec.rules[" + strconv.Itoa(i) + "]"
		routes, why := t.httpRule(bd.b, st, r, i, rule, field)
		if why != "" {
			st.drop(i, rule.Name, why)
		}
		bd.routes = append(bd.routes, routes...)
	}
	st.finish(bd)
	t.seal(bd)
	return bd
}

// matchKey is the hostname-independent part of a precedence key: path rank
// and length, method, number of header and query matches, then the route's
// age, namespace/name and position, for the spec's tie-breaks. "!" ends the
// name: it sorts before every character a name can hold, so "a" comes before
// "a-b" as the spec's alphabetical order wants.
func matchKey(rank, pathLen int, method bool, headers, queries int, r route0, rule, match int) string {
	m := 1
	if method {
		m = 0
	}
	return envoykit.NewKey(64+len(r.ns)+len(r.name)).Num(int64(rank), 1).Desc(int64(pathLen), 9999, 4).Num(int64(m), 1).
		Desc(int64(headers), 99, 2).Desc(int64(queries), 99, 2).Num(r.created, 12).Str(r.ns+"!"+r.name+"!").
		Num(int64(rule), 4).Num(int64(match), 4).String()
}

// route0 is what precedence keys read of a route.
type route0 struct {
	ns, name string
	created  int64
}

func routeName(ns, name string, rule int, ruleName *gatewayv1.SectionName, match int) string {
	label := strconv.Itoa(rule)
	if ruleName != nil {
		label = string(*ruleName)
	}
	return ns + "/" + name + "/" + label + "/" + strconv.Itoa(match)
}

// builtMatch is one match of a rule in Envoy's terms, with its key.
type builtMatch struct {
	m    envoykit.Match
	key  string
	path *gatewayv1.HTTPPathMatch
}

// ruleFilters are a rule's filters in Envoy's terms.
type ruleFilters struct {
	base     envoykit.Route // header changes and CORS
	redirect *gatewayv1.HTTPRequestRedirectFilter
	rewrite  *gatewayv1.HTTPURLRewriteFilter
	mirrors  []envoykit.MirrorPolicy
}

// httpRule translates one rule into a route per match, or says why the rule
// cannot be served as written (it is then left out, or answers 500).
func (t *translation) httpRule(b *backends, st *ruleState, r *gatewayv1.HTTPRoute, i int, rule *gatewayv1.HTTPRouteRule, field string) ([]keyed, string) {
	r0 := route0{r.Namespace, r.Name, r.CreationTimestamp.Unix()}
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.HTTPRouteMatch{{}}
	}
	ms := make([]builtMatch, 0, len(matches))
	for j, hm := range matches {
		m, rank, length, why := httpMatch(hm, field+".matches["+strconv.Itoa(j)+"]")
		if why != "" {
			return nil, why
		}
		ms = append(ms, builtMatch{m, matchKey(rank, length, hm.Method != nil, len(hm.Headers), len(hm.QueryParams), r0, i, j), hm.Path})
	}
	name := func(j int) string { return routeName(r.Namespace, r.Name, i, rule.Name, j) }
	fs, why := t.httpFilters(b, st, r.Namespace, rule.Filters, field)
	if why != "" {
		// The spec: a filter that cannot be applied must not be skipped; the
		// requests it would have handled get an error instead.
		return answer(ms, name, fs.base, 500), why + ": answering 500"
	}
	var act *envoykit.RouteAction
	var direct *envoykit.DirectResponse
	if fs.redirect == nil {
		refs := make([]weightedRef, 0, len(rule.BackendRefs))
		for k, br := range rule.BackendRefs {
			cluster, p := t.resolve(b, KindHTTPRoute, r.Namespace, br.BackendObjectReference, field+".backendRefs["+strconv.Itoa(k)+"]", true, false)
			st.refProblem(p)
			w := int32(1)
			if br.Weight != nil {
				w = *br.Weight
			}
			refs = append(refs, weightedRef{cluster: cluster, weight: w, headers: backendHeaders(br.Filters)})
		}
		act, direct = action(b, refs)
		if act != nil {
			if why := timeouts(act, rule.Timeouts, rule.Retry); why != "" {
				return nil, field + why
			}
			act.RequestMirrors = fs.mirrors
		}
	}
	out := make([]keyed, 0, len(ms))
	for j, m := range ms {
		rt := fs.base
		rt.Name, rt.Match = name(j), m.m
		switch {
		case fs.redirect != nil:
			rd, why := redirectAction(fs.redirect, m.path)
			if why != "" {
				return nil, fmt.Sprintf("%s.filters: %s", field, why)
			}
			rt.Redirect = rd
		case direct != nil:
			rt.DirectResponse = direct
		default:
			a := *act
			if fs.rewrite != nil {
				if why := rewriteAction(&a, fs.rewrite, m.path); why != "" {
					return nil, fmt.Sprintf("%s.filters: %s", field, why)
				}
			}
			rt.Route = &a
		}
		out = append(out, keyedRoute(m.key, rt))
	}
	return out, ""
}

// httpFilters reads a rule's filters, or says which one cannot be applied.
func (t *translation) httpFilters(b *backends, st *ruleState, ns string, filters []gatewayv1.HTTPRouteFilter, field string) (ruleFilters, string) {
	var fs ruleFilters
	for k, f := range filters {
		ff := fmt.Sprintf("%s.filters[%d]", field, k)
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			fs.base.RequestHeadersToAdd, fs.base.RequestHeadersToRemove = headerFilter(f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			fs.base.ResponseHeadersToAdd, fs.base.ResponseHeadersToRemove = headerFilter(f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			fs.redirect = f.RequestRedirect
		case gatewayv1.HTTPRouteFilterURLRewrite:
			fs.rewrite = f.URLRewrite
		case gatewayv1.HTTPRouteFilterRequestMirror:
			if mp, ok := t.mirror(b, st, KindHTTPRoute, ns, f.RequestMirror, ff); ok {
				fs.mirrors = append(fs.mirrors, mp)
			}
		case gatewayv1.HTTPRouteFilterCORS:
			if f.CORS != nil {
				fs.base.TypedPerFilterConfig = map[string]any{envoykit.CORSFilterName: corsPolicy(f.CORS)}
			}
		default:
			return fs, fmt.Sprintf("%s: filter type %s is not supported", ff, f.Type)
		}
	}
	if fs.redirect != nil && fs.rewrite != nil {
		return fs, field + ".filters: RequestRedirect and URLRewrite cannot be combined"
	}
	return fs, ""
}

// answer is every match of a rule answering status.
func answer(ms []builtMatch, name func(int) string, base envoykit.Route, status uint32) []keyed {
	out := make([]keyed, 0, len(ms))
	for j, m := range ms {
		rt := base
		rt.Name, rt.Match, rt.DirectResponse = name(j), m.m, &envoykit.DirectResponse{Status: status}
		out = append(out, keyedRoute(m.key, rt))
	}
	return out
}

// httpMatch is the Envoy match of an HTTPRoute match, its path rank and length,
// or why it cannot be served.
func httpMatch(hm gatewayv1.HTTPRouteMatch, field string) (envoykit.Match, int, int, string) {
	var m envoykit.Match
	pt, pv := gatewayv1.PathMatchPathPrefix, "/"
	if hm.Path != nil {
		if hm.Path.Type != nil {
			pt = *hm.Path.Type
		}
		if hm.Path.Value != nil {
			pv = *hm.Path.Value
		}
	}
	rank, length := rankPrefix, len(pv)
	switch pt {
	case gatewayv1.PathMatchExact:
		if !strings.HasPrefix(pv, "/") || strings.ContainsAny(pv, "?#") {
			return m, 0, 0, fmt.Sprintf("%s.path: Exact path %q must start with / and contain neither ? nor #", field, pv)
		}
		m.Path, rank = pv, rankExact
	case gatewayv1.PathMatchPathPrefix:
		if !strings.HasPrefix(pv, "/") || strings.ContainsAny(pv, "?#") {
			return m, 0, 0, fmt.Sprintf("%s.path: PathPrefix %q must start with / and contain neither ? nor #", field, pv)
		}
		// A prefix matches whole path elements and ignores a trailing slash,
		// which is exactly Envoy's path_separated_prefix.
		trimmed := strings.TrimRight(pv, "/")
		if trimmed == "" {
			m.Prefix, length = "/", 1
		} else {
			m.PathSeparatedPrefix, length = trimmed, len(trimmed)
		}
	case gatewayv1.PathMatchRegularExpression:
		if _, err := regexp.Compile(pv); err != nil {
			return m, 0, 0, fmt.Sprintf("%s.path: %q is not an RE2 regular expression: %v", field, pv, err)
		}
		m.SafeRegex, rank = &envoykit.Regex{Regex: pv}, rankRegex
	default:
		return m, 0, 0, fmt.Sprintf("%s.path.type: %q is not supported", field, pt)
	}
	for k, h := range hm.Headers {
		sm, why := stringMatch(h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression, h.Value, fmt.Sprintf("%s.headers[%d]", field, k))
		if why != "" {
			return m, 0, 0, why
		}
		m.Headers = append(m.Headers, envoykit.HeaderMatcher{Name: strings.ToLower(string(h.Name)), StringMatch: sm})
	}
	for k, q := range hm.QueryParams {
		sm, why := stringMatch(q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression, q.Value, fmt.Sprintf("%s.queryParams[%d]", field, k))
		if why != "" {
			return m, 0, 0, why
		}
		m.QueryParameters = append(m.QueryParameters, envoykit.QueryParamMatch{Name: string(q.Name), StringMatch: sm})
	}
	if hm.Method != nil {
		m.Headers = append(m.Headers, envoykit.HeaderMatcher{Name: ":method", StringMatch: &envoykit.StringMatch{Exact: string(*hm.Method)}})
	}
	return m, rank, length, ""
}

func stringMatch(regex bool, value, field string) (*envoykit.StringMatch, string) {
	if !regex {
		if value == "" {
			return &envoykit.StringMatch{SafeRegex: &envoykit.Regex{Regex: "^$"}}, ""
		}
		return &envoykit.StringMatch{Exact: value}, ""
	}
	if _, err := regexp.Compile(value); err != nil {
		return nil, fmt.Sprintf("%s: %q is not an RE2 regular expression: %v", field, value, err)
	}
	return &envoykit.StringMatch{SafeRegex: &envoykit.Regex{Regex: value}}, ""
}

// backendHeaders are the header changes of a backendRef's own filters.
func backendHeaders(fs []gatewayv1.HTTPRouteFilter) headerOps {
	var h headerOps
	for _, f := range fs {
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			h.reqAdd, h.reqRemove = headerFilter(f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			h.respAdd, h.respRemove = headerFilter(f.ResponseHeaderModifier)
		}
	}
	return h
}

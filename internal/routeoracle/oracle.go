// Package routeoracle answers "which cluster would Envoy pick for this request"
// from a served RouteConfiguration, following Envoy's documented semantics. No
// Envoy binary runs on the development machines, so request routing is checked
// by this oracle over what the agent actually serves (fetched by the xDS test
// client): it is independent of every producer, so an Ingress test and a
// Gateway test ask it the same question.
//
// What it follows (Envoy's route matching documentation):
//   - virtual host by the request's host (port stripped, case-insensitive):
//     an exact domain, then the longest suffix wildcard ("*.example.com",
//     "*-bar.example.com"), then the longest prefix wildcard ("foo.*"), then "*";
//   - routes in order, the first whose match holds: path by exact "path",
//     "prefix", "path_separated_prefix" (the prefix followed by "/" or the end)
//     or "safe_regex" (the whole path), on the path without its query string,
//     case-sensitive unless case_sensitive is false; every header matcher
//     (":method", ":authority" and ":path" included); every query parameter
//     matcher; "grpc" (content-type application/grpc);
//   - the route's action: a cluster, weighted clusters (reported as the set),
//     a redirect or a direct response.
package routeoracle

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Request is what the oracle routes.
type Request struct {
	Method string
	Host   string
	// Path may carry a query string ("/?great=example").
	Path    string
	Headers map[string]string
}

// Result is Envoy's choice.
type Result struct {
	// Matched: a virtual host and a route matched; otherwise Envoy answers 404.
	Matched     bool
	VirtualHost string
	Route       string
	// Clusters is the cluster, or every cluster of weighted clusters, sorted.
	Clusters []string
	// Redirect is set when the route answers with a redirect.
	Redirect *routev3.RedirectAction
	// DirectStatus is the status of a direct response (0 if none).
	DirectStatus uint32
}

// Route picks the virtual host and route Envoy would pick for req.
func Route(rc *routev3.RouteConfiguration, req Request) Result {
	vh := VirtualHost(rc, req.Host)
	if vh == nil {
		return Result{}
	}
	path, rawQuery, _ := strings.Cut(req.Path, "?")
	query, _ := url.ParseQuery(rawQuery)
	for _, r := range vh.GetRoutes() {
		if !matches(r.GetMatch(), req, path, query) {
			continue
		}
		res := Result{Matched: true, VirtualHost: vh.GetName(), Route: r.GetName()}
		switch {
		case r.GetRoute() != nil:
			if c := r.GetRoute().GetCluster(); c != "" {
				res.Clusters = []string{c}
			}
			for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				res.Clusters = append(res.Clusters, wc.GetName())
			}
			slices.Sort(res.Clusters)
			res.Clusters = slices.Compact(res.Clusters)
		case r.GetRedirect() != nil:
			res.Redirect = r.GetRedirect()
		case r.GetDirectResponse() != nil:
			res.DirectStatus = r.GetDirectResponse().GetStatus()
		}
		return res
	}
	return Result{VirtualHost: vh.GetName()}
}

// VirtualHost is the virtual host Envoy picks for host, or nil.
func VirtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	host = strings.ToLower(stripPort(host))
	var best *routev3.VirtualHost
	bestRank, bestLen := 5, -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			rank, n := -1, 0
			switch {
			case d == host:
				rank, n = 0, len(d)
			case d == "*":
				rank = 3
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank, n = 1, len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank, n = 2, len(d)
			}
			if rank < 0 {
				continue
			}
			if rank < bestRank || (rank == bestRank && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

func stripPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.Index(host, "]"); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndex(host, ":"); i >= 0 && strings.Count(host, ":") == 1 {
		return host[:i]
	}
	return host
}

func matches(m *routev3.RouteMatch, req Request, path string, query url.Values) bool {
	sensitive := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	cmpPath, fold := path, func(s string) string { return s }
	if !sensitive {
		fold = strings.ToLower
		cmpPath = fold(path)
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(cmpPath, fold(p.Prefix)) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if cmpPath != fold(p.Path) {
			return false
		}
	case *routev3.RouteMatch_PathSeparatedPrefix:
		pre := fold(p.PathSeparatedPrefix)
		if cmpPath != pre && !strings.HasPrefix(cmpPath, pre+"/") {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !fullMatch(p.SafeRegex.GetRegex(), path) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.GetHeaders() {
		if !headerMatches(h, req, path) {
			return false
		}
	}
	for _, q := range m.GetQueryParameters() {
		vals, present := query[q.GetName()]
		ok := false
		switch {
		case q.GetPresentMatch():
			ok = present
		case q.GetStringMatch() != nil:
			ok = present && len(vals) > 0 && stringMatches(q.GetStringMatch(), vals[0])
		default:
			ok = present
		}
		if !ok {
			return false
		}
	}
	if m.GetGrpc() != nil && !strings.HasPrefix(header(req, "content-type"), "application/grpc") {
		return false
	}
	return true
}

func header(req Request, name string) string {
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func headerValue(req Request, name, path string) (string, bool) {
	switch strings.ToLower(name) {
	case ":method":
		return req.Method, true
	case ":authority", "host":
		return req.Host, true
	case ":path":
		return req.Path, true
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func headerMatches(h *routev3.HeaderMatcher, req Request, path string) bool {
	v, present := headerValue(req, h.GetName(), path)
	var ok bool
	switch {
	case h.GetStringMatch() != nil:
		ok = present && stringMatches(h.GetStringMatch(), v)
	case h.GetExactMatch() != "":
		ok = present && v == h.GetExactMatch()
	case h.GetSafeRegexMatch() != nil:
		ok = present && fullMatch(h.GetSafeRegexMatch().GetRegex(), v)
	case h.GetPrefixMatch() != "":
		ok = present && strings.HasPrefix(v, h.GetPrefixMatch())
	case h.GetSuffixMatch() != "":
		ok = present && strings.HasSuffix(v, h.GetSuffixMatch())
	case h.GetContainsMatch() != "":
		ok = present && strings.Contains(v, h.GetContainsMatch())
	case h.GetPresentMatch():
		ok = present
	default:
		ok = present
	}
	if h.GetInvertMatch() {
		return !ok
	}
	return ok
}

func stringMatches(m *matcherv3.StringMatcher, v string) bool {
	fold := func(s string) string { return s }
	if m.GetIgnoreCase() {
		fold = strings.ToLower
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return fold(v) == fold(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(fold(v), fold(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(fold(v), fold(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(fold(v), fold(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

// fullMatch: Envoy's safe_regex matches the whole value.
func fullMatch(re, v string) bool {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	return err == nil && r.MatchString(v)
}

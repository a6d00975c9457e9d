package gateway

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/envoykit"
)

// mirror resolves a RequestMirror filter; an invalid backend is reported in
// ResolvedRefs and the mirror left out (mirrored traffic is a copy: the
// original request is served either way).
func (t *translation) mirror(b *backends, st *ruleState, kind, ns string, f *gatewayv1.HTTPRequestMirrorFilter, field string) (envoykit.MirrorPolicy, bool) {
	if f == nil {
		return envoykit.MirrorPolicy{}, false
	}
	cluster, p := t.resolve(b, kind, ns, f.BackendRef, field+".requestMirror.backendRef", true, kind == KindGRPCRoute)
	if p != nil {
		st.refProblem(p)
		return envoykit.MirrorPolicy{}, false
	}
	mp := envoykit.MirrorPolicy{Cluster: cluster}
	switch {
	case f.Percent != nil:
		mp.RuntimeFraction = fraction(uint32(max(*f.Percent, 0)), "HUNDRED")
	case f.Fraction != nil:
		den := int64(100)
		if f.Fraction.Denominator != nil && *f.Fraction.Denominator > 0 {
			den = int64(*f.Fraction.Denominator)
		}
		mp.RuntimeFraction = fraction(uint32(min(int64(max(f.Fraction.Numerator, 0))*1_000_000/den, 1_000_000)), "MILLION")
	}
	return mp, true
}

func fraction(n uint32, den string) *envoykit.RuntimeFraction {
	rf := &envoykit.RuntimeFraction{}
	rf.DefaultValue.Numerator, rf.DefaultValue.Denominator = n, den
	return rf
}

// corsPolicy is Envoy's CORS policy for a CORS filter. Origins with a
// wildcard become regular expressions; "*" allows every origin.
func corsPolicy(f *gatewayv1.HTTPCORSFilter) envoykit.CORSPolicy {
	p := envoykit.CORSPolicy{Type: envoykit.TypeCORSPolicy}
	for _, o := range f.AllowOrigins {
		s := string(o)
		if strings.Contains(s, "*") {
			re := strings.ReplaceAll(regexp.QuoteMeta(s), `\*`, `.*`)
			p.AllowOrigins = append(p.AllowOrigins, envoykit.StringMatch{SafeRegex: &envoykit.Regex{Regex: re}})
			continue
		}
		p.AllowOrigins = append(p.AllowOrigins, envoykit.StringMatch{Exact: s})
	}
	join := func(n int, at func(int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = at(i)
		}
		return strings.Join(parts, ",")
	}
	p.AllowMethods = join(len(f.AllowMethods), func(i int) string { return string(f.AllowMethods[i]) })
	p.AllowHeaders = join(len(f.AllowHeaders), func(i int) string { return string(f.AllowHeaders[i]) })
	p.ExposeHeaders = join(len(f.ExposeHeaders), func(i int) string { return string(f.ExposeHeaders[i]) })
	if f.MaxAge > 0 {
		p.MaxAge = strconv.Itoa(int(f.MaxAge))
	}
	p.AllowCredentials = f.AllowCredentials != nil && *f.AllowCredentials
	return p
}

// protoDuration is a Gateway API duration as a protobuf JSON duration, or why not.
func protoDuration(d gatewayv1.Duration, field string) (string, string) {
	v, err := time.ParseDuration(string(d))
	if err != nil || v < 0 {
		return "", fmt.Sprintf("%s: %q is not a duration", field, d)
	}
	return strconv.FormatFloat(v.Seconds(), 'f', -1, 64) + "s", ""
}

// timeouts applies a rule's timeouts and retry: the request timeout is the
// route's; the backend request timeout is each try's.
func timeouts(a *envoykit.RouteAction, to *gatewayv1.HTTPRouteTimeouts, retry *gatewayv1.HTTPRouteRetry) string {
	var rp *envoykit.RetryPolicy
	if to != nil && to.Request != nil {
		d, why := protoDuration(*to.Request, ".timeouts.request")
		if why != "" {
			return why
		}
		a.Timeout = d
	}
	if to != nil && to.BackendRequest != nil {
		d, why := protoDuration(*to.BackendRequest, ".timeouts.backendRequest")
		if why != "" {
			return why
		}
		zero := uint32(0)
		rp = &envoykit.RetryPolicy{PerTryTimeout: d, NumRetries: &zero}
	}
	if retry != nil {
		if rp == nil {
			rp = &envoykit.RetryPolicy{}
		}
		n := uint32(1)
		if retry.Attempts != nil {
			n = uint32(max(*retry.Attempts, 0))
		}
		rp.NumRetries = &n
		rp.RetryOn = "connect-failure,refused-stream"
		if len(retry.Codes) > 0 {
			rp.RetryOn += ",retriable-status-codes"
			for _, c := range retry.Codes {
				rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(c))
			}
		}
		if retry.Backoff != nil {
			d, why := protoDuration(*retry.Backoff, ".retry.backoff")
			if why != "" {
				return why
			}
			rp.RetryBackOff = &envoykit.RetryBackOff{BaseInterval: d}
		}
	}
	if rp != nil {
		a.RetryPolicy = rp
	}
	return ""
}

// redirectCodes are the RequestRedirect status codes in Envoy's names.
var redirectCodes = map[int]string{301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT"}

// redirectAction is a RequestRedirect for one match (a prefix replacement
// depends on the matched prefix).
func redirectAction(f *gatewayv1.HTTPRequestRedirectFilter, path *gatewayv1.HTTPPathMatch) (*envoykit.Redirect, string) {
	rd := &envoykit.Redirect{ResponseCode: redirectCodes[302]}
	if f.StatusCode != nil {
		code, ok := redirectCodes[*f.StatusCode]
		if !ok {
			return nil, fmt.Sprintf("RequestRedirect statusCode %d is not supported", *f.StatusCode)
		}
		rd.ResponseCode = code
	}
	if f.Scheme != nil {
		rd.SchemeRedirect = *f.Scheme
	}
	if f.Hostname != nil {
		rd.HostRedirect = string(*f.Hostname)
	}
	if f.Port != nil {
		rd.PortRedirect = uint32(*f.Port)
	}
	if f.Path != nil {
		full, prefix, re, why := pathModifier(f.Path, path)
		if why != "" {
			return nil, "RequestRedirect: " + why
		}
		rd.PathRedirect, rd.PrefixRewrite, rd.RegexRewrite = full, prefix, re
	}
	return rd, ""
}

// rewriteAction applies a URLRewrite to a route action.
func rewriteAction(a *envoykit.RouteAction, f *gatewayv1.HTTPURLRewriteFilter, path *gatewayv1.HTTPPathMatch) string {
	if f.Hostname != nil {
		a.HostRewrite = string(*f.Hostname)
	}
	if f.Path == nil {
		return ""
	}
	full, prefix, re, why := pathModifier(f.Path, path)
	if why != "" {
		return "URLRewrite: " + why
	}
	if full != "" {
		re = &envoykit.RegexRewrite{Pattern: envoykit.Regex{Regex: "^.*$"}, Substitution: full}
	}
	a.PrefixRewrite, a.RegexRewrite = prefix, re
	return ""
}

// pathModifier is a path modifier as a full path, a prefix rewrite or a regex
// rewrite. Replacing a prefix needs a PathPrefix match; a replacement that
// ends in "/" (or a "/" prefix) is a regex, since Envoy's prefix_rewrite would
// leave a doubled or missing slash.
func pathModifier(pm *gatewayv1.HTTPPathModifier, path *gatewayv1.HTTPPathMatch) (full, prefix string, re *envoykit.RegexRewrite, why string) {
	switch pm.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if pm.ReplaceFullPath == nil {
			return "", "", nil, "ReplaceFullPath without replaceFullPath"
		}
		return *pm.ReplaceFullPath, "", nil, ""
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if pm.ReplacePrefixMatch == nil {
			return "", "", nil, "ReplacePrefixMatch without replacePrefixMatch"
		}
		matched := "/"
		if path != nil {
			if path.Type != nil && *path.Type != gatewayv1.PathMatchPathPrefix {
				return "", "", nil, "ReplacePrefixMatch needs a PathPrefix match"
			}
			if path.Value != nil {
				matched = strings.TrimRight(*path.Value, "/")
			}
		}
		v := *pm.ReplacePrefixMatch
		switch {
		case matched == "" || matched == "/":
			return "", "", &envoykit.RegexRewrite{Pattern: envoykit.Regex{Regex: "^/"}, Substitution: strings.TrimSuffix(v, "/") + "/"}, ""
		case strings.HasSuffix(v, "/"):
			return "", "", &envoykit.RegexRewrite{Pattern: envoykit.Regex{Regex: "^" + regexp.QuoteMeta(matched) + "/*"}, Substitution: v}, ""
		}
		return "", v, nil, ""
	}
	return "", "", nil, fmt.Sprintf("path modifier type %q is not supported", pm.Type)
}

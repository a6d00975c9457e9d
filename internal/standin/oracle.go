package standin

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/internal/routeoracle"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// Oracle is a Router that picks what Envoy would (internal/routeoracle) over the route
// configuration the listener's plain-HTTP filter chain uses, as the proxy holds it.
// Weighted clusters are answered as their sorted list, joined by ",".
func Oracle(ads *xdstest.Client, listener string, req Request) (string, error) {
	l, ok := ads.State(resourcev3.ListenerType).Resources[listener].(*listenerv3.Listener)
	if !ok {
		return "", fmt.Errorf("listener %s is not served", listener)
	}
	rc, err := plainRoutes(ads, l)
	if err != nil {
		return "", err
	}
	headers := map[string]string{}
	for k, v := range req.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	res := routeoracle.Route(rc, routeoracle.Request{Method: req.Method, Host: req.Host, Path: req.Path, Headers: headers})
	switch {
	case !res.Matched:
		return "", fmt.Errorf("%w in %s", ErrNoRoute, rc.GetName())
	case len(res.Clusters) == 0:
		return "", fmt.Errorf("route %s of %s answers itself (redirect or direct response)", res.Route, rc.GetName())
	}
	return strings.Join(res.Clusters, ","), nil
}

// plainRoutes is the route configuration of the listener's filter chain for
// plain-text connections: the first without a server name or TLS match, else the
// default chain.
func plainRoutes(ads *xdstest.Client, l *listenerv3.Listener) (*routev3.RouteConfiguration, error) {
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains[:len(chains):len(chains)], d)
	}
	for _, fc := range chains {
		m := fc.GetFilterChainMatch()
		if len(m.GetServerNames()) > 0 || m.GetTransportProtocol() == "tls" {
			continue
		}
		for _, f := range fc.GetFilters() {
			hcm := resourcev3.GetHTTPConnectionManager(f)
			if hcm == nil {
				continue
			}
			if rc := hcm.GetRouteConfig(); rc != nil {
				return rc, nil
			}
			name := hcm.GetRds().GetRouteConfigName()
			rc, ok := ads.State(resourcev3.RouteType).Resources[name].(*routev3.RouteConfiguration)
			if !ok {
				return nil, fmt.Errorf("route configuration %s of listener %s not received", name, l.GetName())
			}
			return rc, nil
		}
	}
	return nil, fmt.Errorf("listener %s has no plain HTTP filter chain", l.GetName())
}

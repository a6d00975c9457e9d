package xds

import (
	"maps"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Served is what the server hands its proxies right now: the snapshot of the
// last successful SetResources and the endpoints of the last SetEndpoints.
// The messages are the served ones, shared: callers must not modify them.
type Served struct {
	// Version is the newest per-type version ("" before the first snapshot).
	Version string
	// Versions are the versions of each type, by short name (listeners, routes,
	// clusters, secrets): a type keeps its version while its content is unchanged.
	Versions  map[string]string
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Secrets   []*tlsv3.Secret
	// Endpoints are keyed by EDS service name.
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
}

// Served returns what is being served, for the agent's debug endpoint: it answers
// "what does this node's Envoy get" without a proxy's admin interface.
func (s *Server) Served() Served {
	out := Served{Versions: map[string]string{}}
	s.resMu.Lock()
	if snap := s.served; snap != nil {
		out.Version = s.servedVersion()
		out.Listeners = items[*listenerv3.Listener](snap.Resources[types.Listener].Items)
		out.Clusters = items[*clusterv3.Cluster](snap.Resources[types.Cluster].Items)
		out.Secrets = items[*tlsv3.Secret](snap.Resources[types.Secret].Items)
		out.Versions["listeners"] = snap.Resources[types.Listener].Version
		out.Versions["clusters"] = snap.Resources[types.Cluster].Version
		out.Versions["secrets"] = snap.Resources[types.Secret].Version
		out.Routes = slices.Collect(maps.Values(s.routes.served))
		out.Versions["routes"] = ""
		if s.routes.version > 0 {
			out.Versions["routes"] = strconv.FormatUint(s.routes.version, 10)
		}
	}
	s.resMu.Unlock()
	s.edsMu.Lock()
	out.Endpoints = maps.Clone(s.endpoints)
	s.edsMu.Unlock()
	return out
}

func items[T types.Resource](in map[string]types.ResourceWithTTL) []T {
	out := make([]T, 0, len(in))
	for _, r := range in {
		if m, ok := r.Resource.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

package xds

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/portico-dev/portico/internal/xdsres"
)

// Resources is the complete LDS/RDS/CDS/SDS state for the local Envoy (see
// xdsres.Resources, where it is validated).
type Resources = xdsres.Resources

// Validation results, from xdsres (one implementation for render, the agent and
// the EnvoyConfig webhook).
type (
	ResourceError         = xdsres.ResourceError
	InvalidResourcesError = xdsres.InvalidResourcesError
)

// Kinds of ResourceError.
const (
	KindListener              = xdsres.KindListener
	KindRouteConfiguration    = xdsres.KindRouteConfiguration
	KindCluster               = xdsres.KindCluster
	KindSecret                = xdsres.KindSecret
	KindClusterLoadAssignment = xdsres.KindClusterLoadAssignment
	KindSnapshot              = xdsres.KindSnapshot
)

// snapshotKey is the only key in the snapshot cache: the agent serves its
// own node's Envoy, whatever node ID that Envoy was bootstrapped with.
const snapshotKey = "portico"

type singleNodeHash struct{}

func (singleNodeHash) ID(*corev3.Node) string { return snapshotKey }

// snapshotTypes are the response types served from the snapshot cache, in
// the order Envoy wants them applied. Route tables are served after them, from
// a linear cache of their own (routeTables).
var snapshotTypes = []types.ResponseType{types.Cluster, types.Listener, types.Secret}

// SetResources validates r and, if every resource is valid and the snapshot
// is consistent, serves it to every connected and future Envoy. It returns
// the version now served. On error nothing changes and the error is an
// *InvalidResourcesError listing the offending resources.
//
// Each type keeps its previous version when its content is unchanged, so a
// route change does not make Envoy re-apply every cluster; the returned
// version is the newest of the per-type versions. Versions come from one
// process-wide counter and never go down.
//
// A message passed before (the same pointer: callers may not modify a message once
// they passed it, even to a call that failed) is not checked on its own again, nor
// compared field by field with the one it replaces: a render that changed one route
// of one table among many costs that route, not every resource (xdsres.Memo).
func (s *Server) SetResources(ctx context.Context, r Resources) (string, error) {
	s.resMu.Lock()
	defer s.resMu.Unlock()

	errs := s.checked.Validate(r)
	s.checked.Next()
	if len(errs) > 0 {
		return "", &InvalidResourcesError{Errors: errs}
	}

	byType := [types.UnknownType][]types.Resource{}
	byType[types.Listener] = toResources(r.Listeners)
	byType[types.Cluster] = toResources(r.Clusters)
	byType[types.Secret] = toResources(r.Secrets)

	next := s.version + 1
	snap := &cachev3.Snapshot{}
	changed := false
	for _, t := range snapshotTypes {
		if s.served != nil && sameResources(s.served.Resources[t].Items, byType[t]) {
			snap.Resources[t] = s.served.Resources[t]
			continue
		}
		changed = true
		snap.Resources[t] = cachev3.NewResources(strconv.FormatUint(next, 10), byType[t])
	}
	update, remove := s.routes.diff(r.Routes)
	if !changed && len(update) == 0 && len(remove) == 0 {
		return s.servedVersion(), nil
	}
	if err := consistent(snap, r.Routes); err != nil {
		return "", &InvalidResourcesError{Errors: []ResourceError{{Kind: KindSnapshot, Message: err.Error()}}}
	}
	// Clusters, listeners and secrets first, then the tables: a changed table may
	// send requests to a cluster it adds, and a new listener's table is then
	// served as soon as Envoy asks for it (it warms the listener until then).
	if changed {
		if err := s.snapshots.SetSnapshot(ctx, snapshotKey, snap); err != nil {
			return "", fmt.Errorf("setting xDS snapshot: %w", err)
		}
		s.served = snap
	}
	s.version = next
	err := s.routes.apply(update, remove, next)
	s.tracker.notify()
	return s.servedVersion(), err
}

// servedVersion is the newest per-type version; the caller holds resMu.
func (s *Server) servedVersion() string {
	if s.served == nil {
		return ""
	}
	newest := s.routes.version
	for _, t := range snapshotTypes {
		v, _ := strconv.ParseUint(s.served.Resources[t].Version, 10, 64)
		newest = max(newest, v)
	}
	return strconv.FormatUint(newest, 10)
}

// Version returns the version of the snapshot being served, "" before the
// first successful SetResources.
func (s *Server) Version() string {
	s.resMu.Lock()
	defer s.resMu.Unlock()
	return s.servedVersion()
}

// typeVersionsLocked maps type URL to the version served for it, so that
// Proxies can tell whether a proxy has ACKed the current state. The caller
// holds resMu.
func (s *Server) typeVersionsLocked() map[string]string {
	out := map[string]string{}
	if s.served == nil {
		return out
	}
	for _, t := range snapshotTypes {
		url, _ := cachev3.GetResponseTypeURL(t)
		out[url] = s.served.Resources[t].Version
	}
	if v := s.routes.current(); v != "" {
		out[resourcev3.RouteType] = v
	}
	return out
}

// consistent runs go-control-plane's Consistent() with the route tables about
// to be served and the endpoint slot filled from the cluster references:
// endpoints live in the linear cache and may legitimately arrive after the
// clusters, so only the LDS→RDS half of the check is meaningful here.
func consistent(snap *cachev3.Snapshot, routes []*routev3.RouteConfiguration) error {
	check := *snap
	check.Resources[types.Route] = cachev3.NewResources("", toResources(routes))
	eds := cachev3.GetAllResourceReferences(snap.Resources)[resourcev3.EndpointType]
	placeholders := make([]types.Resource, 0, len(eds))
	for name := range eds {
		placeholders = append(placeholders, &endpointv3.ClusterLoadAssignment{ClusterName: name})
	}
	check.Resources[types.Endpoint] = cachev3.NewResources("", placeholders)
	return check.Consistent()
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}

func sameResources(prev map[string]types.ResourceWithTTL, next []types.Resource) bool {
	if len(prev) != len(next) {
		return false
	}
	for _, r := range next {
		p, ok := prev[cachev3.GetResourceName(r)]
		if !ok || !xdsres.Equal(p.Resource, r) {
			return false
		}
	}
	return true
}

// SetEndpoints makes cla the complete set of ClusterLoadAssignments, keyed
// by EDS service name (the cluster name unless eds_cluster_config sets
// service_name). Only assignments that differ from the served ones get a new
// version, so Envoy is sent just those. An invalid assignment is not served
// (its previous value, if any, stays) and is reported in the returned
// *InvalidResourcesError; the valid ones are applied regardless.
func (s *Server) SetEndpoints(cla map[string]*endpointv3.ClusterLoadAssignment) error {
	var errs []ResourceError
	s.edsMu.Lock()
	defer s.edsMu.Unlock()

	update := map[string]types.Resource{}
	for name, a := range cla {
		if e, ok := validateCLA(name, a); !ok {
			errs = append(errs, e)
			continue
		}
		if prev, ok := s.endpoints[name]; ok && proto.Equal(prev, a) {
			continue
		}
		update[name] = proto.Clone(a).(*endpointv3.ClusterLoadAssignment)
	}
	var remove []string
	for name := range s.endpoints {
		if _, ok := cla[name]; !ok {
			remove = append(remove, name)
		}
	}
	if len(update) > 0 || len(remove) > 0 {
		if err := s.eds.UpdateResources(update, remove); err != nil {
			return fmt.Errorf("updating endpoints: %w", err)
		}
		for name, r := range update {
			s.endpoints[name] = r.(*endpointv3.ClusterLoadAssignment)
		}
		for _, name := range remove {
			delete(s.endpoints, name)
		}
	}
	if len(errs) > 0 {
		return &InvalidResourcesError{Errors: errs}
	}
	return nil
}

func validateCLA(name string, a *endpointv3.ClusterLoadAssignment) (ResourceError, bool) {
	switch {
	case a == nil:
		return xdsres.NewResourceError(KindClusterLoadAssignment, name, "nil resource"), false
	case a.GetClusterName() != name:
		return xdsres.NewResourceError(KindClusterLoadAssignment, name, "cluster_name %q does not match its key", a.GetClusterName()), false
	}
	if err := xdsres.ValidateMessage(a); err != nil {
		return xdsres.NewResourceError(KindClusterLoadAssignment, name, "%v", err), false
	}
	return ResourceError{}, true
}

// IsInvalid reports whether err says that resources were rejected, and which.
func IsInvalid(err error) ([]ResourceError, bool) {
	var ie *InvalidResourcesError
	if errors.As(err, &ie) {
		return ie.Errors, true
	}
	return nil, false
}

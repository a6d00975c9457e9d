package xdsres

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Linked in so that validateDeep can open the typed_config of the
	// extensions Portico generates.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// Resources is the complete LDS/RDS/CDS/SDS state for the local Envoy.
// Endpoints are not part of it: they change far more often and go through
// SetEndpoints. The Server keeps references to the messages and remembers which
// passed validation, so callers must not modify them after SetResources, even one
// that failed (build new ones instead).
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Secrets   []*tlsv3.Secret
}

// Kinds used in ResourceError.Kind; they are the Envoy message names so that a
// NodeProxy condition reads the same as Envoy's own documentation.
const (
	KindListener              = "Listener"
	KindRouteConfiguration    = "RouteConfiguration"
	KindCluster               = "Cluster"
	KindSecret                = "Secret"
	KindClusterLoadAssignment = "ClusterLoadAssignment"
	// KindSnapshot marks an error that go-control-plane's Consistent() found
	// and that no per-resource check attributed to one resource.
	KindSnapshot = "Snapshot"
)

// ResourceError says why one resource cannot be served.
type ResourceError struct {
	Kind    string
	TypeURL string
	Name    string
	Message string
}

func (e ResourceError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Kind, e.Name, e.Message)
}

// InvalidResourcesError is returned by SetResources and SetEndpoints when at
// least one resource was rejected; callers get the per-resource list with errors.As.
type InvalidResourcesError struct {
	Errors []ResourceError
}

func (e *InvalidResourcesError) Error() string {
	msgs := make([]string, 0, len(e.Errors))
	for _, re := range e.Errors {
		msgs = append(msgs, re.Error())
	}
	return fmt.Sprintf("%d invalid xDS resource(s): %s", len(e.Errors), strings.Join(msgs, "; "))
}

var kindTypeURL = map[string]string{
	KindListener:              resourcev3.ListenerType,
	KindRouteConfiguration:    resourcev3.RouteType,
	KindCluster:               resourcev3.ClusterType,
	KindSecret:                resourcev3.SecretType,
	KindClusterLoadAssignment: resourcev3.EndpointType,
}

// NewResourceError is the error of one resource, with its type URL filled in.
func NewResourceError(kind, name, format string, args ...any) ResourceError {
	return ResourceError{Kind: kind, TypeURL: kindTypeURL[kind], Name: name, Message: fmt.Sprintf(format, args...)}
}

// Validate checks every resource on its own (protoc-gen-validate rules, also
// inside typed_config Anys whose types are linked in) and the references
// between them, and returns one error per offending resource. It is pure so
// that the agent can find which input produced a bad resource, drop that
// input alone and serve the rest.
//
// Reference rules follow what the ADS snapshot cache needs to answer at all:
// every RouteConfiguration and ADS-delivered Secret must be referenced, and
// every reference must resolve, otherwise the cache withholds the whole RDS
// or SDS response from Envoy.
func Validate(r Resources) []ResourceError { return ValidateTrusting(r, nil) }

// ValidateTrusting is Validate for a caller that knows some resources already passed
// the deep check of a resource on its own (protoc-gen-validate rules, also inside
// Anys) and were not modified since: trusted reports them, and their check is skipped. Names and
// references are still checked over every resource, since they depend on the others.
// A nil trusted trusts nothing. The result is Validate's whenever trusted only reports
// resources that pass those checks.
func ValidateTrusting(r Resources, trusted func(proto.Message) bool) []ResourceError {
	var errs []ResourceError
	deep := func(m proto.Message) error {
		if trusted != nil && trusted(m) {
			return nil
		}
		return validateDeep(m)
	}

	listeners := map[string]bool{}
	for i, l := range r.Listeners {
		if e, ok := checkName(KindListener, i, l, l.GetName(), listeners); !ok {
			errs = append(errs, e)
			continue
		}
		if err := deep(l); err != nil {
			errs = append(errs, NewResourceError(KindListener, l.GetName(), "%v", err))
		} else if l.GetAddress() == nil && l.GetInternalListener() == nil && l.GetApiListener() == nil {
			// PGV allows this (internal listeners have none) but Envoy NACKs it.
			errs = append(errs, NewResourceError(KindListener, l.GetName(), "has neither address nor internal_listener"))
		}
	}
	routes := map[string]bool{}
	for i, rc := range r.Routes {
		if e, ok := checkName(KindRouteConfiguration, i, rc, rc.GetName(), routes); !ok {
			errs = append(errs, e)
			continue
		}
		if err := deep(rc); err != nil {
			errs = append(errs, NewResourceError(KindRouteConfiguration, rc.GetName(), "%v", err))
		}
	}
	clusters := map[string]bool{}
	for i, c := range r.Clusters {
		if e, ok := checkName(KindCluster, i, c, c.GetName(), clusters); !ok {
			errs = append(errs, e)
			continue
		}
		if err := deep(c); err != nil {
			errs = append(errs, NewResourceError(KindCluster, c.GetName(), "%v", err))
		}
	}
	secrets := map[string]bool{}
	for i, s := range r.Secrets {
		if e, ok := checkName(KindSecret, i, s, s.GetName(), secrets); !ok {
			errs = append(errs, e)
			continue
		}
		if err := deep(s); err != nil {
			errs = append(errs, NewResourceError(KindSecret, s.GetName(), "%v", err))
		}
	}

	errs = append(errs, checkReferences(r, routes, secrets)...)
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Kind != errs[j].Kind {
			return errs[i].Kind < errs[j].Kind
		}
		return errs[i].Name < errs[j].Name
	})
	return errs
}

// checkName rejects nil, unnamed and duplicate resources; msg is typed as
// proto.Message so that a typed nil pointer is caught too.
func checkName(kind string, i int, msg proto.Message, name string, seen map[string]bool) (ResourceError, bool) {
	switch {
	case msg == nil || !msg.ProtoReflect().IsValid():
		return NewResourceError(kind, fmt.Sprintf("#%d", i), "nil resource"), false
	case name == "":
		return NewResourceError(kind, fmt.Sprintf("#%d", i), "name is empty"), false
	case seen[name]:
		return NewResourceError(kind, name, "duplicate name"), false
	}
	seen[name] = true
	return ResourceError{}, true
}

func checkReferences(r Resources, routes, secrets map[string]bool) []ResourceError {
	var errs []ResourceError
	routeRefs := map[string]bool{}
	secretRefs := map[string]bool{}
	for _, l := range r.Listeners {
		if l.GetName() == "" {
			continue
		}
		lr, ls := listenerReferences(l)
		for _, name := range lr {
			routeRefs[name] = true
			if !routes[name] {
				errs = append(errs, NewResourceError(KindListener, l.GetName(), "references missing RouteConfiguration %q", name))
			}
		}
		for _, name := range ls {
			secretRefs[name] = true
			if !secrets[name] {
				errs = append(errs, NewResourceError(KindListener, l.GetName(), "references missing Secret %q", name))
			}
		}
	}
	for _, c := range r.Clusters {
		if c.GetName() == "" {
			continue
		}
		for _, name := range clusterSecretReferences(c) {
			secretRefs[name] = true
			if !secrets[name] {
				errs = append(errs, NewResourceError(KindCluster, c.GetName(), "references missing Secret %q", name))
			}
		}
	}
	for _, rc := range r.Routes {
		if name := rc.GetName(); name != "" && !routeRefs[name] {
			errs = append(errs, NewResourceError(KindRouteConfiguration, name, "not referenced by any listener, Envoy would never request it"))
		}
	}
	for _, s := range r.Secrets {
		if name := s.GetName(); name != "" && !secretRefs[name] {
			errs = append(errs, NewResourceError(KindSecret, name, "not referenced over ADS by any listener or cluster, Envoy would never request it"))
		}
	}
	return errs
}

// listenerReferences returns the RDS route names and the ADS-delivered SDS
// secret names a listener depends on, deduplicated.
func listenerReferences(l *listenerv3.Listener) (routes, secrets []string) {
	rs, ss := map[string]bool{}, map[string]bool{}
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if hcm := resourcev3.GetHTTPConnectionManager(f); hcm != nil {
				if name := hcm.GetRds().GetRouteConfigName(); name != "" {
					rs[name] = true
				}
			}
		}
		addChainSecretRefs(ss, fc)
	}
	return sortedKeys(rs), sortedKeys(ss)
}

// ChainSecretReferences returns the names of the Secrets a filter chain's TLS
// transport socket fetches over ADS, sorted.
func ChainSecretReferences(fc *listenerv3.FilterChain) []string {
	ss := map[string]bool{}
	addChainSecretRefs(ss, fc)
	return sortedKeys(ss)
}

// ClusterSecretReferences returns the names of the Secrets a cluster's TLS
// transport sockets fetch over ADS, sorted.
func ClusterSecretReferences(c *clusterv3.Cluster) []string { return clusterSecretReferences(c) }

func addChainSecretRefs(ss map[string]bool, fc *listenerv3.FilterChain) {
	tls := &tlsv3.DownstreamTlsContext{}
	if unpackTransportSocket(fc.GetTransportSocket(), tls) {
		addSecretRefs(ss, tls.GetCommonTlsContext())
		addADSSecret(ss, tls.GetSessionTicketKeysSdsSecretConfig())
	}
}

func clusterSecretReferences(c *clusterv3.Cluster) []string {
	ss := map[string]bool{}
	sockets := []*corev3.TransportSocket{c.GetTransportSocket()}
	for _, m := range c.GetTransportSocketMatches() {
		sockets = append(sockets, m.GetTransportSocket())
	}
	for _, ts := range sockets {
		tls := &tlsv3.UpstreamTlsContext{}
		if unpackTransportSocket(ts, tls) {
			addSecretRefs(ss, tls.GetCommonTlsContext())
		}
	}
	return sortedKeys(ss)
}

func unpackTransportSocket(ts *corev3.TransportSocket, into proto.Message) bool {
	a := ts.GetTypedConfig()
	if a == nil || !a.MessageIs(into) {
		return false
	}
	return anypb.UnmarshalTo(a, into, proto.UnmarshalOptions{}) == nil
}

func addSecretRefs(out map[string]bool, ctx *tlsv3.CommonTlsContext) {
	for _, sc := range ctx.GetTlsCertificateSdsSecretConfigs() {
		addADSSecret(out, sc)
	}
	addADSSecret(out, ctx.GetValidationContextSdsSecretConfig())
	addADSSecret(out, ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig())
}

// addADSSecret counts only secrets fetched over ADS: a static reference (no
// sds_config) or one served by another SDS server is not ours to provide.
func addADSSecret(out map[string]bool, sc *tlsv3.SdsSecretConfig) {
	if sc.GetName() != "" && sc.GetSdsConfig().GetAds() != nil {
		out[sc.GetName()] = true
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type allValidator interface{ ValidateAll() error }

// validateDeep runs ValidateAll and then descends into every Any, because
// protoc-gen-validate stops at Any boundaries, so an HttpConnectionManager
// without stat_prefix would otherwise pass here and be NACKed by Envoy.
// Anys whose type is not linked into this binary are skipped: Envoy is the
// judge of extensions we do not know.
func validateDeep(m proto.Message) error {
	if v, ok := m.(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	if err := walkAnysOf(m); err != nil {
		return err
	}
	return nil
}

// anyError is a validation error found inside an Any. Its field path is collected on the
// way back up, so that walking a valid resource (the common case, with thousands of routes)
// formats no path at all.
type anyError struct {
	path []string // innermost first
	typ  protoreflect.FullName
	err  error
}

func (e *anyError) Error() string {
	p := make([]string, len(e.path))
	for i, seg := range e.path {
		p[len(e.path)-1-i] = seg
	}
	return fmt.Sprintf("%s (%s): %v", strings.Join(p, "."), e.typ, e.err)
}

func (e *anyError) Unwrap() error { return e.err }

func walkAnys(m protoreflect.Message) *anyError {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return nil
		}
		if err := validateDeep(inner); err != nil {
			return &anyError{typ: inner.ProtoReflect().Descriptor().FullName(), err: err}
		}
		return nil
	}
	var found *anyError
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && found == nil; i++ {
				if found = walkAnys(l.Get(i).Message()); found != nil {
					found.path = append(found.path, fmt.Sprintf("%s[%d]", fd.Name(), i))
				}
			}
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if found = walkAnys(mv.Message()); found != nil {
					found.path = append(found.path, fmt.Sprintf("%s[%v]", fd.Name(), k.Interface()))
				}
				return found == nil
			})
		default:
			if found = walkAnys(v.Message()); found != nil {
				found.path = append(found.path, string(fd.Name()))
			}
		}
		return found == nil
	})
	return found
}

// Prune returns r without every resource Validate rejects, together with
// all the errors. Dropping one resource can break another (a listener whose
// route configuration was dropped now references a missing one), so it
// validates again until nothing more falls out. Among resources sharing a
// name the first is kept.
func Prune(r Resources) (Resources, []ResourceError) {
	all := Validate(r)
	if len(all) == 0 {
		return r, nil
	}
	seen := map[string]bool{}
	for _, e := range all {
		seen[e.Error()] = true
	}
	out := Resources{
		Listeners: keepValid(r.Listeners, KindListener, nil),
		Routes:    keepValid(r.Routes, KindRouteConfiguration, nil),
		Clusters:  keepValid(r.Clusters, KindCluster, nil),
		Secrets:   keepValid(r.Secrets, KindSecret, nil),
	}
	for {
		errs := Validate(out)
		if len(errs) == 0 {
			return out, all
		}
		bad := map[string]bool{}
		for _, e := range errs {
			bad[e.Kind+"/"+e.Name] = true
			if !seen[e.Error()] {
				seen[e.Error()] = true
				all = append(all, e)
			}
		}
		out = Resources{
			Listeners: keepValid(out.Listeners, KindListener, bad),
			Routes:    keepValid(out.Routes, KindRouteConfiguration, bad),
			Clusters:  keepValid(out.Clusters, KindCluster, bad),
			Secrets:   keepValid(out.Secrets, KindSecret, bad),
		}
	}
}

type namedResource interface {
	proto.Message
	GetName() string
}

// keepValid drops nil and unnamed resources, later duplicates, and those
// named in bad.
func keepValid[T namedResource](in []T, kind string, bad map[string]bool) []T {
	out := make([]T, 0, len(in))
	names := map[string]bool{}
	for _, res := range in {
		if !res.ProtoReflect().IsValid() || res.GetName() == "" || names[res.GetName()] || bad[kind+"/"+res.GetName()] {
			continue
		}
		names[res.GetName()] = true
		out = append(out, res)
	}
	return out
}

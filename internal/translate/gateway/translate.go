// Package gateway translates Gateway API objects (Gateway, HTTPRoute, GRPCRoute,
// TLSRoute, ReferenceGrant) into NodeProxyConfigs and the status the spec asks
// for. It is a pure function of its inputs, so every rule of the spec that
// Portico implements is pinned down by golden tests in testdata/, and the
// controller only gathers inputs, writes the configs and copies the status.
//
// What it produces:
//   - "gateway.<ns>.<name>" per Gateway: one Envoy listener per port, the
//     redirects of the Gateway Service's addresses on each port into it, the
//     HTTPS filter chains (one per Gateway listener, by SNI, with the listener's
//     certificates over SDS) and an empty route table per HTTP port and HTTPS
//     listener, so the listeners are valid before any route attaches.
//   - one config per route and parent Gateway ("httproute.<ns>.<name>.<hash>"):
//     the route's rules as route fragments of the tables of the listeners it
//     attached to, with precedence keys that encode the spec's ordering, its
//     clusters and backend Services; a TLSRoute brings filter-chain fragments
//     (SNI to tcp_proxy) instead. A change to one route is one small write.
//
// Problems never spread: a listener that cannot be served is reported in its
// own conditions and left out; a rule that cannot be matched is dropped
// (PartiallyInvalid); a rule with an invalid filter answers 500; the share of
// invalid backends answers with an error while valid backends keep theirs.
package gateway

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/lastorder"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// Producer is the portico.dev/producer label of every config made here.
const Producer = "gateway"

// ControllerName is the spec.controllerName of Portico's GatewayClasses.
const ControllerName gatewayv1.GatewayController = "portico.dev/gateway-controller"

// Kinds of the routes Portico serves.
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
	KindTLSRoute  = "TLSRoute"
	KindGateway   = "Gateway"
)

// Input is everything a translation reads.
type Input struct {
	// Gateways are the Gateways of Portico's accepted GatewayClasses.
	Gateways   []*gatewayv1.Gateway
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	TLSRoutes  []*gatewayv1.TLSRoute
	Grants     []*gatewayv1.ReferenceGrant
	// Services holds the backend Services that exist.
	Services map[types.NamespacedName]*corev1.Service
	// Secrets holds the certificate Secrets that exist, with why one cannot be
	// used ("" when it holds a valid key pair).
	Secrets map[types.NamespacedName]string
	// Namespaces are the labels of every namespace (allowedRoutes selectors).
	Namespaces map[string]map[string]string
	// Addresses are the status addresses of each Gateway's Service.
	Addresses map[types.NamespacedName][]string
	// Classes are the parameters of each accepted GatewayClass (by name);
	// a class missing here has the defaults. Their node selector selects the
	// nodes that serve the class's Gateways.
	Classes map[string]*gatewayparams.Parameters
}

// Condition is a status condition without its generation and time: the
// controller sets those (internal/conditions).
type Condition struct {
	Type    string                 `json:"type"`
	Status  metav1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason"`
	Message string                 `json:"message"`
}

// Config is one NodeProxyConfig to write.
type Config struct {
	Name   string
	Source npcwriter.Source
	// Gateway is the Gateway the config serves (its own, or a route's parent).
	Gateway types.NamespacedName
	Spec    v1alpha1.NodeProxyConfigSpec
}

// ListenerStatus is what the translation says of one Gateway listener.
type ListenerStatus struct {
	Name           string                     `json:"name"`
	SupportedKinds []gatewayv1.RouteGroupKind `json:"supportedKinds"`
	AttachedRoutes int32                      `json:"attachedRoutes"`
	// Conditions: Accepted, ResolvedRefs, Conflicted. Programmed comes from the nodes.
	Conditions []Condition `json:"conditions"`
	// Servable: the listener is in the Gateway's config (accepted, refs resolved).
	Servable bool `json:"servable"`
}

// GatewayStatus is what the translation says of one Gateway.
type GatewayStatus struct {
	Config string `json:"config"`
	// Conditions: Accepted. Programmed comes from the nodes (and the addresses).
	Conditions []Condition      `json:"conditions"`
	Listeners  []ListenerStatus `json:"listeners"`
	Addresses  []string         `json:"addresses,omitempty"`
}

// ParentStatus is one entry of a route's status.parents.
type ParentStatus struct {
	Ref gatewayv1.ParentReference `json:"parentRef"`
	// Config is the route's config for this parent ("" when nothing attached).
	Config     string      `json:"config,omitempty"`
	Conditions []Condition `json:"conditions"`
}

// RouteKey names a route.
type RouteKey struct {
	Kind, Namespace, Name string
}

func (k RouteKey) String() string { return k.Kind + "/" + k.Namespace + "/" + k.Name }

// Output is the translation of every Gateway and route.
type Output struct {
	// Configs are sorted by name.
	Configs  []Config
	Gateways map[types.NamespacedName]*GatewayStatus
	// Routes has an entry per route that names at least one of the Gateways;
	// its parents are those of its parentRefs that name one, in spec order.
	Routes map[RouteKey][]ParentStatus
}

// GatewayConfigName is the config of a Gateway.
func GatewayConfigName(gw types.NamespacedName) string {
	return npcwriter.NameFor(npcwriter.Source{Kind: KindGateway, Namespace: gw.Namespace, Name: gw.Name})
}

// RouteConfigName is the config of a route for one parent Gateway:
// "<kind>.<ns>.<name>.<hash of the parent>". The parent is a hash because two
// free-form names joined by dots could be read two ways; its last label is
// always 10 hex digits, so the rest reads as NameFor's "<kind>.<ns>.<name>".
func RouteConfigName(route RouteKey, gw types.NamespacedName) string {
	sum := sha256.Sum256([]byte(gw.Namespace + "/" + gw.Name))
	return npcwriter.Name(strings.ToLower(route.Kind), route.Namespace, route.Name+"."+hex.EncodeToString(sum[:])[:10])
}

// Translate turns the Gateways and routes into NodeProxyConfigs and status.
func Translate(in Input) Output { return newTranslation(in).run() }

func (t *translation) run() Output {
	t.gateways()
	t.attachAll()
	t.emitRoutes()
	out := Output{Gateways: map[types.NamespacedName]*GatewayStatus{}, Routes: t.routeStatus}
	configs := make([]Config, 0, len(t.gws)+len(t.routeConfigs))
	for _, g := range t.gws {
		out.Gateways[g.key] = g.status()
		configs = append(configs, g.config())
	}
	out.Configs = t.byName(append(configs, t.routeConfigs...))
	return out
}

// byName sorts configs by name: in the previous pass's order when the names
// are the same (most passes; sorting 10,000 configs moved their specs around
// for a tenth of a pass), by sorting them otherwise.
func (t *translation) byName(configs []Config) []Config {
	if t.memo == nil {
		slices.SortFunc(configs, func(a, b Config) int { return cmp.Compare(a.Name, b.Name) })
		return configs
	}
	name := func(c Config) string { return c.Name }
	if out, ok := lastorder.Place(&t.memo.order, configs, name); ok {
		return out
	}
	slices.SortFunc(configs, func(a, b Config) int { return cmp.Compare(a.Name, b.Name) })
	lastorder.Remember(&t.memo.order, configs, name)
	return configs
}

func cond(t string, ok bool, reason, msg string) Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

// olderFirst orders objects by creation time, then namespace and name: where
// two objects claim the same thing, the older keeps it.
func olderFirst(a, b metav1.Object) int {
	if c := a.GetCreationTimestamp().Time.Compare(b.GetCreationTimestamp().Time); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
}

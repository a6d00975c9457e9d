package agent

import (
	"cmp"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
)

// CLAName is the EDS name of a backend Service's endpoints on one port ("" = every
// port), with the port as the producer wrote it (name or number): the contract
// producers build their EDS clusters with (envoykit.EDSName).
func CLAName(namespace, name, port string) string { return envoykit.EDSName(namespace, name, port) }

// BuildEndpoints turns the EndpointSlices of one backend Service into its
// ClusterLoadAssignments. svc may be nil (not found): a numeric port then matches
// EndpointSlice port numbers (target ports) only, since the Service port it names is unknown.
//
// A port given by number names the Service port with that number, as an Ingress or
// HTTPRoute backend does; a port given by name names the Service port (the
// EndpointSlice port carries the same name). Only ready endpoints are served;
// terminating ones are dropped so Envoy stops sending new requests at once.
func BuildEndpoints(b v1alpha1.BackendService, svc *corev1.Service, eps []*discoveryv1.EndpointSlice) map[string]*endpointv3.ClusterLoadAssignment {
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	if len(b.Ports) == 0 {
		out[CLAName(b.Namespace, b.Name, "")] = cla(CLAName(b.Namespace, b.Name, ""), eps, func(discoveryv1.EndpointPort) bool { return true })
		return out
	}
	for _, p := range b.Ports {
		name := CLAName(b.Namespace, b.Name, p)
		match := portMatcher(p, svc)
		if p == "" { // every port, next to specific ones (render.mergeBackend)
			match = func(discoveryv1.EndpointPort) bool { return true }
		}
		out[name] = cla(name, eps, match)
	}
	return out
}

func portMatcher(p string, svc *corev1.Service) func(discoveryv1.EndpointPort) bool {
	num, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return func(ep discoveryv1.EndpointPort) bool { return ep.Name != nil && *ep.Name == p }
	}
	if svc != nil {
		for _, sp := range svc.Spec.Ports {
			if int64(sp.Port) == num {
				portName := sp.Name
				return func(ep discoveryv1.EndpointPort) bool { return ep.Name != nil && *ep.Name == portName }
			}
		}
		return func(discoveryv1.EndpointPort) bool { return false }
	}
	return func(ep discoveryv1.EndpointPort) bool { return ep.Port != nil && int64(*ep.Port) == num }
}

func cla(name string, eps []*discoveryv1.EndpointSlice, match func(discoveryv1.EndpointPort) bool) *endpointv3.ClusterLoadAssignment {
	type hostPort struct {
		addr  string
		port  uint32
		proto corev3.SocketAddress_Protocol
	}
	seen := map[hostPort]bool{}
	var hps []hostPort
	for _, s := range eps {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue // Envoy EDS wants IPs; FQDN slices are for other consumers.
		}
		for _, ep := range s.Ports {
			if ep.Port == nil || !match(ep) {
				continue
			}
			proto := corev3.SocketAddress_TCP
			if ep.Protocol != nil && *ep.Protocol == corev1.ProtocolUDP {
				proto = corev3.SocketAddress_UDP
			}
			for _, e := range s.Endpoints {
				// A nil Ready means ready (the API's own convention for unknown readiness).
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					hp := hostPort{a, uint32(*ep.Port), proto}
					if !seen[hp] {
						seen[hp] = true
						hps = append(hps, hp)
					}
				}
			}
		}
	}
	// Sorted, so that the same endpoints always give the same message and SetEndpoints
	// sends nothing when only the slices' order changed.
	slices.SortFunc(hps, func(a, b hostPort) int {
		return cmp.Or(cmp.Compare(a.addr, b.addr), cmp.Compare(a.port, b.port), cmp.Compare(a.proto, b.proto))
	})
	out := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(hps) == 0 {
		return out
	}
	loc := &endpointv3.LocalityLbEndpoints{}
	for _, hp := range hps {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Protocol:      hp.proto,
					Address:       hp.addr,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: hp.port},
				}}},
			}},
		})
	}
	out.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return out
}

// countEndpoints is the number of lb endpoints in cla, for the NodeProxy counters.
func countEndpoints(cla map[string]*endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, a := range cla {
		for _, l := range a.GetEndpoints() {
			n += len(l.GetLbEndpoints())
		}
	}
	return n
}

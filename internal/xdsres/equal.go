package xdsres

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// Equal is proto.Equal for resources that share parts, as successive renders do: a
// message is equal to itself, and route tables compare the routes they share by
// identity, so telling a table with one changed route from its predecessor costs its
// virtual hosts and the changed route rather than a walk of every route. It differs
// from proto.Equal only where proto.Equal is not reflexive (a NaN in a float field):
// the same message is the same content.
func Equal(a, b proto.Message) bool {
	if a == b {
		return true
	}
	ra, okA := a.(*routev3.RouteConfiguration)
	rb, okB := b.(*routev3.RouteConfiguration)
	if !okA || !okB || ra == nil || rb == nil {
		return proto.Equal(a, b)
	}
	va, vb := ra.GetVirtualHosts(), rb.GetVirtualHosts()
	if hasNil(va) || hasNil(vb) {
		return proto.Equal(a, b) // nil list elements: leave their meaning to proto.Equal
	}
	if len(va) != len(vb) || !proto.Equal(withoutRoutes(ra), withoutRoutes(rb)) {
		return false
	}
	for i := range va {
		if va[i] == vb[i] {
			continue
		}
		routesA, routesB := va[i].GetRoutes(), vb[i].GetRoutes()
		if len(routesA) != len(routesB) {
			return false
		}
		for j := range routesA {
			if routesA[j] != routesB[j] && !proto.Equal(routesA[j], routesB[j]) {
				return false
			}
		}
	}
	return true
}

func hasNil(vhs []*routev3.VirtualHost) bool {
	for _, vh := range vhs {
		if vh == nil {
			return true
		}
		for _, r := range vh.GetRoutes() {
			if r == nil {
				return true
			}
		}
	}
	return false
}

// Package xdsres is Portico's one implementation of "would Envoy take this": it
// decodes the Envoy resources users and producers write as proto3 JSON (strictly:
// an unknown field is an error, not a silently ignored option), and validates
// resources as Envoy would (protoc-gen-validate rules, also inside typed_config
// Anys, and the references between resources that the ADS snapshot cache needs
// resolved). The node agent's render step, its xDS server and the EnvoyConfig
// admission webhook all use it, so a resource admission accepts is one the agent
// serves, and an error reads the same wherever it is reported.
package xdsres

import (
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Strict decodes proto3 JSON rejecting unknown fields: a typo in an Envoy field
// name must not be silently dropped and leave the user wondering why the option
// has no effect.
var Strict = protojson.UnmarshalOptions{}

// Accepted are the resource types a config may carry, by type URL. Endpoints
// (ClusterLoadAssignment) are not: they reach Envoy only through EDS fed from
// EndpointSlices, and a static one would silently fight with them; a STATIC
// cluster carries its own load_assignment inline instead.
var Accepted = map[string]string{
	resourcev3.ListenerType: KindListener,
	resourcev3.RouteType:    KindRouteConfiguration,
	resourcev3.ClusterType:  KindCluster,
	resourcev3.SecretType:   KindSecret,
}

// Decoded is one resource, decoded.
type Decoded struct {
	Kind    string
	Name    string
	Message proto.Message
}

// Decode decodes one resource. The error names the resource's type and says what
// is wrong; callers prefix it with the field path they know.
func Decode(r v1alpha1.EnvoyResource) (Decoded, error) {
	kind, ok := Accepted[r.TypeURL]
	if !ok {
		return Decoded{}, fmt.Errorf("unsupported @type %q (want a Listener, RouteConfiguration, Cluster or Secret)", r.TypeURL)
	}
	// Decoding through Any lets protojson consume "@type" itself and resolve the
	// typed_config Anys nested inside with the same registry.
	a := &anypb.Any{}
	if err := Strict.Unmarshal(r.Raw, a); err != nil {
		return Decoded{}, fmt.Errorf("(%s): %s", r.TypeURL, ErrText(err))
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return Decoded{}, fmt.Errorf("(%s): %s", r.TypeURL, ErrText(err))
	}
	d := Decoded{Kind: kind, Message: msg}
	switch m := msg.(type) {
	case *listenerv3.Listener:
		d.Name = m.GetName()
	case *routev3.RouteConfiguration:
		d.Name = m.GetName()
	case *clusterv3.Cluster:
		d.Name = m.GetName()
	case *tlsv3.Secret:
		d.Name = m.GetName()
	}
	if d.Name == "" {
		return Decoded{}, fmt.Errorf("(%s): name is empty", r.TypeURL)
	}
	return d, nil
}

// ErrText is err's message with the protobuf runtime's deliberately random
// spacing (a non-breaking space, chosen per binary) made plain, so that an error
// reads the same from every build.
func ErrText(err error) string {
	return strings.ReplaceAll(err.Error(), "\u00a0", " ")
}

package xdsres

import (
	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestWalkFastMatchesReflection checks the plan-driven walk against the protoreflect
// walk it replaces: same verdict and same error path for an invalid Any in each shape
// of field it handles (oneof member, list element, map value, an Any inside an Any's
// message), and no error for valid resources.
func TestWalkFastMatchesReflection(t *testing.T) {
	// A TcpProxy without stat_prefix fails its PGV rules once opened.
	badTCP := fixture.MustAny(t, &tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}})
	goodTCP := fixture.MustAny(t, &tcpv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}})

	inOneof := fixture.HTTPListener(t, "l", "routes", 1)
	inOneof.FilterChains = append(inOneof.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{
		{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: goodTCP}},
		{Name: "tcp2", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: badTCP}},
	}})

	inMap := fixture.RouteConfig("routes", "backend", 3, "m")
	inMap.VirtualHosts[0].Routes[2].TypedPerFilterConfig = map[string]*anypb.Any{"x": badTCP}

	// An Any whose message holds another Any: the inner one is reached through
	// validateDeep of the outer one's message.
	nested := fixture.RouteConfig("routes", "backend", 1, "n")
	nested.VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{
		"outer": fixture.MustAny(t, &listenerv3.Filter{Name: "f", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: badTCP}}),
	}

	// A type the plan marks as unable to hold an Any, and an unknown Any (skipped).
	unknown := fixture.RouteConfig("routes", "backend", 1, "u")
	unknown.VirtualHosts[0].TypedPerFilterConfig = map[string]*anypb.Any{"y": {TypeUrl: "type.googleapis.com/not.Linked", Value: []byte{1}}}

	cases := []struct {
		name    string
		msg     proto.Message
		wantErr bool
	}{
		{"valid listener", fixture.HTTPListener(t, "l", "routes", 1), false},
		{"valid routes", fixture.RouteConfig("routes", "backend", 50, "v"), false},
		{"valid cluster", fixture.EDSCluster("c"), false},
		{"oneof member", inOneof, true},
		{"map value", inMap, true},
		{"nested any", nested, true},
		{"unknown any", unknown, false},
		{"struct value", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}}, false},
		{"typed nil", (*routev3.RouteConfiguration)(nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fast := walkAnysOf(tc.msg)
			slow := walkAnys(tc.msg.ProtoReflect())
			if (fast != nil) != tc.wantErr || (slow != nil) != tc.wantErr {
				t.Fatalf("fast %v, reflection %v, want error: %v", fast, slow, tc.wantErr)
			}
			if tc.wantErr && fast.Error() != slow.Error() {
				t.Fatalf("error paths differ:\n fast:       %v\n reflection: %v", fast, slow)
			}
			if tc.wantErr {
				t.Log(fast)
			}
		})
	}
}

// BenchmarkValidateRoutes is the check of a 1,000-route table, which the agent runs on
// every config change.
func BenchmarkValidateRoutes(b *testing.B) {
	r := Resources{Routes: []*routev3.RouteConfiguration{fixture.RouteConfig("routes", "backend", 1000, "b")},
		Listeners: []*listenerv3.Listener{fixture.HTTPListener(b, "http", "routes", 1)}}
	b.ReportAllocs()
	for b.Loop() {
		if errs := Validate(r); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

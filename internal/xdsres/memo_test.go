package xdsres

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// TestMemoEqualsValidate: a Memo answers exactly what Validate does for route tables
// assembled at random from a pool of routes (valid and not) it has seen before or not,
// under virtual hosts and tables that are valid or not; and it did answer from memory.
func TestMemoEqualsValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var routes []*routev3.Route
	for i := range 60 {
		r := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: fmt.Sprintf("/r%d", i)}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}}
		switch i % 10 {
		case 3:
			r.Action = nil // required
		case 7:
			r.GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ""} // min_len 1
		}
		routes = append(routes, r)
	}
	m := NewMemo()
	for round := range 300 {
		rc := &routev3.RouteConfiguration{Name: "t"}
		if rng.IntN(10) == 0 {
			rc.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ""}}} // invalid key
		}
		for h := range 1 + rng.IntN(3) {
			vh := &routev3.VirtualHost{Name: fmt.Sprintf("h%d", h), Domains: []string{fmt.Sprintf("h%d", h)}}
			if rng.IntN(12) == 0 {
				vh.Domains = nil // min_items 1
			}
			for range rng.IntN(8) {
				vh.Routes = append(vh.Routes, routes[rng.IntN(len(routes))])
			}
			if rng.IntN(20) == 0 {
				vh.Routes = append(vh.Routes, nil)
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		res := Resources{Routes: []*routev3.RouteConfiguration{rc}}
		want, got := Validate(res), m.Validate(res)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Memo.Validate = %v, Validate = %v", round, got, want)
		}
		if again := m.Validate(res); !reflect.DeepEqual(again, want) {
			t.Fatalf("round %d, same table again: Memo.Validate = %v, Validate = %v", round, again, want)
		}
		if rng.IntN(25) == 0 {
			m.Next()
		}
	}
	if m.Hits() == 0 {
		t.Fatal("the memo never answered")
	}
}

// TestEqualIsProtoEqual: Equal answers proto.Equal for route tables that share
// routes, virtual hosts or nothing, and differ (or not) in any part.
func TestEqualIsProtoEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var routes []*routev3.Route
	for i := range 12 {
		routes = append(routes, &routev3.Route{Name: fmt.Sprintf("r%d", i%6), // equal twins under other pointers
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: fmt.Sprintf("/%d", i%6)}}})
	}
	table := func() *routev3.RouteConfiguration {
		rc := &routev3.RouteConfiguration{Name: "t"}
		if rng.IntN(6) == 0 {
			rc.Name = "u"
		}
		for h := range 1 + rng.IntN(2) {
			vh := &routev3.VirtualHost{Name: fmt.Sprintf("h%d", h), Domains: []string{"d"}}
			if rng.IntN(8) == 0 {
				vh.Domains = []string{"e"}
			}
			for range rng.IntN(4) {
				vh.Routes = append(vh.Routes, routes[rng.IntN(len(routes))])
			}
			if rng.IntN(30) == 0 {
				vh.Routes = append(vh.Routes, nil)
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		return rc
	}
	same := 0
	for round := range 3000 {
		a, b := table(), table()
		if rng.IntN(4) == 0 && len(a.VirtualHosts) == len(b.VirtualHosts) {
			b.VirtualHosts[0] = a.VirtualHosts[0] // a shared virtual host
		}
		want := proto.Equal(a, b)
		if got := Equal(a, b); got != want {
			t.Fatalf("round %d: Equal = %v, proto.Equal = %v\n%v\n%v", round, got, want, a, b)
		}
		if want {
			same++
		}
		if !Equal(a, a) {
			t.Fatal("a table is not equal to itself")
		}
	}
	if same == 0 {
		t.Fatal("no equal pair was generated")
	}
}

package gateway_test

import (
	"fmt"
	"testing"

	gateway "github.com/portico-dev/portico/internal/translate/gateway"
	"github.com/portico-dev/portico/internal/translate/gateway/scale"
)

// BenchmarkTranslate10kRoutes translates issue 12's scale from scratch:
//
//	go test ./internal/translate/gateway/ -run '^$' -bench Translate10k -benchmem
func BenchmarkTranslate10kRoutes(b *testing.B) {
	in := scale.Input()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out := gateway.Translate(in)
		if len(out.Configs) != scale.Routes+scale.Gateways {
			b.Fatalf("%d configs", len(out.Configs))
		}
	}
}

// BenchmarkOneRouteChanged is a pass after one of 10,000 routes changed,
// with the memo: what the controller's translation costs per change.
//
//	go test ./internal/translate/gateway/ -run '^$' -bench OneRouteChanged -benchmem
func BenchmarkOneRouteChanged(b *testing.B) {
	in := scale.Input()
	for i, r := range in.HTTPRoutes {
		r.ResourceVersion = fmt.Sprint(i + 1)
	}
	m := gateway.NewMemo()
	m.Translate(in)
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		i := (n * 7919) % len(in.HTTPRoutes)
		r := in.HTTPRoutes[i].DeepCopy()
		r.ResourceVersion = fmt.Sprint(1_000_000 + n)
		v := fmt.Sprintf("/api-%d", n)
		r.Spec.Rules[1].Matches[0].Path.Value = &v
		in.HTTPRoutes[i] = r
		m.Translate(in)
	}
}

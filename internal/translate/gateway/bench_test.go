package gateway_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

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
	cpu0 := cpuTime()
	for range b.N {
		out := gateway.Translate(in)
		if len(out.Configs) != scale.Routes+scale.Gateways {
			b.Fatalf("%d configs", len(out.Configs))
		}
	}
	// CPU besides wall: on a shared machine wall time includes waiting for a core.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time (user and system) this process used so far,
// garbage collection included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	for i, g := range in.Gateways {
		g.ResourceVersion = fmt.Sprint(len(in.HTTPRoutes) + i + 1)
	}
	m := gateway.NewMemo()
	m.Translate(in)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op") }()
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

// BenchmarkMemoRetained is the memory the controller's memo keeps between
// passes for issue 12's 10,000 routes (the controller holds it for as long as
// it runs), per route; the input, which the informer cache holds anyway, is
// not counted.
//
//	go test ./internal/translate/gateway/ -run '^$' -bench MemoRetained -benchtime 3x
func BenchmarkMemoRetained(b *testing.B) {
	in := scale.Input()
	for i, r := range in.HTTPRoutes {
		r.ResourceVersion = fmt.Sprint(i + 1)
	}
	var retained uint64
	for range b.N {
		base := heapAlloc()
		m := gateway.NewMemo()
		first := m.Translate(in)
		first = gateway.Output{}
		retained += heapAlloc() - base
		// The path measured: a second pass is served from the memo, the very
		// same fragments as the first.
		a, c := m.Translate(in), m.Translate(in)
		if len(a.Configs) != len(c.Configs) || len(a.Configs) == 0 || &a.Configs[len(a.Configs)-1].Spec.RouteFragments[0] != &c.Configs[len(c.Configs)-1].Spec.RouteFragments[0] {
			b.Fatal("the memo did not serve the second pass")
		}
		_ = first
	}
	b.ReportMetric(float64(retained)/float64(b.N)/float64(len(in.HTTPRoutes)), "memo-B/route")
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

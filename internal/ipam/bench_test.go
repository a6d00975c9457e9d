package ipam

import (
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// BenchmarkAllocate10k allocates 10,000 addresses per iteration and reports the cost per
// address: ns/addr, and B/addr retained by the used set once all 10,000 are held.
func BenchmarkAllocate10k(b *testing.B) {
	for _, bc := range []struct{ name, cidr string }{{"v4-slash16", "10.20.0.0/16"}, {"v6-slash64", "2001:db8::/64"}} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 10_000
			rs, errs := ParseBlocks(field.NewPath("b"), []v1alpha1.IPBlock{{CIDR: bc.cidr}}, false)
			if len(errs) > 0 {
				b.Fatal(errs)
			}
			v6 := rs[0].Is6()
			var retained float64
			b.ReportAllocs()
			for b.Loop() {
				var before, after runtime.MemStats
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				s, used := NewSpace(rs), NewUsed(0)
				for range n {
					a, ok := s.Next(used, v6, nil)
					if !ok {
						b.Fatal("out of addresses")
					}
					used.Add(a)
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				retained = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(used)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/addr")
			b.ReportMetric(retained, "B/addr")
		})
	}
}

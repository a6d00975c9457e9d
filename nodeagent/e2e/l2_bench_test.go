package e2e

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkL2Failover measures, over b.N kills of the announcing node's agent, the time
// from the signal to the first ARP reply from another node, as a client on the segment
// sees it. SIGKILL needs the heartbeat to expire (goal p50 ≤ 1 s, p99 ≤ 2 s); SIGTERM
// releases it (goal ≤ 200 ms). Run with -benchtime 20x.
func BenchmarkL2Failover(b *testing.B) {
	for _, c := range []struct {
		name string
		sig  unix.Signal
	}{{"kill-9", unix.SIGKILL}, {"sigterm", unix.SIGTERM}} {
		b.Run(c.name, func(b *testing.B) {
			r := newL2Rig(b)
			setupS1S2(b, r)
			var lat []time.Duration
			for b.Loop() {
				owner := r.stableOwner(b)
				start := time.Now()
				r.stopAgent(owner, c.sig)
				for {
					macs := r.arping(lbIPv4, 50*time.Millisecond)
					if len(macs) > 0 && r.nodeOfMAC(macs[0]) != owner {
						break
					}
					if time.Since(start) > 15*time.Second {
						b.Fatalf("no other node answered within 15 s after stopping %s", owner)
					}
				}
				lat = append(lat, time.Since(start))
				r.startAgent(owner)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Milliseconds()), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
		})
	}
}

// stableOwner waits until the Service's condition and the node answering ARP agree.
func (r *l2rig) stableOwner(tb testing.TB) string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		owner := r.announcer("default", "web4")
		macs := r.arping(lbIPv4, 300*time.Millisecond)
		if owner != "" && len(macs) > 0 && r.nodeOfMAC(macs[0]) == owner && r.agents[owner] != nil {
			// Every agent must be back, or the next kill measures a smaller cluster.
			if len(r.agents) == len(r.nodes) {
				return owner
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatal("the announcement did not settle")
	return ""
}

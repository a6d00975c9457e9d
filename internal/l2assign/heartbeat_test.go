package l2assign

import (
	"testing"
	"time"
)

func TestTrackerExpiresOneDurationAfterObservation(t *testing.T) {
	tr := NewTracker()
	t0 := time.Unix(1000, 0)
	// The agent's renewTime is deliberately far in the past (clock skew): only the
	// controller's observation time counts.
	lease := &Lease{Holder: "node-a", RenewTime: time.Unix(1, 0), DurationSeconds: 1}
	if !tr.Observe("node-a", lease, t0) {
		t.Fatal("first live heartbeat must report a change")
	}
	if ok, _ := tr.Live("node-a", t0.Add(999*time.Millisecond)); !ok {
		t.Error("expired before its duration")
	}
	if next, ok := tr.NextExpiry(t0); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Errorf("next expiry %v %v", next, ok)
	}
	if ok, why := tr.Live("node-a", t0.Add(time.Second)); ok || why != DownExpired {
		t.Errorf("live=%v why=%q at expiry", ok, why)
	}
	if tr.Sweep(t0.Add(999 * time.Millisecond)) {
		t.Error("sweep reported an expiry before it happened")
	}
	if !tr.Sweep(t0.Add(time.Second)) || tr.Sweep(t0.Add(2*time.Second)) {
		t.Error("sweep must report the expiry exactly once")
	}
	// The agent comes back after expiry: that is a change.
	if !tr.Observe("node-a", &Lease{Holder: "node-a", RenewTime: time.Unix(1, 500), DurationSeconds: 1}, t0.Add(2*time.Second)) {
		t.Error("a node returning after expiry must report a change")
	}
	tr = NewTracker()
	tr.Observe("node-a", lease, t0)

	// A renewal of a live node changes nothing that needs recomputing...
	renewed := &Lease{Holder: "node-a", RenewTime: time.Unix(2, 0), DurationSeconds: 1}
	if tr.Observe("node-a", renewed, t0.Add(500*time.Millisecond)) {
		t.Error("a plain renewal reported a liveness change")
	}
	// ...but pushes the expiry; re-seeing the same renewal (a resync) does not.
	if tr.Observe("node-a", renewed, t0.Add(900*time.Millisecond)) {
		t.Error("resync reported a change")
	}
	if ok, _ := tr.Live("node-a", t0.Add(1400*time.Millisecond)); !ok {
		t.Error("renewal did not extend the heartbeat")
	}
	if ok, _ := tr.Live("node-a", t0.Add(1500*time.Millisecond)); ok {
		t.Error("a resync must not extend the heartbeat")
	}
}

func TestTrackerReleaseAndDeleteAreImmediate(t *testing.T) {
	tr := NewTracker()
	t0 := time.Unix(1000, 0)
	tr.Observe("node-a", &Lease{Holder: "node-a", RenewTime: t0, DurationSeconds: 15}, t0)
	// What nodeagent/agent's release writes: no holder, no renewTime.
	if !tr.Observe("node-a", &Lease{DurationSeconds: 15}, t0.Add(time.Millisecond)) {
		t.Error("release must report a change")
	}
	if ok, why := tr.Live("node-a", t0.Add(time.Millisecond)); ok || why != DownReleased {
		t.Errorf("live=%v why=%q after release", ok, why)
	}
	if _, ok := tr.NextExpiry(t0); ok {
		t.Error("a released lease has no expiry to wait for")
	}

	tr.Observe("node-b", &Lease{Holder: "node-b", RenewTime: t0, DurationSeconds: 15}, t0)
	if !tr.Observe("node-b", nil, t0.Add(time.Millisecond)) {
		t.Error("deletion must report a change")
	}
	if ok, why := tr.Live("node-b", t0); ok || why != DownNoLease {
		t.Errorf("live=%v why=%q after deletion", ok, why)
	}

	tr.Observe("node-c", &Lease{Holder: "node-x", RenewTime: t0, DurationSeconds: 15}, t0)
	if ok, _ := tr.Live("node-c", t0); ok {
		t.Error("a lease held by another identity must not keep node-c alive")
	}
}

func TestNodeOfLease(t *testing.T) {
	if n, ok := NodeOfLease("portico-agent-node-a"); !ok || n != "node-a" {
		t.Errorf("got %q %v", n, ok)
	}
	for _, name := range []string{"portico-agent-", "kube-node-lease", "portico-lbipam"} {
		if _, ok := NodeOfLease(name); ok {
			t.Errorf("%q taken for a heartbeat", name)
		}
	}
}

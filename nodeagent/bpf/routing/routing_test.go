//go:build linux

package routing

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/portico-dev/portico/internal/privileged"
)

// inFreshNS runs fn on a thread in a new, empty network namespace. The thread is
// discarded afterwards (the goroutine exits locked), which also destroys the namespace.
func inFreshNS(t *testing.T, fn func(t *testing.T)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Errorf("lo up: %v", err)
			return
		}
		fn(t)
	}()
	<-done
}

func count(t *testing.T) (rules, routes int) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := ourRules(fam)
		if err != nil {
			t.Error(err)
		}
		rules += len(rs)
		rts, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Error(err)
		}
		routes += len(rts)
	}
	return rules, routes
}

func TestEnsureRoutingIdempotent(t *testing.T) {
	privileged.Require(t)
	inFreshNS(t, func(t *testing.T) {
		for range 2 {
			if err := EnsureRouting(); err != nil {
				t.Errorf("EnsureRouting: %v", err)
				return
			}
		}
		if rules, routes := count(t); rules != 2 || routes != 2 {
			t.Errorf("after EnsureRouting twice: %d rules, %d routes; want 2 and 2 (one per family)", rules, routes)
		}
		if err := RemoveRouting(); err != nil {
			t.Errorf("RemoveRouting: %v", err)
		}
		if err := RemoveRouting(); err != nil {
			t.Errorf("second RemoveRouting: %v", err)
		}
		if rules, routes := count(t); rules != 0 || routes != 0 {
			t.Errorf("after RemoveRouting: %d rules, %d routes", rules, routes)
		}
	})
}

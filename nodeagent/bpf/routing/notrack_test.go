//go:build linux

package routing

import (
	"testing"

	"github.com/google/nftables"

	"github.com/portico-dev/portico/internal/privileged"
)

func noTrackRules(t *testing.T) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Name != NoTrackTable {
			continue
		}
		rules, err := c.GetRules(tb, &nftables.Chain{Name: "prerouting", Table: tb})
		if err != nil {
			t.Fatal(err)
		}
		n += len(rules)
	}
	return n
}

// TestEnsureNoTrackIdempotent: the notrack rule is installed once however often the
// agent ensures it (every device rescan), and removed without a trace.
func TestEnsureNoTrackIdempotent(t *testing.T) {
	privileged.Require(t)
	inFreshNS(t, func(t *testing.T) {
		for range 3 {
			if err := EnsureNoTrack(); err != nil {
				t.Errorf("EnsureNoTrack: %v", err)
				return
			}
		}
		if n := noTrackRules(t); n != 1 {
			t.Errorf("after EnsureNoTrack three times: %d rules, want 1", n)
		}
		for range 2 {
			if err := RemoveNoTrack(); err != nil {
				t.Errorf("RemoveNoTrack: %v", err)
			}
		}
		if n := noTrackRules(t); n != 0 {
			t.Errorf("after RemoveNoTrack: %d rules", n)
		}
	})
}

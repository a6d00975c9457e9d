package npcstatus

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/internal/verdict"
)

// TestEvent: every producer reports a verdict the same way; a rejection is the one
// Warning, and no node selected is Pending, not Programmed.
func TestEvent(t *testing.T) {
	node := func(n string) verdict.NodeResult { return verdict.NodeResult{Node: n} }
	cases := []struct {
		name     string
		v        verdict.Verdict
		typ, why string
	}{
		{"programmed", verdict.Verdict{Selected: 1, Programmed: []string{"a"}}, corev1.EventTypeNormal, EventProgrammed},
		{"rejected", verdict.Verdict{Selected: 2, Programmed: []string{"a"}, Rejected: []verdict.NodeResult{node("b")}}, corev1.EventTypeWarning, EventRejected},
		{"pending", verdict.Verdict{Selected: 1, Pending: []verdict.NodeResult{node("a")}}, corev1.EventTypeNormal, EventPending},
		{"no node", verdict.Verdict{}, corev1.EventTypeNormal, EventPending},
	}
	for _, c := range cases {
		typ, why := Change{Verdict: c.v}.Event()
		if typ != c.typ || why != c.why {
			t.Errorf("%s: Event() = %s/%s, want %s/%s", c.name, typ, why, c.typ, c.why)
		}
	}
}

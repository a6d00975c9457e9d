package npcstatus

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
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

// TestTransitionAfterRestart: a controller that starts again judges every config
// for the first time; only those whose status said something else (or spoke of
// an older generation) get an Event.
func TestTransitionAfterRestart(t *testing.T) {
	programmed := verdict.Verdict{Selected: 1, Programmed: []string{"a"}}
	pending := verdict.Verdict{Selected: 1, Pending: []verdict.NodeResult{{Node: "a", Reason: v1alpha1.ReasonPending}}}
	cases := []struct {
		name   string
		status *v1alpha1.NodeProxyConfig
		v      verdict.Verdict
		want   bool
	}{
		{"status already programmed", npc("c", 3, 3, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 1), programmed, false},
		{"status already pending", npc("c", 3, 3, metav1.ConditionFalse, v1alpha1.ReasonPending, 0), pending, false},
		{"status of an older generation", npc("c", 3, 2, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 1), programmed, true},
		{"status says otherwise", npc("c", 3, 3, metav1.ConditionFalse, v1alpha1.ReasonPending, 0), programmed, true},
		{"no status yet", &v1alpha1.NodeProxyConfig{}, programmed, true},
	}
	for _, c := range cases {
		if got := (Change{Config: c.status, Verdict: c.v}).Transition(); got != c.want {
			t.Errorf("%s: Transition() = %v, want %v", c.name, got, c.want)
		}
	}
}

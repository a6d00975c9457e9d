package verdict

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func cond(t v1alpha1.ConditionType, s metav1.ConditionStatus, r v1alpha1.ConditionReason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg}
}

func healthy(name string, applied, programmed string, labels map[string]string) Node {
	return Node{Name: name, Labels: labels, Status: v1alpha1.NodeProxyStatus{
		AppliedResourceVersion: applied, ProgrammedResourceVersion: programmed,
		Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionProxyConnected, metav1.ConditionTrue, v1alpha1.ReasonConnected, "1 proxies connected"),
			cond(v1alpha1.ConditionDatapathReady, metav1.ConditionTrue, v1alpha1.ReasonAttached, ""),
		}}}
}

func TestCompute(t *testing.T) {
	edge := map[string]string{"pool": "edge"}
	nodes := []Node{
		healthy("n1", "100", "100", edge),
		healthy("n2", "100", "100", edge),
		healthy("n3", "100", "90", nil), // served 100, acknowledged only up to 90
		healthy("n4", "80", "80", edge), // behind
	}
	nodes[1].Status.Rejected = []v1alpha1.RejectedConfig{{Name: "bad", Generation: 2, Reason: v1alpha1.ReasonConflict, Message: "redirect collides"}}
	noProxy := healthy("n5", "100", "", edge)
	noProxy.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNotConnected, "no proxy")
	nacked := healthy("n6", "100", "90", edge)
	nacked.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNACKed, "envoy-n6: Proto constraint validation failed")
	dpDown := healthy("n7", "90", "90", edge)
	dpDown.Status.Conditions[1] = cond(v1alpha1.ConditionDatapathReady, metav1.ConditionFalse, v1alpha1.ReasonFailed, "attaching to eth1: permission denied")
	nodes = append(nodes, noProxy, nacked, dpDown)

	got := Compute([]Config{
		{Name: "old", Written: "50"},
		{Name: "bad", Generation: 2, Written: "95"},
		{Name: "fresh", Written: "95", Redirects: true},
		{Name: "edge-only", Written: "50", NodeSelector: &metav1.LabelSelector{MatchLabels: edge}},
		{Name: "nowhere", Written: "50", NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "none"}}},
	}, nodes)

	check := func(name string, programmed []string, rejected, pending map[string]v1alpha1.ConditionReason) {
		t.Helper()
		v := got[name]
		if fmt.Sprint(v.Programmed) != fmt.Sprint(programmed) && len(v.Programmed)+len(programmed) > 0 {
			t.Errorf("%s: programmed %v, want %v", name, v.Programmed, programmed)
		}
		for what, want := range map[string]map[string]v1alpha1.ConditionReason{"rejected": rejected, "pending": pending} {
			rs := v.Rejected
			if what == "pending" {
				rs = v.Pending
			}
			have := map[string]v1alpha1.ConditionReason{}
			for _, r := range rs {
				have[r.Node] = r.Reason
			}
			if fmt.Sprint(have) != fmt.Sprint(want) {
				t.Errorf("%s: %s %v, want %v", name, what, have, want)
			}
		}
	}
	// Behind n4 (80) and n7 (90) at 50? No: both are past 50.
	check("old", []string{"n1", "n2", "n3", "n4", "n6", "n7"}, map[string]v1alpha1.ConditionReason{}, map[string]v1alpha1.ConditionReason{"n5": v1alpha1.ReasonNotConnected})
	check("bad", []string{"n1"}, map[string]v1alpha1.ConditionReason{"n2": v1alpha1.ReasonConflict, "n6": v1alpha1.ReasonNACKed},
		map[string]v1alpha1.ConditionReason{"n3": v1alpha1.ReasonPending, "n4": v1alpha1.ReasonPending, "n5": v1alpha1.ReasonNotConnected, "n7": v1alpha1.ReasonPending})
	check("edge-only", []string{"n1", "n2", "n4", "n6", "n7"}, map[string]v1alpha1.ConditionReason{}, map[string]v1alpha1.ConditionReason{"n5": v1alpha1.ReasonNotConnected})
	check("nowhere", nil, map[string]v1alpha1.ConditionReason{}, map[string]v1alpha1.ConditionReason{})

	// A node whose datapath is down says so for configs with redirects.
	for _, p := range got["fresh"].Pending {
		if p.Node == "n7" && !strings.Contains(p.Message, "datapath not ready: attaching to eth1") {
			t.Errorf("fresh on n7: %q", p.Message)
		}
	}
	status, reason, msg := got["bad"].Condition()
	if status != metav1.ConditionFalse || reason != v1alpha1.ReasonRejected || !strings.Contains(msg, "n2 (Conflict: redirect collides)") ||
		!strings.Contains(msg, "programmed on 1/7 nodes") {
		t.Errorf("bad: %s %s %q", status, reason, msg)
	}
	if _, reason, _ := got["nowhere"].Condition(); reason != v1alpha1.ReasonNoNodesSelected {
		t.Errorf("nowhere: %s", reason)
	}
	all := Compute([]Config{{Name: "x", Written: "10"}}, []Node{healthy("a", "10", "10", nil), healthy("b", "11", "12", nil)})
	if s, r, m := all["x"].Condition(); s != metav1.ConditionTrue || r != v1alpha1.ReasonProgrammed || m != "Programmed on 2/2 nodes" {
		t.Errorf("x: %s %s %q", s, r, m)
	}
}

// TestApplyOnlyOnChange: a verdict that did not change writes nothing, and one
// whose message changed keeps the transition time.
func TestApplyOnlyOnChange(t *testing.T) {
	var st v1alpha1.NodeProxyConfigStatus
	v := Verdict{Selected: 2, Programmed: []string{"a"}, Pending: []NodeResult{{"b", v1alpha1.ReasonPending, "x"}}}
	if !v.Apply(&st, 3) || st.SelectedNodes != 2 || st.ProgrammedNodes != 1 || st.ObservedGeneration != 3 {
		t.Fatalf("first apply: %+v", st)
	}
	if v.Apply(&st, 3) {
		t.Fatal("the same verdict changed the status")
	}
	lt := st.Conditions[0].LastTransitionTime
	v.Pending[0].Message = "y"
	if !v.Apply(&st, 3) || st.Conditions[0].LastTransitionTime != lt {
		t.Fatalf("message change: changed and kept the time? %+v", st.Conditions[0])
	}
}

// TestInStatusIsApplyUnchanged: InStatus answers exactly when Apply would change
// nothing, over verdicts, generations and statuses that differ in each field Apply
// writes (a pass trusts it to skip the copy and the write).
func TestInStatusIsApplyUnchanged(t *testing.T) {
	verdicts := []Verdict{
		{},
		{Selected: 2, Programmed: []string{"a", "b"}},
		{Selected: 2, Programmed: []string{"a"}, Pending: []NodeResult{{"b", v1alpha1.ReasonPending, "x"}}},
		{Selected: 2, Programmed: []string{"a"}, Pending: []NodeResult{{"b", v1alpha1.ReasonPending, "y"}}},
		{Selected: 1, Rejected: []NodeResult{{"a", v1alpha1.ReasonConflict, strings.Repeat("long ", 1000)}}},
	}
	var statuses []v1alpha1.NodeProxyConfigStatus
	for _, v := range verdicts {
		for _, gen := range []int64{1, 2} {
			var st v1alpha1.NodeProxyConfigStatus
			v.Apply(&st, gen)
			statuses = append(statuses, st)
			// The same condition with one count or the status's generation off.
			off := *st.DeepCopy()
			off.ProgrammedNodes++
			statuses = append(statuses, off)
			off = *st.DeepCopy()
			off.ObservedGeneration++
			statuses = append(statuses, off)
		}
	}
	statuses = append(statuses, v1alpha1.NodeProxyConfigStatus{})
	n := 0
	for _, v := range verdicts {
		for _, gen := range []int64{1, 2} {
			for i := range statuses {
				st := statuses[i].DeepCopy()
				in := v.InStatus(st, gen)
				if changed := v.Apply(st, gen); in == changed {
					t.Fatalf("verdict %d gen %d status %d: InStatus %v, Apply changed %v", n, gen, i, in, changed)
				}
				if in {
					n++
				}
			}
		}
	}
	if n < len(verdicts) {
		t.Fatalf("InStatus held only %d times; every verdict's own status should hold", n)
	}
}

// BenchmarkCompute5000x100 is the figure: 5,000 configs (a few selectors)
// on 100 nodes, each node with 64 listed rejections.
func BenchmarkCompute5000x100(b *testing.B) {
	var nodes []Node
	for i := range 100 {
		n := healthy(fmt.Sprintf("node-%03d", i), "100000", "100000", map[string]string{"zone": strconv.Itoa(i % 4)})
		for j := range 64 {
			n.Status.Rejected = append(n.Status.Rejected, v1alpha1.RejectedConfig{Name: fmt.Sprintf("cfg-%d", j*7), Reason: v1alpha1.ReasonConflict})
		}
		nodes = append(nodes, n)
	}
	var configs []Config
	for i := range 5000 {
		c := Config{Name: fmt.Sprintf("cfg-%d", i), Written: strconv.Itoa(1000 + i)}
		if i%10 == 0 {
			c.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": strconv.Itoa(i % 4)}}
		}
		configs = append(configs, c)
	}
	b.ReportAllocs()
	var out map[string]Verdict
	cpu0 := cpuTime(b)
	for b.Loop() {
		out = Compute(configs, nodes)
	}
	// CPU time as well as wall: on a shared machine the wall time per op measures the
	// load, the CPU time what the computation costs (GC included).
	b.ReportMetric(float64((cpuTime(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	// The path claimed was taken: every config judged, the selectors honoured.
	if len(out) != 5000 || out["cfg-10"].Selected != 25 || out["cfg-1"].Selected != 100 || len(out["cfg-7"].Rejected) != 100 {
		b.Fatalf("unexpected verdicts: %d, cfg-10 on %d, cfg-1 on %d, cfg-7 rejected by %d",
			len(out), out["cfg-10"].Selected, out["cfg-1"].Selected, len(out["cfg-7"].Rejected))
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

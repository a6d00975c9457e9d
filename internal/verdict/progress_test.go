package verdict

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// TestFinalVerdictsSurviveProgress is the promise a status loop relies on to
// judge only some configs: when the nodes only Progressed, every Final verdict
// of the configs is unchanged. Random nodes and steps; a step either only
// raises watermarks or changes something else, which Progressed must notice.
func TestFinalVerdictsSurviveProgress(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 12))
	var kept, moved, noticed int
	for round := range 400 {
		nodes := make([]Node, 1+rng.IntN(4))
		for i := range nodes {
			nodes[i] = randomNode(rng, "n"+strconv.Itoa(i))
		}
		configs := make([]Config, 12)
		for i := range configs {
			configs[i] = Config{Name: "c" + strconv.Itoa(i), Written: strconv.Itoa(40 + rng.IntN(30)), Redirects: rng.IntN(2) == 0}
			if rng.IntN(4) == 0 {
				configs[i].NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "edge"}}
			}
		}
		before := Compute(configs, nodes)
		after := clone(nodes)
		for i := range after {
			raise(rng, &after[i])
		}
		otherChange := rng.IntN(3) == 0
		if otherChange {
			change(rng, &after[rng.IntN(len(after))])
		}
		progressed := Progressed(nodes, after)
		if otherChange && progressed {
			t.Fatalf("round %d: a change besides watermarks went unnoticed:\n%+v\n%+v", round, nodes, after)
		}
		if otherChange {
			noticed++
			continue
		}
		if !progressed {
			t.Fatalf("round %d: only watermarks rose, Progressed says otherwise", round)
		}
		now := Compute(configs, after)
		for _, c := range configs {
			switch {
			case Final(before[c.Name]):
				if !reflect.DeepEqual(before[c.Name], now[c.Name]) {
					t.Fatalf("round %d: %s was Final %+v, became %+v", round, c.Name, before[c.Name], now[c.Name])
				}
				kept++
			case !reflect.DeepEqual(before[c.Name], now[c.Name]):
				moved++
			}
		}
	}
	// Not vacuous: verdicts were Final and kept, others did move, changes were noticed.
	if kept < 100 || moved < 100 || noticed < 50 {
		t.Fatalf("too few cases: %d final verdicts kept, %d others moved, %d changes noticed", kept, moved, noticed)
	}
}

func randomNode(rng *rand.Rand, name string) Node {
	applied := 40 + rng.IntN(30)
	n := healthy(name, strconv.Itoa(applied), strconv.Itoa(applied-rng.IntN(10)), nil)
	if rng.IntN(2) == 0 {
		n.Labels = map[string]string{"pool": "edge"}
	}
	switch rng.IntN(6) {
	case 0:
		n.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNotConnected, "no proxy")
	case 1:
		n.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNACKed, "bad listener")
	case 2:
		n.Status.Conditions[1] = cond(v1alpha1.ConditionDatapathReady, metav1.ConditionFalse, v1alpha1.ReasonFailed, "no BPF")
	}
	if rng.IntN(3) == 0 {
		n.Status.Rejected = []v1alpha1.RejectedConfig{{Name: "c" + strconv.Itoa(rng.IntN(12)), Reason: v1alpha1.ReasonConflict, Message: "taken"}}
	}
	return n
}

func clone(nodes []Node) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		out[i] = n
		out[i].Status = *n.Status.DeepCopy()
	}
	return out
}

// raise moves a node's watermarks up (or not), programmed never past applied.
func raise(rng *rand.Rand, n *Node) {
	applied, _ := strconv.Atoi(n.Status.AppliedResourceVersion)
	programmed, _ := strconv.Atoi(n.Status.ProgrammedResourceVersion)
	applied += rng.IntN(20)
	programmed = min(applied, programmed+rng.IntN(25))
	n.Status.AppliedResourceVersion, n.Status.ProgrammedResourceVersion = strconv.Itoa(applied), strconv.Itoa(programmed)
}

// change alters something a verdict reads besides the watermarks.
func change(rng *rand.Rand, n *Node) {
	switch rng.IntN(5) {
	case 0:
		n.Labels = map[string]string{"pool": "other"}
	case 1:
		n.Status.Rejected = append(n.Status.Rejected, v1alpha1.RejectedConfig{Name: "c1", Reason: v1alpha1.ReasonInvalidResource, Message: "bad"})
	case 2:
		n.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNACKed, "another NACK "+strconv.Itoa(rng.IntN(1000)))
	case 3:
		n.Status.Conditions[1] = cond(v1alpha1.ConditionDatapathReady, metav1.ConditionFalse, v1alpha1.ReasonFailed, "detached "+strconv.Itoa(rng.IntN(1000)))
	case 4:
		n.Status.AppliedResourceVersion = "1" // an agent that starts over
	}
}

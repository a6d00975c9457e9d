package verdict

import (
	"maps"
	"slices"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// A node's report moves on every change anywhere: its watermarks rise as it
// applies each write. Judging all of a producer's configs again for every such
// move is what made a status pass cost what the producer owns (10,000 configs)
// rather than what moved. Progressed and Final say which verdicts a move can
// change: a status loop judges again only the configs whose own inputs changed
// and those not Final, whenever the nodes only Progressed since its last pass.

// Progressed reports whether after differs from before only in watermarks that
// rose: the same nodes, with the same labels, the same rejections and the same
// proxy and datapath state. Then a config whose inputs are unchanged and whose
// verdict under before was Final has the same verdict under after.
func Progressed(before, after []Node) bool {
	if len(before) != len(after) {
		return false
	}
	prev := make(map[string]*Node, len(before))
	for i := range before {
		prev[before[i].Name] = &before[i]
	}
	for i := range after {
		b := prev[after[i].Name]
		if b == nil || !progressedNode(prepare(b), prepare(&after[i])) {
			return false
		}
	}
	return true
}

func progressedNode(b, a *node) bool {
	return maps.Equal(b.Labels, a.Labels) && slices.Equal(b.Status.Rejected, a.Status.Rejected) &&
		b.noProxy == a.noProxy && b.nack == a.nack && b.datapathDown == a.datapathDown &&
		b.appliedOK == a.appliedOK && b.applied <= a.applied &&
		b.progOK == a.progOK && b.programmed <= a.programmed
}

// Final reports whether no rise of the nodes' watermarks can change v: no node
// is still to process or acknowledge the config (Pending) and none NACKed it
// (a NACK gives way to Programmed once the proxy acknowledges a later version).
// The other answers (programmed, rejected by the agent, no node selected)
// depend only on what Progressed holds fixed.
func Final(v Verdict) bool {
	if len(v.Pending) > 0 {
		return false
	}
	for _, r := range v.Rejected {
		if r.Reason == v1alpha1.ReasonNACKed {
			return false
		}
	}
	return true
}

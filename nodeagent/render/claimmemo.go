package render

import (
	"maps"
	"slices"
)

// memoClaim is one claimOnce of the last render: its candidates in order, the
// configs it skipped, and its outcome as positions in candidates.
type memoClaim struct {
	candidates []*parsed
	skipped    map[string]bool
	winners    []int
	conflicts  map[string]*rejection
}

// claimOnce settles conflicts as claimOnce does, reusing the last render's
// outcome when the candidates claim what they claimed then, in the same order,
// and the same configs are skipped. Who wins depends on nothing else: on the
// order, the names each candidate claims and, for a cluster name claimed twice,
// whether the two clusters are identical. At 10,000 configs settling them again
// was a quarter of a render after one route changed, which claims exactly what
// its previous version did.
func (m *memo) claimOnce(candidates []*parsed, invalid, unfit map[string]*rejection) ([]*parsed, map[string]*rejection) {
	if m == nil {
		return claimOnce(candidates, invalid, unfit, nil)
	}
	skipped := make(map[string]bool, len(invalid)+len(unfit))
	for name := range invalid {
		skipped[name] = true
	}
	for name := range unfit {
		skipped[name] = true
	}
	for _, e := range m.claimsPrev {
		if !maps.Equal(e.skipped, skipped) || !m.sameCandidates(e.candidates, candidates) {
			continue
		}
		m.hits.claims++
		winners := make([]*parsed, len(e.winners))
		for i, at := range e.winners {
			winners[i] = candidates[at]
		}
		m.claimsCur = append(m.claimsCur, memoClaim{candidates: candidates, skipped: skipped, winners: e.winners, conflicts: e.conflicts})
		// claim adds to the map it gets: hand out a copy.
		return winners, maps.Clone(e.conflicts)
	}
	winners, conflicts := claimOnce(candidates, invalid, unfit, m)
	at := make([]int, 0, len(winners))
	for i, j := 0, 0; i < len(candidates) && j < len(winners); i++ {
		if candidates[i] == winners[j] {
			at = append(at, i)
			j++
		}
	}
	m.claimsCur = append(m.claimsCur, memoClaim{candidates: candidates, skipped: skipped, winners: at, conflicts: maps.Clone(conflicts)})
	return winners, conflicts
}

func (m *memo) sameCandidates(was, now []*parsed) bool {
	if len(was) != len(now) {
		return false
	}
	for i := range now {
		if was[i] != now[i] && !m.sameClaims(was[i], now[i]) {
			return false
		}
	}
	return true
}

// sameClaims reports whether a and b claim the same names and, where a
// cluster is claimed, identical clusters: the same conflicts, with the same
// messages.
func (m *memo) sameClaims(a, b *parsed) bool {
	if a.cfg.Name != b.cfg.Name || !slices.Equal(a.redirects, b.redirects) ||
		!slices.Equal(a.claims.shared, b.claims.shared) || len(a.claims.exclusive) != len(b.claims.exclusive) ||
		len(a.clusters) != len(b.clusters) {
		return false
	}
	for i, x := range a.claims.exclusive {
		y := b.claims.exclusive[i]
		if x.sharedName != y.sharedName || (x.cluster == nil) != (y.cluster == nil) ||
			(x.cluster != nil && !m.identical(x.cluster, y.cluster)) {
			return false
		}
	}
	return slices.Equal(ownChainKeys(a), ownChainKeys(b)) && slices.Equal(contributedChainKeys(a), contributedChainKeys(b))
}

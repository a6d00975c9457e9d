package render

import (
	"fmt"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// fitCapacity rejects, newest first, the configs whose redirects would not fit in
// the node's redirect maps (one per address family, capacity entries each).
// Without it the map update fails half-way and every config on the node looks
// broken; with it the oldest configs keep working and the newest say why they do
// not. Candidates come oldest first. A key an older config already holds costs
// nothing (the claim step settles who gets it).
func (st *renderState) fitCapacity(candidates []*parsed, capacity int) []*parsed {
	if capacity <= 0 {
		return candidates
	}
	used := map[Key]bool{}
	var n4, n6 int
	kept := candidates[:0:0]
	for _, p := range candidates {
		var add4, add6 int
		fresh := map[Key]bool{}
		for _, r := range p.redirects {
			if used[r.key] || fresh[r.key] {
				continue
			}
			fresh[r.key] = true
			if r.key.Addr.Is4() {
				add4++
			} else {
				add6++
			}
		}
		if n4+add4 > capacity || n6+add6 > capacity {
			st.rejected[p.cfg.Name] = reject(v1alpha1.ReasonRedirectCapacity,
				"the node's redirect maps hold %d entries per address family and older configs use %d (IPv4) and %d (IPv6); this config needs %s more",
				capacity, n4, n6, needed(add4, add6))
			continue
		}
		for k := range fresh {
			used[k] = true
		}
		n4, n6 = n4+add4, n6+add6
		kept = append(kept, p)
	}
	return kept
}

func needed(v4, v6 int) string {
	switch {
	case v4 > 0 && v6 > 0:
		return fmt.Sprintf("%d IPv4 and %d IPv6", v4, v6)
	case v6 > 0:
		return fmt.Sprintf("%d IPv6", v6)
	}
	return fmt.Sprintf("%d IPv4", v4)
}

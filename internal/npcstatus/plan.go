package npcstatus

import (
	"cmp"
	"slices"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/verdict"
)

// Priorities of a status write. A node that restarts moves the verdict of every
// config it runs (Pending, then Programmed again), which is one status write per
// config: thousands, at the client's QPS. Written in name order, a config whose
// spec the user just changed would wait minutes behind them for its
// observedGeneration; so a pass writes what a user is waiting for first and the
// rest in later passes.
const (
	// prioSpecMoved: the status still speaks of an older generation.
	prioSpecMoved = iota
	// prioTransition: Programmed's status or reason moves (a rejection, a recovery).
	prioTransition
	// prioDetail: only counts or the message move.
	prioDetail
	// prioNone: nothing to write.
	prioNone
)

// item is one config's outcome in a pass.
type item struct {
	config  *v1alpha1.NodeProxyConfig
	status  v1alpha1.NodeProxyConfigStatus // what to write when prio < prioNone
	verdict verdict.Verdict
	prio    int
}

// plan judges each config's status against its verdict and orders the writes:
// highest priority first, then by name so that passes are deterministic. Configs
// without a verdict (not written by this process) are left out.
func plan(configs []*v1alpha1.NodeProxyConfig, verdicts map[string]verdict.Verdict) []item {
	items := make([]item, 0, len(configs))
	for _, c := range configs {
		v, ok := verdicts[c.Name]
		if !ok {
			continue
		}
		it := item{config: c, verdict: v, status: *c.Status.DeepCopy(), prio: prioNone}
		if v.Apply(&it.status, c.Generation) {
			it.prio = priority(c, v)
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.prio, b.prio), cmp.Compare(a.config.Name, b.config.Name))
	})
	return items
}

func priority(c *v1alpha1.NodeProxyConfig, v verdict.Verdict) int {
	if c.Status.ObservedGeneration != c.Generation {
		return prioSpecMoved
	}
	status, reason, _ := v.Condition()
	for _, cond := range c.Status.Conditions {
		if cond.Type == string(v1alpha1.ConditionProgrammed) {
			if cond.Status == status && cond.Reason == string(reason) {
				return prioDetail
			}
			break
		}
	}
	return prioTransition
}

package npcstatus

import (
	"cmp"
	"slices"
	"time"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
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

// plan judges each config's status against its verdict. Configs without a
// verdict (not written by this process) are left out. known (nil: never) says
// that a config's status is already known to say what v says, from an earlier
// pass, sparing the comparison.
func plan(configs []*v1alpha1.NodeProxyConfig, verdicts map[string]verdict.Verdict,
	known func(*v1alpha1.NodeProxyConfig, verdict.Verdict) bool) []item {
	items := make([]item, 0, len(configs))
	for _, c := range configs {
		v, ok := verdicts[c.Name]
		if !ok {
			continue
		}
		it := item{config: c, verdict: v, prio: prioNone}
		// Most configs are settled: their status is only copied to be rewritten.
		if (known == nil || !known(c, v)) && !v.InStatus(&c.Status, c.Generation) {
			it.status = *c.Status.DeepCopy()
			v.Apply(&it.status, c.Generation)
			it.prio = priority(c, v)
		}
		items = append(items, it)
	}
	return items
}

// waiting is a config whose status needs a write.
type waiting struct {
	since    time.Time
	failures int
}

// order returns the writes first, in the order a pass makes them: those that can be
// written before those whose write failed, then by priority, then the longest
// waiting (so that under constant churn no config waits for ever behind names
// that sort first), then by name; the settled configs follow in their order.
// Only the writes are sorted: a pass over 10,000 settled configs and one change
// sorts one item. It records in waits when a config started to need a write, and
// forgets those that no longer do.
func order(items []item, waits map[string]*waiting, now time.Time) []item {
	writes := make([]item, 0, len(waits)+1)
	settled := make([]item, 0, len(items))
	for _, it := range items {
		w := waits[it.config.Name]
		switch {
		case it.prio == prioNone:
			if w != nil {
				delete(waits, it.config.Name)
			}
			settled = append(settled, it)
			continue
		case w == nil:
			waits[it.config.Name] = &waiting{since: now}
		}
		writes = append(writes, it)
	}
	slices.SortStableFunc(writes, func(a, b item) int {
		wa, wb := waits[a.config.Name], waits[b.config.Name]
		return cmp.Or(cmp.Compare(btoi(wa.failures > 0), btoi(wb.failures > 0)), cmp.Compare(a.prio, b.prio),
			wa.since.Compare(wb.since), cmp.Compare(a.config.Name, b.config.Name))
	})
	return append(writes, settled...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func priority(c *v1alpha1.NodeProxyConfig, v verdict.Verdict) int {
	if c.Status.ObservedGeneration != c.Generation {
		return prioSpecMoved
	}
	status, reason, _ := v.Condition()
	if cur := conditions.Get(c.Status.Conditions, v1alpha1.ConditionProgrammed); cur != nil && cur.Status == status && cur.Reason == string(reason) {
		return prioDetail
	}
	return prioTransition
}

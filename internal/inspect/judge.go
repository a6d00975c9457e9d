package inspect

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/verdict"
)

// NodeInfo is a node as the plugin sees it: its labels (what selectors match)
// and its agent's NodeProxy, if one ran there.
type NodeInfo struct {
	Name   string
	Labels map[string]string
	Proxy  *v1alpha1.NodeProxy
}

// NodeInfos joins Nodes and NodeProxies by name. A NodeProxy without a Node (the
// node was deleted) still counts: its agent may still be running somewhere.
func NodeInfos(nodes []metav1.PartialObjectMetadata, proxies []v1alpha1.NodeProxy) []NodeInfo {
	byName := map[string]*NodeInfo{}
	for _, n := range nodes {
		byName[n.Name] = &NodeInfo{Name: n.Name, Labels: n.Labels}
	}
	for i := range proxies {
		p := &proxies[i]
		if byName[p.Name] == nil {
			byName[p.Name] = &NodeInfo{Name: p.Name}
		}
		byName[p.Name].Proxy = p
	}
	out := make([]NodeInfo, 0, len(byName))
	for _, n := range byName {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// judge is internal/verdict's answer for each config, by name.
//
// verdict measures a node's progress against the resourceVersion the producer
// recorded at its last spec write. The plugin is not the producer: it sees only
// the live resourceVersion, which the producer's own status writes move on. The
// live one is a safe stand-in for display: it is at or after the spec write, and a
// node's watermark only grows, so it never calls a node programmed that is not.
// Its one error is the other way: the agents re-read a config after every status
// write too, and until each has reported again (about a second), a programmed
// node looks pending. So where the producer's Programmed condition was written
// for the current generation, says True, and counts as many selected nodes as
// we do (no node came or went since), a node pending *only* because of its
// watermark is shown programmed: what it lags behind is the status write.
// "Only because of its watermark" is verdict's own answer, computed against
// the oldest version there is.
func judge(configs []v1alpha1.NodeProxyConfig, nodes []NodeInfo) map[string]verdict.Verdict {
	vnodes := make([]verdict.Node, 0, len(nodes))
	for _, n := range nodes {
		if n.Proxy != nil {
			vnodes = append(vnodes, verdict.Node{Name: n.Name, Labels: n.Labels, Status: n.Proxy.Status})
		}
	}
	input := func(c *v1alpha1.NodeProxyConfig, written string) verdict.Config {
		return verdict.Config{Name: c.Name, Generation: c.Generation, Written: written,
			NodeSelector: c.Spec.NodeSelector, Redirects: len(c.Spec.Redirects) > 0}
	}
	in := make([]verdict.Config, 0, len(configs))
	for i := range configs {
		in = append(in, input(&configs[i], configs[i].ResourceVersion))
	}
	live := verdict.Compute(in, vnodes)

	var vouched []verdict.Config
	for i := range configs {
		c := &configs[i]
		cond := conditions.Get(c.Status.Conditions, v1alpha1.ConditionProgrammed)
		v := live[c.Name]
		if cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.Generation &&
			c.Status.ObservedGeneration == c.Generation && int(c.Status.SelectedNodes) == v.Selected && len(v.Pending) > 0 {
			vouched = append(vouched, input(c, "1"))
		}
	}
	if len(vouched) == 0 {
		return live
	}
	loose := verdict.Compute(vouched, vnodes)
	for _, vc := range vouched {
		v, l := live[vc.Name], loose[vc.Name]
		var pending []verdict.NodeResult
		for _, p := range v.Pending {
			if slices.Contains(l.Programmed, p.Node) {
				v.Programmed = append(v.Programmed, p.Node)
			} else {
				pending = append(pending, p)
			}
		}
		v.Pending = pending
		slices.Sort(v.Programmed)
		live[vc.Name] = v
	}
	return live
}

// nodeStates flattens a verdict into one entry per selected node, sorted by node.
func nodeStates(v verdict.Verdict) []NodeState {
	out := make([]NodeState, 0, v.Selected)
	for _, n := range v.Programmed {
		out = append(out, NodeState{Node: n, State: StateProgrammed})
	}
	for _, r := range v.Rejected {
		out = append(out, NodeState{Node: r.Node, State: StateRejected, Reason: string(r.Reason), Message: r.Message})
	}
	for _, r := range v.Pending {
		out = append(out, NodeState{Node: r.Node, State: StatePending, Reason: string(r.Reason), Message: r.Message})
	}
	slices.SortFunc(out, func(a, b NodeState) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

func condition(conds []metav1.Condition, t v1alpha1.ConditionType, generation int64) *Condition {
	c := conditions.Get(conds, t)
	if c == nil {
		return nil
	}
	return &Condition{Status: c.Status, Reason: c.Reason, Message: c.Message, Current: c.ObservedGeneration == generation}
}

// serviceCondition: Service conditions are written with the Service's generation
// by Portico's controllers; a Service's status does not move its generation.
func serviceCondition(svc *corev1.Service, t v1alpha1.ConditionType) *Condition {
	return condition(svc.Status.Conditions, t, svc.Generation)
}

// Package verdict answers, for each NodeProxyConfig a producer wrote, "is it in
// effect on the nodes that should run it, and if not, where and why": the nodes
// it selects, those that programmed it (served, in the datapath, acknowledged by
// their proxy), those that rejected it (with the agent's reason, or Envoy's own
// NACK text), and those that lag behind (with why: no proxy connected, datapath
// down, not processed yet).
//
// It is pure: producers feed it their configs and the nodes' NodeProxy reports and
// write the result as NodeProxyConfig status and as conditions and Events on their
// source objects. Progress is measured against the resourceVersion the producer's
// writer recorded at its last spec write, never the live one: writing status bumps
// the live resourceVersion, and comparing to it would make every status write look
// like a change the nodes have not seen yet.
package verdict

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
)

// Config is one NodeProxyConfig as its producer wrote it.
type Config struct {
	Name       string
	Generation int64
	// Written is the resourceVersion the producer's writer recorded at its last
	// spec write (npcwriter.Writer.Written).
	Written      string
	NodeSelector *metav1.LabelSelector
	// Redirects: the config programs the datapath, so a node whose datapath is
	// down cannot have it in effect.
	Redirects bool
}

// Node is one node running the agent: its labels and its agent's report.
type Node struct {
	Name   string
	Labels map[string]string
	Status v1alpha1.NodeProxyStatus
}

// NodeResult is one node's answer for one config.
type NodeResult struct {
	Node    string
	Reason  v1alpha1.ConditionReason
	Message string
}

// Verdict is the answer for one config.
type Verdict struct {
	// Selected are the nodes (running the agent) the config's selector matches.
	Selected int
	// Programmed are the selected nodes that have it in effect, sorted.
	Programmed []string
	// Rejected are the nodes that refused it (or a part of it), by node name.
	Rejected []NodeResult
	// Pending are the nodes that have not got it in effect yet, and why.
	Pending []NodeResult
}

// node is a Node prepared once for every config.
type node struct {
	*Node
	applied, programmed uint64
	appliedOK, progOK   bool
	// lag is why configs served on this node are not in effect yet ("" if they are
	// once acknowledged): no proxy connected, a NACK, the datapath down.
	noProxy      string
	nack         string
	datapathDown string
}

func prepare(n *Node) *node {
	p := &node{Node: n}
	p.applied, p.appliedOK = parseRV(n.Status.AppliedResourceVersion)
	p.programmed, p.progOK = parseRV(n.Status.ProgrammedResourceVersion)
	if c := conditions.Get(n.Status.Conditions, v1alpha1.ConditionProxyConnected); c == nil || c.Status != metav1.ConditionTrue {
		if c != nil && c.Reason == string(v1alpha1.ReasonNACKed) {
			p.nack = c.Message
		} else {
			p.noProxy = "no proxy is connected to the node's xDS server"
		}
	}
	for _, px := range n.Status.Proxies {
		if px.LastNACK != "" && p.nack == "" && p.noProxy == "" {
			p.nack = px.ID + ": " + px.LastNACK
		}
	}
	if c := conditions.Get(n.Status.Conditions, v1alpha1.ConditionDatapathReady); c != nil && c.Status != metav1.ConditionTrue && c.Reason != string(v1alpha1.ReasonDisabled) {
		p.datapathDown = "datapath not ready: " + c.Message
	}
	return p
}

// Compute returns the verdict of every config, by name. It costs one selector
// evaluation per distinct selector and node, and one map lookup per config and
// selected node: 5,000 configs on 100 nodes take milliseconds.
func Compute(configs []Config, nodes []Node) map[string]Verdict {
	prepared := make([]*node, len(nodes))
	// Rejections are few (at most 64 listed per node): indexed by config, they cost
	// one lookup per config rather than one per config and node.
	rejections := map[string]map[*node]v1alpha1.RejectedConfig{}
	for i := range nodes {
		prepared[i] = prepare(&nodes[i])
		for _, r := range nodes[i].Status.Rejected {
			if rejections[r.Name] == nil {
				rejections[r.Name] = map[*node]v1alpha1.RejectedConfig{}
			}
			rejections[r.Name][prepared[i]] = r
		}
	}
	slices.SortFunc(prepared, func(a, b *node) int { return cmp.Compare(a.Name, b.Name) })
	bySelector := map[string][]*node{}
	out := make(map[string]Verdict, len(configs))
	for _, c := range configs {
		key := selectorKey(c.NodeSelector)
		sel, done := bySelector[key]
		if !done {
			sel = selectNodes(c.NodeSelector, prepared)
			bySelector[key] = sel
		}
		out[c.Name] = judge(c, sel, rejections[c.Name])
	}
	return out
}

func judge(c Config, sel []*node, rejected map[*node]v1alpha1.RejectedConfig) Verdict {
	v := Verdict{Selected: len(sel), Programmed: make([]string, 0, len(sel))}
	written, ok := parseRV(c.Written)
	for _, n := range sel {
		switch {
		case !ok || !n.appliedOK || n.applied < written:
			why := "has not processed this version yet"
			if n.datapathDown != "" && c.Redirects {
				why = n.datapathDown
			}
			v.Pending = append(v.Pending, NodeResult{n.Name, v1alpha1.ReasonPending, why})
		case rejected != nil && rejected[n].Name != "":
			r := rejected[n]
			v.Rejected = append(v.Rejected, NodeResult{n.Name, r.Reason, r.Message})
		case n.noProxy != "":
			// Served is not in effect: without a proxy nothing answers on the node.
			v.Pending = append(v.Pending, NodeResult{n.Name, v1alpha1.ReasonNotConnected, n.noProxy})
		case n.progOK && n.programmed >= written:
			v.Programmed = append(v.Programmed, n.Name)
		case n.nack != "":
			v.Rejected = append(v.Rejected, NodeResult{n.Name, v1alpha1.ReasonNACKed, n.nack})
		default:
			v.Pending = append(v.Pending, NodeResult{n.Name, v1alpha1.ReasonPending, "served; waiting for the proxy to acknowledge it"})
		}
	}
	return v
}

func selectNodes(s *metav1.LabelSelector, nodes []*node) []*node {
	if s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0) {
		return nodes
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		// The agents reject such a config themselves (InvalidSelector); no node runs it.
		return nil
	}
	var out []*node
	for _, n := range nodes {
		if sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n)
		}
	}
	return out
}

func selectorKey(s *metav1.LabelSelector) string {
	if s == nil {
		return ""
	}
	return s.String()
}

func parseRV(rv string) (uint64, bool) {
	v, err := strconv.ParseUint(rv, 10, 64)
	return v, err == nil
}

// maxNamed bounds how many nodes a message names; the rest are counted.
const maxNamed = 3

// Condition is the Programmed condition the verdict makes: True once every
// selected node has the config in effect; False with Rejected (some node refused
// it, named with its reason), Pending (some node lags, named with why) or
// NoNodesSelected.
func (v Verdict) Condition() (metav1.ConditionStatus, v1alpha1.ConditionReason, string) {
	progress := fmt.Sprintf("programmed on %d/%d nodes", len(v.Programmed), v.Selected)
	switch {
	case v.Selected == 0:
		return metav1.ConditionFalse, v1alpha1.ReasonNoNodesSelected, "no node running the agent matches spec.nodeSelector"
	case len(v.Rejected) > 0:
		return metav1.ConditionFalse, v1alpha1.ReasonRejected, "rejected by " + describe(v.Rejected) + "; " + progress
	case len(v.Pending) > 0:
		return metav1.ConditionFalse, v1alpha1.ReasonPending, capitalize(progress) + "; pending on " + describe(v.Pending)
	}
	return metav1.ConditionTrue, v1alpha1.ReasonProgrammed, capitalize(progress)
}

// Summary is one line for an Event on the source object.
func (v Verdict) Summary() string {
	_, _, msg := v.Condition()
	return capitalize(msg)
}

func describe(rs []NodeResult) string {
	parts := make([]string, 0, maxNamed+1)
	for i, r := range rs {
		if i == maxNamed {
			parts = append(parts, fmt.Sprintf("%d more nodes", len(rs)-maxNamed))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s: %s)", r.Node, r.Reason, r.Message))
	}
	return strings.Join(parts, ", ")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Apply writes the verdict into a NodeProxyConfig status and reports whether it
// changed, so that producers write status only when the verdict did: the
// transition time moves only with the condition's status, and a steady state
// costs no write at all.
func (v Verdict) Apply(st *v1alpha1.NodeProxyConfigStatus, generation int64) bool {
	status, reason, msg := v.stored()
	changed := conditions.Set(&st.Conditions, generation, v1alpha1.ConditionProgrammed, status, reason, msg)
	if st.ObservedGeneration != generation || st.SelectedNodes != int32(v.Selected) || st.ProgrammedNodes != int32(len(v.Programmed)) {
		st.ObservedGeneration, st.SelectedNodes, st.ProgrammedNodes = generation, int32(v.Selected), int32(len(v.Programmed))
		changed = true
	}
	return changed
}

// InStatus reports whether st already says what Apply would write, without
// copying st: a producer's status pass looks at every config, and in a steady state
// every one of them is settled.
func (v Verdict) InStatus(st *v1alpha1.NodeProxyConfigStatus, generation int64) bool {
	status, reason, msg := v.stored()
	c := conditions.Get(st.Conditions, v1alpha1.ConditionProgrammed)
	return c != nil && c.Status == status && c.Reason == string(reason) && c.Message == msg &&
		c.ObservedGeneration == generation && st.ObservedGeneration == generation &&
		st.SelectedNodes == int32(v.Selected) && st.ProgrammedNodes == int32(len(v.Programmed))
}

// stored is the Programmed condition as a status holds it: the message cut to maxMessage.
func (v Verdict) stored() (metav1.ConditionStatus, v1alpha1.ConditionReason, string) {
	status, reason, msg := v.Condition()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	return status, reason, msg
}

// maxMessage keeps a condition message readable (the API allows 32 KiB).
const maxMessage = 2048

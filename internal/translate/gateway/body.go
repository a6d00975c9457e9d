package gateway

import (
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/envoykit"
)

// body is a route's rules translated without regard to where it attaches.
type body struct {
	// routes are the Envoy routes of HTTP and gRPC rules, one per match.
	routes []keyed
	// chains are a TLSRoute's forwarding: one cluster, or weights.
	tcp *tcpTarget
	// b collects the backends while the rules are translated; seal turns it
	// into backendRes and drops it.
	b          *backends
	backendRes backendResources
	// resolved is the ResolvedRefs condition.
	resolved Condition
	// partial is PartiallyInvalid=True when rules were dropped.
	partial *Condition
	// invalid replaces Accepted when no rule could be served at all.
	invalid *Condition
}

// keyed is one Envoy route, as JSON made once however many hostnames serve
// it, with the part of its precedence key that does not depend on the
// hostname. Only the JSON is kept: the memo holds a body per route, and the
// structure it was marshalled from would double that.
type keyed struct {
	key string
	raw apiextensionsv1.JSON
}

func keyedRoute(key string, r envoykit.Route) keyed {
	return keyed{key: key, raw: envoykit.Raw(r)}
}

type tcpTarget struct {
	cluster  string
	weighted *envoykit.WeightedClusters
}

// ruleState collects what a route's rules say about its status.
type ruleState struct {
	refProblems []refProblem
	dropped     []string
	rules       int
}

func (s *ruleState) refProblem(p *refProblem) {
	if p != nil {
		s.refProblems = append(s.refProblems, *p)
	}
}

func (s *ruleState) drop(rule int, name *gatewayv1.SectionName, why string) {
	label := fmt.Sprintf("%d", rule)
	if name != nil {
		label = fmt.Sprintf("%d (%s)", rule, *name)
	}
	s.dropped = append(s.dropped, fmt.Sprintf("Dropped Rule %s: %s", label, why))
}

// finish sets the body's conditions from what the rules said.
func (s *ruleState) finish(bd *body) {
	bd.resolved = cond(string(gatewayv1.RouteConditionResolvedRefs), true, string(gatewayv1.RouteReasonResolvedRefs), "References resolved")
	if len(s.refProblems) > 0 {
		msgs := make([]string, 0, len(s.refProblems))
		for _, p := range s.refProblems {
			msgs = append(msgs, p.msg)
		}
		bd.resolved = cond(string(gatewayv1.RouteConditionResolvedRefs), false, string(s.refProblems[0].reason), strings.Join(msgs, "; "))
	}
	if len(s.dropped) == 0 {
		return
	}
	msg := strings.Join(s.dropped, "; ")
	if len(s.dropped) >= s.rules {
		c := cond(string(gatewayv1.RouteConditionAccepted), false, string(gatewayv1.RouteReasonUnsupportedValue), "no rule can be served: "+msg)
		bd.invalid = &c
		return
	}
	c := cond(string(gatewayv1.RouteConditionPartiallyInvalid), true, string(gatewayv1.RouteReasonUnsupportedValue), msg)
	bd.partial = &c
}

// weightedRef is one backendRef of a rule, resolved.
type weightedRef struct {
	cluster string // "" when invalid
	weight  int32
	headers headerOps
}

// action turns a rule's resolved backendRefs into a route action, or a 500
// answer when no backend has weight: the share of invalid backends goes to a
// cluster without endpoints, so Envoy answers it with an error while valid
// backends keep their share.
func action(b *backends, refs []weightedRef) (*envoykit.RouteAction, *envoykit.DirectResponse) {
	var total int64
	valid := 0
	for _, r := range refs {
		total += int64(r.weight)
		if r.cluster != "" && r.weight > 0 {
			valid++
		}
	}
	if total == 0 || valid == 0 {
		return nil, &envoykit.DirectResponse{Status: 500}
	}
	if valid == 1 && int64(weightOfValid(refs)) == total && !anyHeaders(refs) {
		for _, r := range refs {
			if r.cluster != "" && r.weight > 0 {
				return &envoykit.RouteAction{Cluster: r.cluster}, nil
			}
		}
	}
	wc := &envoykit.WeightedClusters{}
	var invalid uint32
	for _, r := range refs {
		if r.weight <= 0 {
			continue
		}
		if r.cluster == "" {
			invalid += uint32(r.weight)
			continue
		}
		cw := envoykit.ClusterWeight{Name: r.cluster, Weight: uint32(r.weight)}
		cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = r.headers.reqAdd, r.headers.reqRemove
		cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = r.headers.respAdd, r.headers.respRemove
		wc.Clusters = append(wc.Clusters, cw)
	}
	if invalid > 0 {
		wc.Clusters = append(wc.Clusters, envoykit.ClusterWeight{Name: b.invalid(), Weight: invalid})
	}
	return &envoykit.RouteAction{WeightedClusters: wc}, nil
}

func weightOfValid(refs []weightedRef) int32 {
	var w int32
	for _, r := range refs {
		if r.cluster != "" {
			w += r.weight
		}
	}
	return w
}

func anyHeaders(refs []weightedRef) bool {
	for _, r := range refs {
		if !r.headers.empty() {
			return true
		}
	}
	return false
}

// headerOps are header changes of a filter, in Envoy's terms.
type headerOps struct {
	reqAdd, respAdd       []envoykit.HeaderValueOption
	reqRemove, respRemove []string
}

func (h headerOps) empty() bool {
	return len(h.reqAdd)+len(h.respAdd)+len(h.reqRemove)+len(h.respRemove) == 0
}

// headerFilter is a RequestHeaderModifier or ResponseHeaderModifier: set
// overwrites, add appends, remove removes.
func headerFilter(f *gatewayv1.HTTPHeaderFilter) ([]envoykit.HeaderValueOption, []string) {
	if f == nil {
		return nil, nil
	}
	var add []envoykit.HeaderValueOption
	for _, h := range f.Set {
		add = append(add, headerValue(string(h.Name), h.Value, "OVERWRITE_IF_EXISTS_OR_ADD"))
	}
	for _, h := range f.Add {
		add = append(add, headerValue(string(h.Name), h.Value, "APPEND_IF_EXISTS_OR_ADD"))
	}
	remove := make([]string, 0, len(f.Remove))
	for _, r := range f.Remove {
		remove = append(remove, strings.ToLower(r))
	}
	if len(remove) == 0 {
		remove = nil
	}
	return add, remove
}

func headerValue(name, value, action string) envoykit.HeaderValueOption {
	var o envoykit.HeaderValueOption
	o.Header.Key, o.Header.Value, o.AppendAction = strings.ToLower(name), value, action
	return o
}

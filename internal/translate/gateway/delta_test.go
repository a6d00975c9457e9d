package gateway

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestDeltaEqualsFullTranslation: on every golden case, random edits of one
// HTTPRoute at a time (rules, backends, invalid filters and matches, and
// edits of hostnames and parentRefs, which a delta must refuse) are applied
// by TranslateChanged where it accepts and by a full pass where it refuses;
// after each step the output so kept equals a fresh Translate of the same
// input, config for config and status for status. Every few steps a full
// pass of the same memo must agree too: what a delta remembered is what the
// next full pass builds on.
func TestDeltaEqualsFullTranslation(t *testing.T) {
	taken, refused := 0, 0
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			versioned(in)
			if len(in.HTTPRoutes) == 0 {
				return
			}
			rng := rand.New(rand.NewPCG(uint64(len(dir)), 12))
			m := NewMemo()
			kept := m.Translate(in)
			rv := 1000
			for step := range 60 {
				i := rng.IntN(len(in.HTTPRoutes))
				r := in.HTTPRoutes[i].DeepCopy()
				rv++
				r.ResourceVersion = fmt.Sprint(rv)
				what, mustRefuse := editRoute(rng, r, in)
				in.HTTPRoutes[i] = r
				d, ok := m.TranslateChanged(changesOf(in, r))
				switch {
				case ok && mustRefuse:
					t.Fatalf("step %d (%s): a delta accepted an edit of where the route attaches", step, what)
				case ok:
					taken++
					kept = applyDelta(kept, d)
				default:
					refused++
					kept = m.Translate(in)
				}
				want := marshalOutput(t, goldenCase{Input: in}, Translate(in))
				if got := marshalOutput(t, goldenCase{Input: in}, kept); !bytes.Equal(got, want) {
					t.Fatalf("step %d (%s of %s, delta %v): output differs from a fresh translation:\n%s\nwant:\n%s", step, what, r.Name, ok, got, want)
				}
				if step%7 == 6 {
					if got := marshalOutput(t, goldenCase{Input: in}, m.Translate(in)); !bytes.Equal(got, want) {
						t.Fatalf("step %d: a full pass after deltas differs from a fresh translation", step)
					}
				}
			}
		})
	}
	t.Logf("%d deltas taken, %d refused", taken, refused)
	if taken < 100 || refused < 20 {
		t.Errorf("%d deltas taken and %d refused: the edits did not exercise both", taken, refused)
	}
}

// TestDeltaRefusesOtherChanges: a Gateway, a grant or a namespace's labels
// that moved since the last full pass make a delta refuse.
func TestDeltaRefusesOtherChanges(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "reference-grant"))
	versioned(in)
	extra := in.Grants[0].DeepCopy()
	extra.Namespace = "elsewhere" // grants nothing any route asks for
	in.Grants = append(in.Grants, extra)
	for i, g := range in.Grants {
		g.UID, g.ResourceVersion = types.UID(fmt.Sprint("grant-", i)), fmt.Sprint(500+i)
	}
	m := NewMemo()
	if _, ok := m.TranslateChanged(changesOf(in, in.HTTPRoutes[0])); ok {
		t.Fatal("a delta before any full pass was accepted")
	}
	m.Translate(in)
	if _, ok := m.TranslateChanged(changesOf(in, in.HTTPRoutes[0])); !ok {
		t.Fatal("a delta over unchanged inputs was refused")
	}
	// What the controller's own writes move, and the order a cache lists
	// in, are no change.
	same := in
	gw := in.Gateways[0].DeepCopy()
	gw.ResourceVersion = "9998" // a status write
	same.Gateways = append([]*gatewayv1.Gateway{gw}, in.Gateways[1:]...)
	same.Grants = slices.Clone(in.Grants)
	slices.Reverse(same.Grants)
	if _, ok := m.TranslateChanged(changesOf(same, same.HTTPRoutes[0])); !ok {
		t.Fatal("a Gateway's status write or the grants' order refused a delta")
	}
	for name, edit := range map[string]func(in *Input){
		"gateway": func(in *Input) {
			g := in.Gateways[0].DeepCopy()
			g.ResourceVersion, g.Generation = "9999", g.Generation+1
			in.Gateways[0] = g
		},
		"grant": func(in *Input) { in.Grants = in.Grants[:len(in.Grants)-1] },
		"namespace": func(in *Input) {
			in.Namespaces = maps.Clone(in.Namespaces)
			in.Namespaces[in.HTTPRoutes[0].Namespace] = map[string]string{"moved": "yes"}
		},
	} {
		edited := in
		edit(&edited)
		if _, ok := m.TranslateChanged(changesOf(edited, edited.HTTPRoutes[0])); ok {
			t.Errorf("%s changed: a delta was accepted", name)
		}
	}
}

func changesOf(in Input, routes ...*gatewayv1.HTTPRoute) Changes {
	gws := map[types.NamespacedName]*gatewayv1.Gateway{}
	for _, g := range in.Gateways {
		gws[types.NamespacedName{Namespace: g.Namespace, Name: g.Name}] = g
	}
	return Changes{HTTPRoutes: routes, Gateways: gws, Grants: in.Grants, Namespaces: in.Namespaces, Services: in.Services}
}

// applyDelta is what a caller of TranslateChanged keeps: the last output
// with the delta's configs and statuses in place.
func applyDelta(out Output, d Delta) Output {
	configs := slices.Clone(out.Configs)
	for _, c := range d.Configs {
		i := slices.IndexFunc(configs, func(o Config) bool { return o.Name == c.Name })
		configs[i] = c
	}
	routes := maps.Clone(out.Routes)
	maps.Copy(routes, d.Routes)
	return Output{Configs: configs, Gateways: out.Gateways, Routes: routes}
}

// editRoute changes r at random, and says what and whether the edit moves
// where r attaches (which a delta must refuse).
func editRoute(rng *rand.Rand, r *gatewayv1.HTTPRoute, in Input) (string, bool) {
	if len(r.Spec.Rules) == 0 {
		r.Spec.Rules = []gatewayv1.HTTPRouteRule{{}}
	}
	rule := &r.Spec.Rules[rng.IntN(len(r.Spec.Rules))]
	switch rng.IntN(9) {
	case 0:
		r.Spec.Hostnames = append(r.Spec.Hostnames, gatewayv1.Hostname(fmt.Sprintf("new%d.example.com", rng.IntN(3))))
		return "hostname added", true
	case 1:
		if len(r.Spec.ParentRefs) > 0 {
			p := &r.Spec.ParentRefs[0]
			if p.SectionName != nil && *p.SectionName == "other" {
				p.SectionName = nil
				return "parentRef widened", true
			}
			p.SectionName = ptrTo(gatewayv1.SectionName("other"))
			return "parentRef narrowed", true
		}
	case 2:
		v := fmt.Sprintf("/edited/%d", rng.IntN(5))
		rule.Matches = append(rule.Matches, gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Value: &v}})
		return "match added", false
	case 3:
		bad := "(["
		rule.Matches = []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptrTo(gatewayv1.PathMatchRegularExpression), Value: &bad}}}
		return "rule's regex broken", false
	case 4:
		rule.BackendRefs = []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "missing", Port: ptrTo(gatewayv1.PortNumber(80))}}}}
		return "backend missing", false
	case 5:
		if svcs := slices.Collect(maps.Keys(in.Services)); len(svcs) > 0 {
			s := svcs[rng.IntN(len(svcs))]
			ref := gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(s.Name), Port: ptrTo(gatewayv1.PortNumber(80))}
			if s.Namespace != r.Namespace {
				ref.Namespace = ptrTo(gatewayv1.Namespace(s.Namespace))
			}
			rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: ref, Weight: ptrTo(int32(1 + rng.IntN(3)))}})
			return "backend added", false
		}
	case 6:
		rule.Filters = append(rule.Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-step", Value: fmt.Sprint(rng.IntN(9))}}}})
		return "header filter", false
	case 7:
		rule.Filters = append(rule.Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExtensionRef})
		return "invalid filter", false
	}
	if len(r.Spec.Rules) > 1 {
		r.Spec.Rules = r.Spec.Rules[1:]
		return "rule removed", false
	}
	r.Spec.Rules = append(r.Spec.Rules, gatewayv1.HTTPRouteRule{})
	return "rule added", false
}

func ptrTo[T any](v T) *T { return &v }

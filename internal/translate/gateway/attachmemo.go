package gateway

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// memoAttach is where a route attached in an earlier pass, and what its
// status said, with everything that decided it: the route's resourceVersion
// (its parentRefs and hostnames), its body (Accepted is replaced when no rule
// is valid), the resourceVersion of the Gateway each parentRef named (the
// listeners, their kinds, hostnames and allowedRoutes are its spec) and the
// labels of the route's namespace (allowedRoutes selectors). While all of
// them are as they were, attaching again would give the same result; at
// 10,000 routes, doing it anyway was a third of a pass after one change.
type memoAttach struct {
	rv string
	// spec is the route's parentRefs and hostnames (attachSpec): a delta
	// pass may re-use the attachment of a route whose rules alone changed.
	spec     string
	body     *body
	parents  []string
	ns       map[string]string
	statuses []ParentStatus
	atts     []memoAtt
}

// memoAtt is one attachment, its listeners by index in the Gateway's spec.
type memoAtt struct {
	gw        types.NamespacedName
	config    string
	listeners []memoListener
}

type memoListener struct {
	index int
	hosts []string
}

// noGateway stands for a parentRef that named no Gateway of this translation.
const noGateway = "\x00"

// parentVersion is the resourceVersion of the Gateway r's i-th parentRef
// names (noGateway: none of this translation's), or false when it has none
// (a test's input): such a route is not remembered, as cachedBody does not
// remember a body without one.
func (t *translation) parentVersion(r *route, i int) (string, bool) {
	g := t.parentGateway(r, r.parents[i])
	if g == nil {
		return noGateway, true
	}
	return g.obj.ResourceVersion, g.obj.ResourceVersion != ""
}

// rememberAttach keeps what attach found for r.
func (t *translation) rememberAttach(r *route, statuses []ParentStatus, order []*attachment) {
	if t.memo == nil || r.meta.GetResourceVersion() == "" {
		return
	}
	parents := make([]string, len(r.parents))
	for i := range r.parents {
		v, ok := t.parentVersion(r, i)
		if !ok {
			delete(t.memo.attaches, r.key)
			return
		}
		parents[i] = v
	}
	m := memoAttach{rv: r.meta.GetResourceVersion(), spec: attachSpec(r.parents, r.hostnames), body: r.body, parents: parents,
		ns: t.in.Namespaces[r.key.Namespace], statuses: statuses}
	for _, a := range order {
		ma := memoAtt{gw: a.gw.key, config: a.config, listeners: make([]memoListener, len(a.listeners))}
		for i, x := range a.listeners {
			ma.listeners[i] = memoListener{index: slices.Index(a.gw.listeners, x.l), hosts: x.hosts}
		}
		m.atts = append(m.atts, ma)
	}
	t.memo.attaches[r.key] = m
	t.memo.attachesSeen++
}

// attachRemembered attaches r as in the previous pass if nothing that
// decided it moved, and reports whether it did.
func (t *translation) attachRemembered(r *route) bool {
	if t.memo == nil {
		return false
	}
	m, ok := t.memo.attaches[r.key]
	if !ok || m.rv != r.meta.GetResourceVersion() || m.body != r.body || !maps.Equal(m.ns, t.in.Namespaces[r.key.Namespace]) {
		return false
	}
	for i := range r.parents {
		if v, ok := t.parentVersion(r, i); !ok || v != m.parents[i] {
			return false
		}
	}
	for _, ma := range m.atts {
		g := t.byKey[ma.gw]
		a := &attachment{r: r, gw: g, config: ma.config, listeners: make([]attached, len(ma.listeners))}
		for i, x := range ma.listeners {
			l := g.listeners[x.index]
			a.listeners[i] = attached{l: l, hosts: x.hosts}
			l.attached++
		}
		t.attachments = append(t.attachments, a)
	}
	if m.statuses != nil {
		t.routeStatus[r.key] = m.statuses
	}
	t.memo.attachesSeen++
	return true
}

// attachSpec is what of a route decides where it attaches besides the
// Gateways and its namespace: its parentRefs and hostnames, in a string that
// differs whenever they do (fields end with "\x00", absent ones are "-").
func attachSpec(parents []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname) string {
	var b strings.Builder
	field := func(present bool, v string) {
		if !present {
			v = "-"
		}
		b.WriteString(v)
		b.WriteByte(0)
	}
	for _, p := range parents {
		field(p.Group != nil, ptrString(p.Group))
		field(p.Kind != nil, ptrString(p.Kind))
		field(p.Namespace != nil, ptrString(p.Namespace))
		field(true, string(p.Name))
		field(p.SectionName != nil, ptrString(p.SectionName))
		port := ""
		if p.Port != nil {
			port = strconv.Itoa(int(*p.Port))
		}
		field(p.Port != nil, port)
		b.WriteByte(1)
	}
	for _, h := range hostnames {
		field(true, string(h))
	}
	return b.String()
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

package ingress

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Memo remembers each Ingress's own translation (its routes, clusters and
// backends, its filter chains on the shared HTTPS listener, and the problems
// found in them) between calls, so that a change to one Ingress among
// thousands re-translates that one only. What is decided across Ingresses
// (modes, TLS host claims, the shared listeners) is computed afresh on every
// call, and only its per-Ingress result (which route tables, TLS hosts and
// chains the Ingress got) is part of the key, so the output is byte for byte
// what Translate gives.
//
// An entry is keyed by everything its translation reads: the Ingress's UID and
// resourceVersion (any change to it makes a new one), the Services it names
// (any change of their resourceVersion, creation or deletion since the
// previous call), its route tables, its TLS cover and the shared-listener
// chains it owns (secret and hosts). Objects without a resourceVersion (built
// in memory rather than read from the apiserver) are never memoised, since a
// change to them could not be seen.
//
// A Memo is not safe for concurrent use; the controller has one pass at a time.
type Memo struct {
	entries map[types.NamespacedName]*memoEntry
	pass    uint64
	// services are the resourceVersions of the Services of the previous call
	// ("" for one without); changed are those that differ in this call. Every
	// entry was valid in the previous call, so only these can invalidate it,
	// and testing a few hundred Services once beats testing each Ingress's.
	services map[types.NamespacedName]string
	changed  map[types.NamespacedName]bool
	// Hits and Misses count lookups over the Memo's life (for tests and logs).
	Hits, Misses int
}

type memoEntry struct {
	uid      types.UID
	rv       string
	services []types.NamespacedName // every Service the Ingress names
	tables   tableNames
	coverAll bool
	cover    map[string]bool
	denied   map[string]types.NamespacedName
	// final: spec includes what the listener sets add, for these chains.
	final    bool
	chains   []chainSig
	spec     v1alpha1.NodeProxyConfigSpec
	problems []Problem
	pass     uint64
}

// NewMemo returns an empty Memo.
func NewMemo() *Memo { return &Memo{entries: map[types.NamespacedName]*memoEntry{}} }

// Translate is Translate(in, opts), re-using the translations of Ingresses whose
// inputs did not change since the previous call, and forgetting Ingresses that
// are no longer in the input.
func (m *Memo) Translate(in Input, opts Options) Output {
	m.pass++
	m.compareServices(in.Services)
	out := translate(in, opts, m)
	maps.DeleteFunc(m.entries, func(_ types.NamespacedName, e *memoEntry) bool { return e.pass != m.pass })
	return out
}

func (m *Memo) compareServices(now map[types.NamespacedName]*corev1.Service) {
	m.changed = map[types.NamespacedName]bool{}
	for k, svc := range now {
		if rv, ok := m.services[k]; !ok || rv == "" || rv != svc.ResourceVersion {
			m.changed[k] = true
		}
	}
	for k := range m.services {
		if now[k] == nil {
			m.changed[k] = true
		}
	}
	m.services = make(map[types.NamespacedName]string, len(now))
	for k, svc := range now {
		m.services[k] = svc.ResourceVersion
	}
}

// ingress is the Ingress's config spec and problems: translateIngress, then
// finish (what the listener sets add). final says whether finish's result may be
// memoised too: it may for a shared Ingress, whose additions are its chains on
// the shared HTTPS listener (part of the key); a dedicated Ingress's own
// listeners are rebuilt on every call. The spec returned shares its contents
// with the memo: callers may append to its slices but must not change their
// elements.
func (m *Memo) ingress(ing *networkingv1.Ingress, key types.NamespacedName, services map[types.NamespacedName]*corev1.Service,
	t tableNames, tls tlsCover, denied map[string]types.NamespacedName, final bool, chains []*chain,
	finish func(*v1alpha1.NodeProxyConfigSpec)) (v1alpha1.NodeProxyConfigSpec, []Problem) {
	if e := m.entries[key]; e != nil && e.valid(ing, m.changed, t, tls, denied, final, chains) {
		m.Hits++
		e.pass = m.pass
		spec := e.share()
		if !final {
			finish(&spec)
		}
		return spec, e.problems
	}
	m.Misses++
	r := translateIngress(ing, services, t, tls, denied)
	spec := r.spec()
	deps, ok := serviceDeps(ing, services)
	if !ok || ing.ResourceVersion == "" {
		delete(m.entries, key)
		finish(&spec)
		return spec, r.problems
	}
	if final {
		finish(&spec)
	}
	e := &memoEntry{uid: ing.UID, rv: ing.ResourceVersion, services: deps, tables: t, coverAll: tls.all, cover: maps.Clone(tls.hosts),
		denied: maps.Clone(denied), final: final, chains: signature(chains), spec: spec, problems: slices.Clip(r.problems), pass: m.pass}
	m.entries[key] = e
	spec = e.share()
	if !final {
		finish(&spec)
	}
	return spec, e.problems
}

// chainSig is what the config of a chain's owner says about it.
type chainSig struct {
	secret string
	hosts  []string
}

func signature(chains []*chain) []chainSig {
	out := make([]chainSig, len(chains))
	for i, c := range chains {
		out[i] = chainSig{secret: c.secret, hosts: slices.Clone(c.hosts)}
	}
	return out
}

func sameChains(sig []chainSig, chains []*chain) bool {
	return slices.EqualFunc(sig, chains, func(s chainSig, c *chain) bool { return s.secret == c.secret && slices.Equal(s.hosts, c.hosts) })
}

func (e *memoEntry) valid(ing *networkingv1.Ingress, changed map[types.NamespacedName]bool, t tableNames, tls tlsCover,
	denied map[string]types.NamespacedName, final bool, chains []*chain) bool {
	if e.uid != ing.UID || e.rv != ing.ResourceVersion || e.tables != t || e.coverAll != tls.all || !maps.Equal(e.cover, tls.hosts) ||
		!maps.Equal(e.denied, denied) ||
		e.final != final || (final && !sameChains(e.chains, chains)) {
		return false
	}
	for _, k := range e.services {
		if changed[k] {
			return false
		}
	}
	return true
}

// share is a copy of the entry's spec whose slices can be appended to (a
// dedicated Ingress's listeners are added to it) without touching the entry.
func (e *memoEntry) share() v1alpha1.NodeProxyConfigSpec {
	s := e.spec
	s.Redirects = slices.Clip(s.Redirects)
	s.Announcements = slices.Clip(s.Announcements)
	s.RouteFragments = slices.Clip(s.RouteFragments)
	s.FilterChainFragments = slices.Clip(s.FilterChainFragments)
	if s.Envoy != nil {
		envoy := *s.Envoy
		envoy.Resources = slices.Clip(envoy.Resources)
		envoy.BackendServices = slices.Clip(envoy.BackendServices)
		envoy.Secrets = slices.Clip(envoy.Secrets)
		s.Envoy = &envoy
	}
	return s
}

// serviceDeps lists every Service ing names, whether or not the path naming it
// is valid (a superset of what translateIngress reads is still a correct key).
// ok is false when a Service has no resourceVersion, so its changes cannot be told.
func serviceDeps(ing *networkingv1.Ingress, services map[types.NamespacedName]*corev1.Service) (deps []types.NamespacedName, ok bool) {
	add := func(b *networkingv1.IngressBackend) bool {
		if b == nil || b.Service == nil {
			return true
		}
		key := types.NamespacedName{Namespace: ing.Namespace, Name: b.Service.Name}
		if slices.Contains(deps, key) {
			return true
		}
		if svc := services[key]; svc != nil && svc.ResourceVersion == "" {
			return false
		}
		deps = append(deps, key)
		return true
	}
	if !add(ing.Spec.DefaultBackend) {
		return nil, false
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for i := range r.HTTP.Paths {
			if !add(&r.HTTP.Paths[i].Backend) {
				return nil, false
			}
		}
	}
	return slices.Clip(deps), true
}

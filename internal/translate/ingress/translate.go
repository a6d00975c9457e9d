// Package ingress translates Kubernetes Ingresses into NodeProxyConfigs. It is a
// pure function of its inputs (no client calls), so every rule of the Ingress
// spec is pinned down by golden tests in testdata/ and the controller only
// gathers inputs and writes results.
//
// What it produces:
//   - "ingress-shared": the listeners of the shared Service portico-ingress (HTTP
//     on 80, HTTPS on 443 without filter chains) and the redirects of its
//     addresses into them.
//   - "ingress.<namespace>.<name>" per Ingress: its routes as route fragments with
//     precedence keys, its EDS clusters "<namespace>/<service>:<port>" and their
//     backendServices; for a shared Ingress the SNI filter chains of its
//     certificates as filter-chain fragments of the shared HTTPS listener, with the
//     Secrets they serve; for a dedicated Ingress its own listeners and redirects.
//
// A rule that cannot be served is reported as a Problem and left out (or, when
// only its backend is missing, answered with 503 so that its traffic does not
// fall through to a shorter prefix of another application); everything else of
// that Ingress and every other Ingress is still served.
package ingress

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// Producer is the portico.dev/producer label of every config made here.
const Producer = "ingress"

// SharedConfigName is the config holding the shared listeners.
const SharedConfigName = "ingress-shared"

// ConfigName is the config of one Ingress.
func ConfigName(key types.NamespacedName) string {
	return npcwriter.NameFor(npcwriter.Source{Kind: "Ingress", Namespace: key.Namespace, Name: key.Name})
}

// Input is everything a translation reads.
type Input struct {
	// Ingresses are the Ingresses of Portico's class, in any order.
	Ingresses []*networkingv1.Ingress
	// Services holds the backend Services the Ingresses reference that exist.
	Services map[types.NamespacedName]*corev1.Service
	// Secrets holds the TLS Secrets the Ingresses reference that exist.
	Secrets map[types.NamespacedName]bool
	// SharedAddresses are the status addresses of the shared Service.
	SharedAddresses []string
	// DedicatedAddresses are the status addresses of each dedicated Ingress's Service.
	DedicatedAddresses map[types.NamespacedName][]string
	// DefaultCertificate is the Secret the IngressClass names in spec.parameters
	// (kind Secret): the shared HTTPS listener presents it to clients whose SNI
	// names no host (or who send none). Without it such handshakes fail.
	DefaultCertificate *types.NamespacedName
}

// Options are the controller's settings.
type Options struct {
	DefaultMode Mode `json:"defaultMode,omitempty"`
	// AllowCrossNamespaceHosts lets Ingresses of every namespace add paths to a
	// host of the shared listener (see hostOwners); off, a host belongs to the
	// namespace of the oldest Ingress claiming it.
	AllowCrossNamespaceHosts bool `json:"allowCrossNamespaceHosts,omitempty"`
}

// Config is one NodeProxyConfig to write.
type Config struct {
	Name string
	// Source is the Ingress the config is made from; nil for the shared config.
	Source *types.NamespacedName
	Spec   v1alpha1.NodeProxyConfigSpec
}

// Output is the translation of all Ingresses.
type Output struct {
	// Configs are sorted by name.
	Configs []Config
	// Modes is the mode each Ingress is served in.
	Modes map[types.NamespacedName]Mode
	// Problems are what could not be served, per Ingress, in spec order.
	Problems map[types.NamespacedName][]Problem
	// ClassProblems are about the IngressClass's parameters (the default certificate).
	ClassProblems []Problem
}

// Reason of a Problem; used as the reason of the Event on the Ingress.
type Reason string

const (
	ReasonInvalidPath        Reason = "InvalidPath"
	ReasonBackendNotFound    Reason = "BackendNotFound"
	ReasonUnsupportedBackend Reason = "UnsupportedBackend"
	ReasonTLSSecretNotFound  Reason = "TLSSecretNotFound"
	ReasonTLSConflict        Reason = "TLSConflict"
	ReasonInvalidAnnotation  Reason = "InvalidAnnotation"
)

// Problem is one part of an Ingress that is not served as written.
type Problem struct {
	Reason Reason `json:"reason"`
	// Field is the path of the offending field, e.g. spec.rules[0].http.paths[1].
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Translate turns the Ingresses into NodeProxyConfigs.
func Translate(in Input, opts Options) Output { return translate(in, opts, nil) }

// translate is Translate, taking each Ingress's own part from m when m is set.
func translate(in Input, opts Options, m *Memo) Output {
	if opts.DefaultMode == "" {
		opts.DefaultMode = ModeShared
	}
	ings := slices.Clone(in.Ingresses)
	// Oldest first: where two Ingresses claim the same thing (an SNI host, an
	// identical route) the older keeps it, so a new Ingress cannot take traffic
	// away from one that already works.
	slices.SortFunc(ings, olderFirst)

	out := Output{Modes: make(map[types.NamespacedName]Mode, len(ings)), Problems: make(map[types.NamespacedName][]Problem, len(ings))}
	shared := newListenerSet(SharedConfigName, in.SharedAddresses)
	shared.fragments = true
	if dc := in.DefaultCertificate; dc != nil {
		if in.Secrets[*dc] {
			shared.fallback = &chain{secret: dc.String()}
		} else {
			out.ClassProblems = append(out.ClassProblems, Problem{ReasonTLSSecretNotFound, "spec.parameters",
				fmt.Sprintf("default certificate Secret %s not found: clients without a matching SNI get no certificate", dc)})
		}
	}
	owners := newHostOwners(opts.AllowCrossNamespaceHosts)
	type pending struct {
		ing    *networkingv1.Ingress
		key    types.NamespacedName
		name   string       // of its config
		ls     *listenerSet // the listeners the Ingress's routes attach to
		tls    tlsCover
		denied map[string]types.NamespacedName
	}
	work := make([]pending, 0, len(ings))
	for _, ing := range ings {
		key := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		mode, p := ModeOf(ing, opts.DefaultMode)
		if p != nil {
			out.Problems[key] = append(out.Problems[key], *p)
		}
		out.Modes[key] = mode
		ls := shared
		var denied map[string]types.NamespacedName
		if mode == ModeDedicated {
			ls = newListenerSet(ConfigName(key), in.DedicatedAddresses[key])
		} else {
			denied = owners.claim(ing)
		}
		cover, problems := ls.addTLS(ing, in.Secrets, denied)
		if len(problems) > 0 {
			out.Problems[key] = append(out.Problems[key], problems...)
		}
		work = append(work, pending{ing: ing, key: key, name: ConfigName(key), ls: ls, tls: cover, denied: denied})
	}

	out.Configs = make([]Config, 0, len(work)+1)
	var sharedSpec v1alpha1.NodeProxyConfigSpec
	shared.addTo(&sharedSpec)
	out.Configs = append(out.Configs, Config{Name: SharedConfigName, Spec: sharedSpec})
	// Only the Ingresses that own a chain of the shared HTTPS listener
	// contribute filter-chain fragments; asking every Ingress would scan every
	// chain 5,000 times.
	owned := chainsByOwner(shared)
	sharedTables := shared.tables() // complete now that every claim is made
	tables := func(ls *listenerSet) tableNames {
		if ls == shared {
			return sharedTables
		}
		return ls.tables()
	}
	// Configs are made in name order, so that sorting them (large structs) at
	// the end finds them in order and moves nothing.
	slices.SortFunc(work, func(a, b pending) int { return cmp.Compare(a.name, b.name) })
	for _, w := range work {
		// finish adds what the listener sets contribute to the Ingress's config:
		// a dedicated Ingress's own listeners, a shared one's filter chains.
		finish := func(spec *v1alpha1.NodeProxyConfigSpec) {
			if w.ls != shared {
				w.ls.addTo(spec)
			}
			if len(owned[w.key]) > 0 {
				shared.addFragmentsTo(spec, w.key)
			}
		}
		var spec v1alpha1.NodeProxyConfigSpec
		var problems []Problem
		if m != nil {
			spec, problems = m.ingress(w.ing, w.key, in.Services, tables(w.ls), w.tls, w.denied, w.ls == shared, owned[w.key], finish)
		} else {
			r := translateIngress(w.ing, in.Services, tables(w.ls), w.tls, w.denied)
			spec, problems = r.spec(), r.problems
			finish(&spec)
		}
		if len(problems) > 0 {
			out.Problems[w.key] = append(out.Problems[w.key], problems...)
		}
		key := w.key
		out.Configs = append(out.Configs, Config{Name: w.name, Source: &key, Spec: spec})
	}
	for k, ps := range out.Problems {
		if len(ps) == 0 {
			delete(out.Problems, k)
		}
	}
	slices.SortFunc(out.Configs, func(a, b Config) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// chainsByOwner groups the chains of a listener set (the fallback included) by
// the Ingress that owns them, in a stable order.
func chainsByOwner(ls *listenerSet) map[types.NamespacedName][]*chain {
	out := map[types.NamespacedName][]*chain{}
	for _, c := range ls.chains {
		out[c.owner] = append(out[c.owner], c)
	}
	for _, cs := range out {
		slices.SortFunc(cs, func(a, b *chain) int { return cmp.Compare(a.secret, b.secret) })
	}
	if f := ls.fallback; f != nil {
		out[f.owner] = append(out[f.owner], f)
	}
	return out
}

// olderFirst orders by creation time, then namespace and name. The tie-breaks
// are compared only on a tie (cmp.Or would evaluate all three): this runs some
// 60,000 times per pass over 5,000 Ingresses.
func olderFirst(a, b *networkingv1.Ingress) int {
	if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

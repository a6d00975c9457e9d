package render

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// SecretState is what the agent knows of one Kubernetes Secret that a config lists
// in spec.envoy.secrets. A listed Secret absent from Input.Secrets has not been
// read yet.
type SecretState struct {
	// Resources are the SDS secrets served for it (see nodeagent/secrets.FromKube).
	Resources []*tlsv3.Secret
	// Reason and Message say why it cannot be served (not found, not a key pair);
	// Resources is then empty.
	Reason  v1alpha1.ConditionReason
	Message string
}

// caSuffix names the CA bundle served beside a certificate (nodeagent/secrets.CASuffix).
const caSuffix = "/ca.crt"

// secretUse is the verdict on one SDS name a config's resource references.
type secretUse int

const (
	secretUsable secretUse = iota
	secretPending
	secretBroken
	secretForeign // not a Secret this config lists: Validate judges it
)

// secretView answers, for one config, what each SDS name it references is.
type secretView struct {
	own    map[string]bool // Secret resources the config defines itself
	listed map[string]string
	known  map[string]SecretState
}

func newSecretView(p *parsed, known map[string]SecretState) *secretView {
	v := &secretView{own: map[string]bool{}, listed: map[string]string{}, known: known}
	for _, s := range p.secrets {
		v.own[s.GetName()] = true
	}
	for _, ref := range p.secretRefs {
		v.listed[ref] = ref
		v.listed[ref+caSuffix] = ref
	}
	return v
}

// verdict is what one or more SDS names are; reason and message are set when broken.
type verdict struct {
	use     secretUse
	reason  v1alpha1.ConditionReason
	message string
}

func (v *secretView) use(name string) verdict {
	if v.own[name] {
		return verdict{use: secretUsable}
	}
	ref, ok := v.listed[name]
	if !ok {
		return verdict{use: secretForeign}
	}
	st, read := v.known[ref]
	switch {
	case !read:
		return verdict{use: secretPending}
	case st.Reason != "":
		return verdict{secretBroken, st.Reason, st.Message}
	}
	for _, r := range st.Resources {
		if r.GetName() == name {
			return verdict{use: secretUsable}
		}
	}
	return verdict{secretBroken, v1alpha1.ReasonInvalidSecret,
		fmt.Sprintf("Secret %s has no %s (SDS secret %q)", ref, strings.TrimPrefix(caSuffix, "/"), name)}
}

// worst is the verdict on a set of names: broken beats pending beats usable.
func (v *secretView) worst(names []string) verdict {
	out := verdict{use: secretUsable}
	for _, n := range names {
		switch vd := v.use(n); vd.use {
		case secretBroken:
			return vd
		case secretPending:
			out = vd
		}
	}
	return out
}

// secretOutcome is what applySecrets decided for one config.
type secretOutcome struct {
	// whole rejects the config: a cluster needs a Secret that cannot be served,
	// and a cluster cannot be left out without breaking the routes to it.
	whole *rejection
	// partial names the filter chains left out because their Secret cannot be
	// served; the rest of the config is served and the config is reported as
	// rejected with this message, so that the user sees the TLS part is missing.
	partial *rejection
	// pending are Secrets not read yet: what needs them is left out (a cluster
	// holds the whole config back) and the config is neither applied nor rejected
	// until they are read.
	pending bool
	// holdWhole: a cluster waits for a Secret, so nothing of the config is served yet.
	holdWhole bool
}

// applySecrets returns p without the filter chains whose Secrets cannot be
// served (p itself when nothing changes: parsed values may be shared with a
// cache and are never modified). One certificate that is missing or broken
// thus costs only the chains that present it: the HTTP routes of the same
// Ingress, and every other config, keep being served.
func applySecrets(p *parsed, known map[string]SecretState) (*parsed, secretOutcome) {
	var out secretOutcome
	if len(p.secretRefs) == 0 {
		return p, out
	}
	v := newSecretView(p, known)
	for _, cl := range p.clusters {
		switch vd := v.worst(xdsres.ClusterSecretReferences(cl)); vd.use {
		case secretBroken:
			out.whole = reject(vd.reason, "cluster %q: %s", cl.GetName(), vd.message)
			return p, out
		case secretPending:
			out.pending, out.holdWhole = true, true
		}
	}
	var dropped []string
	var reason v1alpha1.ConditionReason
	keep := func(where string, fc *listenerv3.FilterChain) bool {
		vd := v.worst(xdsres.ChainSecretReferences(fc))
		switch vd.use {
		case secretBroken:
			dropped = append(dropped, fmt.Sprintf("%s filter chain %q: %s", where, fc.GetName(), vd.message))
			if reason == "" {
				reason = vd.reason
			}
			return false
		case secretPending:
			out.pending = true
			return false
		}
		return true
	}
	q := *p
	changed := false
	q.listeners = make([]*listenerv3.Listener, len(p.listeners))
	for i, l := range p.listeners {
		q.listeners[i] = l
		where := fmt.Sprintf("listener %q", l.GetName())
		var chains []*listenerv3.FilterChain
		for _, fc := range l.GetFilterChains() {
			if keep(where, fc) {
				chains = append(chains, fc)
			}
		}
		def := l.GetDefaultFilterChain()
		if def != nil && !keep(where+" default", def) {
			def = nil
		}
		if len(chains) != len(l.GetFilterChains()) || def != l.GetDefaultFilterChain() {
			c := proto.Clone(l).(*listenerv3.Listener)
			c.FilterChains, c.DefaultFilterChain = chains, def
			q.listeners[i], changed = c, true
		}
	}
	q.chainFragments = nil
	for _, f := range p.chainFragments {
		g := chainFragment{listener: f.listener, index: f.index}
		where := fmt.Sprintf("filterChainFragments[%d] (listener %q)", f.index, f.listener)
		for _, fc := range f.chains {
			if keep(where, fc) {
				g.chains = append(g.chains, fc)
			}
		}
		if len(g.chains) != len(f.chains) {
			changed = true
		}
		if len(g.chains) > 0 {
			q.chainFragments = append(q.chainFragments, g)
		}
	}
	if len(dropped) > 0 {
		out.partial = reject(reason, "not served: %s; the rest of the config is served", strings.Join(dropped, "; "))
	}
	if !changed {
		return p, out
	}
	return &q, out
}

// SecretRefs are the Kubernetes Secrets the configs list, sorted and without
// duplicates: what the agent must read before it can render them.
func SecretRefs(configs []*v1alpha1.NodeProxyConfig) []string {
	var out []string
	for _, c := range configs {
		if c.Spec.Envoy != nil {
			out = append(out, c.Spec.Envoy.Secrets...)
		}
	}
	return sortedUnique(out)
}

package npcwriter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
)

// Config is one NodeProxyConfig of a set: its name, its source and its spec.
type Config struct {
	Name   string
	Source Source
	Spec   v1alpha1.NodeProxyConfigSpec
}

// ApplySet makes the producer's configs exactly configs: it applies each one and
// deletes the producer's configs not in the set (the orphan sweep: configs are
// cluster-scoped and cannot be owned by namespaced sources, so the garbage
// collector will not do it).
//
// The order is what keeps the nodes from rejecting a config for a moment: a
// config contributing filter chains to a listener of another config (the shared
// HTTPS listener, a Gateway listener) is refused by the agent while that listener
// does not exist. So configs whose listeners grow are written first, those whose
// listeners shrink last; orphans are deleted contributors first, definers last.
// Errors of one config do not stop the others; they are joined.
func (w *Writer) ApplySet(ctx context.Context, configs []Config) error {
	var errs []error
	var first, middle, last []Config
	want := make(map[string]bool, len(configs))
	for _, c := range configs {
		want[c.Name] = true
		// Most configs of a pass are the very ones written before: Apply
		// would not write them, so they take no place in the order and no
		// turn of applyGroup's workers.
		if rec, known := w.recall(c.Name); w.sameAsWritten(rec, known, c.Source, c.Spec) {
			continue
		}
		switch grows, shrinks := w.listenerChange(ctx, c); {
		case shrinks && !grows:
			last = append(last, c)
		case grows:
			first = append(first, c)
		default:
			middle = append(middle, c)
		}
	}
	for _, group := range [][]Config{first, middle, last} {
		errs = append(errs, w.applyGroup(ctx, group)...)
	}
	errs = append(errs, w.sweep(ctx, want))
	return errors.Join(errs...)
}

// applyGroup applies configs whose order does not matter, Parallelism at a time:
// a cold start creates one config per source, and one round trip at a time made
// that the whole of a producer's first pass (33 s for 1,000 EnvoyConfigs).
func (w *Writer) applyGroup(ctx context.Context, group []Config) []error {
	n := max(w.Parallelism, 1)
	if n == 1 || len(group) < 2 {
		var errs []error
		for _, c := range group {
			if _, err := w.Apply(ctx, c.Name, c.Source, c.Spec); err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan Config)
	for range min(n, len(group)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if _, err := w.Apply(ctx, c.Name, c.Source, c.Spec); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, c := range group {
		work <- c
	}
	close(work)
	wg.Wait()
	return errs
}

// ApplyOrdered makes the producer's configs exactly configs, writing them in the
// order given, for a producer whose safety depends on its own order: the L2
// controller deletes and shrinks announcement sets before it grows others, so that
// during a handover an address is briefly unanswered rather than answered twice.
// With sweepFirst the orphans are deleted before anything is written.
func (w *Writer) ApplyOrdered(ctx context.Context, configs []Config, sweepFirst bool) error {
	want := make(map[string]bool, len(configs))
	for _, c := range configs {
		want[c.Name] = true
	}
	var errs []error
	if sweepFirst {
		errs = append(errs, w.sweep(ctx, want))
	}
	for _, c := range configs {
		if _, err := w.Apply(ctx, c.Name, c.Source, c.Spec); err != nil {
			errs = append(errs, err)
		}
	}
	if !sweepFirst {
		errs = append(errs, w.sweep(ctx, want))
	}
	return errors.Join(errs...)
}

// listenerChange compares the listeners c defines with those its current object
// (in the cache) defines.
func (w *Writer) listenerChange(ctx context.Context, c Config) (grows, shrinks bool) {
	next := listenerNames(c.Spec)
	cur := &v1alpha1.NodeProxyConfig{}
	if err := w.Client.Get(ctx, client.ObjectKey{Name: c.Name}, cur, client.UnsafeDisableDeepCopy); err != nil {
		return len(next) > 0, false
	}
	prev := listenerNames(cur.Spec)
	for _, n := range next {
		if !slices.Contains(prev, n) {
			grows = true
		}
	}
	for _, n := range prev {
		if !slices.Contains(next, n) {
			shrinks = true
		}
	}
	return grows, shrinks
}

// listenerNames are the listeners a spec defines, read from the resources'
// "name" without decoding them (a config has a handful).
func listenerNames(spec v1alpha1.NodeProxyConfigSpec) []string {
	if spec.Envoy == nil {
		return nil
	}
	var out []string
	for _, r := range spec.Envoy.Resources {
		if r.TypeURL == envoykit.TypeListener {
			out = append(out, resourceName(r.Raw))
		}
	}
	return out
}

// resourceName finds the top-level "name" of a resource's JSON; a full decode of
// thousands of listeners per pass would cost more than the write it orders.
func resourceName(raw []byte) string {
	var v struct {
		Name string `json:"name"`
	}
	_ = jsonUnmarshal(raw, &v)
	return v.Name
}

// sweep deletes the producer's configs not in want: on the first call every
// config the producer owns is looked at (a previous run may have left some),
// afterwards only those the last set had, so a pass over 5,000 configs does not
// list them all. Contributors go before definers, for the same reason as in ApplySet.
func (w *Writer) sweep(ctx context.Context, want map[string]bool) error {
	w.mu.Lock()
	prev := w.set
	w.mu.Unlock()
	var candidates []string
	if prev == nil {
		owned, err := w.Owned(ctx)
		if err != nil {
			return err
		}
		candidates = owned
	} else {
		for name := range prev {
			if !want[name] {
				candidates = append(candidates, name)
			}
		}
	}
	var definers, others []string
	for _, name := range candidates {
		if want[name] {
			continue
		}
		cur := &v1alpha1.NodeProxyConfig{}
		if err := w.Client.Get(ctx, client.ObjectKey{Name: name}, cur, client.UnsafeDisableDeepCopy); err == nil && len(listenerNames(cur.Spec)) > 0 {
			definers = append(definers, name)
		} else {
			others = append(others, name)
		}
	}
	slices.Sort(definers)
	slices.Sort(others)
	var errs []error
	for _, name := range append(others, definers...) {
		if err := w.Delete(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	w.mu.Lock()
	w.set = want
	if len(errs) > 0 {
		w.set = nil // look at everything again on the retry
	}
	w.mu.Unlock()
	return errors.Join(errs...)
}

// NameFor is the config name of a source (see Name): "<kind>.<namespace>.<name>"
// with the kind lowercased, so a Gateway and an HTTPRoute of the same name, or an
// EnvoyConfig and a ClusterEnvoyConfig, never share a config.
func NameFor(src Source) string { return Name(strings.ToLower(src.Kind), src.Namespace, src.Name) }

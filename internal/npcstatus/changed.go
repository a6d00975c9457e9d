package npcstatus

import (
	"context"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/cachelist"
	"github.com/portico-dev/portico/internal/verdict"
)

// Which configs a pass judges. Every node reports after every change it
// applies, and each report used to make a pass judge all of the producer's
// configs: at 10,000 configs that was the largest CPU cost of one route change,
// on the same cores as the change's own path. A verdict moves only when its
// config moves (an event, or a spec write the writer records) or when the
// nodes do; and when the nodes only progressed (verdict.Progressed: watermarks
// rose, nothing else moved) only the verdicts that were not Final can move. So
// a pass after such a report judges the configs touched since the last pass,
// those whose verdict was not Final, and those whose status still waits for a
// write; any other change of the nodes, the first pass and a pass after an
// error judge every config.

// selection is what a pass judges.
type selection struct {
	full    bool
	nodes   []verdict.Node
	configs []*v1alpha1.NodeProxyConfig
	inputs  []verdict.Config
	// gone are the names a partial pass looked for and found deleted, or no
	// longer written by this process.
	gone []string
}

func newReporter(c client.Client, ca cache.Cache, opts Options) *Reporter {
	return &Reporter{client: c, cache: ca, opts: opts, last: map[string]verdict.Verdict{}, waiting: map[string]*waiting{},
		settled: map[string]string{}, open: map[string]bool{}, changed: map[string]bool{}, kick: make(chan event.GenericEvent, 1)}
}

func (r *Reporter) touch(name string) {
	r.changedMu.Lock()
	defer r.changedMu.Unlock()
	r.changed[name] = true
}

// writtenMoved hears the writer record a spec write: the config's watch event
// may have come (and its pass judged it against the previous write) before.
func (r *Reporter) writtenMoved(name string) {
	r.touch(name)
	select {
	case r.kick <- event.GenericEvent{Object: &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
	default: // a pass is asked for already
	}
}

// configEvents notes the config of every event and asks for a pass.
func (r *Reporter) configEvents() handler.EventHandler {
	note := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		r.touch(o.GetName())
		q.Add(passKey)
	}
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	return handler.Funcs{
		CreateFunc:  func(_ context.Context, e event.CreateEvent, q queue) { note(e.Object, q) },
		UpdateFunc:  func(_ context.Context, e event.UpdateEvent, q queue) { note(e.ObjectNew, q) },
		DeleteFunc:  func(_ context.Context, e event.DeleteEvent, q queue) { note(e.Object, q) },
		GenericFunc: func(_ context.Context, e event.GenericEvent, q queue) { note(e.Object, q) },
	}
}

// selectConfigs reads the nodes and the configs this pass judges.
func (r *Reporter) selectConfigs(ctx context.Context) (selection, error) {
	// Taken before anything is read: whatever moves after this is in the next
	// pass's set.
	r.changedMu.Lock()
	changed := r.changed
	r.changed = map[string]bool{}
	r.changedMu.Unlock()

	sel, err := r.readSelection(ctx, changed)
	if err != nil {
		// What was taken is lost: the next pass judges everything.
		r.nodesSeen = nil
		return selection{}, err
	}
	kind := "partial"
	if sel.full {
		kind = "full"
		r.open = map[string]bool{}
	}
	statusPasses.WithLabelValues(r.opts.Writer.Producer, kind).Inc()
	r.nodesSeen = sel.nodes
	return sel, nil
}

func (r *Reporter) readSelection(ctx context.Context, changed map[string]bool) (selection, error) {
	nodes, err := r.nodes(ctx)
	if err != nil {
		return selection{}, err
	}
	sel := selection{nodes: nodes, full: r.nodesSeen == nil || !verdict.Progressed(r.nodesSeen, nodes)}
	if sel.full {
		sel.configs, sel.inputs, err = r.configs(ctx)
		return sel, err
	}
	for name := range r.open {
		changed[name] = true
	}
	for name := range r.waiting {
		changed[name] = true
	}
	// In name order, as a full pass's writes are: the same inputs give the same pass.
	for _, name := range slices.Sorted(maps.Keys(changed)) {
		c, err := r.get(ctx, name)
		if err != nil {
			return selection{}, err
		}
		in, ok := r.input(c)
		if !ok {
			sel.gone = append(sel.gone, name)
			continue
		}
		sel.configs = append(sel.configs, c)
		sel.inputs = append(sel.inputs, in)
	}
	return sel, nil
}

// get is the producer's config name (nil: there is none), the cache's own object.
func (r *Reporter) get(ctx context.Context, name string) (*v1alpha1.NodeProxyConfig, error) {
	var c *v1alpha1.NodeProxyConfig
	if r.cache != nil {
		found, ok, err := cachelist.Get(ctx, r.cache, &v1alpha1.NodeProxyConfig{}, name)
		if err != nil || !ok {
			return nil, err
		}
		c = found
	} else {
		c = &v1alpha1.NodeProxyConfig{}
		if err := r.client.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
	}
	if c.Labels[v1alpha1.LabelProducer] != r.opts.Writer.Producer {
		return nil, nil
	}
	return c, nil
}

// input is what the verdict reads of c, and false for a config the pass leaves
// out (none, being deleted, or not written by this process).
func (r *Reporter) input(c *v1alpha1.NodeProxyConfig) (verdict.Config, bool) {
	if c == nil || c.DeletionTimestamp != nil {
		return verdict.Config{}, false
	}
	written := r.opts.Writer.Written(c.Name)
	if written == "" {
		return verdict.Config{}, false
	}
	return verdict.Config{Name: c.Name, Generation: c.Generation, Written: written,
		NodeSelector: c.Spec.NodeSelector, Redirects: len(c.Spec.Redirects) > 0}, true
}

// judged records whether v can still move with the nodes' progress.
func (r *Reporter) judged(name string, v verdict.Verdict) {
	if verdict.Final(v) {
		delete(r.open, name)
	} else {
		r.open[name] = true
	}
}

// forget drops what the reporter keeps of configs that are gone: after a full
// pass, every config it did not see.
func (r *Reporter) forget(sel selection) {
	if !sel.full {
		for _, name := range sel.gone {
			delete(r.last, name)
			delete(r.waiting, name)
			delete(r.settled, name)
			delete(r.open, name)
		}
		return
	}
	seen := make(map[string]bool, len(sel.configs))
	for _, c := range sel.configs {
		seen[c.Name] = true
	}
	unseen := func(name string) bool { return !seen[name] }
	maps.DeleteFunc(r.last, func(name string, _ verdict.Verdict) bool { return unseen(name) })
	maps.DeleteFunc(r.waiting, func(name string, _ *waiting) bool { return unseen(name) })
	maps.DeleteFunc(r.settled, func(name, _ string) bool { return unseen(name) })
	maps.DeleteFunc(r.open, func(name string, _ bool) bool { return unseen(name) })
}

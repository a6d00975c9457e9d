// Package npcstatus closes the loop from the nodes back to a producer: it turns
// the nodes' NodeProxy reports into a verdict per NodeProxyConfig of one producer
// (internal/verdict), writes it as the config's status (the PROGRAMMED column of
// `kubectl get npc`), and hands every change of verdict to the producer, which
// mirrors it on its source object (an Event on the Ingress, a condition on the
// Gateway or EnvoyConfig).
//
// Writes are bounded: a status is written only when its verdict changed, so a
// steady state writes nothing, and one config changing costs one write per
// change of its verdict, whatever the number of other configs. Passes are
// spaced by MinInterval, since every agent may report once a second, and a pass
// writes at most MaxWritesPerPass statuses, those a user waits for first (a spec
// that moved, then a rejection or recovery, then counts), so that the thousands
// of writes a restarting node causes never hold back the one a user just changed.
package npcstatus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/cachelist"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/verdict"
)

// Change is a config whose verdict changed in a pass.
type Change struct {
	Config *v1alpha1.NodeProxyConfig
	// Previous is nil the first time a verdict is computed for the config in this process.
	Previous *verdict.Verdict
	Verdict  verdict.Verdict
}

// Transition reports whether the Programmed condition's status or reason moved:
// what deserves an Event on the source (a message that only counts nodes does not).
// A config's first verdict in this process moved only if the status it found
// said otherwise: a restarted controller judges every config again, and an Event
// for each of thousands already Programmed would be a storm that tells nobody
// anything (and, at 10,000 routes, held more memory than the translation).
func (c Change) Transition() bool {
	s, r, _ := c.Verdict.Condition()
	if c.Previous == nil {
		if c.Config == nil {
			return true
		}
		cur := conditions.Get(c.Config.Status.Conditions, v1alpha1.ConditionProgrammed)
		return cur == nil || cur.ObservedGeneration != c.Config.Generation || cur.Status != s || cur.Reason != string(r)
	}
	ps, pr, _ := c.Previous.Condition()
	return s != ps || r != pr
}

// Reasons of the Events every producer sends on a config's source when the nodes'
// verdict moves: one spelling, so `kubectl get events --field-selector reason=Rejected`
// finds them whatever made the config.
const (
	EventProgrammed = "Programmed"
	EventRejected   = "Rejected"
	EventPending    = "Pending"
)

// Event is the type and reason of the Event that reports this change: Warning when a
// node rejected the config, Normal otherwise (Programmed, or Pending while nodes lag).
func (c Change) Event() (eventType, reason string) {
	status, why, _ := c.Verdict.Condition()
	switch {
	case why == v1alpha1.ReasonRejected:
		return corev1.EventTypeWarning, EventRejected
	case status != "True":
		return corev1.EventTypeNormal, EventPending
	}
	return corev1.EventTypeNormal, EventProgrammed
}

// Options configure a Reporter.
type Options struct {
	// Writer is the producer's writer: it knows the resourceVersion of each spec write.
	Writer *npcwriter.Writer
	// OnChange receives the configs whose verdict changed, after their status was
	// written. It runs on the reporter's goroutine and must not block for long.
	OnChange func(ctx context.Context, changes []Change)
	// MinInterval spaces passes (default 200 ms).
	MinInterval time.Duration
	// MaxWritesPerPass bounds the status writes of one pass (default 25, about a
	// second at controller-runtime's default 20 QPS), so that a pass after a node
	// restart, which moves every config's verdict, does not hold the loop for
	// minutes; the rest follow in later passes, what users wait for first.
	MaxWritesPerPass int
}

// Reporter is the status loop of one producer.
type Reporter struct {
	client client.Client
	// cache, when set, is read without copying (cachelist); tests leave it nil.
	cache cache.Cache
	opts  Options

	mu   sync.Mutex
	last map[string]verdict.Verdict
	// settled is the resourceVersion at which a config's status was found to say
	// what its verdict in last says: while both hold, a pass knows it settled
	// without formatting the verdict's message again (most configs, every pass).
	settled  map[string]string
	lastPass time.Time
	// waiting are the configs whose status needs a write, since when.
	waiting map[string]*waiting
	// nodesSeen are the nodes as the last pass saw them, nil when the next pass
	// must judge every config; open are the configs whose last verdict the
	// nodes' progress can still move (changed.go).
	nodesSeen []verdict.Node
	open      map[string]bool
	// changed are the configs touched since the last pass began (events and
	// spec writes), guarded by changedMu: the writer and the event handlers
	// add to it while a pass holds mu.
	changedMu sync.Mutex
	changed   map[string]bool
	// kick asks for a pass when the writer records a spec write.
	kick chan event.GenericEvent
}

// passKey is the single reconcile key: a pass judges configs together (changed.go says which).
var passKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "status"}}

// Setup registers the status loop of opts.Writer.Producer with mgr. It watches the
// producer's configs, every NodeProxy and the labels of every Node (metadata only).
func Setup(mgr ctrl.Manager, opts Options) (*Reporter, error) {
	if opts.Writer == nil || opts.Writer.Producer == "" {
		return nil, errors.New("npcstatus: a Writer with a Producer is required")
	}
	if opts.MinInterval <= 0 {
		opts.MinInterval = 200 * time.Millisecond
	}
	if opts.MaxWritesPerPass <= 0 {
		opts.MaxWritesPerPass = 25
	}
	registerMetrics()
	r := newReporter(mgr.GetClient(), mgr.GetCache(), opts)
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{passKey}
	})
	opts.Writer.NotifyWritten(r.writtenMoved)
	producer := opts.Writer.Producer
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[v1alpha1.LabelProducer] == producer })
	labelsChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !mapsEqual(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
	}}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(producer+"-status").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&v1alpha1.NodeProxyConfig{}, r.configEvents(), builder.WithPredicates(ours)).
		WatchesRawSource(source.Channel(r.kick, all)).
		Watches(&v1alpha1.NodeProxy{}, all).
		WatchesMetadata(&corev1.Node{}, all, builder.WithPredicates(labelsChanged)).
		Complete(r)
	return r, err
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Verdict is the last verdict computed for the config name (ok false before the
// first pass that saw it).
func (r *Reporter) Verdict(name string) (verdict.Verdict, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.last[name]
	return v, ok
}

// Reconcile is one pass: over every config of the producer when the nodes
// changed in more than progress, over the configs that moved or may still
// move otherwise (changed.go).
func (r *Reporter) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if wait := r.opts.MinInterval - time.Since(r.lastPass); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	r.lastPass = time.Now()

	sel, err := r.selectConfigs(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	known := func(c *v1alpha1.NodeProxyConfig, v verdict.Verdict) bool {
		rv, ok := r.settled[c.Name]
		prev, had := r.last[c.Name]
		return ok && had && rv == c.ResourceVersion && identical(prev, v)
	}
	items := order(plan(sel.configs, verdict.Compute(sel.inputs, sel.nodes), known), r.waiting, time.Now())

	var changes []Change
	var errs []error
	budget, backlog := r.opts.MaxWritesPerPass, 0
	for _, it := range items {
		c, v := it.config, it.verdict
		if it.prio < prioNone {
			if budget == 0 {
				// Left for the next pass, verdict and all: the producer hears of a
				// change only once its status is written.
				backlog++
				continue
			}
			budget--
			if err := r.write(ctx, it); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if it.prio == prioNone {
			r.settled[c.Name] = c.ResourceVersion
		} else {
			delete(r.settled, c.Name)
		}
		r.judged(c.Name, v)
		prev, had := r.last[c.Name]
		if had && sameVerdict(prev, v) {
			continue
		}
		r.last[c.Name] = v
		ch := Change{Config: c, Verdict: v}
		if had {
			ch.Previous = &prev
		}
		changes = append(changes, ch)
	}
	statusBacklog.WithLabelValues(r.opts.Writer.Producer).Set(float64(backlog))
	r.forget(sel)
	if len(changes) > 0 && r.opts.OnChange != nil {
		r.opts.OnChange(ctx, changes)
	}
	err = errors.Join(errs...)
	if backlog > 0 {
		// An error would turn the next pass into an exponential backoff, and the
		// backlog would wait minutes behind one config whose write keeps failing.
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "status writes failed; retrying with the backlog", "backlog", backlog)
		}
		return reconcile.Result{RequeueAfter: r.opts.MinInterval}, nil
	}
	return reconcile.Result{}, err
}

// write patches one config's status. A failed write keeps its place in the
// queue, counted, so that it goes after the configs that can be written.
func (r *Reporter) write(ctx context.Context, it item) error {
	c := it.config
	upd := c.DeepCopy()
	upd.Status = it.status
	if err := r.client.Status().Patch(ctx, upd, client.MergeFrom(c)); client.IgnoreNotFound(err) != nil {
		statusWrites.WithLabelValues(r.opts.Writer.Producer, "error").Inc()
		if w := r.waiting[c.Name]; w != nil {
			w.failures++
		}
		return fmt.Errorf("status of NodeProxyConfig %s: %w", c.Name, err)
	}
	statusWrites.WithLabelValues(r.opts.Writer.Producer, "ok").Inc()
	delete(r.waiting, c.Name)
	return nil
}

// configs lists the producer's configs and the verdict inputs of those its writer wrote.
func (r *Reporter) configs(ctx context.Context) ([]*v1alpha1.NodeProxyConfig, []verdict.Config, error) {
	// Read-only: the pass copies the one it writes.
	all, err := r.list(ctx)
	if err != nil {
		return nil, nil, err
	}
	configs := make([]*v1alpha1.NodeProxyConfig, 0, len(all))
	inputs := make([]verdict.Config, 0, len(all))
	for _, c := range all {
		if in, ok := r.input(c); ok {
			configs = append(configs, c)
			inputs = append(inputs, in)
		}
	}
	return configs, inputs, nil
}

// list is the producer's configs, the cache's own objects.
func (r *Reporter) list(ctx context.Context) ([]*v1alpha1.NodeProxyConfig, error) {
	ours := labels.SelectorFromSet(labels.Set{v1alpha1.LabelProducer: r.opts.Writer.Producer})
	if r.cache != nil {
		return cachelist.List(ctx, r.cache, &v1alpha1.NodeProxyConfig{}, ours)
	}
	var list v1alpha1.NodeProxyConfigList
	if err := r.client.List(ctx, &list, client.MatchingLabelsSelector{Selector: ours}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.NodeProxyConfig, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// nodes are the nodes running the agent (those with a NodeProxy), with their labels.
func (r *Reporter) nodes(ctx context.Context) ([]verdict.Node, error) {
	var nps v1alpha1.NodeProxyList
	if err := r.client.List(ctx, &nps, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var meta metav1.PartialObjectMetadataList
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.client.List(ctx, &meta, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	labels := make(map[string]map[string]string, len(meta.Items))
	for _, n := range meta.Items {
		labels[n.Name] = n.Labels
	}
	out := make([]verdict.Node, 0, len(nps.Items))
	for _, np := range nps.Items {
		out = append(out, verdict.Node{Name: np.Name, Labels: labels[np.Name], Status: np.Status})
	}
	return out, nil
}

// sameVerdict: the producer is told only of verdicts that changed.
func sameVerdict(a, b verdict.Verdict) bool {
	// Equal verdicts make equal conditions: comparing them first spares formatting
	// two messages for each of the thousands of configs a pass finds settled.
	if identical(a, b) {
		return true
	}
	as, ar, am := a.Condition()
	bs, br, bm := b.Condition()
	return as == bs && ar == br && am == bm && len(a.Programmed) == len(b.Programmed)
}

// identical: the same nodes in the same states for the same reasons.
func identical(a, b verdict.Verdict) bool {
	return a.Selected == b.Selected && slices.Equal(a.Programmed, b.Programmed) &&
		slices.Equal(a.Rejected, b.Rejected) && slices.Equal(a.Pending, b.Pending)
}

package gateway

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/cachelist"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// Delta passes: when nothing but the rules of some HTTPRoutes changed since
// the last pass, the pass translates, writes and reports those routes alone
// (translate.Memo.TranslateChanged says why that is enough, and refuses
// what it cannot prove). The events decide: an HTTPRoute whose generation
// moved is recorded by name; any other event (a route created, deleted or
// relabelled, a Gateway, class, Service, Secret, grant, namespace or config
// event, the status loop's kick) asks for a full pass, as does a pass that
// failed. A full pass is always correct; a delta is an answer to "what
// changed" that the full pass would find by visiting everything.

var passesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "portico_gateway_passes_total",
	Help: "Gateway controller passes by kind: full (every Gateway and route), delta (only HTTPRoutes whose rules changed), refused (a delta that needed a full pass).",
}, []string{"kind"})

var registerOnce sync.Once

func registerMetrics() { registerOnce.Do(func() { metrics.Registry.MustRegister(passesTotal) }) }

// pending is what the events since the last pass ask for.
type pending struct {
	mu     sync.Mutex
	full   bool
	routes map[types.NamespacedName]bool
}

func (p *pending) markFull() {
	p.mu.Lock()
	p.full = true
	p.mu.Unlock()
}

func (p *pending) markRoute(k types.NamespacedName) {
	p.mu.Lock()
	if p.routes == nil {
		p.routes = map[types.NamespacedName]bool{}
	}
	p.routes[k] = true
	p.mu.Unlock()
}

// take returns what is pending and clears it; the routes in name order.
func (p *pending) take() (full bool, routes []types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	full, p.full = p.full, false
	routes = slices.SortedFunc(maps.Keys(p.routes), func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	p.routes = nil
	return full, routes
}

// fullEvents is the handler of every watch but the HTTPRoutes': its events
// ask for a full pass.
func (c *Controller) fullEvents() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		c.pending.markFull()
		return []reconcile.Request{everything}
	})
}

// routeEvents records the HTTPRoutes whose spec changed; a route created,
// deleted or relabelled asks for a full pass (it moves attachments).
func (c *Controller) routeEvents() handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	full := func(q queue) {
		c.pending.markFull()
		q.Add(everything)
	}
	return handler.Funcs{
		CreateFunc:  func(_ context.Context, _ event.CreateEvent, q queue) { full(q) },
		DeleteFunc:  func(_ context.Context, _ event.DeleteEvent, q queue) { full(q) },
		GenericFunc: func(_ context.Context, _ event.GenericEvent, q queue) { full(q) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			if !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) || e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() {
				full(q)
				return
			}
			c.pending.markRoute(client.ObjectKeyFromObject(e.ObjectNew))
			q.Add(everything)
		},
	}
}

// deltaPass translates, writes and reports the routes named, and reports
// false (having written nothing) when a full pass is needed instead.
func (c *Controller) deltaPass(ctx context.Context, keys []types.NamespacedName) (bool, error) {
	ch := translate.Changes{Gateways: map[types.NamespacedName]*gatewayv1.Gateway{},
		Namespaces: map[string]map[string]string{}, Services: map[types.NamespacedName]*corev1.Service{}}
	for _, k := range keys {
		r, found, err := cachelist.Get(ctx, c.cache, &gatewayv1.HTTPRoute{}, k.String())
		switch {
		case err != nil:
			return true, err
		case !found:
			return false, nil // deleted since: the full pass sweeps it
		}
		ch.HTTPRoutes = append(ch.HTTPRoutes, r)
		if err := c.httpRouteServices(ctx, ch.Services, r); err != nil {
			return true, err
		}
		if _, done := ch.Namespaces[r.Namespace]; !done {
			ns := &metav1.PartialObjectMetadata{}
			ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
			if err := c.client.Get(ctx, types.NamespacedName{Name: r.Namespace}, ns); err != nil {
				return true, err
			}
			ch.Namespaces[r.Namespace] = ns.Labels
		}
	}
	var gwl gatewayv1.GatewayList
	var grants gatewayv1.ReferenceGrantList
	for _, l := range []client.ObjectList{&gwl, &grants} {
		if err := c.client.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return true, err
		}
	}
	for i := range gwl.Items {
		ch.Gateways[client.ObjectKeyFromObject(&gwl.Items[i])] = &gwl.Items[i]
	}
	for i := range grants.Items {
		ch.Grants = append(ch.Grants, &grants.Items[i])
	}
	d, ok := c.memo.TranslateChanged(ch)
	if !ok {
		passesTotal.WithLabelValues("refused").Inc()
		return false, nil
	}
	passesTotal.WithLabelValues("delta").Inc()
	var errs []error
	// Route configs carry fragments only, onto listeners that stay: their
	// order does not matter to the nodes.
	for _, cfg := range d.Configs {
		if _, err := c.npcs.Apply(ctx, cfg.Name, cfg.Source, cfg.Spec); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range ch.HTTPRoutes {
		if err := c.httpRouteStatus(ctx, r, d.Routes); err != nil {
			errs = append(errs, err)
		}
	}
	return true, errors.Join(errs...)
}

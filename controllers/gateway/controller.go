// Package gateway runs the Gateway API controller: it accepts the GatewayClasses
// whose controllerName is Portico's, gathers their Gateways, the routes
// attached to them and everything those reference from the informer cache, has
// internal/translate/gateway turn them into NodeProxyConfigs and status, writes
// both, and keeps one LoadBalancer Service per Gateway (LB-IPAM gives it its
// addresses, ipMode Proxy keeps kube-proxy away from them).
//
// Everything is reconciled under one key, as the Ingress controller does:
// routes attach across namespaces and Gateways, SNI names are claimed oldest
// first, and a route's hostnames decide which others are copied onto its
// virtual hosts, so one change may move several outputs. One pass that writes
// only what differs is simpler to get right than per-object bookkeeping, and
// the work queue folds a burst of events into one pass.
//
// Programmed comes from the nodes: a Gateway is Programmed once its config is
// in effect on every node it selects (internal/npcstatus), and its listeners
// with it.
package gateway

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/npcstatus"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses;gateways;httproutes;grpcroutes;tlsroutes;referencegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses/status;gateways/status;httproutes/status;grpcroutes/status;tlsroutes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=gatewayclassconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=portico-system

// Options configure the controller.
type Options struct {
	// ControllerName is the GatewayClass controllerName served (default portico.dev/gateway-controller).
	ControllerName gatewayv1.GatewayController
}

// Controller is the Gateway API controller of one manager.
type Controller struct {
	client client.Client
	// cache is read without copying for the routes (cachelist): every pass reads
	// them all.
	cache     cache.Cache
	apiReader client.Reader
	recorder  recorder.EventRecorder
	opts      Options
	npcs      *npcwriter.Writer
	// kick runs a pass when the nodes' verdict on a config changed: the
	// Programmed conditions follow it.
	kick chan event.GenericEvent

	mu sync.Mutex
	// routesDone skips the status comparison of routes that did not change.
	routesDone map[translate.RouteKey]routeDone
	// statusPass counts the passes over route statuses (routeDone.pass).
	statusPass uint64
	// memo keeps each route's translation between passes.
	memo *translate.Memo
	// lastParams are each class's parameters last accepted (classStatus).
	lastParams map[string]*gatewayparams.Parameters
	// secrets remembers each certificate Secret's check by resourceVersion, so
	// that a pass does not parse every key pair again.
	secrets map[types.NamespacedName]secretCheck
	// pending is what the events since the last pass ask for (delta.go).
	pending pending
}

// everything is the single reconcile key.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "gateways"}}

// Setup registers the controller with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.ControllerName == "" {
		opts.ControllerName = translate.ControllerName
	}
	c := &Controller{
		client:     mgr.GetClient(),
		cache:      mgr.GetCache(),
		apiReader:  mgr.GetAPIReader(),
		recorder:   mgr.GetEventRecorder("gateway-controller"),
		opts:       opts,
		npcs:       &npcwriter.Writer{Client: mgr.GetClient(), Producer: translate.Producer, Watched: true},
		kick:       make(chan event.GenericEvent, 1),
		secrets:    map[types.NamespacedName]secretCheck{},
		lastParams: map[string]*gatewayparams.Parameters{},
		memo:       translate.NewMemo(),
		routesDone: map[translate.RouteKey]routeDone{},
	}
	c.pending.markFull()
	registerMetrics()
	if _, err := npcstatus.Setup(mgr, npcstatus.Options{Writer: c.npcs, OnChange: c.onVerdicts}); err != nil {
		return err
	}
	all := c.fullEvents()
	// Status writes do not change generations: the controller's own writes do
	// not cost another pass.
	specs := builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))
	return ctrl.NewControllerManagedBy(mgr).
		Named("gateway").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&gatewayv1.GatewayClass{}, all, specs).
		// A class's parameters shape its Gateways' Services and configs; the
		// single key re-reconciles every Gateway of the classes that name it.
		Watches(&v1alpha1.GatewayClassConfig{}, all, specs).
		Watches(&gatewayv1.Gateway{}, all, specs).
		// A route whose rules alone changed may cost a delta pass (delta.go).
		Watches(&gatewayv1.HTTPRoute{}, c.routeEvents(), specs).
		Watches(&gatewayv1.GRPCRoute{}, all, specs).
		Watches(&gatewayv1.TLSRoute{}, all, specs).
		Watches(&gatewayv1.ReferenceGrant{}, all).
		Watches(&corev1.Service{}, all, builder.WithPredicates(servicePredicate())).
		// Secrets as metadata only: the cache must not hold every Secret's data in
		// the cluster; a named certificate is read whole once per resourceVersion.
		WatchesMetadata(&corev1.Secret{}, all).
		WatchesMetadata(&corev1.Namespace{}, all, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&v1alpha1.NodeProxyConfig{}, all, builder.WithPredicates(ownedConfigs(c.npcs))).
		WatchesRawSource(source.Channel(c.kick, all)).
		Complete(reconcile.Func(c.reconcile))
}

// servicePredicate passes our own Services' changes (their status carries the
// addresses) and spec changes of any Service a route may use.
func servicePredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			if e.ObjectNew.GetLabels()[LabelManagedBy] == ManagedBy {
				return true
			}
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
		},
	}
}

// ownedConfigs passes our NodeProxyConfigs being deleted or edited by someone
// else (so they are put back), after the writer has taken note of every event,
// and the Gateways' configs whose Programmed verdict moved: the Gateways'
// Programmed follows it, and the pass must read it from this very cache, which
// the event proves is up to date (a pass run from the status loop's callback
// may come before the cache has the status it just wrote). A route's config
// moving costs no pass: no status a pass writes reads it (its Events are sent
// by onVerdicts), and every route change moves its config's verdict twice
// (Pending at the new generation, then Programmed), which made three passes
// over every route of every Gateway out of one change.
func ownedConfigs(w *npcwriter.Writer) predicate.Predicate {
	ours := func(o client.Object) bool { return o.GetLabels()[v1alpha1.LabelProducer] == translate.Producer }
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			own := w.Observe(e.ObjectNew, false)
			return ours(e.ObjectNew) && ((e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() && !own) ||
				(gatewayConfig(e.ObjectNew) && verdictMoved(e.ObjectOld, e.ObjectNew)))
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.Observe(e.Object, true)
			return ours(e.Object)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// gatewayConfig reports whether a config is a Gateway's (listeners), whose
// verdict is the Gateway's Programmed condition.
func gatewayConfig(o client.Object) bool {
	return o.GetLabels()[v1alpha1.LabelSourceKind] == translate.KindGateway
}

func verdictMoved(old, cur client.Object) bool {
	o, ok1 := old.(*v1alpha1.NodeProxyConfig)
	n, ok2 := cur.(*v1alpha1.NodeProxyConfig)
	if !ok1 || !ok2 {
		return false
	}
	a, b := conditions.Get(o.Status.Conditions, v1alpha1.ConditionProgrammed), conditions.Get(n.Status.Conditions, v1alpha1.ConditionProgrammed)
	switch {
	case a == nil || b == nil:
		return (a == nil) != (b == nil)
	}
	return a.Status != b.Status || a.Reason != b.Reason || a.Message != b.Message || a.ObservedGeneration != b.ObservedGeneration
}

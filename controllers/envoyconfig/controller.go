// Package envoyconfig runs the EnvoyConfig controller: it translates every
// EnvoyConfig and ClusterEnvoyConfig (internal/translate/envoyconfig) into one
// NodeProxyConfig, decides conflicts between configs (the older keeps a listener
// port), writes the configs, and reports on each source object Accepted (the
// admission-level verdict, the same message the webhook gives) and Programmed (the
// nodes' verdict, with Envoy's NACK text and the node names).
//
// Everything is reconciled under one key: conflicts are decided across all configs,
// so a change to one may change another's verdict. A pass re-translates only the
// configs whose inputs changed (the object's generation, the resourceVersions of the
// Services it redirects), and the writer compares against what it last wrote, so
// a pass over thousands of unchanged configs costs map lookups.
package envoyconfig

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcstatus"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/envoyconfig"
)

// +kubebuilder:rbac:groups=portico.dev,resources=envoyconfigs;clusterenvoyconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=envoyconfigs/status;clusterenvoyconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=portico-system

// Options configure the controller (none yet: the translation has no settings).
type Options struct{}

// Controller is the EnvoyConfig controller of one manager.
type Controller struct {
	client   client.Client
	recorder recorder.EventRecorder
	npcs     *npcwriter.Writer
	// wake makes a pass after the nodes' verdict changed.
	wake chan event.GenericEvent

	mu sync.Mutex
	// memo is each config's last translation, by UID.
	memo map[types.UID]*memoEntry
	// refMu guards referenced apart from mu: event handlers read it while a pass runs.
	refMu sync.Mutex
	// referenced are the Services some config redirects: only their changes matter.
	referenced map[types.NamespacedName]bool
	// written is the generation of the source whose translation each config
	// (by NodeProxyConfig name) holds: Programmed describes that generation.
	written map[string]int64
	// verdictMu guards verdicts, written by the status loop's goroutine.
	verdictMu sync.Mutex
	// verdicts are the nodes' Programmed verdicts by NodeProxyConfig name.
	verdicts map[string]verdictOf
}

// everything is the single reconcile key.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "envoyconfigs"}}

// Setup registers the controller and its status loop with mgr.
func Setup(mgr ctrl.Manager, _ Options) error {
	c := &Controller{
		client:   mgr.GetClient(),
		recorder: mgr.GetEventRecorder("envoyconfig-controller"),
		// No config contributes to another's listener, so order within a set is free.
		npcs:       &npcwriter.Writer{Client: mgr.GetClient(), Producer: translate.Producer, Watched: true, Parallelism: 16},
		wake:       make(chan event.GenericEvent, 1),
		memo:       map[types.UID]*memoEntry{},
		referenced: map[types.NamespacedName]bool{},
		written:    map[string]int64{},
		verdicts:   map[string]verdictOf{},
	}
	if _, err := npcstatus.Setup(mgr, npcstatus.Options{Writer: c.npcs, OnChange: c.onVerdicts}); err != nil {
		return err
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{everything}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("envoyconfig").
		// One worker: passes are whole-world and must not race each other.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&v1alpha1.EnvoyConfig{}, all, builder.WithPredicates(specChanged())).
		Watches(&v1alpha1.ClusterEnvoyConfig{}, all, builder.WithPredicates(specChanged())).
		Watches(&corev1.Service{}, all, builder.WithPredicates(c.referencedService())).
		WatchesMetadata(&corev1.Node{}, all, builder.WithPredicates(labelsChanged())).
		Watches(&v1alpha1.NodeProxyConfig{}, all, builder.WithPredicates(ownedConfigs(c.npcs))).
		WatchesRawSource(source.Channel(c.wake, all)).
		Complete(reconcile.Func(c.reconcile))
}

// specChanged drops the echo of the controller's own status writes.
func specChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{})
}

// referencedService passes changes of Services some config redirects: their
// addresses and ports are inputs of the translation.
func (c *Controller) referencedService() predicate.Predicate {
	ref := func(o client.Object) bool {
		c.refMu.Lock()
		defer c.refMu.Unlock()
		return c.referenced[client.ObjectKeyFromObject(o)]
	}
	return predicate.NewPredicateFuncs(ref)
}

// labelsChanged passes Nodes joining, leaving or changing labels: whether two
// configs' selectors overlap (a port conflict) depends on them.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		a, b := e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()
		if len(a) != len(b) {
			return true
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || w != v {
				return true
			}
		}
		return false
	}}
}

// ownedConfigs passes our NodeProxyConfigs being deleted or edited by someone else,
// so they are put back; the echo of our own writes is dropped.
func ownedConfigs(w *npcwriter.Writer) predicate.Predicate {
	ours := func(o client.Object) bool { return o.GetLabels()[v1alpha1.LabelProducer] == translate.Producer }
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			own := w.Observe(e.ObjectNew, false)
			return ours(e.ObjectNew) && e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() && !own
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.Observe(e.Object, true)
			return ours(e.Object)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

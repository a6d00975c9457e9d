// Package ingress runs the Ingress controller: it gathers the Ingresses of
// Portico's class and everything they reference from the informer cache, has
// internal/translate/ingress turn them into NodeProxyConfigs, writes those, keeps
// the load balancer Services (the shared portico-ingress and each dedicated
// Ingress's own) and copies the Services' addresses to the Ingresses' status.
//
// Everything is reconciled under one key. TLS host claims are decided across
// all shared Ingresses (the oldest wins), so a change to any input may change
// several outputs; one pass over all Ingresses that writes only what differs is
// simpler to get right than per-object bookkeeping, and the work queue folds a
// burst of events into one pass. What keeps a pass over 5,000 Ingresses cheap
// (tens of milliseconds, BenchmarkOneIngressChange) is that it mostly re-uses:
// cache reads without copies, each Ingress's translation memoised by everything
// it depends on, and the writer comparing against what it last wrote rather than
// re-encoding every config.
package ingress

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcstatus"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses/finalizers,verbs=update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingressclasses,verbs=get;list;watch;create
// Writing Services is granted in every namespace (dedicated Ingresses get theirs in
// their own); the chart's admission policy narrows it to Services labelled
// app.kubernetes.io/managed-by=portico-ingress-controller.
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// Secrets are only watched as metadata (WatchesMetadata below): list and watch are the
// verbs of a metadata watch, and RBAC cannot tell it from a full read, so the chart's
// install test checks that every Secret request of this binary asks for metadata only.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// Leader election only, in the install namespace (the chart renders it there).
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=portico-system

// Options configure the controller.
type Options struct {
	// InstallNamespace holds the shared Service portico-ingress.
	InstallNamespace string
	// DefaultMode serves Ingresses without the loadbalancer-mode annotation.
	DefaultMode translate.Mode
	// ClassName is the IngressClass served (created at start if CreateClass and missing).
	ClassName   string
	CreateClass bool
	// AllowCrossNamespaceHosts lets Ingresses of any namespace add paths to a host
	// of the shared load balancer; off, a host belongs to the namespace of the
	// oldest Ingress claiming it.
	AllowCrossNamespaceHosts bool
}

// SharedServiceName is the shared load balancer Service in the install namespace.
const SharedServiceName = "portico-ingress"

// Controller is the Ingress controller of one manager.
type Controller struct {
	client    client.Client
	apiReader client.Reader
	recorder  recorder.EventRecorder
	opts      Options
	npcs      *npcwriter.Writer

	mu sync.Mutex
	// classProblems are the IngressClass problems last reported.
	classProblems []string
	// memo keeps each Ingress's translation between passes, so that a pass
	// re-translates only the Ingresses whose inputs changed.
	memo *translate.Memo
	// pass counts passes, to tell which Ingresses a pass did not see.
	pass uint64
	// reported is the problem list last reported per Ingress (with its
	// generation), so Events are sent when problems change, not on every pass.
	reported map[types.NamespacedName]*reported
	// classChecked: the IngressClass was created or found once.
	classChecked bool
}

// reported is what was last reported about one Ingress.
type reported struct {
	generation int64
	problems   []translate.Problem
	extra      []string
	pass       uint64 // the last pass that saw the Ingress
}

// everything is the single reconcile key.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "ingresses"}}

// Setup registers the controller with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.InstallNamespace == "" {
		opts.InstallNamespace = "portico-system"
	}
	if opts.DefaultMode == "" {
		opts.DefaultMode = translate.ModeShared
	}
	if opts.ClassName == "" {
		opts.ClassName = "portico"
	}
	c := &Controller{
		client:    mgr.GetClient(),
		apiReader: mgr.GetAPIReader(),
		recorder:  mgr.GetEventRecorder("ingress-controller"),
		opts:      opts,
		npcs:      &npcwriter.Writer{Client: mgr.GetClient(), Producer: translate.Producer, Watched: true},
		memo:      translate.NewMemo(),
		reported:  map[types.NamespacedName]*reported{},
	}
	if _, err := npcstatus.Setup(mgr, npcstatus.Options{Writer: c.npcs, OnChange: c.onVerdicts}); err != nil {
		return err
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{everything}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("ingress").
		// One worker: passes are whole-world and must not race each other.
		WithOptions(ctrlOptions()).
		Watches(&networkingv1.Ingress{}, all).
		Watches(&networkingv1.IngressClass{}, all).
		Watches(&corev1.Service{}, all, builder.WithPredicates(servicePredicate())).
		// Only whether a Secret exists matters here; the agent reads the
		// certificates. A metadata watch keeps key material out of this process.
		WatchesMetadata(&corev1.Secret{}, all, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		Watches(&v1alpha1.NodeProxyConfig{}, all, builder.WithPredicates(ownedConfigs(c.npcs))).
		Complete(reconcile.Func(c.reconcile))
}

// servicePredicate passes changes that matter: our own Services (their status
// carries the addresses), and the spec of any Service an Ingress may use.
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
// else (status writes do not change the generation), so they are put back. The
// echo of the controller's own writes is dropped: it would cost a whole pass
// that finds nothing to do. Every event goes through the writer's Observe
// first, which is what lets it trust its memory of unchanged configs.
//
// A config becoming programmed on its first node (or on none any more) also
// passes: that decides whether its Ingress shows an address (servedSomewhere),
// and the pass must read the status from this very cache, which the event proves
// is up to date.
func ownedConfigs(w *npcwriter.Writer) predicate.Predicate {
	ours := func(o client.Object) bool { return o.GetLabels()[v1alpha1.LabelProducer] == translate.Producer }
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			own := w.Observe(e.ObjectNew, false)
			if !ours(e.ObjectNew) {
				return false
			}
			return (e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() && !own) || servedChanged(e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.Observe(e.Object, true)
			return ours(e.Object)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func servedChanged(old, cur client.Object) bool {
	o, ok1 := old.(*v1alpha1.NodeProxyConfig)
	n, ok2 := cur.(*v1alpha1.NodeProxyConfig)
	return ok1 && ok2 && (o.Status.ProgrammedNodes > 0) != (n.Status.ProgrammedNodes > 0)
}

// Package lbipam runs LB-IPAM: it gives LoadBalancer Services addresses from
// LoadBalancerIPPools and keeps pool status current. The decisions are made by
// internal/lbipam; this package gathers inputs from the cache, serialises access to the
// bookkeeping and writes results (Service status, pool status, events, metrics).
package lbipam

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/lbipam"
)

// FieldOwner is the server-side-apply manager of what LB-IPAM writes on Services.
const FieldOwner = "portico-lbipam"

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=portico.dev,resources=loadbalancerippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=loadbalancerippools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// The NodeProxyConfig webhook this binary serves checks redirects against every node's addresses.
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// Leader election only, in the install namespace (the chart renders it there): a
// cluster-wide Lease right would let a controller take any other component's lock.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=portico-system

// Options configure the controller.
type Options struct {
	// RequireLBClass serves only Services with loadBalancerClass portico.dev/lbipam.
	RequireLBClass bool
}

// Controller owns LB-IPAM's bookkeeping for one manager.
type Controller struct {
	client   client.Client
	cache    cache.Cache
	recorder recorder.EventRecorder
	opts     Options

	mu       sync.Mutex
	state    *lbipam.State
	poolGens map[string]int64 // generation each pool was last parsed at
	arrivals *arrivals
	// releaseNotes are the releases a Service's condition must still report (see reconcileService).
	releaseNotes map[types.NamespacedName][]string
	// poolWritten is when each pool's status was last written, to batch usage updates.
	poolWritten map[string]time.Time
	ready       bool

	// Channels through which a reconcile of one kind asks for reconciles of the other.
	poolKick    chan event.GenericEvent
	serviceKick chan event.GenericEvent
}

// Setup registers the Service and pool reconcilers with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	c := &Controller{
		client:       mgr.GetClient(),
		cache:        mgr.GetCache(),
		recorder:     mgr.GetEventRecorder("lbipam-controller"),
		opts:         opts,
		state:        lbipam.NewState(),
		poolGens:     map[string]int64{},
		arrivals:     newArrivals(),
		releaseNotes: map[types.NamespacedName][]string{},
		poolWritten:  map[string]time.Time{},
		poolKick:     make(chan event.GenericEvent, 1024),
		serviceKick:  make(chan event.GenericEvent, 1024),
	}
	registerMetrics()
	err := ctrl.NewControllerManagedBy(mgr).
		Named("lbipam-service").
		For(&corev1.Service{}, builder.WithPredicates(predicate.Funcs{
			// Only a Service's spec, annotations or labels change what it gets; status
			// writes (ours included) do not need a reconcile.
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
					!maps.Equal(e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()) ||
					!maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
			},
		})).
		WatchesRawSource(source.Channel(c.serviceKick, &handler.EnqueueRequestForObject{})).
		Complete(reconcile(c.reconcileService))
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("lbipam-pool").
		Watches(&v1alpha1.LoadBalancerIPPool{}, arrivalHandler{EventHandler: &handler.EnqueueRequestForObject{}, arrivals: c.arrivals}).
		WatchesRawSource(source.Channel(c.poolKick, &handler.EnqueueRequestForObject{})).
		Complete(reconcile(c.reconcilePool))
}

type reconcile func(context.Context, types.NamespacedName) (ctrl.Result, error)

func (f reconcile) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return f(ctx, req.NamespacedName)
}

// init adopts every address Services already hold, once, before the first decision:
// after a restart nothing is allocated or released until both caches have synced and
// every assigned Service is registered, so a restart changes no address.
func (c *Controller) init(ctx context.Context) error {
	if c.ready {
		return nil
	}
	// GetInformer blocks until the informer has synced, whichever controller calls first.
	for _, obj := range []client.Object{&corev1.Service{}, &v1alpha1.LoadBalancerIPPool{}} {
		if _, err := c.cache.GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("waiting for the %T cache: %w", obj, err)
		}
	}
	var pools v1alpha1.LoadBalancerIPPoolList
	if err := c.client.List(ctx, &pools); err != nil {
		return err
	}
	for i := range pools.Items {
		c.setPool(&pools.Items[i])
	}
	var svcs corev1.ServiceList
	if err := c.client.List(ctx, &svcs); err != nil {
		return err
	}
	slices.SortFunc(svcs.Items, func(a, b corev1.Service) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return compareKeys(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	registered := 0
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if !lbipam.Served(svc, c.opts.RequireLBClass) {
			continue
		}
		if addrs := ingressAddrs(svc); len(addrs) > 0 {
			if req, err := lbipam.NewRequest(svc); err == nil {
				c.state.Register(req, addrs)
				registered++
			}
		}
	}
	ctrl.LoggerFrom(ctx).Info("LB-IPAM state adopted", "pools", len(pools.Items), "servicesWithAddresses", registered)
	c.ready = true
	return nil
}

func (c *Controller) setPool(p *v1alpha1.LoadBalancerIPPool) []string {
	c.poolGens[p.Name] = p.Generation
	parsed := lbipam.ParsePool(p)
	parsed.Rank = c.arrivals.rank(p)
	return c.state.SetPool(parsed)
}

func (c *Controller) kickPools(names []string) {
	for _, n := range names {
		p := &v1alpha1.LoadBalancerIPPool{}
		p.Name = n
		c.poolKick <- event.GenericEvent{Object: p}
	}
}

func (c *Controller) kickServices(keys []types.NamespacedName) {
	for _, k := range keys {
		s := &corev1.Service{}
		s.Namespace, s.Name = k.Namespace, k.Name
		c.serviceKick <- event.GenericEvent{Object: s}
	}
}

func compareKeys(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Package l2 runs the L2 announcement controller: it assigns every Service address that
// an L2AnnouncementPolicy selects to one node with a live agent heartbeat (the decision
// is internal/l2assign's) and writes the result as one NodeProxyConfig per announcing
// node, an L2Announced condition and Events on the Services, and the policies' status.
//
// Assignment is global (rendezvous hashing over every address), so there is one
// reconcile key: events only mark the assignment dirty and the work queue coalesces them,
// and every write is the difference between what is wanted and what the cache shows. In
// steady state nothing is written, however many Services are announced.
package l2

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/npcstatus"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// FieldOwner is the server-side-apply manager of the L2Announced condition on Services;
// LB-IPAM's IPAMRequestSatisfied condition and addresses belong to portico-lbipam.
const FieldOwner = "portico-l2"

// Producer is the portico.dev/producer label value of the NodeProxyConfigs this controller owns.
const Producer = v1alpha1.ProducerL2

// DefaultNamespace is the install namespace holding the agents' heartbeat Leases.
const DefaultNamespace = "portico-system"

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// Leases in the install namespace only: the agents' heartbeats (watched) and leader election.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update,namespace=portico-system
// +kubebuilder:rbac:groups=portico.dev,resources=l2announcementpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=l2announcementpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=portico.dev,resources=loadbalancerippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies,verbs=get;list;watch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Options configure the controller.
type Options struct {
	// Namespace holds the agents' heartbeat Leases (default portico-system).
	Namespace string
	// Memberlist takes node liveness from the agents' memberlist cluster; nil takes it
	// from their heartbeat Leases (the slow fallback).
	Memberlist *MemberlistOptions
}

// Controller owns the L2 assignment of one manager.
type Controller struct {
	client   client.Client
	recorder recorder.EventRecorder
	opts     Options
	tracker  *l2assign.Tracker

	// prev is the assignment last written, to explain moves in Events. Only the single
	// reconcile worker touches it.
	prev    map[l2assign.Key]string
	adopted bool

	// kick carries the expiry watcher's wake-ups into the work queue.
	kick chan event.GenericEvent

	// members is the memberlist view (nil: liveness from Leases); holdSince times the
	// handovers held without memberlist (see holdHandovers).
	members   *members
	holdSince map[string]time.Time

	// npcs writes the l2 NodeProxyConfigs; status reports the nodes' verdict on them,
	// which the Service condition repeats (is the announcement in effect on its node).
	npcs   *npcwriter.Writer
	status *npcstatus.Reporter
}

// globalKey is the one reconcile request: the assignment is computed as a whole.
var globalKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "l2-assignment"}}

// Setup registers the controller with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	c := &Controller{
		client:    mgr.GetClient(),
		recorder:  mgr.GetEventRecorder("l2-controller"),
		opts:      opts,
		tracker:   l2assign.NewTracker(),
		kick:      make(chan event.GenericEvent, 1),
		holdSince: map[string]time.Time{},
		npcs:      &npcwriter.Writer{Client: mgr.GetClient(), Producer: Producer},
	}
	var err error
	c.status, err = npcstatus.Setup(mgr, npcstatus.Options{Writer: c.npcs, OnChange: func(context.Context, []npcstatus.Change) { c.kickReconcile() }})
	if err != nil {
		return err
	}
	if opts.Memberlist != nil {
		c.members = &members{opts: *opts.Memberlist, log: mgr.GetLogger().WithName("l2-members"), joined: map[string]bool{}}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return c.members.run(ctx, c.kickReconcile) })); err != nil {
			return err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(c.watchExpiry)); err != nil {
		return err
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{globalKey}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("l2").
		Watches(&corev1.Service{}, all, builder.WithPredicates(servicePredicate())).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(c.sliceToKey), builder.WithPredicates(slicePredicate())).
		Watches(&corev1.Node{}, all, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&coordinationv1.Lease{}, c.leaseHandler()).
		Watches(&v1alpha1.NodeProxy{}, all, builder.WithPredicates(interfacesChanged())).
		Watches(&v1alpha1.L2AnnouncementPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Pools decide which spec.externalIPs may be announced.
		Watches(&v1alpha1.LoadBalancerIPPool{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Our own objects: someone else's edit or deletion is repaired.
		Watches(&v1alpha1.NodeProxyConfig{}, all, builder.WithPredicates(ownNPC(), predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(c.kick, all)).
		Complete(c)
}

// watchExpiry sleeps until the next heartbeat expiry and wakes the reconcile only if a
// node did expire: renewals push expiries later, so most wake-ups find nothing to do and
// cost no recomputation. Reassignment thus happens at expiry, never before, and the
// controller never polls.
func (c *Controller) watchExpiry(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d := time.Hour
		if next, ok := c.tracker.NextExpiry(time.Now()); ok {
			// A millisecond late, so that the lease has expired when the sweep looks.
			d = time.Until(next) + time.Millisecond
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return nil
		case <-c.tracker.Wake():
			continue
		case <-t.C:
		}
		if c.tracker.Sweep(time.Now()) {
			c.kickReconcile()
		}
	}
}

// leaseHandler feeds heartbeat Leases to the tracker as they arrive, so that a renewal
// is timed when it is observed, and wakes the reconcile only when a node's liveness
// flips (new, released, deleted). Expiry needs no event: watchExpiry wakes the reconcile
// when one happens. The agents' renewals (several per second per node) thus cost no
// recomputation at all.
func (c *Controller) leaseHandler() handler.EventHandler {
	observe := func(obj client.Object, deleted bool, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		l, ok := obj.(*coordinationv1.Lease)
		if !ok || l.Namespace != c.opts.Namespace {
			return
		}
		node, ok := l2assign.NodeOfLease(l.Name)
		if !ok {
			return
		}
		if c.members != nil {
			// Liveness is memberlist's; a Lease only says where to join the agent.
			if !deleted && l.Spec.HolderIdentity != nil {
				c.members.join([]string{l.Annotations[AnnotationMemberlistAddress]})
			}
			return
		}
		var lease *l2assign.Lease
		if !deleted {
			lease = leaseOf(l)
		}
		if c.tracker.Observe(node, lease, time.Now()) {
			q.Add(globalKey)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			observe(e.Object, false, q)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			observe(e.ObjectNew, false, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			observe(e.Object, true, q)
		},
	}
}

func leaseOf(l *coordinationv1.Lease) *l2assign.Lease {
	out := &l2assign.Lease{Holder: ptr.Deref(l.Spec.HolderIdentity, ""), DurationSeconds: ptr.Deref(l.Spec.LeaseDurationSeconds, 0)}
	if l.Spec.RenewTime != nil {
		out.RenewTime = l.Spec.RenewTime.Time
	}
	return out
}

// servicePredicate passes only changes that can alter an assignment or our condition:
// Services that never had an address to announce cost no reconcile.
func servicePredicate() predicate.Funcs {
	relevant := func(o client.Object) bool {
		s, ok := o.(*corev1.Service)
		return ok && (hasAddress(s) || conditions.Get(s.Status.Conditions, v1alpha1.ConditionL2Announced) != nil)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return relevant(e.Object) },
		DeleteFunc: func(e event.DeleteEvent) bool { return relevant(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Service)
			n, ok2 := e.ObjectNew.(*corev1.Service)
			if !ok1 || !ok2 || (!relevant(o) && !relevant(n)) {
				return false
			}
			return !slices.Equal(ingressIPs(o), ingressIPs(n)) || !slices.Equal(o.Spec.ExternalIPs, n.Spec.ExternalIPs) ||
				o.Spec.ExternalTrafficPolicy != n.Spec.ExternalTrafficPolicy || !maps.Equal(o.Labels, n.Labels) ||
				!sameCondition(conditions.Get(o.Status.Conditions, v1alpha1.ConditionL2Announced), conditions.Get(n.Status.Conditions, v1alpha1.ConditionL2Announced))
		},
	}
}

// interfacesChanged passes only changes of the interfaces an agent reports: the agents
// write their NodeProxy status for many other reasons (proxy ACKs, counters), none of
// which matters to assignment.
func interfacesChanged() predicate.Funcs {
	ifaces := func(o client.Object) []string {
		if np, ok := o.(*v1alpha1.NodeProxy); ok {
			return np.Status.Interfaces
		}
		return nil
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return len(ifaces(e.Object)) > 0 },
		DeleteFunc: func(e event.DeleteEvent) bool { return len(ifaces(e.Object)) > 0 },
		UpdateFunc: func(e event.UpdateEvent) bool { return !slices.Equal(ifaces(e.ObjectOld), ifaces(e.ObjectNew)) },
	}
}

// TrimNodeProxy is a cache transform (cache.ByObject.Transform) keeping of a NodeProxy
// only what this controller reads: the reported interfaces (assignment) and what the
// nodes' verdict on the l2 configs reads (internal/verdict: the applied and programmed
// versions, the proxy and datapath conditions, NACKs, the rejections of l2 configs).
// Trimming the verdict's fields away once left every l2 config Pending under the real
// binary, and the Service condition "not yet in effect" for ever. The rest (counters,
// other producers' rejection messages) can reach tens of KiB per node, which the
// controller would otherwise hold for every node of a large cluster.
func TrimNodeProxy(obj any) (any, error) {
	np, ok := obj.(*v1alpha1.NodeProxy)
	if !ok {
		return obj, nil
	}
	st := v1alpha1.NodeProxyStatus{Interfaces: np.Status.Interfaces,
		AppliedResourceVersion: np.Status.AppliedResourceVersion, ProgrammedResourceVersion: np.Status.ProgrammedResourceVersion}
	for _, c := range np.Status.Conditions {
		if c.Type == string(v1alpha1.ConditionProxyConnected) || c.Type == string(v1alpha1.ConditionDatapathReady) {
			st.Conditions = append(st.Conditions, c)
		}
	}
	for _, px := range np.Status.Proxies {
		st.Proxies = append(st.Proxies, v1alpha1.ProxyStatus{ID: px.ID, LastNACK: px.LastNACK})
	}
	for _, r := range np.Status.Rejected {
		if strings.HasPrefix(r.Name, NPCName("")) {
			st.Rejected = append(st.Rejected, r)
		}
	}
	return &v1alpha1.NodeProxy{
		TypeMeta:   np.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: np.Name, UID: np.UID, ResourceVersion: np.ResourceVersion},
		Status:     st,
	}, nil
}

// slicePredicate passes only changes of the set of nodes with a ready endpoint, the one
// thing of an EndpointSlice assignment reads.
func slicePredicate() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*discoveryv1.EndpointSlice)
			n, ok2 := e.ObjectNew.(*discoveryv1.EndpointSlice)
			return !ok1 || !ok2 || !maps.Equal(readyNodes(o), readyNodes(n))
		},
	}
}

// sliceToKey wakes the assignment only for slices of Services whose placement depends
// on endpoints (externalTrafficPolicy: Local, with an address).
func (c *Controller) sliceToKey(ctx context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return nil
	}
	svc := &corev1.Service{}
	if err := c.client.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: name}, svc, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || !hasAddress(svc) {
		return nil
	}
	return []reconcile.Request{globalKey}
}

func ownNPC() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[v1alpha1.LabelProducer] == Producer
	})
}

func hasAddress(s *corev1.Service) bool {
	return len(s.Spec.ExternalIPs) > 0 || len(ingressIPs(s)) > 0
}

func ingressIPs(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}

func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// readyNodes are the nodes with a ready endpoint in a slice. A nil ready condition counts
// as ready, as the EndpointConditions API asks consumers to interpret it.
func readyNodes(s *discoveryv1.EndpointSlice) map[string]string {
	out := map[string]string{}
	for _, ep := range s.Endpoints {
		if ep.NodeName != nil && *ep.NodeName != "" && ptr.Deref(ep.Conditions.Ready, true) {
			out[*ep.NodeName] = ""
		}
	}
	return out
}

package l2

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/ipam"
	"github.com/portico-dev/portico/internal/l2assign"
)

// Reconcile recomputes the whole assignment from the cache and writes only differences.
func (c *Controller) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	if c.members != nil && !c.members.Ready() {
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil // the membership view is not built yet
	}
	now := time.Now()
	in, svcs, policies, err := c.gather(ctx, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	npcs := &v1alpha1.NodeProxyConfigList{}
	if err := c.client.List(ctx, npcs, client.MatchingLabels{v1alpha1.LabelProducer: Producer}); err != nil {
		return ctrl.Result{}, err
	}
	if !c.adopted {
		// After a restart, what the NodeProxyConfigs say is the previous assignment, so
		// the first Events explain real moves instead of announcing everything anew.
		c.prev = adopt(npcs.Items)
		c.adopted = true
	}
	in.Previous = c.prev
	res := l2assign.Assign(in)
	held, retry := c.holdHandovers(res, in.Nodes, npcs.Items, now)

	if err := c.writeNPCs(ctx, res, in.Nodes, npcs.Items); err != nil {
		return ctrl.Result{}, err
	}
	c.recordMoves(res.Moves, svcs)
	c.prev = assigned(res)
	for k, from := range held {
		c.prev[k] = from // still the owner until it let go
	}

	return ctrl.Result{RequeueAfter: retry}, errors.Join(c.writeServices(ctx, res, svcs), c.writePolicies(ctx, res, policies))
}

// gather builds the assignment input from the cache. Lists skip the deep copy: nothing
// here is modified, and with thousands of Services the copies would dominate.
func (c *Controller) gather(ctx context.Context, now time.Time) (l2assign.Input, map[types.NamespacedName]*corev1.Service, []*v1alpha1.L2AnnouncementPolicy, error) {
	var in l2assign.Input
	noCopy := client.UnsafeDisableDeepCopy

	var pl v1alpha1.L2AnnouncementPolicyList
	if err := c.client.List(ctx, &pl, noCopy); err != nil {
		return in, nil, nil, err
	}
	policies := make([]*v1alpha1.L2AnnouncementPolicy, len(pl.Items))
	for i := range pl.Items {
		policies[i] = &pl.Items[i]
		in.Policies = append(in.Policies, l2assign.ParsePolicy(&pl.Items[i]))
	}

	// spec.externalIPs are announced only inside a pool (or a policy's allow-list).
	var pools v1alpha1.LoadBalancerIPPoolList
	if err := c.client.List(ctx, &pools, noCopy); err != nil {
		return in, nil, nil, err
	}
	for i := range pools.Items {
		// Every valid block counts, even of a disabled or conflicting pool: the question
		// is whether the address belongs to the load-balancer ranges, not whether LB-IPAM
		// would hand it out now.
		ranges, _ := ipam.ParseBlocks(field.NewPath("spec", "blocks"), pools.Items[i].Spec.Blocks, true)
		in.Pools = append(in.Pools, ranges...)
	}

	// The Lease handler normally observes every renewal first; observing the listed
	// Leases too covers a reconcile that runs before the handler saw a Lease (Observe is
	// idempotent: an unchanged Lease keeps its observation time).
	var leases coordinationv1.LeaseList
	if err := c.client.List(ctx, &leases, client.InNamespace(c.opts.Namespace), noCopy); err != nil {
		return in, nil, nil, err
	}
	for i := range leases.Items {
		if node, ok := l2assign.NodeOfLease(leases.Items[i].Name); ok {
			c.tracker.Observe(node, leaseOf(&leases.Items[i]), now)
		}
	}
	// Expiries seen here need no second reconcile from the expiry watcher.
	c.tracker.Sweep(now)
	var nodes corev1.NodeList
	if err := c.client.List(ctx, &nodes, noCopy); err != nil {
		return in, nil, nil, err
	}
	// The interfaces each agent reported: a node is eligible under a policy only if one
	// of them matches the policy's regexes. No NodeProxy yet means none reported.
	var proxies v1alpha1.NodeProxyList
	if err := c.client.List(ctx, &proxies, noCopy); err != nil {
		return in, nil, nil, err
	}
	ifaces := make(map[string][]string, len(proxies.Items))
	for i := range proxies.Items {
		ifaces[proxies.Items[i].Name] = proxies.Items[i].Status.Interfaces
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		live, why := c.tracker.Live(n.Name, now)
		if c.members != nil {
			live, why = c.members.Live(n.Name)
		}
		in.Nodes = append(in.Nodes, l2assign.Node{Name: n.Name, Labels: n.Labels, Live: live, Down: why, Interfaces: ifaces[n.Name]})
	}

	var sl corev1.ServiceList
	if err := c.client.List(ctx, &sl, noCopy); err != nil {
		return in, nil, nil, err
	}
	svcs := map[types.NamespacedName]*corev1.Service{}
	for i := range sl.Items {
		s := &sl.Items[i]
		key := client.ObjectKeyFromObject(s)
		if !hasAddress(s) || s.DeletionTimestamp != nil {
			if conditions.Get(s.Status.Conditions, v1alpha1.ConditionL2Announced) != nil {
				svcs[key] = s // our condition must go
			}
			continue
		}
		svcs[key] = s
		in2 := l2assign.Service{Key: key, Labels: s.Labels,
			LoadBalancerIPs: parseAddrs(ingressIPs(s)), ExternalIPs: parseAddrs(s.Spec.ExternalIPs),
			Local: s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
		if in2.Local {
			ready, err := c.readyNodes(ctx, key)
			if err != nil {
				return in, nil, nil, err
			}
			in2.ReadyNodes = ready
		}
		in.Services = append(in.Services, in2)
	}
	return in, svcs, policies, nil
}

func (c *Controller) readyNodes(ctx context.Context, svc types.NamespacedName) (map[string]bool, error) {
	var slices discoveryv1.EndpointSliceList
	if err := c.client.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for i := range slices.Items {
		for n := range readyNodes(&slices.Items[i]) {
			out[n] = true
		}
	}
	return out, nil
}

func assigned(res *l2assign.Result) map[l2assign.Key]string {
	out := map[l2assign.Key]string{}
	for node, anns := range res.Announcements {
		for _, a := range anns {
			if k, ok := keyOf(a); ok {
				out[k] = node
			}
		}
	}
	return out
}

// recordMoves puts an Event on the Service for every address that changed node, saying
// where it went and why it left, so `kubectl describe service` tells the story.
func (c *Controller) recordMoves(moves []l2assign.Move, svcs map[types.NamespacedName]*corev1.Service) {
	for _, m := range moves {
		svc, ok := svcs[m.Service]
		if !ok {
			continue // deleted: nobody to tell
		}
		switch {
		case m.To != "" && m.From == "":
			c.recorder.Eventf(svc, nodeRef(m.To), corev1.EventTypeNormal, string(v1alpha1.ReasonAnnounced), "Announce",
				"%s announced by %s", m.IP, m.To)
		case m.To != "":
			// The new node is the related object: the events API folds events of one
			// object with equal type, reason, action and related object into a series
			// that keeps the first message, which would hide where later moves went.
			c.recorder.Eventf(svc, nodeRef(m.To), corev1.EventTypeNormal, string(v1alpha1.ReasonAnnounced), "Move",
				"%s announced by %s (was %s: %s)", m.IP, m.To, m.From, m.Why)
		case m.Why == l2assign.WhyNotSelected:
			c.recorder.Eventf(svc, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonNotSelected), "Announce",
				"%s no longer announced (was %s): %s", m.IP, m.From, m.Why)
		default:
			c.recorder.Eventf(svc, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonNoEligibleNode), "Announce",
				"%s no longer announced, no eligible node (was %s: %s)", m.IP, m.From, m.Why)
		}
	}
}

func nodeRef(name string) *corev1.Node {
	return &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// writeServices applies the L2Announced condition where it differs from what the Service
// shows, and removes it from Services that no longer have anything announced.
func (c *Controller) writeServices(ctx context.Context, res *l2assign.Result, svcs map[types.NamespacedName]*corev1.Service) error {
	var errs []error
	for key, svc := range svcs {
		if ctx.Err() != nil {
			break // shutting down: the next leader recomputes everything
		}
		old := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionL2Announced)
		sr, want := res.Services[key]
		if !want {
			if old != nil {
				errs = append(errs, c.applyCondition(ctx, svc, nil))
			}
			continue
		}
		cond := metav1.Condition{Type: string(v1alpha1.ConditionL2Announced), Status: sr.Status, Reason: string(sr.Reason),
			Message: sr.Message + c.inEffect(sr), ObservedGeneration: svc.Generation}
		if sameCondition(old, &cond) {
			continue
		}
		conds := slices.Clone(svc.Status.Conditions)
		meta.SetStatusCondition(&conds, cond) // keeps LastTransitionTime when only the message changes
		errs = append(errs, c.applyCondition(ctx, svc, conditions.Get(conds, v1alpha1.ConditionL2Announced)))
	}
	return summarise("Service status", errs)
}

// summarise reports failed writes as one error with a count and the first cause: after a
// node failure there may be thousands, and one log line per failure helps nobody.
func summarise(what string, errs []error) error {
	var first error
	n := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d %s write(s) failed, first: %w", n, what, first)
}

// applyCondition server-side-applies the controller's only field on a Service status:
// the L2Announced condition (nil removes it). LB-IPAM's fields are never touched.
func (c *Controller) applyCondition(ctx context.Context, svc *corev1.Service, cond *metav1.Condition) error {
	st := corev1ac.ServiceStatus()
	if cond != nil {
		st.WithConditions(metav1ac.Condition().WithType(cond.Type).WithStatus(cond.Status).WithReason(cond.Reason).
			WithMessage(cond.Message).WithObservedGeneration(cond.ObservedGeneration).WithLastTransitionTime(cond.LastTransitionTime))
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(st)
	err := c.client.Status().Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func sameCondition(a, b *metav1.Condition) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message && a.ObservedGeneration == b.ObservedGeneration
}

// writePolicies updates each policy's counts and Ready condition when they changed.
func (c *Controller) writePolicies(ctx context.Context, res *l2assign.Result, policies []*v1alpha1.L2AnnouncementPolicy) error {
	var errs []error
	for _, p := range policies {
		pr := res.Policies[p.Name]
		if pr == nil {
			continue
		}
		next := p.Status.DeepCopy()
		next.ObservedGeneration = p.Generation
		next.SelectedServices, next.AnnouncedIPs, next.EligibleNodes = pr.SelectedServices, pr.AnnouncedIPs, pr.EligibleNodes
		if pr.Policy.Valid() {
			conditions.True(&next.Conditions, p.Generation, v1alpha1.ConditionReady, v1alpha1.ReasonValid, readyMessage(pr))
		} else {
			conditions.False(&next.Conditions, p.Generation, v1alpha1.ConditionReady, v1alpha1.ReasonInvalid,
				"the policy announces nothing until fixed: "+pr.Policy.Errors.ToAggregate().Error())
		}
		if equalPolicyStatus(&p.Status, next) {
			continue
		}
		upd := p.DeepCopy()
		upd.Status = *next
		// A patch, not an update: the cache often still holds the version before our
		// previous write, and the status is recomputed whole every time, so an
		// optimistic-lock conflict would only cost a retry and an error log.
		if err := c.client.Status().Patch(ctx, upd, client.MergeFrom(p)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("updating the status of L2AnnouncementPolicy %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// readyMessage points at the likely problem when a valid policy announces nothing, and
// names the nodes left out only because none of their interfaces matches (a typo in a
// regex, or a node missing a link, would otherwise go unnoticed until a failover).
func readyMessage(pr *l2assign.PolicyResult) string {
	msg := "valid"
	if pr.EligibleNodes == 0 {
		msg = "valid, but no node is eligible: none matches the nodeSelector with a live agent heartbeat, an interface matching spec.interfaces and without the label " + l2assign.LabelExcludeFromLB
	}
	if pr.NoInterfaceCount > 0 {
		msg += fmt.Sprintf("; %d selected node(s) skipped because no interface matches spec.interfaces: %s",
			pr.NoInterfaceCount, strings.Join(pr.NoInterface, ", "))
		if more := int(pr.NoInterfaceCount) - len(pr.NoInterface); more > 0 {
			msg += fmt.Sprintf(" and %d more", more)
		}
	}
	return msg
}

func equalPolicyStatus(a, b *v1alpha1.L2AnnouncementPolicyStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.SelectedServices != b.SelectedServices ||
		a.AnnouncedIPs != b.AnnouncedIPs || a.EligibleNodes != b.EligibleNodes || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		if !sameCondition(&a.Conditions[i], &b.Conditions[i]) || a.Conditions[i].Type != b.Conditions[i].Type {
			return false
		}
	}
	return true
}

// inEffect says whether the announcing nodes have the announcement in effect,
// from the nodes' verdict on their l2 configs: assigned is not yet answering,
// and a node that rejected its set (a malformed announcement) says why here.
func (c *Controller) inEffect(sr *l2assign.ServiceResult) string {
	if c.status == nil || sr.Status != metav1.ConditionTrue {
		return ""
	}
	nodes := map[string]bool{}
	for _, n := range sr.Nodes {
		nodes[n] = true
	}
	var pending, rejected []string
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		v, ok := c.status.Verdict(NPCName(n))
		switch {
		case !ok:
			pending = append(pending, n)
		case len(v.Rejected) > 0:
			rejected = append(rejected, fmt.Sprintf("%s (%s: %s)", n, v.Rejected[0].Reason, v.Rejected[0].Message))
		case len(v.Programmed) == 0:
			pending = append(pending, n)
		}
	}
	// In parentheses after the node names, so "announced by <node>" still ends at
	// the node name for anyone reading it with a pattern.
	switch {
	case len(rejected) > 0:
		return " (rejected by " + strings.Join(rejected, ", ") + ")"
	case len(pending) > 0:
		return " (not yet in effect on " + strings.Join(pending, ", ") + ")"
	}
	return " (in effect)"
}

package lbipam

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/lbipam"
)

func (c *Controller) reconcileService(ctx context.Context, key types.NamespacedName) (ctrl.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.init(ctx); err != nil {
		return ctrl.Result{}, err
	}

	svc := &corev1.Service{}
	if err := c.client.Get(ctx, key, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		c.released(c.state.Release(key))
		delete(c.releaseNotes, key)
		return ctrl.Result{}, nil
	}
	if !lbipam.Served(svc, c.opts.RequireLBClass) {
		c.released(c.state.Release(key))
		delete(c.releaseNotes, key)
		// A Service that stopped being ours (type or class changed) loses what we wrote.
		if conditions.Get(svc.Status.Conditions, v1alpha1.ConditionIPAMRequestSatisfied) != nil && svc.DeletionTimestamp == nil {
			return ctrl.Result{}, c.applyStatus(ctx, svc, nil, nil)
		}
		return ctrl.Result{}, nil
	}

	req, err := lbipam.NewRequest(svc)
	if err != nil {
		// Keep whatever the Service holds: a typo in an annotation must not cost an address.
		allocationFailures.WithLabelValues(string(v1alpha1.ReasonInvalidRequest)).Inc()
		cond := condition(svc, metav1.ConditionFalse, v1alpha1.ReasonInvalidRequest, err.Error())
		return ctrl.Result{}, c.write(ctx, svc, ingressAddrs(svc), cond, "")
	}
	res := c.state.Reconcile(req)
	c.kickPools(res.Changed)
	if len(res.Released) > 0 {
		c.kickServices(c.state.Unsatisfied())
	}
	// A released address is never lost silently: an Event now, and the condition says
	// why until the Service holds addresses again (later reconciles, which no longer see
	// the release, would otherwise replace it by "no pool contains ..."), also when a
	// status write fails and is retried.
	notes := c.releaseNotes[key]
	for _, r := range res.Released {
		note := "released " + r.Addr.String() + ": " + r.Why
		c.recorder.Eventf(svc, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonIPRemovedFromPool), "ReleaseIP", "%s", note)
		notes = append(notes, note)
	}
	if len(notes) > maxReleaseNotes {
		notes = notes[len(notes)-maxReleaseNotes:]
	}
	status, reason, msg := metav1.ConditionTrue, res.Reason, res.Message
	if !res.Satisfied {
		status = metav1.ConditionFalse
		if len(notes) > 0 {
			reason = v1alpha1.ReasonIPRemovedFromPool
		}
		allocationFailures.WithLabelValues(string(reason)).Inc()
	}
	for _, n := range notes {
		msg += "; " + n
	}
	mode := corev1.LoadBalancerIPModeVIP
	if req.ProxyMode {
		mode = corev1.LoadBalancerIPModeProxy
	}
	err = c.write(ctx, svc, res.Addrs, condition(svc, status, reason, msg), mode)
	if err == nil && res.Satisfied || len(notes) == 0 {
		delete(c.releaseNotes, key)
	} else {
		c.releaseNotes[key] = notes
	}
	return ctrl.Result{}, err
}

// maxReleaseNotes bounds the releases a Service's condition lists.
const maxReleaseNotes = 4

func (c *Controller) released(pools []string) {
	if len(pools) > 0 {
		c.kickPools(pools)
		c.kickServices(c.state.Unsatisfied())
	}
}

func condition(svc *corev1.Service, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string) metav1.Condition {
	return metav1.Condition{
		Type: string(v1alpha1.ConditionIPAMRequestSatisfied), Status: status, Reason: string(reason),
		Message: msg, ObservedGeneration: svc.Generation,
	}
}

// write applies addrs and cond to the Service status when they differ from what it shows,
// and records an Event for every change. mode "" keeps the modes the status already has.
func (c *Controller) write(ctx context.Context, svc *corev1.Service, addrs []netip.Addr, cond metav1.Condition, mode corev1.LoadBalancerIPMode) error {
	ingress := make([]corev1.LoadBalancerIngress, 0, len(addrs))
	for _, a := range addrs {
		m := mode
		if m == "" {
			m = modeOf(svc, a)
		}
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.String(), IPMode: &m})
	}
	old := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionIPAMRequestSatisfied)
	if sameIngress(svc.Status.LoadBalancer.Ingress, ingress) && old != nil && old.Status == cond.Status &&
		old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration {
		return nil
	}
	conds := slices.Clone(svc.Status.Conditions)
	meta.SetStatusCondition(&conds, cond) // keeps LastTransitionTime when the status is unchanged
	if err := c.applyStatus(ctx, svc, ingress, conditions.Get(conds, v1alpha1.ConditionIPAMRequestSatisfied)); err != nil {
		return err
	}
	kind := corev1.EventTypeNormal
	if cond.Status != metav1.ConditionTrue {
		kind = corev1.EventTypeWarning
	}
	c.recorder.Eventf(svc, nil, kind, cond.Reason, "AssignIP", "%s", cond.Message)
	return nil
}

// applyStatus server-side-applies LB-IPAM's part of the Service status: the ingress list
// and the IPAMRequestSatisfied condition. Other writers' conditions (L2Announced) are theirs.
func (c *Controller) applyStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, cond *metav1.Condition) error {
	st := corev1ac.ServiceStatus()
	lb := corev1ac.LoadBalancerStatus()
	for _, in := range ingress {
		lb.WithIngress(corev1ac.LoadBalancerIngress().WithIP(in.IP).WithIPMode(*in.IPMode))
	}
	if len(ingress) > 0 {
		st.WithLoadBalancer(lb)
	}
	if cond != nil {
		st.WithConditions(metav1ac.Condition().WithType(cond.Type).WithStatus(cond.Status).WithReason(cond.Reason).
			WithMessage(cond.Message).WithObservedGeneration(cond.ObservedGeneration).WithLastTransitionTime(cond.LastTransitionTime))
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(st)
	return c.client.Status().Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership)
}

func modeOf(svc *corev1.Service, a netip.Addr) corev1.LoadBalancerIPMode {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP == a.String() && in.IPMode != nil {
			return *in.IPMode
		}
	}
	return corev1.LoadBalancerIPModeVIP
}

func sameIngress(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == "" && (x.IPMode == nil) == (y.IPMode == nil) && (x.IPMode == nil || *x.IPMode == *y.IPMode)
	})
}

// ingressAddrs are the addresses a Service's status shows.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(strings.TrimSpace(in.IP)); err == nil {
			out = append(out, a)
		}
	}
	return out
}

package gateway

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/lbipam"
	"github.com/portico-dev/portico/internal/npcstatus"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

func set(conds *[]metav1.Condition, gen int64, c translate.Condition) {
	conditions.Set(conds, gen, v1alpha1.ConditionType(c.Type), c.Status, v1alpha1.ConditionReason(c.Reason), c.Message)
}

// classStatus accepts a GatewayClass of ours, or not when its parametersRef
// cannot be used (with the field: of the reference, or of the
// GatewayClassConfig it names), and lists the supported features. It returns
// the parameters to serve the class's Gateways with: nil for a class never
// accepted, whose Gateways are left alone rather than served with settings
// they did not ask for; the last accepted ones for a class whose parameters
// broke (as MetalLB keeps its last good configuration), since dropping its
// Gateways would give their addresses away over a typo or a deleted config.
func (c *Controller) classStatus(ctx context.Context, gc *gatewayv1.GatewayClass) (*gatewayparams.Parameters, error) {
	var getErr error
	p, invalid := gatewayparams.Resolve(gc.Spec.ParametersRef, func(name string) *v1alpha1.GatewayClassConfig {
		cfg := &v1alpha1.GatewayClassConfig{}
		err := c.client.Get(ctx, client.ObjectKey{Name: name}, cfg)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				getErr = err
			}
			return nil
		}
		return cfg
	})
	if getErr != nil {
		return nil, fmt.Errorf("GatewayClass %s: reading its parameters: %w", gc.Name, getErr)
	}
	upd := gc.DeepCopy()
	accepted := translate.Condition{Type: string(gatewayv1.GatewayClassConditionStatusAccepted),
		Status: metav1.ConditionTrue, Reason: string(gatewayv1.GatewayClassReasonAccepted), Message: "Accepted by " + string(c.opts.ControllerName)}
	switch {
	case invalid != nil:
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, string(gatewayv1.GatewayClassReasonInvalidParameters), invalid.Error()
		if p = c.lastParams[gc.Name]; p != nil {
			accepted.Message += "; its Gateways keep the parameters last accepted until this is fixed"
		}
	case gc.Spec.ParametersRef != nil:
		accepted.Message += " with the parameters of " + gatewayparams.Kind + " " + p.Name
	}
	if invalid == nil {
		c.lastParams[gc.Name] = p
	}
	set(&upd.Status.Conditions, gc.Generation, accepted)
	upd.Status.SupportedFeatures = SupportedFeatures()
	if equality.Semantic.DeepEqual(upd.Status, gc.Status) {
		return p, nil
	}
	if invalid != nil {
		c.recorder.Eventf(gc, nil, corev1.EventTypeWarning, string(gatewayv1.GatewayClassReasonInvalidParameters), "Accept", "%s", invalid.Error())
	}
	if err := c.client.Status().Patch(ctx, upd, client.MergeFrom(gc)); client.IgnoreNotFound(err) != nil {
		return p, fmt.Errorf("status of GatewayClass %s: %w", gc.Name, err)
	}
	return p, nil
}

// gatewayStatus writes a Gateway's conditions, listeners and addresses.
// Programmed comes from the nodes' verdict on the Gateway's config.
func (c *Controller) gatewayStatus(ctx context.Context, gw *gatewayv1.Gateway, st *translate.GatewayStatus, svc *corev1.Service) error {
	if st == nil {
		return nil
	}
	upd := gw.DeepCopy()
	gen := gw.Generation
	for _, cd := range st.Conditions {
		set(&upd.Status.Conditions, gen, cd)
	}
	programmed := c.programmed(ctx, gw, st, svc)
	set(&upd.Status.Conditions, gen, programmed)
	upd.Status.Addresses = nil
	for _, a := range st.Addresses {
		upd.Status.Addresses = append(upd.Status.Addresses, gatewayv1.GatewayStatusAddress{Type: ptrTo(gatewayv1.IPAddressType), Value: a})
	}
	listeners := make([]gatewayv1.ListenerStatus, 0, len(st.Listeners))
	for _, ls := range st.Listeners {
		out := gatewayv1.ListenerStatus{Name: gatewayv1.SectionName(ls.Name), SupportedKinds: ls.SupportedKinds, AttachedRoutes: ls.AttachedRoutes}
		if i := slices.IndexFunc(gw.Status.Listeners, func(l gatewayv1.ListenerStatus) bool { return string(l.Name) == ls.Name }); i >= 0 {
			out.Conditions = slices.Clone(gw.Status.Listeners[i].Conditions)
		}
		for _, cd := range ls.Conditions {
			set(&out.Conditions, gen, cd)
		}
		lp := programmed
		if !ls.Servable {
			lp = translate.Condition{Type: string(gatewayv1.ListenerConditionProgrammed), Status: metav1.ConditionFalse,
				Reason: string(gatewayv1.ListenerReasonInvalid), Message: "the listener is not valid (see its other conditions)"}
		}
		lp.Type = string(gatewayv1.ListenerConditionProgrammed)
		set(&out.Conditions, gen, lp)
		listeners = append(listeners, out)
	}
	upd.Status.Listeners = listeners
	if equality.Semantic.DeepEqual(upd.Status, gw.Status) {
		return nil
	}
	if err := c.client.Status().Patch(ctx, upd, client.MergeFrom(gw)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("status of Gateway %s/%s: %w", gw.Namespace, gw.Name, err)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// programmed is a Gateway's Programmed condition: not while it is not
// accepted or has no address; then the nodes' verdict on its config.
func (c *Controller) programmed(ctx context.Context, gw *gatewayv1.Gateway, st *translate.GatewayStatus, svc *corev1.Service) translate.Condition {
	p := func(ok bool, reason gatewayv1.GatewayConditionReason, msg string) translate.Condition {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		return translate.Condition{Type: string(gatewayv1.GatewayConditionProgrammed), Status: s, Reason: string(reason), Message: msg}
	}
	if st.Conditions[0].Status != metav1.ConditionTrue {
		return p(false, gatewayv1.GatewayReasonInvalid, "the Gateway is not accepted: "+st.Conditions[0].Message)
	}
	if svc != nil && svc.Spec.Type == corev1.ServiceTypeClusterIP && len(gw.Spec.Addresses) > 0 {
		// A requested address would be silently ignored: say so instead.
		return p(false, gatewayv1.GatewayReasonAddressNotUsable,
			"spec.addresses: the Gateway's class makes a ClusterIP Service (GatewayClassConfig spec.service.type), which takes no requested addresses")
	}
	if len(st.Addresses) == 0 {
		why := "waiting for LB-IPAM to give Service " + ServiceName(gw.Name) + " an address"
		if svc != nil && svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass != lbipam.LoadBalancerClass {
			why = "waiting for the load balancer of class " + *svc.Spec.LoadBalancerClass + " to give Service " + svc.Name + " an address"
		}
		if svc != nil {
			if cd := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionIPAMRequestSatisfied); cd != nil && cd.Status == metav1.ConditionFalse {
				why = "Service " + svc.Name + ": " + cd.Message
				if len(gw.Spec.Addresses) > 0 {
					return p(false, gatewayv1.GatewayReasonAddressNotUsable, why)
				}
			}
		}
		return p(false, gatewayv1.GatewayReasonAddressNotAssigned, why)
	}
	cfg := &v1alpha1.NodeProxyConfig{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: st.Config}, cfg, client.UnsafeDisableDeepCopy); err != nil {
		return p(false, gatewayv1.GatewayReasonPending, "the Gateway's NodeProxyConfig "+st.Config+" is not written yet")
	}
	v := conditions.Get(cfg.Status.Conditions, v1alpha1.ConditionProgrammed)
	switch {
	case v == nil || v.ObservedGeneration != cfg.Generation:
		return p(false, gatewayv1.GatewayReasonPending, "waiting for the nodes to report on "+st.Config)
	case v.Status == metav1.ConditionTrue:
		return p(true, gatewayv1.GatewayReasonProgrammed, v.Message)
	}
	return p(false, gatewayv1.GatewayReasonPending, st.Config+": "+v.Message)
}

// routeStatuses writes the parents Portico reports on of every route,
// keeping the entries of other controllers.
func (c *Controller) routeStatuses(ctx context.Context, in translate.Input, out translate.Output) error {
	var errs []error
	// Only errors are kept: a nil per route is garbage at 10,000 routes.
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.statusPass++
	touched := 0
	for _, r := range in.HTTPRoutes {
		touched++
		note(c.httpRouteStatus(ctx, r, out.Routes))
	}
	for _, r := range in.GRPCRoutes {
		touched++
		note(c.writeRouteStatus(ctx, translate.RouteKey{Kind: translate.KindGRPCRoute, Namespace: r.Namespace, Name: r.Name},
			r, r.Status.RouteStatus, out.Routes,
			func(s gatewayv1.RouteStatus) client.Object { u := r.DeepCopy(); u.Status.RouteStatus = s; return u }))
	}
	for _, r := range in.TLSRoutes {
		touched++
		note(c.writeRouteStatus(ctx, translate.RouteKey{Kind: translate.KindTLSRoute, Namespace: r.Namespace, Name: r.Name},
			r, r.Status.RouteStatus, out.Routes,
			func(s gatewayv1.RouteStatus) client.Object { u := r.DeepCopy(); u.Status.RouteStatus = s; return u }))
	}
	if len(c.routesDone) > touched {
		for k, d := range c.routesDone {
			if d.pass != c.statusPass {
				delete(c.routesDone, k)
			}
		}
	}
	return joinErrs(errs)
}

// httpRouteStatus writes an HTTPRoute's status if it changed (writeRouteStatus).
func (c *Controller) httpRouteStatus(ctx context.Context, r *gatewayv1.HTTPRoute, routes map[translate.RouteKey][]translate.ParentStatus) error {
	return c.writeRouteStatus(ctx, translate.RouteKey{Kind: translate.KindHTTPRoute, Namespace: r.Namespace, Name: r.Name},
		r, r.Status.RouteStatus, routes,
		func(s gatewayv1.RouteStatus) client.Object { u := r.DeepCopy(); u.Status.RouteStatus = s; return u })
}

// writeRouteStatus writes the status of one route (the cache's own object,
// cur its status) when its translated parents say something else; update
// makes the copy to write. The route is marked seen in this status pass.
func (c *Controller) writeRouteStatus(ctx context.Context, key translate.RouteKey, obj client.Object, cur gatewayv1.RouteStatus,
	routes map[translate.RouteKey][]translate.ParentStatus, update func(gatewayv1.RouteStatus) client.Object) error {
	gen, rv := obj.GetGeneration(), obj.GetResourceVersion()
	parents := routes[key]
	// A route whose object and translated status are as when last
	// checked needs no comparison: most routes, on most passes. The
	// translation's memo hands out the very same statuses while a
	// route's inputs stay put, which spares making the signature.
	d, ok := c.routesDone[key]
	if ok && d.rv == rv && sameParents(d.parents, parents) {
		d.pass = c.statusPass
		c.routesDone[key] = d
		return nil
	}
	sig := statusSig(gen, parents)
	if ok && d.rv == rv && d.sig == sig {
		c.routesDone[key] = routeDone{rv, sig, parents, c.statusPass}
		return nil
	}
	next := c.routeStatus(cur, gen, parents)
	if (len(next.Parents) == 0 && len(cur.Parents) == 0) || equality.Semantic.DeepEqual(next, cur) {
		c.routesDone[key] = routeDone{rv, sig, parents, c.statusPass}
		return nil
	}
	u := update(next)
	err := c.client.Status().Update(ctx, u)
	if apierrors.IsConflict(err) {
		err = c.retryRouteStatus(ctx, u, gen, parents)
	}
	if client.IgnoreNotFound(err) != nil {
		delete(c.routesDone, key)
		return fmt.Errorf("status of %s %s/%s: %w", key.Kind, key.Namespace, key.Name, err)
	}
	c.routesDone[key] = routeDone{u.GetResourceVersion(), sig, parents, c.statusPass}
	return nil
}

// retryRouteStatus writes a route's status again after a conflict: the
// cache's copy was older than the route (just edited by its owner, or another
// controller wrote its own parents' status). Failing the pass for it would log
// an error and back the single key off for a race that is normal under churn.
// The route is read from the apiserver: if its spec moved, the pass for the
// new generation (already queued by its event) writes the status, and nothing
// is written here; otherwise the status is recomputed on the live copy,
// keeping what other controllers wrote. The caller's obj gets the result.
func (c *Controller) retryRouteStatus(ctx context.Context, obj client.Object, gen int64, parents []translate.ParentStatus) error {
	live, ok := obj.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("%T is not an object", obj)
	}
	if err := c.apiReader.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		return err
	}
	if live.GetGeneration() != gen {
		obj.SetResourceVersion(live.GetResourceVersion())
		return nil
	}
	status := routeStatusOf(live)
	if status == nil {
		return fmt.Errorf("%T has no route status", live)
	}
	*status = c.routeStatus(*status, gen, parents)
	if err := c.client.Status().Update(ctx, live); err != nil {
		return err
	}
	obj.SetResourceVersion(live.GetResourceVersion())
	return nil
}

// routeStatusOf is the RouteStatus inside a route of any kind served.
func routeStatusOf(obj client.Object) *gatewayv1.RouteStatus {
	switch r := obj.(type) {
	case *gatewayv1.HTTPRoute:
		return &r.Status.RouteStatus
	case *gatewayv1.GRPCRoute:
		return &r.Status.RouteStatus
	case *gatewayv1.TLSRoute:
		return &r.Status.RouteStatus
	}
	return nil
}

// routeDone is a route's resourceVersion and translated status when its
// status was last found or made right, and the pass that last saw it.
type routeDone struct {
	rv, sig string
	parents []translate.ParentStatus
	pass    uint64
}

// sameParents reports whether a and b are the same statuses of the
// translation's memo (not merely equal ones).
func sameParents(a, b []translate.ParentStatus) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func statusSig(gen int64, parents []translate.ParentStatus) string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(gen, 10))
	for _, p := range parents {
		b.WriteString("|")
		b.WriteString(string(p.Ref.Name))
		if p.Ref.Namespace != nil {
			b.WriteString("/" + string(*p.Ref.Namespace))
		}
		if p.Ref.SectionName != nil {
			b.WriteString("#" + string(*p.Ref.SectionName))
		}
		if p.Ref.Port != nil {
			b.WriteString(":" + strconv.Itoa(int(*p.Ref.Port)))
		}
		for _, c := range p.Conditions {
			b.WriteString(";" + c.Type + "=" + string(c.Status) + "/" + c.Reason + "/" + c.Message)
		}
	}
	return b.String()
}

// routeStatus is cur with Portico's parents replaced by parents, each
// keeping its conditions' transition times.
func (c *Controller) routeStatus(cur gatewayv1.RouteStatus, gen int64, parents []translate.ParentStatus) gatewayv1.RouteStatus {
	var next gatewayv1.RouteStatus
	for _, p := range cur.Parents {
		if p.ControllerName != c.opts.ControllerName {
			next.Parents = append(next.Parents, p)
		}
	}
	for _, ps := range parents {
		entry := gatewayv1.RouteParentStatus{ParentRef: ps.Ref, ControllerName: c.opts.ControllerName}
		if i := slices.IndexFunc(cur.Parents, func(p gatewayv1.RouteParentStatus) bool {
			return p.ControllerName == c.opts.ControllerName && reflect.DeepEqual(p.ParentRef, ps.Ref)
		}); i >= 0 {
			entry.Conditions = slices.Clone(cur.Parents[i].Conditions)
		}
		keep := map[string]bool{}
		for _, cd := range ps.Conditions {
			set(&entry.Conditions, gen, cd)
			keep[cd.Type] = true
		}
		entry.Conditions = slices.DeleteFunc(entry.Conditions, func(cd metav1.Condition) bool { return !keep[cd.Type] })
		next.Parents = append(next.Parents, entry)
	}
	if next.Parents == nil {
		next.Parents = []gatewayv1.RouteParentStatus{}
	}
	return next
}

// Reasons of the Events that mirror the nodes' verdict on a Gateway or route.
const (
	EventProgrammed = npcstatus.EventProgrammed
	EventRejected   = npcstatus.EventRejected
	EventPending    = npcstatus.EventPending
)

// onVerdicts runs a pass when a Gateway's config moved (its Programmed
// conditions follow the verdict; a route's config is in no status a pass
// writes) and sends an Event on the source of every config whose verdict moved.
func (c *Controller) onVerdicts(ctx context.Context, changes []npcstatus.Change) {
	if slices.ContainsFunc(changes, func(ch npcstatus.Change) bool { return gatewayConfig(ch.Config) }) {
		select {
		case c.kick <- event.GenericEvent{Object: &gatewayv1.Gateway{}}:
		default:
		}
	}
	for _, ch := range changes {
		if !ch.Transition() {
			continue
		}
		obj := c.sourceOf(ctx, ch.Config)
		if obj == nil {
			continue
		}
		typ, why := ch.Event()
		c.recorder.Eventf(obj, nil, typ, why, "Program", "%s: %s", ch.Config.Name, ch.Verdict.Summary())
	}
}

// sourceOf is the object a config was made from, read from the cache.
func (c *Controller) sourceOf(ctx context.Context, cfg *v1alpha1.NodeProxyConfig) client.Object {
	key := types.NamespacedName{Namespace: cfg.Labels[v1alpha1.LabelSourceNamespace], Name: cfg.Labels[v1alpha1.LabelSourceName]}
	var obj client.Object
	switch cfg.Labels[v1alpha1.LabelSourceKind] {
	case translate.KindGateway:
		obj = &gatewayv1.Gateway{}
	case translate.KindHTTPRoute:
		obj = &gatewayv1.HTTPRoute{}
	case translate.KindGRPCRoute:
		obj = &gatewayv1.GRPCRoute{}
	case translate.KindTLSRoute:
		obj = &gatewayv1.TLSRoute{}
	default:
		return nil
	}
	if err := c.client.Get(ctx, key, obj); err != nil {
		return nil
	}
	return obj
}

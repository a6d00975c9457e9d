package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/lbipam"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// Labels on the Services this controller makes (translate's, named here for
// the controller's users).
const (
	LabelManagedBy = translate.LabelManagedBy
	ManagedBy      = translate.ManagedBy
	LabelGateway   = translate.LabelGateway
)

// ServiceName is the load balancer Service of a Gateway (translate.ServiceName).
func ServiceName(gateway string) string { return translate.ServiceName(gateway) }

// ensureService creates or updates a Gateway's Service and returns it. A
// Service of that name that is not ours is left alone and reported. A change
// of type or load balancer class replaces the Service: the API server does not
// let loadBalancerClass change in place.
func (c *Controller) ensureService(ctx context.Context, gw *gatewayv1.Gateway, p *gatewayparams.Parameters) (*corev1.Service, error) {
	want := translate.GatewayService(gw, p)
	key := client.ObjectKeyFromObject(want)
	cur := &corev1.Service{}
	err := c.client.Get(ctx, key, cur)
	if apierrors.IsNotFound(err) {
		return c.createService(ctx, gw, want)
	}
	if err != nil {
		return nil, err
	}
	if cur.Labels[LabelManagedBy] != ManagedBy || !metav1.IsControlledBy(cur, gw) {
		return nil, fmt.Errorf("Service %s exists and is not this Gateway's: left alone", key)
	}
	if cur.Spec.Type != want.Spec.Type || ptr.Deref(cur.Spec.LoadBalancerClass, "") != ptr.Deref(want.Spec.LoadBalancerClass, "") {
		if err := c.client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("replacing Service %s (type or load balancer class changed): %w", key, err)
		}
		return c.createService(ctx, gw, want)
	}
	upd := cur.DeepCopy()
	mergeMeta(upd, want)
	upd.Spec.AllocateLoadBalancerNodePorts = want.Spec.AllocateLoadBalancerNodePorts
	upd.Spec.ExternalTrafficPolicy = want.Spec.ExternalTrafficPolicy
	upd.Spec.Ports = withServerDefaults(want.Spec.Ports, cur.Spec.Ports)
	if maps.Equal(upd.Labels, cur.Labels) && maps.Equal(upd.Annotations, cur.Annotations) && slices.Equal(upd.Spec.Ports, cur.Spec.Ports) &&
		upd.Spec.ExternalTrafficPolicy == cur.Spec.ExternalTrafficPolicy &&
		ptr.Equal(upd.Spec.AllocateLoadBalancerNodePorts, cur.Spec.AllocateLoadBalancerNodePorts) {
		return cur, nil
	}
	if err := c.client.Update(ctx, upd); err != nil {
		return nil, fmt.Errorf("updating Service %s: %w", key, err)
	}
	return upd, nil
}

// withServerDefaults fills in what the apiserver set on the ports of a
// Service it already has (the target port defaults to the port, a node port
// may have been allocated, which an update without it would not remove
// either): compared without them, every pass found each Gateway's
// Service changed and sent a PUT that changed nothing, 100 of them before the
// configs of a pass over 100 Gateways were written.
func withServerDefaults(want, cur []corev1.ServicePort) []corev1.ServicePort {
	out := slices.Clone(want)
	for i := range out {
		for _, c := range cur {
			if c.Port != out[i].Port || c.Protocol != out[i].Protocol {
				continue
			}
			// Only the default: a target port someone else set is put back.
			if out[i].TargetPort == (intstr.IntOrString{}) && c.TargetPort == intstr.FromInt32(c.Port) {
				out[i].TargetPort = c.TargetPort
			}
			if out[i].NodePort == 0 {
				out[i].NodePort = c.NodePort
			}
		}
	}
	return out
}

// mergeMeta puts want's labels and annotations on upd, removing those an
// earlier pass propagated that want no longer has; keys others set stay.
func mergeMeta(upd, want *corev1.Service) {
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	oldLabels, oldAnnotations := translate.Propagated(upd)
	for _, k := range oldLabels {
		delete(upd.Labels, k)
	}
	for _, k := range oldAnnotations {
		delete(upd.Annotations, k)
	}
	for _, k := range []string{lbipam.AnnotationIPs, translate.AnnotationPropagated} {
		if _, ok := want.Annotations[k]; !ok {
			delete(upd.Annotations, k)
		}
	}
	maps.Copy(upd.Labels, want.Labels)
	maps.Copy(upd.Annotations, want.Annotations)
}

// createService creates a Gateway's Service, owned by the Gateway.
func (c *Controller) createService(ctx context.Context, gw *gatewayv1.Gateway, want *corev1.Service) (*corev1.Service, error) {
	key := client.ObjectKeyFromObject(want)
	if err := controllerutil.SetControllerReference(gw, want, c.client.Scheme()); err != nil {
		return nil, err
	}
	err := c.client.Create(ctx, want)
	if err == nil {
		return want, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Service %s: %w", key, err)
	}
	// Our own create of an earlier pass, not in the cache yet: the next pass
	// (the Service's event) compares it.
	cur := &corev1.Service{}
	if err := c.apiReader.Get(ctx, key, cur); err != nil {
		return nil, err
	}
	return cur, nil
}

// sweepServices deletes our Services whose Gateway is gone or no longer ours
// (the owner reference lets the garbage collector do the first, where one runs).
func (c *Controller) sweepServices(ctx context.Context, keep map[types.NamespacedName]bool) error {
	var list corev1.ServiceList
	if err := c.client.List(ctx, &list, client.MatchingLabels{LabelManagedBy: ManagedBy}); err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		svc := &list.Items[i]
		if keep[client.ObjectKeyFromObject(svc)] {
			continue
		}
		if err := c.client.Delete(ctx, svc, client.Preconditions{UID: &svc.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err))
		}
	}
	return errors.Join(errs...)
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/lbipam"
	"github.com/portico-dev/portico/internal/svcname"
)

// Labels on the Services this controller makes: how it finds them again, and
// how a user lists them.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "portico-gateway-controller"
	// LabelGateway is the name of the Gateway a Service belongs to (in its namespace).
	LabelGateway = "gateway.networking.k8s.io/gateway-name"
)

// ServiceName is the load balancer Service of a Gateway: portico-gateway-<name>,
// cut and given a hash when it does not fit a DNS-1035 label.
func ServiceName(gateway string) string { return svcname.For("portico-gateway-", gateway) }

// desiredService is the Service a Gateway asks for: one port per listener
// port, its spec.addresses as LB-IPAM's requested addresses, its
// infrastructure labels and annotations.
func desiredService(gw *gatewayv1.Gateway) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: gw.Namespace, Name: ServiceName(gw.Name),
		Labels: map[string]string{}, Annotations: map[string]string{}}}
	if inf := gw.Spec.Infrastructure; inf != nil {
		for k, v := range inf.Labels {
			svc.Labels[string(k)] = string(v)
		}
		for k, v := range inf.Annotations {
			svc.Annotations[string(k)] = string(v)
		}
	}
	svc.Labels[LabelManagedBy], svc.Labels[LabelGateway] = ManagedBy, gw.Name
	// The node agents serve the addresses; kube-proxy must leave them alone.
	svc.Annotations[lbipam.AnnotationIPMode] = "Proxy"
	var ips []string
	for _, a := range gw.Spec.Addresses {
		if (a.Type == nil || *a.Type == gatewayv1.IPAddressType) && a.Value != "" {
			ips = append(ips, a.Value)
		}
	}
	if len(ips) > 0 {
		svc.Annotations[lbipam.AnnotationIPs] = strings.Join(ips, ",")
	}
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	svc.Spec.LoadBalancerClass = ptr.To(lbipam.LoadBalancerClass)
	svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	seen := map[int32]bool{}
	for _, l := range gw.Spec.Listeners {
		if seen[l.Port] || (l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType && l.Protocol != gatewayv1.TLSProtocolType) {
			continue
		}
		seen[l.Port] = true
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "port-" + strconv.Itoa(int(l.Port)), Port: l.Port, Protocol: corev1.ProtocolTCP})
	}
	slices.SortFunc(svc.Spec.Ports, func(a, b corev1.ServicePort) int { return int(a.Port - b.Port) })
	if len(svc.Spec.Ports) == 0 {
		// A Service needs a port; one no listener uses still gets the Gateway an address.
		svc.Spec.Ports = []corev1.ServicePort{{Name: "none", Port: 9, Protocol: corev1.ProtocolTCP}}
	}
	return svc
}

// ensureService creates or updates a Gateway's Service and returns it. A
// Service of that name that is not ours is left alone and reported.
func (c *Controller) ensureService(ctx context.Context, gw *gatewayv1.Gateway) (*corev1.Service, error) {
	want := desiredService(gw)
	key := client.ObjectKeyFromObject(want)
	cur := &corev1.Service{}
	err := c.client.Get(ctx, key, cur)
	if apierrors.IsNotFound(err) {
		if err := controllerutil.SetControllerReference(gw, want, c.client.Scheme()); err != nil {
			return nil, err
		}
		err = c.client.Create(ctx, want)
		if err == nil {
			return want, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating Service %s: %w", key, err)
		}
		// Our own create of an earlier pass, not in the cache yet.
		err = c.apiReader.Get(ctx, key, cur)
	}
	if err != nil {
		return nil, err
	}
	if cur.Labels[LabelManagedBy] != ManagedBy || !metav1.IsControlledBy(cur, gw) {
		return nil, fmt.Errorf("Service %s exists and is not this Gateway's: left alone", key)
	}
	upd := cur.DeepCopy()
	maps.Copy(upd.Labels, want.Labels)
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	if _, ok := want.Annotations[lbipam.AnnotationIPs]; !ok {
		delete(upd.Annotations, lbipam.AnnotationIPs)
	}
	maps.Copy(upd.Annotations, want.Annotations)
	upd.Spec.Type, upd.Spec.LoadBalancerClass, upd.Spec.AllocateLoadBalancerNodePorts = want.Spec.Type, want.Spec.LoadBalancerClass, want.Spec.AllocateLoadBalancerNodePorts
	upd.Spec.Ports = want.Spec.Ports
	if maps.Equal(upd.Labels, cur.Labels) && maps.Equal(upd.Annotations, cur.Annotations) && slices.Equal(upd.Spec.Ports, cur.Spec.Ports) {
		return cur, nil
	}
	if err := c.client.Update(ctx, upd); err != nil {
		return nil, fmt.Errorf("updating Service %s: %w", key, err)
	}
	return upd, nil
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

// addresses are the IPs in a Service's status.
func addresses(svc *corev1.Service) []string {
	if svc == nil {
		return nil
	}
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}

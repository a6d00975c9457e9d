package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/cachelist"
	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// reconcile is one pass: a delta pass when only HTTPRoutes' rules changed
// and the translation can prove it enough (delta.go), a full pass otherwise.
// A pass that fails is retried as a full pass.
func (c *Controller) reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	full, routes := c.pending.take()
	if !full && len(routes) == 0 {
		return ctrl.Result{}, nil // another pass took this event's change
	}
	if !full {
		done, err := c.deltaPass(ctx, routes)
		if err != nil {
			c.pending.markFull()
			ctrl.LoggerFrom(ctx).Error(err, "gateway delta pass incomplete, retrying as a full pass")
		}
		if done || err != nil {
			return ctrl.Result{}, err
		}
	}
	passesTotal.WithLabelValues("full").Inc()
	err := c.fullPass(ctx)
	if err != nil {
		c.pending.markFull()
		ctrl.LoggerFrom(ctx).Error(err, "gateway pass incomplete, retrying")
	}
	return ctrl.Result{}, err
}

// fullPass accepts the classes, keeps the Services, translates every
// Gateway and route, writes the configs and the status. Errors of one object
// do not stop the pass; they are joined.
func (c *Controller) fullPass(ctx context.Context) error {
	var errs []error

	var classes gatewayv1.GatewayClassList
	if err := c.client.List(ctx, &classes); err != nil {
		return err
	}
	// Parameters of the accepted classes; a class missing is not accepted.
	params := map[string]*gatewayparams.Parameters{}
	ours := map[string]bool{}
	for i := range classes.Items {
		gc := &classes.Items[i]
		if gc.Spec.ControllerName != c.opts.ControllerName {
			continue
		}
		ours[gc.Name] = true
		p, err := c.classStatus(ctx, gc)
		if p != nil {
			params[gc.Name] = p
		}
		errs = append(errs, err)
	}
	for name := range c.lastParams {
		if !ours[name] {
			delete(c.lastParams, name)
		}
	}
	var gwl gatewayv1.GatewayList
	if err := c.client.List(ctx, &gwl, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	in := translate.Input{Services: map[types.NamespacedName]*corev1.Service{}, Secrets: map[types.NamespacedName]string{},
		Addresses: map[types.NamespacedName][]string{}, Classes: params}
	services := map[types.NamespacedName]*corev1.Service{}
	keep := map[types.NamespacedName]bool{}
	for i := range gwl.Items {
		gw := &gwl.Items[i]
		p := params[string(gw.Spec.GatewayClassName)]
		if gw.DeletionTimestamp != nil || p == nil {
			continue
		}
		key := client.ObjectKeyFromObject(gw)
		in.Gateways = append(in.Gateways, gw)
		svc, err := c.ensureService(ctx, gw, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		services[key] = svc
		keep[client.ObjectKeyFromObject(svc)] = true
		in.Addresses[key] = translate.ServiceAddresses(svc)
	}
	errs = append(errs, c.sweepServices(ctx, keep))
	if err := c.gather(ctx, &in); err != nil {
		return err
	}
	out := c.memo.Translate(in)
	errs = append(errs, c.writeConfigs(ctx, out))
	for _, gw := range in.Gateways {
		key := client.ObjectKeyFromObject(gw)
		errs = append(errs, c.gatewayStatus(ctx, gw, out.Gateways[key], services[key]))
	}
	errs = append(errs, c.routeStatuses(ctx, in, out))
	return errors.Join(errs...)
}

// gather reads the routes, grants, namespaces and what the Gateways and
// routes reference: only existing Services and Secrets go into the input, so
// the translator sees exactly what is missing.
func (c *Controller) gather(ctx context.Context, in *translate.Input) error {
	var gl gatewayv1.GRPCRouteList
	var tl gatewayv1.TLSRouteList
	var rgl gatewayv1.ReferenceGrantList
	for _, l := range []client.ObjectList{&gl, &tl, &rgl} {
		if err := c.client.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
	}
	// HTTPRoutes are the thousands: listed without the copy a List makes.
	routes, err := cachelist.List(ctx, c.cache, &gatewayv1.HTTPRoute{}, nil)
	if err != nil {
		return err
	}
	in.HTTPRoutes = append(in.HTTPRoutes, routes...)
	for i := range gl.Items {
		in.GRPCRoutes = append(in.GRPCRoutes, &gl.Items[i])
	}
	for i := range tl.Items {
		in.TLSRoutes = append(in.TLSRoutes, &tl.Items[i])
	}
	for i := range rgl.Items {
		in.Grants = append(in.Grants, &rgl.Items[i])
	}
	var nsl metav1.PartialObjectMetadataList
	nsl.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := c.client.List(ctx, &nsl, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	in.Namespaces = make(map[string]map[string]string, len(nsl.Items))
	for _, ns := range nsl.Items {
		in.Namespaces[ns.Name] = ns.Labels
	}
	for _, gw := range in.Gateways {
		for _, l := range gw.Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				ns := gw.Namespace
				if ref.Namespace != nil {
					ns = string(*ref.Namespace)
				}
				if err := c.checkSecret(ctx, in, types.NamespacedName{Namespace: ns, Name: string(ref.Name)}); err != nil {
					return err
				}
			}
		}
	}
	// Forget the checks of Secrets no listener names any more.
	for k := range c.secrets {
		if _, named := in.Secrets[k]; !named {
			delete(c.secrets, k)
		}
	}
	return c.gatherServices(ctx, in)
}

// gatherServices reads the Services the routes' backendRefs and mirrors name.
func (c *Controller) gatherServices(ctx context.Context, in *translate.Input) error {
	var errs []error
	// Only errors are kept: 40,000 nils per pass at 10,000 routes were garbage.
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range in.HTTPRoutes {
		note(c.httpRouteServices(ctx, in.Services, r))
	}
	for _, r := range in.GRPCRoutes {
		for _, rule := range r.Spec.Rules {
			for _, f := range rule.Filters {
				if f.RequestMirror != nil {
					note(c.lookupService(ctx, in.Services, r.Namespace, f.RequestMirror.BackendRef))
				}
			}
			for _, b := range rule.BackendRefs {
				note(c.lookupService(ctx, in.Services, r.Namespace, b.BackendObjectReference))
			}
		}
	}
	for _, r := range in.TLSRoutes {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				note(c.lookupService(ctx, in.Services, r.Namespace, b.BackendObjectReference))
			}
		}
	}
	return errors.Join(errs...)
}

// httpRouteServices reads the Services an HTTPRoute's backendRefs and
// mirrors name into services.
func (c *Controller) httpRouteServices(ctx context.Context, services map[types.NamespacedName]*corev1.Service, r *gatewayv1.HTTPRoute) error {
	var errs []error
	for _, rule := range r.Spec.Rules {
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				if err := c.lookupService(ctx, services, r.Namespace, f.RequestMirror.BackendRef); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for _, b := range rule.BackendRefs {
			if err := c.lookupService(ctx, services, r.Namespace, b.BackendObjectReference); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// lookupService puts the Service ref names (from a route of namespace ns)
// into services if it exists; a ref to another kind is not a Service's.
func (c *Controller) lookupService(ctx context.Context, services map[types.NamespacedName]*corev1.Service, ns string, ref gatewayv1.BackendObjectReference) error {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
		return nil
	}
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	key := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
	if _, done := services[key]; done {
		return nil
	}
	svc := &corev1.Service{}
	switch err := c.client.Get(ctx, key, svc, client.UnsafeDisableDeepCopy); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	services[key] = svc
	return nil
}

// secretCheck is what a certificate Secret's check found, for one resourceVersion.
type secretCheck struct {
	resourceVersion string
	problem         string
}

// checkSecret records whether a certificate Secret exists and holds a key
// pair. The agent checks it again before serving it; here it decides the
// listener's ResolvedRefs, as the spec asks.
func (c *Controller) checkSecret(ctx context.Context, in *translate.Input, key types.NamespacedName) error {
	if _, done := in.Secrets[key]; done {
		return nil
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	switch err := c.client.Get(ctx, key, meta); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	if chk, ok := c.secrets[key]; ok && chk.resourceVersion == meta.ResourceVersion {
		in.Secrets[key] = chk.problem
		return nil
	}
	s := &corev1.Secret{}
	switch err := c.apiReader.Get(ctx, key, s); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	problem := ""
	if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		problem = fmt.Sprintf("%s and %s are not a key pair: %v", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	c.secrets[key] = secretCheck{s.ResourceVersion, problem}
	in.Secrets[key] = problem
	return nil
}

// writeConfigs writes the translation and deletes our configs nothing asks
// for, Gateways' listeners before the routes' chains for them.
func (c *Controller) writeConfigs(ctx context.Context, out translate.Output) error {
	set := make([]npcwriter.Config, 0, len(out.Configs))
	for _, cfg := range out.Configs {
		set = append(set, npcwriter.Config{Name: cfg.Name, Source: cfg.Source, Spec: cfg.Spec})
	}
	return c.npcs.ApplySet(ctx, set)
}

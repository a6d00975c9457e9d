package ingress

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

func ctrlOptions() controller.Options { return controller.Options{MaxConcurrentReconciles: 1} }

// reconcile is one pass: classify, keep the Services, translate, write the
// configs, copy addresses into Ingress status, report problems. Errors of one
// object do not stop the pass; they are joined and the pass is retried.
func (c *Controller) reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pass++
	log := ctrl.LoggerFrom(ctx)
	var errs []error

	if err := c.ensureClass(ctx); err != nil {
		errs = append(errs, err)
	}
	// The lists and Gets of a pass read the cache without copying: the pass only
	// reads its inputs (updateStatus copies the one Ingress it changes), and
	// copying 5,000 Ingresses on every event cost more than translating them.
	var icl networkingv1.IngressClassList
	if err := c.client.List(ctx, &icl, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	cls := classify(icl.Items, c.opts.ClassName)
	var il networkingv1.IngressList
	if err := c.client.List(ctx, &il, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	var ours []*networkingv1.Ingress
	for i := range il.Items {
		if ing := &il.Items[i]; ing.DeletionTimestamp == nil && cls.ours(ing) {
			ours = append(ours, ing)
		}
	}

	// Services first: their addresses are inputs of the translation.
	shared, err := c.ensureService(ctx, types.NamespacedName{Namespace: c.opts.InstallNamespace, Name: SharedServiceName}, sharedService(), nil)
	if err != nil {
		errs = append(errs, err)
	}
	extra := map[types.NamespacedName][]string{} // problems found here, reported with the translator's
	dedicated := map[types.NamespacedName]*corev1.Service{}
	for _, ing := range ours {
		key := client.ObjectKeyFromObject(ing)
		if mode, _ := translate.ModeOf(ing, c.opts.DefaultMode); mode != translate.ModeDedicated {
			continue
		}
		spec, problems := dedicatedService(ing)
		extra[key] = problems
		svc, err := c.ensureService(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: DedicatedServiceName(ing.Name)}, spec, ing)
		if err != nil {
			extra[key] = append(extra[key], err.Error())
			errs = append(errs, err)
			continue
		}
		dedicated[key] = svc
	}
	if err := c.sweepServices(ctx, dedicated); err != nil {
		errs = append(errs, err)
	}

	in, err := c.gather(ctx, ours, cls.defaultCert)
	if err != nil {
		return ctrl.Result{}, err
	}
	in.SharedAddresses = addresses(shared)
	for k, svc := range dedicated {
		in.DedicatedAddresses[k] = addresses(svc)
	}
	out := c.memo.Translate(in, translate.Options{DefaultMode: c.opts.DefaultMode, AllowCrossNamespaceHosts: c.opts.AllowCrossNamespaceHosts})
	errs = append(errs, c.writeConfigs(ctx, out)...)
	c.reportClass(cls, out.ClassProblems)

	sharedStatus := ingressStatus(shared) // once, not once per shared Ingress
	sharedServed := c.servedSomewhere(ctx, translate.SharedConfigName)
	for _, ing := range ours {
		key := client.ObjectKeyFromObject(ing)
		status := sharedStatus
		served := sharedServed
		if out.Modes[key] == translate.ModeDedicated {
			status, served = ingressStatus(dedicated[key]), true
		}
		// The address appears once a node serves the Ingress, and then stays: a
		// proxy restarting must not make it flap in the user's status.
		if !(served && c.servedSomewhere(ctx, translate.ConfigName(key))) && len(ing.Status.LoadBalancer.Ingress) == 0 {
			status = nil
		}
		if err := c.updateStatus(ctx, ing, status); err != nil {
			errs = append(errs, err)
		}
		c.report(ing, out.Problems[key], extra[key])
	}
	c.forget()
	if len(errs) > 0 {
		log.Error(errors.Join(errs...), "ingress pass incomplete, retrying")
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// ensureClass creates the IngressClass once if asked to and it is missing. An
// existing class is never changed: it belongs to whoever made it (the chart).
func (c *Controller) ensureClass(ctx context.Context) error {
	if c.classChecked || !c.opts.CreateClass {
		return nil
	}
	ic := &networkingv1.IngressClass{}
	err := c.apiReader.Get(ctx, client.ObjectKey{Name: c.opts.ClassName}, ic)
	if apierrors.IsNotFound(err) {
		ic = &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: c.opts.ClassName,
			Labels: map[string]string{LabelManagedBy: ManagedBy}}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}
		err = client.IgnoreAlreadyExists(c.client.Create(ctx, ic))
	}
	if err != nil {
		return fmt.Errorf("IngressClass %s: %w", c.opts.ClassName, err)
	}
	c.classChecked = true
	return nil
}

// ensureService creates or updates one of our Services. owner is the dedicated
// Ingress (nil for the shared Service). A Service of that name that is not ours
// is left alone and reported.
func (c *Controller) ensureService(ctx context.Context, key types.NamespacedName, spec serviceSpec, owner *networkingv1.Ingress) (*corev1.Service, error) {
	svc := &corev1.Service{}
	err := c.client.Get(ctx, key, svc)
	if apierrors.IsNotFound(err) {
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		spec.apply(svc)
		if owner != nil {
			if err := controllerutil.SetControllerReference(owner, svc, c.client.Scheme()); err != nil {
				return nil, err
			}
		}
		err = c.client.Create(ctx, svc)
		if err == nil {
			return svc, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating Service %s: %w", key, err)
		}
		// Our own create from the previous pass, not yet in the cache: read it
		// from the apiserver rather than report a problem that is not there.
		svc = &corev1.Service{}
		err = c.apiReader.Get(ctx, key, svc)
	}
	if err != nil {
		return nil, err
	}
	if svc.Labels[LabelManagedBy] != ManagedBy || (owner != nil && !metav1.IsControlledBy(svc, owner)) {
		return nil, fmt.Errorf("Service %s exists and is not managed by the ingress controller for this Ingress: left alone", key)
	}
	if spec.apply(svc) {
		if err := c.client.Update(ctx, svc); err != nil {
			return nil, fmt.Errorf("updating Service %s: %w", key, err)
		}
	}
	return svc, nil
}

// sweepServices deletes dedicated Services no Ingress wants any more (the
// Ingress was deleted, switched to shared mode or left our class). The owner
// reference would let the garbage collector do it on deletion, but not on a
// mode or class switch, and clusters without a controller-manager have none.
func (c *Controller) sweepServices(ctx context.Context, keep map[types.NamespacedName]*corev1.Service) error {
	var list corev1.ServiceList
	if err := c.client.List(ctx, &list, client.MatchingLabels{LabelManagedBy: ManagedBy, LabelRole: string(translate.ModeDedicated)}); err != nil {
		return err
	}
	wanted := map[types.NamespacedName]bool{}
	for _, svc := range keep {
		wanted[client.ObjectKeyFromObject(svc)] = true
	}
	var errs []error
	for i := range list.Items {
		svc := &list.Items[i]
		if wanted[client.ObjectKeyFromObject(svc)] {
			continue
		}
		if err := c.client.Delete(ctx, svc, client.Preconditions{UID: &svc.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// gather reads what the Ingresses reference: only existing backend Services and
// TLS Secrets go into the input, so the translator sees exactly what is missing.
func (c *Controller) gather(ctx context.Context, ings []*networkingv1.Ingress, defaultCert *types.NamespacedName) (translate.Input, error) {
	in := translate.Input{
		Ingresses:          ings,
		Services:           map[types.NamespacedName]*corev1.Service{},
		Secrets:            map[types.NamespacedName]bool{},
		DedicatedAddresses: map[types.NamespacedName][]string{},
		DefaultCertificate: defaultCert,
	}
	secretExists := func(key types.NamespacedName) error {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		switch err := c.client.Get(ctx, key, meta, client.UnsafeDisableDeepCopy); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		default:
			in.Secrets[key] = true
		}
		return nil
	}
	if defaultCert != nil {
		if err := secretExists(*defaultCert); err != nil {
			return in, err
		}
	}
	// seen are the Services the current Ingress already named: most paths of
	// an Ingress share a few backends, and a slice beats hashing 20,000 keys.
	var seen []string
	lookupService := func(ns string, b *networkingv1.IngressBackend) error {
		if b == nil || b.Service == nil || slices.Contains(seen, b.Service.Name) {
			return nil
		}
		seen = append(seen, b.Service.Name)
		key := types.NamespacedName{Namespace: ns, Name: b.Service.Name}
		if _, done := in.Services[key]; done {
			return nil
		}
		svc := &corev1.Service{}
		switch err := c.client.Get(ctx, key, svc, client.UnsafeDisableDeepCopy); {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		in.Services[key] = svc
		return nil
	}
	for _, ing := range ings {
		seen = seen[:0]
		if err := lookupService(ing.Namespace, ing.Spec.DefaultBackend); err != nil {
			return in, err
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for i := range r.HTTP.Paths {
				if err := lookupService(ing.Namespace, &r.HTTP.Paths[i].Backend); err != nil {
					return in, err
				}
			}
		}
		for _, t := range ing.Spec.TLS {
			if t.SecretName == "" {
				continue
			}
			if err := secretExists(types.NamespacedName{Namespace: ing.Namespace, Name: t.SecretName}); err != nil {
				return in, err
			}
		}
	}
	return in, nil
}

// writeConfigs writes the translation and deletes our configs nothing asks for,
// in the order the writer's ApplySet keeps the nodes from rejecting anything
// (the shared listeners before the Ingresses' chains for them).
func (c *Controller) writeConfigs(ctx context.Context, out translate.Output) []error {
	set := make([]npcwriter.Config, 0, len(out.Configs))
	for _, cfg := range out.Configs {
		src := npcwriter.Source{Kind: "Service", Namespace: c.opts.InstallNamespace, Name: SharedServiceName}
		if cfg.Source != nil {
			src = npcwriter.Source{Kind: "Ingress", Namespace: cfg.Source.Namespace, Name: cfg.Source.Name}
		}
		set = append(set, npcwriter.Config{Name: cfg.Name, Source: src, Spec: cfg.Spec})
	}
	if err := c.npcs.ApplySet(ctx, set); err != nil {
		return []error{err}
	}
	return nil
}

// updateStatus copies the Service's addresses to the Ingress.
func (c *Controller) updateStatus(ctx context.Context, ing *networkingv1.Ingress, lb []networkingv1.IngressLoadBalancerIngress) error {
	if slices.EqualFunc(ing.Status.LoadBalancer.Ingress, lb, func(a, b networkingv1.IngressLoadBalancerIngress) bool {
		return a.IP == b.IP && a.Hostname == b.Hostname
	}) {
		return nil
	}
	// ing is the cache's own object: change a copy.
	upd := ing.DeepCopy()
	upd.Status.LoadBalancer.Ingress = lb
	if err := c.client.Status().Patch(ctx, upd, client.MergeFrom(ing)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("status of Ingress %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	return nil
}

// report sends one Warning Event per problem when an Ingress's problems change
// (or its generation does), so `kubectl describe ingress` says what is not served
// and why without an Event on every pass.
func (c *Controller) report(ing *networkingv1.Ingress, problems []translate.Problem, extra []string) {
	key := client.ObjectKeyFromObject(ing)
	r := c.reported[key]
	if r == nil {
		r = &reported{generation: -1}
		c.reported[key] = r
	}
	r.pass = c.pass
	if r.generation == ing.Generation && slices.Equal(r.problems, problems) && slices.Equal(r.extra, extra) {
		return
	}
	r.generation, r.problems, r.extra = ing.Generation, problems, extra
	for _, p := range problems {
		c.recorder.Eventf(ing, nil, corev1.EventTypeWarning, string(p.Reason), "Translate", "%s: %s", p.Field, p.Message)
	}
	for _, e := range extra {
		c.recorder.Eventf(ing, nil, corev1.EventTypeWarning, "ServiceNotReady", "EnsureService", "%s", e)
	}
}

// forget drops the reporting memory of Ingresses that this pass did not see
// (gone or no longer ours).
func (c *Controller) forget() {
	maps.DeleteFunc(c.reported, func(_ types.NamespacedName, r *reported) bool { return r.pass != c.pass })
}

// reportClass sends a Warning Event on our IngressClass when what its parameters
// ask for cannot be done, once per change of the problems.
func (c *Controller) reportClass(cls classes, problems []translate.Problem) {
	if cls.class == nil {
		return
	}
	var msgs []string
	if cls.paramsProblem != "" {
		msgs = append(msgs, cls.paramsProblem)
	}
	for _, p := range problems {
		msgs = append(msgs, p.Field+": "+p.Message)
	}
	if slices.Equal(msgs, c.classProblems) {
		return
	}
	c.classProblems = msgs
	for _, m := range msgs {
		c.recorder.Eventf(cls.class, nil, corev1.EventTypeWarning, "InvalidParameters", "Translate", "%s", m)
	}
}

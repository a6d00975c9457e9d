package ingress

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcstatus"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// Reasons of the Events that mirror the nodes' verdict on an Ingress.
const (
	EventProgrammed = npcstatus.EventProgrammed
	EventRejected   = npcstatus.EventRejected
	EventPending    = npcstatus.EventPending
)

// onVerdicts mirrors the verdicts that changed onto their sources: an Event on the
// Ingress (or on the shared Service, for ingress-shared) at every transition.
// (Whether an Ingress shows its address follows the configs' status: see
// ownedConfigs.)
func (c *Controller) onVerdicts(ctx context.Context, changes []npcstatus.Change) {
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

// sourceOf is the object a config was made from, read from the cache (Events
// need its UID): the Ingress, or the shared Service for ingress-shared.
func (c *Controller) sourceOf(ctx context.Context, cfg *v1alpha1.NodeProxyConfig) client.Object {
	key := types.NamespacedName{Namespace: cfg.Labels[v1alpha1.LabelSourceNamespace], Name: cfg.Labels[v1alpha1.LabelSourceName]}
	var obj client.Object = &networkingv1.Ingress{}
	if cfg.Name == translate.SharedConfigName {
		obj, key = &corev1.Service{}, types.NamespacedName{Namespace: c.opts.InstallNamespace, Name: SharedServiceName}
	}
	if err := c.client.Get(ctx, key, obj); err != nil {
		return nil
	}
	return obj
}

// servedSomewhere reports whether at least one node has the config in effect.
// An Ingress shows its address only from then on: before, the address would
// send clients to a load balancer that answers nothing for them.
func (c *Controller) servedSomewhere(ctx context.Context, name string) bool {
	cfg := &v1alpha1.NodeProxyConfig{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: name}, cfg, client.UnsafeDisableDeepCopy); err != nil {
		return false
	}
	return cfg.Status.ProgrammedNodes > 0
}

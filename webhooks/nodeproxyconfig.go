package webhooks

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/vipguard"
)

// failurePolicy=ignore: producers write NodeProxyConfigs on every change of their
// sources, and an unavailable webhook must not stop every one of them. The node agents
// refuse the same redirects for their own node whether admission ran or not.
// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-nodeproxyconfig,mutating=false,failurePolicy=ignore,timeoutSeconds=5,sideEffects=None,groups=portico.dev,resources=nodeproxyconfigs,verbs=create;update,versions=v1alpha1,name=vnodeproxyconfig.portico.dev,admissionReviewVersions=v1

// NodeProxyConfigValidator refuses redirects to a node's own addresses or to the
// apiserver's ClusterIP (internal/vipguard). Announcements that could select more than
// one node are refused by the CRD's own rule, which needs no webhook.
type NodeProxyConfigValidator struct {
	// Reader lists Nodes (cached: trim them with vipguard.TrimNode) and gets the
	// Service default/kubernetes.
	Reader client.Reader
}

// SetupNodeProxyConfigWebhook registers the validator with mgr's webhook server.
func SetupNodeProxyConfigWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.NodeProxyConfig{}).
		WithValidator(&NodeProxyConfigValidator{Reader: mgr.GetClient()}).
		Complete()
}

// ValidateCreate validates a new config.
func (v *NodeProxyConfigValidator) ValidateCreate(ctx context.Context, c *v1alpha1.NodeProxyConfig) (admission.Warnings, error) {
	return nil, v.validate(ctx, c, nil)
}

// ValidateUpdate validates the redirects a changed config adds: VIPs it already had are
// left alone, so that a node gaining an address does not block every later update.
func (v *NodeProxyConfigValidator) ValidateUpdate(ctx context.Context, old, c *v1alpha1.NodeProxyConfig) (admission.Warnings, error) {
	had := vipguard.VIPs(old.Spec.Redirects)
	return nil, v.validate(ctx, c, func(a netip.Addr) bool { return had[a] })
}

// ValidateDelete allows every deletion.
func (v *NodeProxyConfigValidator) ValidateDelete(context.Context, *v1alpha1.NodeProxyConfig) (admission.Warnings, error) {
	return nil, nil
}

func (v *NodeProxyConfigValidator) validate(ctx context.Context, c *v1alpha1.NodeProxyConfig, keep func(netip.Addr) bool) error {
	if len(c.Spec.Redirects) == 0 {
		return nil
	}
	forbidden := vipguard.New(vipguard.VIPs(c.Spec.Redirects))
	var nodes corev1.NodeList
	if err := v.Reader.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing nodes to check redirects: %w", err))
	}
	for i := range nodes.Items {
		forbidden.AddNode(&nodes.Items[i])
	}
	api := &corev1.Service{}
	switch err := v.Reader.Get(ctx, vipguard.APIServerService, api); {
	case err == nil:
		forbidden.AddAPIServer(api)
	case !apierrors.IsNotFound(err):
		return apierrors.NewInternalError(fmt.Errorf("reading Service %s to check redirects: %w", vipguard.APIServerService, err))
	}
	if errs := forbidden.Check(c.Spec.Redirects, keep); len(errs) > 0 {
		return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("NodeProxyConfig").GroupKind(), c.Name, errs)
	}
	return nil
}

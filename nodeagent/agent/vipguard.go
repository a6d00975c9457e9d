package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/vipguard"
)

// guardVIPs moves the configs that redirect an address of this node (its Node's
// status.addresses) or the apiserver's ClusterIP from configs to rejected. The
// NodeProxyConfig webhook refuses them too, but admission can be off, and a node can
// gain an address after a config was admitted. Interface addresses are not used:
// kube-proxy in IPVS mode (and other load balancers) put Service addresses on node
// interfaces, and those are exactly what redirects are for.
func (a *agent) guardVIPs(ctx context.Context, configs []*v1alpha1.NodeProxyConfig, rejected []v1alpha1.RejectedConfig) ([]*v1alpha1.NodeProxyConfig, []v1alpha1.RejectedConfig) {
	forbidden := vipguard.New(nil) // a handful of addresses: its node's and the apiserver's
	// Read-only views of cached objects: nothing here modifies them.
	node := &corev1.Node{}
	if err := a.cache.Get(ctx, client.ObjectKey{Name: a.cfg.NodeName}, node, client.UnsafeDisableDeepCopy); err == nil {
		forbidden.AddNode(node)
	}
	api := &corev1.Service{}
	if err := a.cache.Get(ctx, vipguard.APIServerService, api, client.UnsafeDisableDeepCopy); err == nil {
		forbidden.AddAPIServer(api)
	}
	if forbidden.Len() == 0 {
		return configs, rejected
	}
	kept := make([]*v1alpha1.NodeProxyConfig, 0, len(configs))
	for _, c := range configs {
		if errs := forbidden.Check(c.Spec.Redirects, nil); len(errs) > 0 {
			rejected = append(rejected, v1alpha1.RejectedConfig{Name: c.Name, Generation: c.Generation,
				Reason: v1alpha1.ReasonForbiddenVIP, Message: truncate(errs.ToAggregate().Error(), 1024)})
			continue
		}
		kept = append(kept, c)
	}
	return kept, rejected
}

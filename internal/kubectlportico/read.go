package kubectlportico

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	l2ctrl "github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/inspect"
)

// reader reads what the plugin shows. It only ever reads.
type reader struct {
	c                client.Client
	kube             kubernetes.Interface
	installNamespace string
}

func (r *reader) service(ctx context.Context, key types.NamespacedName) (*corev1.Service, error) {
	svc := &corev1.Service{}
	err := r.c.Get(ctx, key, svc)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return svc, err
}

func (r *reader) configs(ctx context.Context) ([]v1alpha1.NodeProxyConfig, error) {
	var l v1alpha1.NodeProxyConfigList
	return l.Items, r.c.List(ctx, &l)
}

// nodes are the Nodes (labels only: what selectors match) and the agents' reports.
func (r *reader) nodes(ctx context.Context) ([]inspect.NodeInfo, error) {
	var meta metav1.PartialObjectMetadataList
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.c.List(ctx, &meta); err != nil {
		return nil, err
	}
	var nps v1alpha1.NodeProxyList
	if err := r.c.List(ctx, &nps); err != nil {
		return nil, err
	}
	return inspect.NodeInfos(meta.Items, nps.Items), nil
}

func (r *reader) leases(ctx context.Context) ([]coordinationv1.Lease, error) {
	var l coordinationv1.LeaseList
	return l.Items, r.c.List(ctx, &l, client.InNamespace(r.installNamespace))
}

// announcers are the L2 controller's configs: who answers ARP/NDP for what.
func announcers(all []v1alpha1.NodeProxyConfig) []v1alpha1.NodeProxyConfig {
	var out []v1alpha1.NodeProxyConfig
	for _, c := range all {
		if c.Labels[v1alpha1.LabelProducer] == l2ctrl.Producer {
			out = append(out, c)
		}
	}
	return out
}

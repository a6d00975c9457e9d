package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portico-dev/portico/apis/v1alpha1"
	translate "github.com/portico-dev/portico/internal/translate/envoyconfig"
)

// failurePolicy=fail: this webhook is where a user learns at `kubectl apply` that an
// Envoy resource is malformed, instead of finding it later in a condition. The
// controller runs the same checks and ends a config that got past (webhook off) as
// Accepted=False with the same message.
// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-envoyconfig,mutating=false,failurePolicy=fail,timeoutSeconds=10,sideEffects=None,groups=portico.dev,resources=envoyconfigs,verbs=create;update,versions=v1alpha1,name=venvoyconfig.portico.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-clusterenvoyconfig,mutating=false,failurePolicy=fail,timeoutSeconds=10,sideEffects=None,groups=portico.dev,resources=clusterenvoyconfigs,verbs=create;update,versions=v1alpha1,name=vclusterenvoyconfig.portico.dev,admissionReviewVersions=v1

// EnvoyConfigValidator refuses EnvoyConfigs and ClusterEnvoyConfigs that would not be
// served: it runs the controller's own translation (internal/translate/envoyconfig:
// decoding, Cilium's name qualification, references, Envoy's validation rules, the
// 1 MiB limit, namespaces), then checks the listener ports against every other config
// on the nodes both select.
type EnvoyConfigValidator struct {
	// Reader reads Services, the other configs and Node labels (the manager's cache).
	Reader client.Reader
	ports  translate.PortCache
}

// SetupEnvoyConfigWebhooks registers the validator for both kinds with mgr's webhook server.
func SetupEnvoyConfigWebhooks(mgr ctrl.Manager) error {
	v := &EnvoyConfigValidator{Reader: mgr.GetClient()}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1alpha1.EnvoyConfig{}).WithValidator(typed[*v1alpha1.EnvoyConfig]{v}).Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.ClusterEnvoyConfig{}).WithValidator(typed[*v1alpha1.ClusterEnvoyConfig]{v}).Complete()
}

// typed adapts the validator to one kind.
type typed[T client.Object] struct{ v *EnvoyConfigValidator }

func (t typed[T]) ValidateCreate(ctx context.Context, o T) (admission.Warnings, error) {
	return t.v.Validate(ctx, o)
}

func (t typed[T]) ValidateUpdate(ctx context.Context, _, o T) (admission.Warnings, error) {
	return t.v.Validate(ctx, o)
}

func (t typed[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) { return nil, nil }

// Validate checks one EnvoyConfig or ClusterEnvoyConfig.
func (v *EnvoyConfigValidator) Validate(ctx context.Context, obj client.Object) (admission.Warnings, error) {
	o, ok := translate.Of(obj)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unexpected %T", obj))
	}
	var readErr error
	in := o.Input(func(k types.NamespacedName) *corev1.Service {
		svc := &corev1.Service{}
		if err := v.Reader.Get(ctx, k, svc); err != nil {
			if !apierrors.IsNotFound(err) {
				readErr = err
			}
			return nil
		}
		return svc
	})
	if readErr != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("reading Services: %w", readErr))
	}
	out := translate.Translate(in)
	errs := out.Errors
	if len(out.Ports) > 0 {
		others, nodes, err := v.world(ctx)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, translate.Conflicts(o.Claimant(out.Ports), others, nodes)...)
	}
	if len(errs) > 0 {
		return out.Warnings, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(o.Kind).GroupKind(), obj.GetName(), errs)
	}
	return out.Warnings, nil
}

// world is every other config with its ports, and the labels of every node.
func (v *EnvoyConfigValidator) world(ctx context.Context) ([]translate.Claimant, []map[string]string, error) {
	var ecs v1alpha1.EnvoyConfigList
	if err := v.Reader.List(ctx, &ecs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing EnvoyConfigs: %w", err)
	}
	var cecs v1alpha1.ClusterEnvoyConfigList
	if err := v.Reader.List(ctx, &cecs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing ClusterEnvoyConfigs: %w", err)
	}
	var others []translate.Claimant
	for i := range ecs.Items {
		o, _ := translate.Of(&ecs.Items[i])
		others = append(others, v.ports.Claimant(o))
	}
	for i := range cecs.Items {
		o, _ := translate.Of(&cecs.Items[i])
		others = append(others, v.ports.Claimant(o))
	}
	var meta metav1.PartialObjectMetadataList
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := v.Reader.List(ctx, &meta, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing Nodes: %w", err)
	}
	nodes := make([]map[string]string, 0, len(meta.Items))
	for _, n := range meta.Items {
		nodes = append(nodes, n.Labels)
	}
	return others, nodes, nil
}

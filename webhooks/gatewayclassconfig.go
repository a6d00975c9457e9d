package webhooks

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/gatewayparams"
)

// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-gatewayclassconfig,mutating=false,failurePolicy=fail,sideEffects=None,groups=portico.dev,resources=gatewayclassconfigs,verbs=create;update,versions=v1alpha1,name=vgatewayclassconfig.portico.dev,admissionReviewVersions=v1

// GatewayClassConfigValidator refuses GatewayClass parameters the gateway
// controller could not apply, naming the field. The controller still marks the
// classes naming such a config Accepted=False, InvalidParameters (webhook off).
type GatewayClassConfigValidator struct{}

// SetupGatewayClassConfigWebhook registers the validator with mgr's webhook server.
func SetupGatewayClassConfigWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.GatewayClassConfig{}).
		WithValidator(&GatewayClassConfigValidator{}).
		Complete()
}

// ValidateCreate validates a new config.
func (v *GatewayClassConfigValidator) ValidateCreate(_ context.Context, c *v1alpha1.GatewayClassConfig) (admission.Warnings, error) {
	return validateGatewayClassConfig(c)
}

// ValidateUpdate validates a changed config.
func (v *GatewayClassConfigValidator) ValidateUpdate(_ context.Context, _, c *v1alpha1.GatewayClassConfig) (admission.Warnings, error) {
	return validateGatewayClassConfig(c)
}

// ValidateDelete allows every deletion: the classes naming the config stop being accepted, with the field.
func (v *GatewayClassConfigValidator) ValidateDelete(context.Context, *v1alpha1.GatewayClassConfig) (admission.Warnings, error) {
	return nil, nil
}

func validateGatewayClassConfig(c *v1alpha1.GatewayClassConfig) (admission.Warnings, error) {
	p, errs := gatewayparams.Parse(c)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(gatewayparams.Kind).GroupKind(), c.Name, errs)
	}
	return gatewayparams.Warnings(p), nil
}

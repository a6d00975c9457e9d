package webhooks

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
	"github.com/portico-dev/portico/internal/lbipam"
)

// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-loadbalancerippool,mutating=false,failurePolicy=fail,sideEffects=None,groups=portico.dev,resources=loadbalancerippools,verbs=create;update,versions=v1alpha1,name=vloadbalancerippool.portico.dev,admissionReviewVersions=v1

// IPPoolValidator refuses pools with invalid blocks or selectors, and pools that overlap
// an existing pool. The controller still marks overlaps that reach it (webhook off).
type IPPoolValidator struct {
	Reader client.Reader
}

// SetupIPPoolWebhook registers the validator with mgr's webhook server.
func SetupIPPoolWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.LoadBalancerIPPool{}).
		WithValidator(&IPPoolValidator{Reader: mgr.GetClient()}).
		Complete()
}

// ValidateCreate validates a new pool.
func (v *IPPoolValidator) ValidateCreate(ctx context.Context, p *v1alpha1.LoadBalancerIPPool) (admission.Warnings, error) {
	return v.validate(ctx, p)
}

// ValidateUpdate validates a changed pool.
func (v *IPPoolValidator) ValidateUpdate(ctx context.Context, _, p *v1alpha1.LoadBalancerIPPool) (admission.Warnings, error) {
	return v.validate(ctx, p)
}

// ValidateDelete allows every deletion: Services lose their addresses with a condition.
func (v *IPPoolValidator) ValidateDelete(context.Context, *v1alpha1.LoadBalancerIPPool) (admission.Warnings, error) {
	return nil, nil
}

func (v *IPPoolValidator) validate(ctx context.Context, p *v1alpha1.LoadBalancerIPPool) (admission.Warnings, error) {
	parsed := lbipam.ParsePool(p)
	errs := parsed.Errors
	if len(errs) == 0 {
		var pools v1alpha1.LoadBalancerIPPoolList
		if err := v.Reader.List(ctx, &pools); err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("listing pools to check for overlaps: %w", err))
		}
		errs = append(errs, overlaps(parsed, p, pools.Items)...)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("LoadBalancerIPPool").GroupKind(), p.Name, errs)
	}
	var warnings admission.Warnings
	if p.Spec.Disabled {
		warnings = append(warnings, "the pool is disabled: it keeps existing allocations and makes no new ones")
	}
	return warnings, nil
}

func overlaps(parsed *lbipam.Pool, p *v1alpha1.LoadBalancerIPPool, others []v1alpha1.LoadBalancerIPPool) field.ErrorList {
	var errs field.ErrorList
	blocks := field.NewPath("spec", "blocks")
	for i := range others {
		o := &others[i]
		if o.Name == p.Name {
			continue
		}
		other := lbipam.ParsePool(o)
		for bi, r := range parsed.Ranges() {
			for _, or := range other.Ranges() {
				if x, ok := ipam.Intersect(r, or); ok {
					errs = append(errs, field.Invalid(blocks.Index(bi), r.String(),
						fmt.Sprintf("overlaps pool %q on %s", o.Name, x)))
				}
			}
		}
	}
	return errs
}

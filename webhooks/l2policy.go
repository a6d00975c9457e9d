package webhooks

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/l2iface"
)

// +kubebuilder:webhook:path=/validate-portico-dev-v1alpha1-l2announcementpolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=portico.dev,resources=l2announcementpolicies,verbs=create;update,versions=v1alpha1,name=vl2announcementpolicy.portico.dev,admissionReviewVersions=v1

// L2PolicyValidator refuses policies with invalid selectors or interface regexes, naming
// the field. The controller still marks such a policy Ready=False (webhook off).
type L2PolicyValidator struct{}

// SetupL2PolicyWebhook registers the validator with mgr's webhook server.
func SetupL2PolicyWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.L2AnnouncementPolicy{}).
		WithValidator(&L2PolicyValidator{}).
		Complete()
}

// ValidateCreate validates a new policy.
func (v *L2PolicyValidator) ValidateCreate(_ context.Context, p *v1alpha1.L2AnnouncementPolicy) (admission.Warnings, error) {
	return v.validate(p)
}

// ValidateUpdate validates a changed policy.
func (v *L2PolicyValidator) ValidateUpdate(_ context.Context, _, p *v1alpha1.L2AnnouncementPolicy) (admission.Warnings, error) {
	return v.validate(p)
}

// ValidateDelete allows every deletion: the addresses stop being announced, with an Event.
func (v *L2PolicyValidator) ValidateDelete(context.Context, *v1alpha1.L2AnnouncementPolicy) (admission.Warnings, error) {
	return nil, nil
}

func (v *L2PolicyValidator) validate(p *v1alpha1.L2AnnouncementPolicy) (admission.Warnings, error) {
	if errs := l2assign.ParsePolicy(p).Errors; len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("L2AnnouncementPolicy").GroupKind(), p.Name, errs)
	}
	var warnings admission.Warnings
	if len(p.Spec.Interfaces) == 0 {
		warnings = append(warnings, "no interfaces given: the addresses are answered on every interface of the announcing node except loopback and those the agent excludes (--interface-report-exclude: pod veths, tunnels)")
	}
	for i, re := range p.Spec.Interfaces {
		if !l2iface.Anchored(re) {
			warnings = append(warnings, fmt.Sprintf("spec.interfaces[%d]: %q is not anchored: it matches every interface whose name contains a match (\"eth1\" matches a pod's \"veth1\" too); anchor it (^...$) to match whole names",
				i, re))
		}
	}
	return warnings, nil
}

// Package gatewayparams reads a GatewayClassConfig, the parameters a
// GatewayClass names in spec.parametersRef, in one pure pass shared by the
// validating webhook and the gateway controller: what admission refuses is
// exactly what the controller reports as InvalidParameters (when the webhook
// was off or the object older than a rule), with the same field paths.
package gatewayparams

import (
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/lbipam"
)

// Kind is the parametersRef kind Portico's GatewayClasses take (group portico.dev).
const Kind = "GatewayClassConfig"

// reservedLabels are set by the gateway controller on every Gateway Service
// (how it finds its Services again); a class may not take them over.
var reservedLabels = []string{"app.kubernetes.io/managed-by", "gateway.networking.k8s.io/gateway-name"}

// reservedAnnotation: Portico's own annotations (LB-IPAM's requested
// addresses and ipMode, the controller's bookkeeping) are set by the
// controller from the Gateway.
func reservedAnnotation(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	return ok && (prefix == "portico.dev" || strings.HasSuffix(prefix, ".portico.dev"))
}

// Parameters are a valid GatewayClassConfig, with defaults filled in.
type Parameters struct {
	// Name is the GatewayClassConfig's.
	Name string
	// ServiceType is LoadBalancer or ClusterIP.
	ServiceType corev1.ServiceType
	// ExternalTrafficPolicy is Cluster unless the config says Local ("" for ClusterIP).
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy
	// LoadBalancerClass is LB-IPAM's unless the config names another (LoadBalancer only).
	LoadBalancerClass string
	Labels            map[string]string
	Annotations       map[string]string
	// NodeSelector of the Gateways' NodeProxyConfigs; nil selects every node.
	NodeSelector *metav1.LabelSelector
}

// Default are the parameters of a class without parametersRef.
func Default() *Parameters {
	return &Parameters{ServiceType: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: lbipam.LoadBalancerClass,
		ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster}
}

// Parse validates a GatewayClassConfig in one pass and reports every problem
// with its field path; the parameters are nil when there is any.
func Parse(cfg *v1alpha1.GatewayClassConfig) (*Parameters, field.ErrorList) {
	spec := field.NewPath("spec")
	p := Default()
	p.Name = cfg.Name
	var errs field.ErrorList
	if s := cfg.Spec.Service; s != nil {
		errs = append(errs, parseService(p, s, spec.Child("service"))...)
	}
	if sel := cfg.Spec.NodeSelector; sel != nil {
		path := spec.Child("nodeSelector")
		sErrs := metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, path)
		if len(sErrs) == 0 {
			// Catches what the field checks above let through (an operator's values).
			if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				sErrs = append(sErrs, field.Invalid(path, sel.String(), err.Error()))
			}
		}
		errs = append(errs, sErrs...)
		p.NodeSelector = sel.DeepCopy()
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func parseService(p *Parameters, s *v1alpha1.GatewayServiceConfig, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "", corev1.ServiceTypeLoadBalancer:
	case corev1.ServiceTypeClusterIP:
		p.ServiceType = s.Type
		p.LoadBalancerClass, p.ExternalTrafficPolicy = "", ""
	default:
		// NodePort is left out on purpose: a Gateway Service has no endpoints, so
		// kube-proxy would refuse what arrives on its node ports.
		errs = append(errs, field.NotSupported(path.Child("type"), s.Type, []corev1.ServiceType{corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeClusterIP}))
	}
	lb := p.ServiceType == corev1.ServiceTypeLoadBalancer
	switch s.ExternalTrafficPolicy {
	case "":
	case corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
		if !lb {
			errs = append(errs, field.Forbidden(path.Child("externalTrafficPolicy"), "needs type LoadBalancer"))
		}
		p.ExternalTrafficPolicy = s.ExternalTrafficPolicy
	default:
		errs = append(errs, field.NotSupported(path.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy,
			[]corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}))
	}
	if c := s.LoadBalancerClass; c != nil {
		cp := path.Child("loadBalancerClass")
		switch {
		case !lb:
			errs = append(errs, field.Forbidden(cp, "needs type LoadBalancer"))
		default:
			// The API server's own rule for Service.spec.loadBalancerClass.
			for _, msg := range validation.IsQualifiedName(*c) {
				errs = append(errs, field.Invalid(cp, *c, msg))
			}
		}
		p.LoadBalancerClass = *c
	}
	lp := path.Child("labels")
	errs = append(errs, metavalidation.ValidateLabels(s.Labels, lp)...)
	for _, k := range reservedLabels {
		if _, ok := s.Labels[k]; ok {
			errs = append(errs, field.Forbidden(lp.Key(k), "set by the gateway controller on every Gateway Service"))
		}
	}
	ap := path.Child("annotations")
	errs = append(errs, apivalidation.ValidateAnnotations(s.Annotations, ap)...)
	for k := range s.Annotations {
		if reservedAnnotation(k) {
			errs = append(errs, field.Forbidden(ap.Key(k), "Portico's annotations are set by the gateway controller (requested addresses: the Gateway's spec.addresses)"))
		}
	}
	p.Labels, p.Annotations = maps.Clone(s.Labels), maps.Clone(s.Annotations)
	return errs
}

// Resolve returns the parameters of a GatewayClass whose parametersRef is
// ref (nil: the defaults). get returns the GatewayClassConfig of a name, or
// nil when there is none. The error names the field: of the reference, or of
// the config it names.
func Resolve(ref *gatewayv1.ParametersReference, get func(name string) *v1alpha1.GatewayClassConfig) (*Parameters, error) {
	if ref == nil {
		return Default(), nil
	}
	path := field.NewPath("spec", "parametersRef")
	var errs field.ErrorList
	if ref.Group != gatewayv1.Group(v1alpha1.GroupVersion.Group) {
		errs = append(errs, field.NotSupported(path.Child("group"), ref.Group, []string{v1alpha1.GroupVersion.Group}))
	}
	if ref.Kind != Kind {
		errs = append(errs, field.NotSupported(path.Child("kind"), ref.Kind, []string{Kind}))
	}
	if ref.Namespace != nil && *ref.Namespace != "" {
		errs = append(errs, field.Forbidden(path.Child("namespace"), Kind+" is cluster-scoped"))
	}
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	cfg := get(ref.Name)
	if cfg == nil {
		return nil, field.NotFound(path.Child("name"), ref.Name)
	}
	p, errs := Parse(cfg)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s %s: %w", Kind, cfg.Name, errs.ToAggregate())
	}
	return p, nil
}

// Selector is the node selector of the configs (nil: every node), also of nil parameters.
func (p *Parameters) Selector() *metav1.LabelSelector {
	if p == nil {
		return nil
	}
	return p.NodeSelector
}

// Warnings are what a valid config may not do as its author expects, for the
// webhook to return to kubectl.
func Warnings(p *Parameters) []string {
	if p == nil || p.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return nil
	}
	// A Gateway Service has no endpoints: the node agents take its traffic.
	return []string{"spec.service.externalTrafficPolicy: Local: a Gateway's Service has no endpoints, and both Portico's L2 announcements " +
		"and load balancers that follow the health-check node port send a Local Service's traffic only to nodes with a ready endpoint: " +
		"none would receive it"}
}

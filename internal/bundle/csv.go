package bundle

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/blang/semver/v4"
	opversion "github.com/operator-framework/api/pkg/lib/version"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/testenv"
)

// internalKinds are written by Portico's own components, never by users: OLM consoles
// hide them.
var internalKinds = []string{"nodeproxyconfigs.portico.dev", "nodeproxies.portico.dev"}

// build turns the rendered chart into the CSV, the objects for extras/, and the other
// objects a bundle may carry (metrics Services).
func build(r *chart.Rendered) (*operatorsv1alpha1.ClusterServiceVersion, []*unstructured.Unstructured, []*unstructured.Unstructured, error) {
	csv, err := skeleton(r)
	if err != nil {
		return nil, nil, nil, err
	}
	var extras, others []*unstructured.Unstructured
	install := operatorsv1alpha1.StrategyDetailsDeployment{}
	cluster, namespaced := map[string][]rbacv1.PolicyRule{}, map[string][]rbacv1.PolicyRule{}
	for _, o := range r.Objects {
		switch o.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			if err := from(o, d); err != nil {
				return nil, nil, nil, err
			}
			withoutCertVolume(&d.Spec)
			install.DeploymentSpecs = append(install.DeploymentSpecs, operatorsv1alpha1.StrategyDeploymentSpec{
				Name: d.Name, Label: d.Labels, Spec: d.Spec})
		case "ClusterRoleBinding", "RoleBinding":
			if err := addPermissions(r, o, cluster, namespaced); err != nil {
				return nil, nil, nil, err
			}
		case "ValidatingWebhookConfiguration":
			hooks, err := webhooks(o)
			if err != nil {
				return nil, nil, nil, err
			}
			csv.Spec.WebhookDefinitions = append(csv.Spec.WebhookDefinitions, hooks...)
		case "DaemonSet", "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			extras = append(extras, o)
		case "Service":
			// OLM makes the webhook Services (<deployment>-service); the metrics ones stay.
			if strings.HasSuffix(o.GetName(), "-metrics") {
				o = o.DeepCopy()
				o.SetNamespace("")
				others = append(others, o)
			}
		case "PodDisruptionBudget":
			o = o.DeepCopy()
			o.SetNamespace("")
			others = append(others, o)
		case "ServiceAccount", "ClusterRole", "Role", "Secret", "Certificate", "Issuer":
			// ServiceAccounts and roles come from the permissions; certificates from OLM.
		default:
			return nil, nil, nil, fmt.Errorf("the chart renders a %s (%s) the bundle does not know what to do with", o.GetKind(), o.GetName())
		}
	}
	install.ClusterPermissions, install.Permissions = permissions(cluster), permissions(namespaced)
	csv.Spec.InstallStrategy = operatorsv1alpha1.NamedInstallStrategy{
		StrategyName: operatorsv1alpha1.InstallStrategyNameDeployment, StrategySpec: install}
	csv.Spec.RelatedImages = relatedImages(r)
	return csv, extras, others, nil
}

func skeleton(r *chart.Rendered) (*operatorsv1alpha1.ClusterServiceVersion, error) {
	examples, err := samples()
	if err != nil {
		return nil, err
	}
	almExamples, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return nil, err
	}
	internal, _ := json.Marshal(internalKinds)
	icon, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "icon.svg"))
	if err != nil {
		return nil, err
	}
	appVersion := r.Objects[0].GetLabels()["app.kubernetes.io/version"]
	v, err := semver.Parse(appVersion)
	if err != nil {
		return nil, fmt.Errorf("chart appVersion %q: %w", appVersion, err)
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{
		TypeMeta: metav1.TypeMeta{APIVersion: operatorsv1alpha1.SchemeGroupVersion.String(), Kind: operatorsv1alpha1.ClusterServiceVersionKind},
		ObjectMeta: metav1.ObjectMeta{Name: Package + ".v" + v.String(), Annotations: map[string]string{
			"alm-examples":   string(almExamples),
			"capabilities":   "Basic Install",
			"categories":     "Networking",
			"containerImage": controllerImage(r),
			"description":    "L7 load balancing for bare-metal and edge Kubernetes: LB-IPAM, L2 announcements, Ingress, eBPF redirects to an Envoy per node.",
			"repository":     "https://github.com/portico-dev/portico",
			"support":        "Portico maintainers",
			"operators.operatorframework.io/internal-objects": string(internal),
		}},
		Spec: operatorsv1alpha1.ClusterServiceVersionSpec{
			DisplayName: "Portico",
			Description: description,
			Version:     opversion.OperatorVersion{Version: v},
			Maturity:    "alpha",
			// ValidatingAdmissionPolicy v1 and the service-account node-name claim.
			MinKubeVersion: "1.32.0",
			Keywords:       []string{"ingress", "load-balancer", "ebpf", "envoy", "bare-metal", "l2"},
			Maintainers:    []operatorsv1alpha1.Maintainer{{Name: "Portico maintainers", Email: "maintainers@portico.dev"}},
			Provider:       operatorsv1alpha1.AppLink{Name: "Portico", URL: "https://github.com/portico-dev/portico"},
			Links:          []operatorsv1alpha1.AppLink{{Name: "Source", URL: "https://github.com/portico-dev/portico"}},
			Icon:           []operatorsv1alpha1.Icon{{Data: base64.StdEncoding.EncodeToString(icon), MediaType: "image/svg+xml"}},
			InstallModes: []operatorsv1alpha1.InstallMode{
				{Type: operatorsv1alpha1.InstallModeTypeOwnNamespace, Supported: true},
				{Type: operatorsv1alpha1.InstallModeTypeSingleNamespace, Supported: false},
				{Type: operatorsv1alpha1.InstallModeTypeMultiNamespace, Supported: false},
				{Type: operatorsv1alpha1.InstallModeTypeAllNamespaces, Supported: true},
			},
		},
	}
	for _, crd := range r.CRDs {
		owned, err := ownedCRD(crd)
		if err != nil {
			return nil, err
		}
		csv.Spec.CustomResourceDefinitions.Owned = append(csv.Spec.CustomResourceDefinitions.Owned, owned)
	}
	return csv, nil
}

const description = `Portico gives a bare-metal or edge cluster L7 load balancing without replacing the CNI
or kube-proxy: LoadBalancer IP pools, L2 (ARP/NDP) announcements with fast failover, an
Ingress controller, and a node agent that redirects traffic with eBPF to an Envoy on each
node and reports what every node does in a NodeProxy.

After installing the operator, apply bundle/extras/node-and-policies.yaml from the
Portico repository in the operator's namespace: the node agent and Envoy DaemonSets and
the admission policies, which an OLM bundle cannot carry.`

// ownedCRD describes a CRD for the CSV, with a descriptor for its status conditions.
func ownedCRD(u *unstructured.Unstructured) (operatorsv1alpha1.CRDDescription, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := from(u, crd); err != nil {
		return operatorsv1alpha1.CRDDescription{}, err
	}
	for _, v := range crd.Spec.Versions {
		if !v.Storage {
			continue
		}
		d := operatorsv1alpha1.CRDDescription{Name: crd.Name, Version: v.Name, Kind: crd.Spec.Names.Kind,
			DisplayName: words(crd.Spec.Names.Kind)}
		if s := v.Schema; s != nil && s.OpenAPIV3Schema != nil {
			d.Description = firstSentence(s.OpenAPIV3Schema.Description)
			if st, ok := s.OpenAPIV3Schema.Properties["status"]; ok {
				if _, ok := st.Properties["conditions"]; ok {
					d.StatusDescriptors = append(d.StatusDescriptors, operatorsv1alpha1.StatusDescriptor{
						Path: "conditions", DisplayName: "Conditions", Description: "The object's conditions, each with a reason and message.",
						XDescriptors: []string{"urn:alm:descriptor:io.kubernetes.conditions"}})
				}
			}
		}
		if d.Description == "" {
			d.Description = d.DisplayName
		}
		return d, nil
	}
	return operatorsv1alpha1.CRDDescription{}, fmt.Errorf("CRD %s has no storage version", crd.Name)
}

// addPermissions adds the rules a binding grants to its ServiceAccount.
func addPermissions(r *chart.Rendered, b *unstructured.Unstructured, cluster, namespaced map[string][]rbacv1.PolicyRule) error {
	kind, name := b.GetKind(), b.GetName()
	var ref rbacv1.RoleRef
	var subjects []rbacv1.Subject
	if kind == "ClusterRoleBinding" {
		crb := &rbacv1.ClusterRoleBinding{}
		if err := from(b, crb); err != nil {
			return err
		}
		ref, subjects = crb.RoleRef, crb.Subjects
	} else {
		rb := &rbacv1.RoleBinding{}
		if err := from(b, rb); err != nil {
			return err
		}
		ref, subjects = rb.RoleRef, rb.Subjects
	}
	role := r.Find(ref.Kind, ref.Name)
	if role == nil {
		return fmt.Errorf("%s %s binds missing %s %s", kind, name, ref.Kind, ref.Name)
	}
	rules := []rbacv1.PolicyRule{}
	raw, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, x := range raw {
		rule := rbacv1.PolicyRule{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(x.(map[string]any), &rule); err != nil {
			return err
		}
		rules = append(rules, rule)
	}
	for _, s := range subjects {
		if ref.Kind == "ClusterRole" && kind == "ClusterRoleBinding" {
			cluster[s.Name] = append(cluster[s.Name], rules...)
		} else {
			namespaced[s.Name] = append(namespaced[s.Name], rules...)
		}
	}
	return nil
}

func permissions(m map[string][]rbacv1.PolicyRule) []operatorsv1alpha1.StrategyDeploymentPermissions {
	var out []operatorsv1alpha1.StrategyDeploymentPermissions
	for sa, rules := range m {
		out = append(out, operatorsv1alpha1.StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: rules})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServiceAccountName < out[j].ServiceAccountName })
	return out
}

// webhooks turns a controller's webhook configuration into webhook definitions served
// by its Deployment (same name).
func webhooks(o *unstructured.Unstructured) ([]operatorsv1alpha1.WebhookDescription, error) {
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	if err := from(o, vwc); err != nil {
		return nil, err
	}
	var out []operatorsv1alpha1.WebhookDescription
	for _, w := range vwc.Webhooks {
		if w.ClientConfig.Service == nil {
			return nil, fmt.Errorf("webhook %s: no service", w.Name)
		}
		target := intstr.FromString("webhook")
		out = append(out, operatorsv1alpha1.WebhookDescription{GenerateName: w.Name, Type: operatorsv1alpha1.ValidatingAdmissionWebhook,
			DeploymentName: vwc.Name, ContainerPort: 443, TargetPort: &target, Rules: w.Rules, FailurePolicy: w.FailurePolicy,
			SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
			WebhookPath: w.ClientConfig.Service.Path})
	}
	return out, nil
}

// withoutCertVolume drops the chart's certificate volume: OLM mounts its own at the
// same path.
func withoutCertVolume(spec *appsv1.DeploymentSpec) {
	pod := &spec.Template.Spec
	vols := pod.Volumes[:0]
	for _, v := range pod.Volumes {
		if v.Name != "webhook-cert" {
			vols = append(vols, v)
		}
	}
	pod.Volumes = vols
	for i := range pod.Containers {
		c := &pod.Containers[i]
		mounts := c.VolumeMounts[:0]
		for _, m := range c.VolumeMounts {
			if m.Name != "webhook-cert" {
				mounts = append(mounts, m)
			}
		}
		c.VolumeMounts = mounts
	}
}

func relatedImages(r *chart.Rendered) []operatorsv1alpha1.RelatedImage {
	seen := map[string]bool{}
	var out []operatorsv1alpha1.RelatedImage
	for _, o := range r.Objects {
		if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			img, _ := c.(map[string]any)["image"].(string)
			if img != "" && !seen[img] {
				seen[img] = true
				out = append(out, operatorsv1alpha1.RelatedImage{Name: o.GetLabels()["app.kubernetes.io/component"], Image: img})
			}
		}
	}
	return out
}

func controllerImage(r *chart.Rendered) string {
	for _, o := range r.OfKind("Deployment") {
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		img, _ := containers[0].(map[string]any)["image"].(string)
		return img
	}
	return ""
}

func from(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

// words splits a kind into words: "LoadBalancerIPPool" -> "Load Balancer IP Pool".
func words(kind string) string {
	var b strings.Builder
	rs := []rune(kind)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}

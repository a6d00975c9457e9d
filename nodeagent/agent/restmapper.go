package agent

import (
	"net/http"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// staticFirstMapper maps the kinds the agent uses without asking the apiserver, and any
// other through discovery.
func staticFirstMapper(cfg *rest.Config, hc *http.Client) (meta.RESTMapper, error) {
	dyn, err := apiutil.NewDynamicRESTMapper(cfg, hc)
	if err != nil {
		return nil, err
	}
	static := meta.NewDefaultRESTMapper(nil)
	for gvk, scope := range map[schema.GroupVersionKind]meta.RESTScope{
		corev1.SchemeGroupVersion.WithKind("Node"):               meta.RESTScopeRoot,
		corev1.SchemeGroupVersion.WithKind("Service"):            meta.RESTScopeNamespace,
		corev1.SchemeGroupVersion.WithKind("Secret"):             meta.RESTScopeNamespace,
		discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"): meta.RESTScopeNamespace,
		coordinationv1.SchemeGroupVersion.WithKind("Lease"):      meta.RESTScopeNamespace,
		v1alpha1.GroupVersion.WithKind("NodeProxyConfig"):        meta.RESTScopeRoot,
		v1alpha1.GroupVersion.WithKind("NodeProxy"):              meta.RESTScopeRoot,
	} {
		static.Add(gvk, scope)
	}
	return fallbackMapper{static, dyn}, nil
}

// fallbackMapper asks first, then second for kinds first does not know.
type fallbackMapper struct{ first, second meta.RESTMapper }

func (m fallbackMapper) KindFor(r schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	k, err := m.first.KindFor(r)
	if meta.IsNoMatchError(err) {
		return m.second.KindFor(r)
	}
	return k, err
}

func (m fallbackMapper) KindsFor(r schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	k, err := m.first.KindsFor(r)
	if meta.IsNoMatchError(err) {
		return m.second.KindsFor(r)
	}
	return k, err
}

func (m fallbackMapper) ResourceFor(r schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	k, err := m.first.ResourceFor(r)
	if meta.IsNoMatchError(err) {
		return m.second.ResourceFor(r)
	}
	return k, err
}

func (m fallbackMapper) ResourcesFor(r schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	k, err := m.first.ResourcesFor(r)
	if meta.IsNoMatchError(err) {
		return m.second.ResourcesFor(r)
	}
	return k, err
}

func (m fallbackMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	k, err := m.first.RESTMapping(gk, versions...)
	if meta.IsNoMatchError(err) {
		return m.second.RESTMapping(gk, versions...)
	}
	return k, err
}

func (m fallbackMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	k, err := m.first.RESTMappings(gk, versions...)
	if meta.IsNoMatchError(err) {
		return m.second.RESTMappings(gk, versions...)
	}
	return k, err
}

func (m fallbackMapper) ResourceSingularizer(resource string) (string, error) {
	s, err := m.first.ResourceSingularizer(resource)
	if err != nil {
		return m.second.ResourceSingularizer(resource)
	}
	return s, err
}

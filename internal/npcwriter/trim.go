package npcwriter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
)

// annotationCachedDigest marks a NodeProxyConfig that TrimConfig cut down in
// a producer's cache; its value is "<resourceVersion>:<SpecDigest>" of the
// object the apiserver sent. It exists in that cache only: the Writer never
// sends a cached object back, and a value written to the server by someone
// else is not trusted, since no stored object's resourceVersion can be the
// one recorded in it before it was stored.
const annotationCachedDigest = "portico.dev/cached-spec-digest"

// TrimCache makes opts' cache hold NodeProxyConfigs as TrimConfig leaves them.
// For the producers that write their configs through a Writer and read back
// only their status: the gateway-controller's cache held every route's config
// a second time beside the memoised translation (issue 12's memory figure).
func TrimCache(opts *cache.Options) {
	if opts.ByObject == nil {
		opts.ByObject = map[client.Object]cache.ByObject{}
	}
	for obj, bo := range opts.ByObject {
		if _, ok := obj.(*v1alpha1.NodeProxyConfig); ok {
			bo.Transform = TrimConfig
			opts.ByObject[obj] = bo
			return
		}
	}
	opts.ByObject[&v1alpha1.NodeProxyConfig{}] = cache.ByObject{Transform: TrimConfig}
}

// TrimConfig is a cache transform keeping of a NodeProxyConfig what a producer
// reads from its cache: metadata (without managedFields), status, the node
// selector and redirects (the nodes' verdict reads them), the names of the
// listeners it defines (the Writer orders writes by them), and the digest of
// the whole spec, against which the Writer compares what it would write.
// Route fragments, filter chains and every other Envoy resource are dropped.
func TrimConfig(obj any) (any, error) {
	c, ok := obj.(*v1alpha1.NodeProxyConfig)
	if !ok {
		return obj, nil
	}
	if _, ok := cachedDigest(c); ok {
		// client-go may hand an object it already transformed to the
		// transform again (a resync, a relist); its digest is already that of
		// the whole spec.
		return c, nil
	}
	digest, err := SpecDigest(c.Spec)
	if err != nil {
		// Keep it whole: the Writer then compares the spec itself.
		return obj, nil
	}
	out := &v1alpha1.NodeProxyConfig{TypeMeta: c.TypeMeta, ObjectMeta: c.ObjectMeta, Status: c.Status}
	out.ManagedFields = nil
	out.Annotations = make(map[string]string, len(c.Annotations)+1)
	for k, v := range c.Annotations {
		out.Annotations[k] = v
	}
	out.Annotations[annotationCachedDigest] = c.ResourceVersion + ":" + digest
	out.Spec = v1alpha1.NodeProxyConfigSpec{NodeSelector: c.Spec.NodeSelector, Redirects: c.Spec.Redirects,
		Announcements: c.Spec.Announcements}
	if c.Spec.Envoy != nil {
		var ls []v1alpha1.EnvoyResource
		for _, r := range c.Spec.Envoy.Resources {
			if r.TypeURL == envoykit.TypeListener {
				stub, _ := json.Marshal(map[string]string{"@type": r.TypeURL, "name": resourceName(r.Raw)})
				ls = append(ls, v1alpha1.EnvoyResource{TypeURL: r.TypeURL, Raw: stub})
			}
		}
		if ls != nil {
			out.Spec.Envoy = &v1alpha1.EnvoyResources{Resources: ls}
		}
	}
	return out, nil
}

// SpecDigest is a digest of spec as the apiserver sees it: Envoy resources are
// raw JSON, which comes back from the server with its keys reordered, so the
// spec goes through generic values (whose keys marshal sorted) before hashing.
func SpecDigest(spec v1alpha1.NodeProxyConfigSpec) (string, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// cachedDigest is the digest TrimConfig recorded for c, if it recorded one
// for this very version of it.
func cachedDigest(c *v1alpha1.NodeProxyConfig) (string, bool) {
	v, ok := c.Annotations[annotationCachedDigest]
	if !ok {
		return "", false
	}
	rv, d, ok := strings.Cut(v, ":")
	return d, ok && rv == c.ResourceVersion && rv != ""
}

// sameAsCurrent compares spec with the spec of cur, an object of the cache:
// by digest when the cache trimmed it, whole otherwise.
func sameAsCurrent(cur *v1alpha1.NodeProxyConfig, spec v1alpha1.NodeProxyConfigSpec) (bool, error) {
	if d, ok := cachedDigest(cur); ok {
		mine, err := SpecDigest(spec)
		return mine == d, err
	}
	return sameSpec(cur.Spec, spec)
}

// specPatch is the JSON patch that makes cur hold spec (nil: the spec is
// already right, only metadata is written), the producer's labels and its
// source annotation. The spec is replaced whole, so that it needs
// nothing of cur's spec, which the cache may have trimmed (a merge patch from
// it would leave fields the new spec no longer has). A patch, not an
// optimistic Update: the producer owns the spec outright, and its own status
// writes (the Programmed verdict) move the resourceVersion all the time, which
// would make an update from the cache fail with a conflict and cost the whole
// pass a retry. Labels and the annotation are set key by key, leaving other
// people's.
func specPatch(cur *v1alpha1.NodeProxyConfig, labels map[string]string, src Source, spec *v1alpha1.NodeProxyConfigSpec) (client.Patch, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	if spec != nil {
		ops = append(ops, op{"add", "/spec", spec})
	}
	// A key can be added only to a map that exists on the server; an empty or
	// absent one is set whole. The digest annotation exists in the cache only.
	annotations := len(cur.Annotations)
	if _, ok := cur.Annotations[annotationCachedDigest]; ok {
		annotations--
	}
	if len(cur.Labels) == 0 {
		ops = append(ops, op{"add", "/metadata/labels", labels})
	} else {
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			if cur.Labels[k] != labels[k] {
				ops = append(ops, op{"add", "/metadata/labels/" + pointerEscape(k), labels[k]})
			}
		}
	}
	switch {
	case annotations == 0:
		ops = append(ops, op{"add", "/metadata/annotations", map[string]string{AnnotationSource: src.String()}})
	case cur.Annotations[AnnotationSource] != src.String():
		ops = append(ops, op{"add", "/metadata/annotations/" + pointerEscape(AnnotationSource), src.String()})
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.JSONPatchType, raw), nil
}

// pointerEscape escapes a map key for a JSON pointer (RFC 6901).
func pointerEscape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

package npcwriter

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Source identifies the object a NodeProxyConfig was made from. It becomes the
// portico.dev/source-* labels; the empty Namespace of a cluster-scoped source is left out.
type Source struct {
	Kind, Namespace, Name string
}

// Writer writes the NodeProxyConfigs of one producer.
type Writer struct {
	Client client.Client
	// Producer is the value of the portico.dev/producer label, e.g. "ingress".
	Producer string
}

// Labels are the labels a config of this producer made from src carries. Label
// values are limited to 63 characters; a longer source name is left out of them
// (the object's name still carries it), rather than failing the write.
func (w *Writer) Labels(src Source) map[string]string {
	l := map[string]string{v1alpha1.LabelProducer: w.Producer}
	for k, v := range map[string]string{
		v1alpha1.LabelSourceKind: src.Kind, v1alpha1.LabelSourceNamespace: src.Namespace, v1alpha1.LabelSourceName: src.Name,
	} {
		if v != "" && len(v) <= 63 {
			l[k] = v
		}
	}
	return l
}

// MaxSpecBytes is the largest spec Apply writes. etcd refuses objects over
// 1.5 MiB with an error that names neither the object nor the cause; refusing
// earlier, with the size in the message, tells the operator what to split.
const MaxSpecBytes = 1400 * 1024

// Apply makes the config name hold spec, creating it if needed. It writes only
// when the labels or spec differ from what the apiserver has, so a resync of an
// unchanged world costs reads only; changed reports whether it wrote.
func (w *Writer) Apply(ctx context.Context, name string, src Source, spec v1alpha1.NodeProxyConfigSpec) (changed bool, err error) {
	if raw, err := json.Marshal(spec); err != nil {
		return false, err
	} else if len(raw) > MaxSpecBytes {
		return false, fmt.Errorf("NodeProxyConfig %s not written: its spec is %d bytes, over the %d-byte limit (etcd refuses objects over 1.5 MiB)", name, len(raw), MaxSpecBytes)
	}
	labels := w.Labels(src)
	cur := &v1alpha1.NodeProxyConfig{}
	err = w.Client.Get(ctx, client.ObjectKey{Name: name}, cur)
	switch {
	case apierrors.IsNotFound(err):
		obj := &v1alpha1.NodeProxyConfig{Spec: spec}
		obj.Name, obj.Labels = name, labels
		if err := w.Client.Create(ctx, obj); err != nil {
			return false, fmt.Errorf("creating NodeProxyConfig %s: %w", name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading NodeProxyConfig %s: %w", name, err)
	}
	if p := cur.Labels[v1alpha1.LabelProducer]; p != w.Producer {
		return false, fmt.Errorf("NodeProxyConfig %s belongs to producer %q, not %q: left alone", name, p, w.Producer)
	}
	same, err := sameSpec(cur.Spec, spec)
	if err != nil {
		return false, err
	}
	if same && labelsCover(cur.Labels, labels) {
		return false, nil
	}
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	maps.Copy(cur.Labels, labels)
	cur.Spec = spec
	if err := w.Client.Update(ctx, cur); err != nil {
		return false, fmt.Errorf("updating NodeProxyConfig %s: %w", name, err)
	}
	return true, nil
}

// Delete removes the config name if it exists and is this producer's.
func (w *Writer) Delete(ctx context.Context, name string) error {
	cur := &v1alpha1.NodeProxyConfig{}
	if err := w.Client.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
		return client.IgnoreNotFound(err)
	}
	if cur.Labels[v1alpha1.LabelProducer] != w.Producer {
		return nil
	}
	// The precondition makes a delete racing with someone re-creating the name a no-op.
	err := w.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting NodeProxyConfig %s: %w", name, err)
	}
	return nil
}

// Owned lists the names of this producer's configs. NodeProxyConfigs are
// cluster-scoped and cannot be owned by namespaced sources, so a producer sweeps
// what it no longer wants with Owned and Delete instead of relying on the garbage collector.
func (w *Writer) Owned(ctx context.Context) ([]string, error) {
	var list v1alpha1.NodeProxyConfigList
	if err := w.Client.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: w.Producer}); err != nil {
		return nil, fmt.Errorf("listing NodeProxyConfigs: %w", err)
	}
	out := make([]string, 0, len(list.Items))
	for _, c := range list.Items {
		out = append(out, c.Name)
	}
	return out, nil
}

// sameSpec compares specs as the apiserver sees them: Envoy resources are raw
// JSON, which comes back from the server with its keys reordered, so bytes are
// compared only after a round trip through generic values.
func sameSpec(a, b v1alpha1.NodeProxyConfigSpec) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	var va, vb any
	if err := json.Unmarshal(ja, &va); err != nil {
		return false, err
	}
	if err := json.Unmarshal(jb, &vb); err != nil {
		return false, err
	}
	return reflect.DeepEqual(va, vb), nil
}

func labelsCover(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

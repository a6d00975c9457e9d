package npcwriter

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Source identifies the object a NodeProxyConfig was made from. It becomes the
// portico.dev/source-* labels (for selecting; a value over 63 characters is left
// out) and the portico.dev/source annotation (whole, for reading back); the empty
// Namespace of a cluster-scoped source is left out.
type Source struct {
	Kind, Namespace, Name string
}

// AnnotationSource names a config's source in full: "<Kind>/<namespace>/<name>",
// or "<Kind>/<name>" for a cluster-scoped source. Labels cannot (node names and
// object names may be 253 characters, label values 63).
const AnnotationSource = "portico.dev/source"

func (s Source) String() string {
	if s.Namespace == "" {
		return s.Kind + "/" + s.Name
	}
	return s.Kind + "/" + s.Namespace + "/" + s.Name
}

// SourceOf reads a config's source back from its annotation (ok false without one).
func SourceOf(obj client.Object) (Source, bool) {
	v, ok := obj.GetAnnotations()[AnnotationSource]
	if !ok {
		return Source{}, false
	}
	parts := strings.SplitN(v, "/", 3)
	switch len(parts) {
	case 2:
		return Source{Kind: parts[0], Name: parts[1]}, true
	case 3:
		return Source{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
	}
	return Source{}, false
}

// Writer writes the NodeProxyConfigs of one producer. It remembers what it
// last wrote (or found already in place) per config, so that a producer
// re-applying thousands of unchanged specs on every pass costs a cache lookup
// and a comparison that stops at shared slices, not a JSON round trip each.
// The zero value with Client and Producer set is ready to use.
type Writer struct {
	Client client.Client
	// Producer is the value of the portico.dev/producer label, e.g. "ingress".
	Producer string
	// Watched promises that the producer passes every update and deletion
	// event of NodeProxyConfigs to Observe. Apply then skips even the cache
	// lookup for a spec it wrote and nobody else has touched since.
	Watched bool
	// Parallelism is how many configs ApplySet writes at once within one of its
	// ordered groups (zero or one: one at a time). Apply is safe for concurrent use.
	Parallelism int

	mu   sync.Mutex
	last map[string]written
	// updating holds the object (UID, generation) each Update in flight will
	// make: its watch event can arrive before Update returns.
	updating map[string]version
	// set is the names the last ApplySet wanted (nil: sweep everything owned).
	set map[string]bool
	// onWritten hears of every change of Written (NotifyWritten).
	onWritten func(name string)
}

type version struct {
	uid        types.UID
	generation int64
}

// written is a config as this writer last wrote or confirmed it.
type written struct {
	uid             types.UID
	generation      int64
	resourceVersion string
	src             Source
	// spec is the caller's value, kept by reference: callers hand each spec to
	// Apply and do not change it afterwards.
	spec v1alpha1.NodeProxyConfigSpec
	// touched: Observe saw a version this writer did not make.
	touched bool
}

func (w *Writer) remember(name string, obj *v1alpha1.NodeProxyConfig, src Source, spec v1alpha1.NodeProxyConfigSpec) {
	w.mu.Lock()
	if w.last == nil {
		w.last = map[string]written{}
	}
	moved := w.last[name].resourceVersion != obj.ResourceVersion
	w.last[name] = written{uid: obj.UID, generation: obj.Generation, resourceVersion: obj.ResourceVersion, src: src, spec: spec}
	notify := w.onWritten
	w.mu.Unlock()
	if moved && notify != nil {
		notify(name)
	}
}

func (w *Writer) keep(name string, rec written) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last[name] = rec
}

func (w *Writer) recall(name string) (written, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec, ok := w.last[name]
	return rec, ok
}

func (w *Writer) forget(name string) {
	w.mu.Lock()
	_, had := w.last[name]
	delete(w.last, name)
	notify := w.onWritten
	w.mu.Unlock()
	if had && notify != nil {
		notify(name)
	}
}

// NotifyWritten makes f hear the name of every config whose Written changes,
// after the change: a status loop that looks only at the configs that moved
// learns of a spec write even when the config's watch event came before the
// write returned (and Written was still the old version). f runs on the
// writing goroutine and must not block.
func (w *Writer) NotifyWritten(f func(name string)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onWritten = f
}

// Written is the resourceVersion of the last spec this writer wrote (or found
// already in place) for the config name, "" if it wrote none in this process.
// The nodes' progress is measured against it (internal/verdict): a status write
// bumps the live resourceVersion without changing what the nodes must apply.
func (w *Writer) Written(name string) string {
	// Not recall: a status pass asks for every config, and the record holds a spec.
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[name].resourceVersion
}

// OwnWrite reports whether obj is the version of a config this writer itself
// last wrote, so that a producer watching its configs can ignore the echo of
// its own writes and react only to other people's edits and deletions.
//
// Generations, not resourceVersions, tell versions apart here: an edit of the
// spec by someone else makes a generation the writer did not make, and the
// generation an Update will produce is known before it is sent.
func (w *Writer) OwnWrite(obj client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := version{obj.GetUID(), obj.GetGeneration()}
	if rec, ok := w.last[obj.GetName()]; ok && (version{rec.uid, rec.generation}) == v {
		return true
	}
	return w.updating[obj.GetName()] == v
}

// Observe takes note of an update or deletion event of a NodeProxyConfig and
// reports whether it is the echo of this writer's own write. Any other change
// makes the next Apply of that config compare with what the cache holds.
func (w *Writer) Observe(obj client.Object, deleted bool) (own bool) {
	own = !deleted && w.OwnWrite(obj)
	if !own {
		w.mu.Lock()
		defer w.mu.Unlock()
		if rec, ok := w.last[obj.GetName()]; ok {
			rec.touched = true
			w.last[obj.GetName()] = rec
		}
	}
	return own
}

// expect records the version an Update of name is about to make (a spec
// change adds one to the generation), or clears it when v is nil.
func (w *Writer) expect(name string, v *version) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v == nil {
		delete(w.updating, name)
		return
	}
	if w.updating == nil {
		w.updating = map[string]version{}
	}
	w.updating[name] = *v
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
// unchanged world costs reads only; changed reports whether it wrote. Apply
// keeps a reference to spec (see written) and never modifies it.
func (w *Writer) Apply(ctx context.Context, name string, src Source, spec v1alpha1.NodeProxyConfigSpec) (changed bool, err error) {
	rec, known := w.recall(name)
	if w.sameAsWritten(rec, known, src, spec) {
		return false, nil
	}
	// Read-only view of the cached object: copied below only when it is written.
	cur := &v1alpha1.NodeProxyConfig{}
	err = w.Client.Get(ctx, client.ObjectKey{Name: name}, cur, client.UnsafeDisableDeepCopy)
	switch {
	case apierrors.IsNotFound(err):
		if err := checkSize(name, spec); err != nil {
			return false, err
		}
		obj := &v1alpha1.NodeProxyConfig{Spec: *spec.DeepCopy()}
		obj.Name, obj.Labels, obj.Annotations = name, w.Labels(src), map[string]string{AnnotationSource: src.String()}
		err := w.Client.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) && known && rec.src == src && reflect.DeepEqual(rec.spec, spec) {
			// Our own create of an earlier pass that the cache has not seen yet.
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("creating NodeProxyConfig %s: %w", name, err)
		}
		w.remember(name, obj, src, spec)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading NodeProxyConfig %s: %w", name, err)
	}
	if p := cur.Labels[v1alpha1.LabelProducer]; p != w.Producer {
		return false, fmt.Errorf("NodeProxyConfig %s belongs to producer %q, not %q: left alone", name, p, w.Producer)
	}
	// The common case, an unchanged spec: DeepEqual returns at the first slice
	// the two specs share, which a memoising producer's are.
	if known && rec.uid == cur.UID && rec.src == src && reflect.DeepEqual(rec.spec, spec) {
		// Keep the caller's copy, so that the next comparison stops at shared
		// slices again after the producer rebuilt an equal spec.
		rec.spec = spec
		switch {
		case rec.resourceVersion == cur.ResourceVersion:
			w.keep(name, rec)
			return false, nil
		case cur.Generation == rec.generation && labelsCover(cur.Labels, w.Labels(src)) && cur.Annotations[AnnotationSource] == src.String():
			// Only the status moved (the producer's own Programmed write): the
			// spec is what this writer wrote, and Written must stay the
			// resourceVersion of that write, which is what nodes report progress on.
			w.keep(name, rec)
			return false, nil
		case cur.Generation < rec.generation:
			// The cache has not caught up with our own last write yet; writing
			// again from its stale copy would only fail with a conflict.
			w.keep(name, rec)
			return false, nil
		}
	}
	labels := w.Labels(src)
	same, err := sameAsCurrent(cur, spec)
	if err != nil {
		return false, err
	}
	if same && labelsCover(cur.Labels, labels) && cur.Annotations[AnnotationSource] == src.String() {
		w.remember(name, cur, src, spec)
		return false, nil
	}
	if err := checkSize(name, spec); err != nil {
		return false, err
	}
	var newSpec *v1alpha1.NodeProxyConfigSpec
	if !same {
		newSpec = &spec
	}
	patch, err := specPatch(cur, labels, src, newSpec)
	if err != nil {
		return false, err
	}
	if !same {
		w.expect(name, &version{cur.UID, cur.Generation + 1})
	}
	// The client decodes the server's answer into upd, a new object: cur is the
	// cache's own, and the caller (and w.last) keep spec.
	upd := &v1alpha1.NodeProxyConfig{}
	upd.Name = name
	err = w.Client.Patch(ctx, upd, patch)
	w.expect(name, nil)
	if err != nil {
		// A conflict means someone else wrote in between; their version's
		// event may have been taken for ours, but the error makes the
		// producer retry, which reads it.
		w.forget(name)
		return false, fmt.Errorf("updating NodeProxyConfig %s: %w", name, err)
	}
	w.remember(name, upd, src, spec)
	return true, nil
}

// shares reports whether a and b are the same value down to the slices, maps
// and pointers they share, without looking into those: the specs a memoising
// producer hands over again. Unlike reflect.DeepEqual it allocates nothing.
// A false answer only means "compare for real".
// sameAsWritten is the fast answer to "is this what I wrote last": the spec
// shares every slice and map with the last one written (a memoising producer's
// unchanged configs do) and nobody else touched the object since.
func (w *Writer) sameAsWritten(rec written, known bool, src Source, spec v1alpha1.NodeProxyConfigSpec) bool {
	return w.Watched && known && !rec.touched && rec.src == src && shares(reflect.ValueOf(rec.spec), reflect.ValueOf(spec))
}

func shares(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if !shares(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		// nil and empty differ once marshalled ("routes: []" is meaningful).
		return a.IsNil() == b.IsNil() && a.Len() == b.Len() && (a.Len() == 0 || a.UnsafePointer() == b.UnsafePointer())
	case reflect.Map:
		return a.IsNil() == b.IsNil() && a.Len() == b.Len() && (a.Len() == 0 || a.UnsafePointer() == b.UnsafePointer())
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return a.UnsafePointer() == b.UnsafePointer() || shares(a.Elem(), b.Elem())
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() == b.Uint()
	}
	return false
}

// checkSize refuses a spec etcd would refuse, naming the config and the size.
func checkSize(name string, spec v1alpha1.NodeProxyConfigSpec) error {
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if len(raw) > MaxSpecBytes {
		return fmt.Errorf("NodeProxyConfig %s not written: its spec is %d bytes, over the %d-byte limit (etcd refuses objects over 1.5 MiB)", name, len(raw), MaxSpecBytes)
	}
	return nil
}

// Delete removes the config name if it exists and is this producer's.
func (w *Writer) Delete(ctx context.Context, name string) error {
	w.forget(name)
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
	// Names only are read: no need to copy thousands of specs out of the cache.
	if err := w.Client.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: w.Producer}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing NodeProxyConfigs: %w", err)
	}
	out := make([]string, 0, len(list.Items))
	for _, c := range list.Items {
		out = append(out, c.Name)
	}
	return out, nil
}

var jsonUnmarshal = json.Unmarshal

// sameSpec compares specs as the apiserver sees them, by SpecDigest: the
// comparison a trimmed cache makes, for a spec the cache kept whole.
func sameSpec(a, b v1alpha1.NodeProxyConfigSpec) (bool, error) {
	da, err := SpecDigest(a)
	if err != nil {
		return false, err
	}
	db, err := SpecDigest(b)
	return da == db, err
}

func labelsCover(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

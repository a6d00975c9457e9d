package secrets

import (
	"context"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// State is what the watcher knows of one listed Secret.
type State struct {
	// Known is false until the Secret's first list has returned: the agent then
	// cannot tell a missing Secret from one it has not read yet, and holds back
	// what needs it rather than reject it for a moment.
	Known bool
	// Secret is nil when the Secret does not exist.
	Secret *corev1.Secret
}

// Watcher watches exactly the Secrets it is told to, each on its own.
type Watcher struct {
	client   kubernetes.Interface
	onChange func()

	mu      sync.Mutex
	watches map[string]*watch1
}

type watch1 struct {
	informer toolscache.SharedIndexInformer
	stop     chan struct{}
}

// NewWatcher returns a watcher that calls onChange (which must not block) whenever
// a watched Secret is read for the first time, changes or goes away.
func NewWatcher(client kubernetes.Interface, onChange func()) *Watcher {
	return &Watcher{client: client, onChange: onChange, watches: map[string]*watch1{}}
}

// Set makes refs ("<namespace>/<name>", malformed ones ignored) the watched set:
// watches start for new names and stop for names no longer listed.
func (w *Watcher) Set(refs []string) {
	want := map[string]bool{}
	for _, r := range refs {
		if ns, name, ok := strings.Cut(r, "/"); ok && ns != "" && name != "" && !strings.Contains(name, "/") {
			want[r] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for ref, wt := range w.watches {
		if !want[ref] {
			close(wt.stop)
			delete(w.watches, ref)
		}
	}
	for ref := range want {
		if w.watches[ref] == nil {
			w.watches[ref] = w.start(ref)
		}
	}
}

func (w *Watcher) start(ref string) *watch1 {
	ns, name, _ := strings.Cut(ref, "/")
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	secrets := w.client.CoreV1().Secrets(ns)
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return secrets.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return secrets.Watch(ctx, o)
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*corev1.Secret); ok {
			s.ManagedFields = nil
		}
		return obj, nil
	})
	notify := func(any) { w.onChange() }
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: notify, UpdateFunc: func(_, n any) { notify(n) }, DeleteFunc: notify,
	})
	wt := &watch1{informer: inf, stop: make(chan struct{})}
	go inf.Run(wt.stop)
	// A Secret that does not exist produces no event: say when the first list is in,
	// so that what waits for it is rejected as "not found" rather than held for ever.
	go func() {
		if toolscache.WaitForCacheSync(wt.stop, inf.HasSynced) {
			w.onChange()
		}
	}()
	return wt
}

// Get returns what is known of ref.
func (w *Watcher) Get(ref string) State {
	w.mu.Lock()
	wt := w.watches[ref]
	w.mu.Unlock()
	if wt == nil || !wt.informer.HasSynced() {
		return State{}
	}
	ns, name, _ := strings.Cut(ref, "/")
	obj, ok, err := wt.informer.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return State{Known: true}
	}
	return State{Known: true, Secret: obj.(*corev1.Secret)}
}

// Watched returns the watched refs, sorted.
func (w *Watcher) Watched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.watches))
	for ref := range w.watches {
		out = append(out, ref)
	}
	slices.Sort(out)
	return out
}

// Stop ends every watch.
func (w *Watcher) Stop() { w.Set(nil) }

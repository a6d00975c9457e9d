// Package cachelist lists a kind's objects straight from the informer's store.
//
// A List from controller-runtime's cache copies every object into the typed
// list (meta.SetList, by reflection), even with client.UnsafeDisableDeepCopy:
// for 10,000 NodeProxyConfigs or HTTPRoutes that copy was a tenth of a status
// pass and of a gateway pass, on every pass, to read a handful of fields.
// These are the cache's own objects, as with UnsafeDisableDeepCopy: callers
// must not modify them, and the cache replaces an object on update rather than
// changing it, so a caller may keep them for the length of a pass.
package cachelist

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// List returns the cached objects of obj's kind that sel matches (nil: all), in
// no particular order (a cache List has none either). c must be one of
// controller-runtime's informer caches (a manager's, or cache.New).
func List[T client.Object](ctx context.Context, c cache.Cache, obj T, sel labels.Selector) ([]T, error) {
	store, err := storeOf(ctx, c, obj)
	if err != nil {
		return nil, err
	}
	items := store.List()
	out := make([]T, 0, len(items))
	for _, it := range items {
		o, ok := it.(T)
		if !ok || (sel != nil && !sel.Matches(labels.Set(o.GetLabels()))) {
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// Get returns the cached object of obj's kind at key ("namespace/name", or
// "name" for a cluster-scoped kind), and whether there is one: one object
// without the copy a cache Get makes, for a caller that reads a few fields.
func Get[T client.Object](ctx context.Context, c cache.Cache, obj T, key string) (T, bool, error) {
	var none T
	store, err := storeOf(ctx, c, obj)
	if err != nil {
		return none, false, err
	}
	it, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return none, false, err
	}
	o, ok := it.(T)
	return o, ok, nil
}

func storeOf(ctx context.Context, c cache.Cache, obj client.Object) (toolscache.Store, error) {
	if c == nil {
		return nil, fmt.Errorf("cachelist: no cache for %T", obj)
	}
	inf, err := c.GetInformer(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("cachelist: informer for %T: %w", obj, err)
	}
	store, ok := inf.(interface{ GetStore() toolscache.Store })
	if !ok {
		return nil, fmt.Errorf("cachelist: the informer for %T has no store", obj)
	}
	return store.GetStore(), nil
}

// Package lastorder keeps the order a sort gave a set of items, so that the
// next pass over the same items can put them in that order in linear time
// instead of sorting them again. Producers and the agent sort thousands of
// objects by name or age on every pass, and between two passes the set is
// almost always the same; when it is not, the caller sorts and remembers.
package lastorder

// Order is the position of each item's key in the last order remembered.
// The zero Order places nothing.
type Order[K comparable] struct {
	pos map[K]int
}

// Place returns items in the remembered order, or false when their keys are
// not exactly the remembered ones (one missing, added or repeated).
func Place[T any, K comparable](o *Order[K], items []T, key func(T) K) ([]T, bool) {
	if len(items) != len(o.pos) {
		return nil, false
	}
	out := make([]T, len(items))
	filled := make([]bool, len(items))
	for _, it := range items {
		i, ok := o.pos[key(it)]
		if !ok || filled[i] {
			return nil, false
		}
		out[i], filled[i] = it, true
	}
	return out, true
}

// Remember keeps the order of sorted for the next Place.
func Remember[T any, K comparable](o *Order[K], sorted []T, key func(T) K) {
	o.pos = make(map[K]int, len(sorted))
	for i, it := range sorted {
		o.pos[key(it)] = i
	}
}
